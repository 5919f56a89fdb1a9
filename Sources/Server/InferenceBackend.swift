// The seam between the server and a model: the server batches rows and encodes outputs; a backend
// only runs a ragged batch. `EngineBackend` (in the CLI) adapts the real engine, `FakeBackend` is a
// deterministic stand-in for fast tests and load tests.
#if canImport(Glibc)
import Glibc
#endif

/// Which logits a forward pass must produce.
public enum LogitsWanted: Int, Comparable, Sendable {
    case none = 0
    /// Only each row's last position: `[rows, vocab]`.
    case last = 1
    /// Each row's last two positions, the one before the last first (only the last for a one-token
    /// row): `[Σ min(2, row length), vocab]`. Token healing reads the distribution before a row's
    /// last token as well as after it.
    case lastTwo = 2
    /// Every position: `[Σ row lengths, vocab]`.
    case all = 3

    public static func < (a: LogitsWanted, b: LogitsWanted) -> Bool { a.rawValue < b.rawValue }
}

/// What the server tells clients about the model (INFO) and needs for validation.
public struct ModelInfo: Sendable {
    public var name: String
    public var architecture: String
    public var vocabSize: Int
    public var hiddenSize: Int
    public var bosID: UInt32
    public var eosID: UInt32
    public var padID: UInt32
    /// SHA-256 (hex) of the tokenizer, so clients can check they tokenize the same way.
    public var tokenizerSHA256: String

    public init(name: String, architecture: String, vocabSize: Int, hiddenSize: Int,
                bosID: UInt32 = 0, eosID: UInt32 = 0, padID: UInt32 = 0, tokenizerSHA256: String = "") {
        self.name = name; self.architecture = architecture; self.vocabSize = vocabSize; self.hiddenSize = hiddenSize
        self.bosID = bosID; self.eosID = eosID; self.padID = padID; self.tokenizerSHA256 = tokenizerSHA256
    }
}

/// Views of one forward pass's outputs, valid only inside the `forward` call's closure.
public struct BackendOutput {
    /// Final-norm hidden states, `[Σ row lengths, hiddenSize]`, rows one after another (nil if not asked).
    public var hidden: UnsafeBufferPointer<Float>?
    /// Logits: `[Σ row lengths, vocab]` for `.all`, `[rows, vocab]` for `.last`,
    /// `[Σ min(2, row length), vocab]` for `.lastTwo`, nil for `.none`.
    public var logits: UnsafeBufferPointer<Float>?
    public var logitsWanted: LogitsWanted

    public init(hidden: UnsafeBufferPointer<Float>?, logits: UnsafeBufferPointer<Float>?, logitsWanted: LogitsWanted) {
        self.hidden = hidden; self.logits = logits; self.logitsWanted = logitsWanted
    }
}

/// A model that runs ragged batches. Called from the server's single worker thread only.
public protocol InferenceBackend: AnyObject {
    var modelInfo: ModelInfo { get }

    /// Runs `rows` (each non-empty, each a sequence of valid token ids) as one batch and passes views of
    /// the outputs to `body`.
    /// - Throws: whatever the model throws; the server answers `UnknownException` for the batch's requests.
    func forward(rows: [[Int32]], hidden: Bool, logits: LogitsWanted, body: (BackendOutput) throws -> Void) throws
}

/// A deterministic, fast backend for tests and load tests. Hidden and logit values are smooth
/// functions of the token, its position and the previous token, so they are causal and tie-free.
public final class FakeBackend: InferenceBackend {
    public let modelInfo: ModelInfo
    /// Sleep this long per forward call (to test deadlines, batching and draining).
    public var computeDelay: Double
    /// A token id that makes `forward` throw (to test engine failures).
    public var failingToken: Int32?
    /// How many forward calls ran, and the rows of the last one (for batching tests).
    public private(set) var forwardCalls = 0
    public private(set) var lastBatchRows = 0

    private var hiddenScratch: [Float] = []
    private var logitScratch: [Float] = []

    public struct InjectedFailure: Error, CustomStringConvertible {
        public let token: Int32
        public var description: String { "fake backend was asked to fail on token \(token)" }
    }

    public convenience init(vocabSize: Int = 1000, hiddenSize: Int = 16, computeDelay: Double = 0, failingToken: Int32? = nil) {
        self.init(modelInfo: ModelInfo(name: "fake", architecture: "fake", vocabSize: vocabSize, hiddenSize: hiddenSize,
                                       bosID: 1, eosID: 2, padID: 2, tokenizerSHA256: String(repeating: "0", count: 64)),
                  computeDelay: computeDelay, failingToken: failingToken)
    }

    /// A fake with a real model's shape and tokenizer identity (for load tests of the server alone).
    public init(modelInfo: ModelInfo, computeDelay: Double = 0, failingToken: Int32? = nil) {
        self.modelInfo = modelInfo
        self.computeDelay = computeDelay
        self.failingToken = failingToken
    }

    /// The fake model's hidden value `j` at a position.
    public static func hiddenValue(token: Int32, previous: Int32, position: Int, index j: Int) -> Float {
        Float(sin(Double(token) * 0.37 + Double(previous) * 0.11 + Double(position) * 1.3 + Double(j) * 0.7))
    }

    /// The fake model's logit for `vocab` entry `v` at a position.
    public static func logitValue(token: Int32, previous: Int32, position: Int, vocab v: Int) -> Float {
        Float(8 * sin(Double(token) * 0.013 + Double(previous) * 0.029 + Double(position) * 0.17 + Double(v) * 0.61))
    }

    public func forward(rows: [[Int32]], hidden: Bool, logits: LogitsWanted,
                        body: (BackendOutput) throws -> Void) throws {
        forwardCalls += 1
        lastBatchRows = rows.count
        if computeDelay > 0 { usleep(UInt32(computeDelay * 1_000_000)) }
        if let failingToken, rows.contains(where: { $0.contains(failingToken) }) {
            throw InjectedFailure(token: failingToken)
        }
        let h = modelInfo.hiddenSize, v = modelInfo.vocabSize
        hiddenScratch.removeAll(keepingCapacity: true)
        logitScratch.removeAll(keepingCapacity: true)
        for row in rows {
            for (position, token) in row.enumerated() {
                let previous = position > 0 ? row[position - 1] : -1
                if hidden {
                    for j in 0..<h { hiddenScratch.append(Self.hiddenValue(token: token, previous: previous, position: position, index: j)) }
                }
                if logits == .all || (logits == .last && position == row.count - 1) || (logits == .lastTwo && position >= row.count - 2) {
                    for k in 0..<v { logitScratch.append(Self.logitValue(token: token, previous: previous, position: position, vocab: k)) }
                }
            }
        }
        try hiddenScratch.withUnsafeBufferPointer { hiddenView in
            try logitScratch.withUnsafeBufferPointer { logitView in
                try body(BackendOutput(hidden: hidden ? hiddenView : nil, logits: logits == .none ? nil : logitView,
                                       logitsWanted: logits))
            }
        }
    }
}
