// The engine's KV cache behind the GenerationBackend seam. It wraps the EngineBackend that serves
// FORWARD, so both run on one engine from the server's one worker thread.
import Engine

/// The real engine as a `GenerationBackend` (and, through `base`, an `InferenceBackend`).
public final class EngineGenerationBackend: InferenceBackend, GenerationBackend {
    public let base: EngineBackend
    public let kvCapacityBytes: Int
    public let maxSequences: Int
    public let maxStepRows: Int
    public let maxStepTokens: Int
    public let maxSequenceLength: Int
    private let bytesPerBlock: Int
    private var handles: [SequenceHandle: SequenceID] = [:]
    private var nextHandle: UInt64 = 1
    private var batch = RaggedBatch()
    private var ids: [SequenceID] = []

    public var modelInfo: ModelInfo { base.modelInfo }

    public init(_ base: EngineBackend) {
        self.base = base
        let engine = base.engine, usage = engine.kvCacheUsage
        kvCapacityBytes = usage.totalBytes
        bytesPerBlock = usage.bytesPerBlock
        maxSequences = engine.options.maxSequences
        maxStepRows = engine.options.maxRows
        maxStepTokens = engine.options.maxBatchTokens
        maxSequenceLength = engine.options.maxSeq
        ids.reserveCapacity(maxStepRows)
    }

    public func forward(rows: [[Int32]], hidden: Bool, logits: LogitsWanted, body: (BackendOutput) throws -> Void) throws {
        try base.forward(rows: rows, hidden: hidden, logits: logits, body: body)
    }

    /// Every beam bounded as an unshared sequence of prompt + generate positions (forks share the
    /// prompt's blocks, so this over-counts the prompt by beams − 1 copies). The engine's bound is a
    /// pure function of the model's layers, so it may be called from any thread.
    public func kvReservation(prompt: Int, generate: Int, beams: Int, chunk: Int) -> Int {
        beams * base.engine.cacheBlockBound(sequenceLength: prompt + generate, largestChunk: chunk) * bytesPerBlock
    }

    public var kvUsage: KVCacheState {
        let usage = base.engine.kvCacheUsage
        return KVCacheState(capacityBytes: usage.totalBytes, usedBytes: usage.usedBytes, sequences: usage.sequences)
    }

    private func register(_ id: SequenceID) -> SequenceHandle {
        let handle = SequenceHandle(rawValue: nextHandle)
        nextHandle += 1
        handles[handle] = id
        return handle
    }

    private func id(_ handle: SequenceHandle) throws -> SequenceID {
        guard let id = handles[handle] else { throw GenerationRefusal(code: .unknownException, message: "\(handle) is not live") }
        return id
    }

    public func newSequence() throws -> SequenceHandle { register(try base.engine.newSequence()) }

    public func fork(_ parent: SequenceHandle) throws -> SequenceHandle { register(try base.engine.fork(try id(parent))) }

    public func release(_ sequence: SequenceHandle) {
        if let id = handles.removeValue(forKey: sequence) { base.engine.release(id) }
    }

    public func cachedLength(_ sequence: SequenceHandle) -> Int {
        handles[sequence].flatMap { try? base.engine.cachedLength(of: $0) } ?? 0
    }

    public func step(_ entries: [StepEntry], body: (UnsafeMutableBufferPointer<Float>) throws -> Void) throws {
        batch.removeAll()
        ids.removeAll(keepingCapacity: true)
        for entry in entries {
            batch.append(row: entry.tokens)
            ids.append(try id(entry.sequence))
        }
        let result = try base.engine.forward(batch, sequences: ids, logits: .last)
        guard let first = result.lastLogits(row: 0)?.baseAddress else { return }
        try body(UnsafeMutableBufferPointer(mutating: UnsafeBufferPointer(start: first, count: entries.count * base.engine.config.vocabSize)))
    }
}
