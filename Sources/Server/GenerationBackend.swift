// The seam between the generation scheduler and a model with a KV cache: sequence handles, and one
// step call where each entry appends its tokens (a prefill chunk or one decode token) to its
// sequence and gets the logits of its last position. `FakeGenerationBackend` is a deterministic
// stand-in; `EngineGenerationBackend` adapts the real engine's KV cache.

/// One sequence in a backend's KV cache. A released handle is never valid again.
public struct SequenceHandle: Hashable, Sendable, CustomStringConvertible {
    public let rawValue: UInt64
    public init(rawValue: UInt64) { self.rawValue = rawValue }
    public var description: String { "sequence \(rawValue)" }
}

/// One row of a generation step: `tokens` are appended to `sequence`'s cache, in order.
public struct StepEntry: Sendable {
    public var sequence: SequenceHandle
    /// A prefill chunk (one or more prompt tokens) or one decode token; never empty.
    public var tokens: ArraySlice<Int32>

    public init(sequence: SequenceHandle, tokens: ArraySlice<Int32>) {
        self.sequence = sequence
        self.tokens = tokens
    }
}

/// How full a backend's KV cache is, at one moment.
public struct KVCacheState: Sendable, Equatable {
    /// Bytes the cache may hold at most (`--kv-cache-mb`).
    public var capacityBytes: Int
    /// Bytes the live sequences hold now.
    public var usedBytes: Int
    /// Live sequences (forks included).
    public var sequences: Int

    public init(capacityBytes: Int, usedBytes: Int, sequences: Int) {
        self.capacityBytes = capacityBytes
        self.usedBytes = usedBytes
        self.sequences = sequences
    }
}

/// A model that decodes incrementally over a KV cache. Every method except `kvCapacityBytes`,
/// `maxSequences` and `kvReservation` is called from the server's one worker thread only (the same
/// thread that runs `InferenceBackend.forward`); those three are pure and may be called anywhere.
public protocol GenerationBackend: AnyObject {
    var modelInfo: ModelInfo { get }
    /// Bytes of KV cache the backend holds at most.
    var kvCapacityBytes: Int { get }
    /// Live sequences the backend holds at most.
    var maxSequences: Int { get }
    /// Rows and tokens one `step` may hold at most.
    var maxStepRows: Int { get }
    var maxStepTokens: Int { get }
    /// Longest sequence (positions in the cache) the backend holds.
    var maxSequenceLength: Int { get }

    /// Bytes of KV cache one prompt of `prompt` positions and its `beams` continuations (forked from
    /// the prompt's sequence, sharing its cache) can hold at most, when each continuation grows by
    /// `generate` positions and the prompt is fed in chunks of at most `chunk` positions. The
    /// scheduler reserves this much before it starts a generation, so a step never finds the cache
    /// full.
    func kvReservation(prompt: Int, generate: Int, beams: Int, chunk: Int) -> Int

    /// What the cache holds now.
    var kvUsage: KVCacheState { get }

    /// A new, empty sequence.
    /// - Throws: when every sequence slot is taken.
    func newSequence() throws -> SequenceHandle
    /// A new sequence holding the same positions as `parent` (sharing its cache).
    /// - Throws: when `parent` is not live or every slot is taken.
    func fork(_ parent: SequenceHandle) throws -> SequenceHandle
    /// Frees the sequence's cache at once. Releasing a handle that is not live does nothing.
    func release(_ sequence: SequenceHandle)
    /// Positions the sequence holds.
    func cachedLength(_ sequence: SequenceHandle) -> Int

    /// Appends each entry's tokens to its sequence (no sequence twice) and passes `body` the logits
    /// of each entry's last position, `[entries.count, vocab]`, valid only inside the call (the
    /// body may overwrite them: samplers process logits in place).
    /// - Throws: before changing any sequence when the cache cannot hold the step (or an entry is
    ///   invalid); whatever the model throws otherwise.
    func step(_ entries: [StepEntry], body: (UnsafeMutableBufferPointer<Float>) throws -> Void) throws
}
