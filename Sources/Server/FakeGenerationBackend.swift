import Foundation

/// A deterministic generation backend for tests and load tests: its "cache" is each sequence's
/// token history, and a step's logits are exactly what `FakeBackend.forward` gives at the last
/// position of that whole history (`FakeBackend.logitValue` of the last token, the one before it
/// and the position). So a greedy decode through `step` can be predicted by recomputing full rows
/// with `forward`. KV bytes are `kvBytesPerToken` per cached position, bounded by `kvCapacityBytes`.
public final class FakeGenerationBackend: InferenceBackend, GenerationBackend, @unchecked Sendable {
    public let modelInfo: ModelInfo
    public let kvCapacityBytes: Int
    public let kvBytesPerToken: Int
    public let maxSequences: Int
    public let maxStepRows: Int
    public let maxStepTokens: Int
    public let maxSequenceLength: Int
    /// The FORWARD path (same logits).
    public let forwardBackend: FakeBackend
    /// Sleep this long per step (to test deadlines, disconnects and interleaving).
    public var stepDelay: Double {
        get { lock.withLock { delay } }
        set { lock.withLock { delay = newValue } }
    }

    private let lock = NSLock()
    private var delay: Double
    private var histories: [SequenceHandle: [Int32]] = [:]
    private var cachedTokens = 0
    private var nextHandle: UInt64 = 1
    private var steps = 0
    private var largestStep = 0
    private var log: [[Int]] = []
    /// Steps `stepLog` keeps (the most recent).
    public static let stepLogCapacity = 4096
    private var scratch: [Float] = []

    /// The error a step throws when the cache or the slots cannot hold it.
    public struct Full: Error, CustomStringConvertible {
        public let description: String
    }

    public convenience init(vocabSize: Int = 1000, hiddenSize: Int = 16, kvCapacityBytes: Int = 64 << 20, kvBytesPerToken: Int = 1024,
                            maxSequences: Int = 64, maxStepRows: Int = 64, maxStepTokens: Int = 4096, maxSequenceLength: Int = 4096,
                            stepDelay: Double = 0, computeDelay: Double = 0) {
        self.init(forward: FakeBackend(vocabSize: vocabSize, hiddenSize: hiddenSize, computeDelay: computeDelay),
                  kvCapacityBytes: kvCapacityBytes, kvBytesPerToken: kvBytesPerToken, maxSequences: maxSequences,
                  maxStepRows: maxStepRows, maxStepTokens: maxStepTokens, maxSequenceLength: maxSequenceLength, stepDelay: stepDelay)
    }

    /// A fake with a real model's shape and tokenizer identity (`FakeBackend(modelInfo:)`).
    public convenience init(modelInfo: ModelInfo, kvCapacityBytes: Int = 64 << 20, kvBytesPerToken: Int = 1024,
                            maxSequences: Int = 64, maxStepRows: Int = 64, maxStepTokens: Int = 4096, maxSequenceLength: Int = 4096,
                            computeDelay: Double = 0) {
        self.init(forward: FakeBackend(modelInfo: modelInfo, computeDelay: computeDelay), kvCapacityBytes: kvCapacityBytes, kvBytesPerToken: kvBytesPerToken,
                  maxSequences: maxSequences, maxStepRows: maxStepRows, maxStepTokens: maxStepTokens,
                  maxSequenceLength: maxSequenceLength, stepDelay: 0)
    }

    private init(forward: FakeBackend, kvCapacityBytes: Int, kvBytesPerToken: Int, maxSequences: Int, maxStepRows: Int,
                 maxStepTokens: Int, maxSequenceLength: Int, stepDelay: Double) {
        forwardBackend = forward
        modelInfo = forward.modelInfo
        self.kvCapacityBytes = kvCapacityBytes
        self.kvBytesPerToken = kvBytesPerToken
        self.maxSequences = maxSequences
        self.maxStepRows = maxStepRows
        self.maxStepTokens = maxStepTokens
        self.maxSequenceLength = maxSequenceLength
        delay = stepDelay
    }

    // MARK: InferenceBackend

    public func forward(rows: [[Int32]], hidden: Bool, logits: LogitsWanted, body: (BackendOutput) throws -> Void) throws {
        try forwardBackend.forward(rows: rows, hidden: hidden, logits: logits, body: body)
    }

    // MARK: GenerationBackend

    public func kvReservation(prompt: Int, generate: Int, beams: Int, chunk: Int) -> Int {
        // A fork copies its parent's history here, so each continuation holds the prompt too.
        beams * (prompt + generate) * kvBytesPerToken
    }

    public var kvUsage: KVCacheState {
        lock.withLock { KVCacheState(capacityBytes: kvCapacityBytes, usedBytes: cachedTokens * kvBytesPerToken, sequences: histories.count) }
    }

    /// Live sequences (for tests, from any thread).
    public var activeSequences: Int { lock.withLock { histories.count } }
    /// Step calls so far, and the most entries one of them had.
    public var stepCalls: Int { lock.withLock { steps } }
    public var mostStepEntries: Int { lock.withLock { largestStep } }
    /// Each recent step's entries as token counts (a decode entry is 1), oldest first.
    public var stepLog: [[Int]] { lock.withLock { log } }

    public func newSequence() throws -> SequenceHandle {
        try lock.withLock {
            guard histories.count < maxSequences else { throw Full(description: "all \(maxSequences) sequence slots are in use") }
            let handle = SequenceHandle(rawValue: nextHandle)
            nextHandle += 1
            histories[handle] = []
            return handle
        }
    }

    public func fork(_ parent: SequenceHandle) throws -> SequenceHandle {
        try lock.withLock {
            guard let history = histories[parent] else { throw Full(description: "\(parent) is not live") }
            guard histories.count < maxSequences else { throw Full(description: "all \(maxSequences) sequence slots are in use") }
            guard (cachedTokens + history.count) * kvBytesPerToken <= kvCapacityBytes else {
                throw Full(description: "the fake KV cache cannot hold a copy of \(history.count) positions")
            }
            let handle = SequenceHandle(rawValue: nextHandle)
            nextHandle += 1
            histories[handle] = history
            cachedTokens += history.count
            return handle
        }
    }

    public func release(_ sequence: SequenceHandle) {
        lock.withLock {
            if let history = histories.removeValue(forKey: sequence) { cachedTokens -= history.count }
        }
    }

    public func cachedLength(_ sequence: SequenceHandle) -> Int { lock.withLock { histories[sequence]?.count ?? 0 } }

    public func step(_ entries: [StepEntry], body: (UnsafeMutableBufferPointer<Float>) throws -> Void) throws {
        let pause = try lock.withLock { () -> Double in
            let tokens = entries.reduce(0) { $0 + $1.tokens.count }
            guard entries.count <= maxStepRows, tokens <= maxStepTokens else {
                throw Full(description: "a step of \(entries.count) rows and \(tokens) tokens is over \(maxStepRows) rows or \(maxStepTokens) tokens")
            }
            guard Set(entries.map(\.sequence)).count == entries.count else { throw Full(description: "a sequence appears twice in one step") }
            for entry in entries {
                guard let history = histories[entry.sequence] else { throw Full(description: "\(entry.sequence) is not live") }
                guard !entry.tokens.isEmpty, history.count + entry.tokens.count <= maxSequenceLength else {
                    throw Full(description: "\(entry.sequence) cannot grow by \(entry.tokens.count) positions")
                }
                guard entry.tokens.allSatisfy({ $0 >= 0 && Int($0) < modelInfo.vocabSize }) else {
                    throw Full(description: "a token of \(entry.sequence) is outside the vocabulary")
                }
            }
            guard (cachedTokens + tokens) * kvBytesPerToken <= kvCapacityBytes else {
                throw Full(description: "the fake KV cache is full: \(cachedTokens) positions held, \(tokens) more asked")
            }
            steps += 1
            largestStep = max(largestStep, entries.count)
            if log.count == Self.stepLogCapacity { log.removeFirst(log.count / 2) }
            log.append(entries.map(\.tokens.count))
            for entry in entries { histories[entry.sequence, default: []].append(contentsOf: entry.tokens) }
            cachedTokens += tokens
            return delay
        }
        if pause > 0 { usleep(UInt32(pause * 1_000_000)) }
        let v = modelInfo.vocabSize
        scratch.removeAll(keepingCapacity: true)
        for entry in entries {
            let history = lock.withLock { histories[entry.sequence] ?? [] }
            let position = history.count - 1
            let token = history[position], previous = position > 0 ? history[position - 1] : -1
            for k in 0..<v { scratch.append(FakeBackend.logitValue(token: token, previous: previous, position: position, vocab: k)) }
        }
        try scratch.withUnsafeMutableBufferPointer { try body($0) }
    }
}
