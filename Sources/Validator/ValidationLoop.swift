// Bittensor's validator loop (docs/VALIDATING.md): each step samples windows of the corpus, asks a
// slice of the metagraph for the next phrase after each, grades every answer, folds the losses into
// an EMA per UID and derives weights. The network is behind `ForwardTransport`, so the loop runs
// in tests without sockets.
import Foundation
import Identity
import Wire

/// Sends one FORWARD body to many endpoints at once, each within `deadline` seconds.
public protocol ForwardTransport {
    func forward(body: [UInt8], to endpoints: [Endpoint], deadline: Double) -> [FanOutResult]
}

/// The real transport: `FanOut` over one poll loop, each request signed for its endpoint's hotkey.
public struct FanOutTransport: ForwardTransport {
    public let hotkey: Hotkey?
    public init(hotkey: Hotkey?) { self.hotkey = hotkey }
    public func forward(body: [UInt8], to endpoints: [Endpoint], deadline: Double) -> [FanOutResult] {
        FanOut(hotkey: hotkey, deadline: deadline).run(endpoints: endpoints, body: body)
    }
}

/// The loop's parameters (`axon validate`'s flags).
public struct ValidationSettings: Sendable {
    /// Windows (rows) per step.
    public var batch = 4
    /// Standard tokens sent per window; each window holds `seq + 8` tokens, the last 8 held out.
    public var seq = 128
    public var uidsPerStep = 8
    public var topk = 4096
    /// Seconds each UID gets to answer.
    public var deadline = 12.0
    /// The EMA's weight on the newest loss.
    public var ema = 0.1
    public var excludeQuantile = 0.1
    public var maxWeight = 1.0
    public var seed: UInt64 = 1

    public init() {}

    /// Bittensor v3's figures (its core validator): 32 windows of 256 tokens, 20 UIDs a step, 12 s.
    public static let bittensorV3 = (batch: 32, seq: 256, uidsPerStep: 20, deadlineSeconds: 12.0)
}

public enum ValidationLoopError: Error, CustomStringConvertible, Equatable {
    case invalidSetting(name: String, reason: String)
    case corpusTooShort(tokens: Int, needed: Int)
    case noNeurons
    case duplicateUID(Int)

    public var description: String {
        switch self {
        case let .invalidSetting(name, reason): return "\(name) \(reason)"
        case let .corpusTooShort(tokens, needed):
            return "the corpus has \(tokens) standard tokens; a window needs \(needed) (--seq plus the 8 held out): give more text or a smaller --seq"
        case .noNeurons: return "no metagraph neuron has an endpoint (uid and hotkey must match an entry of --endpoints)"
        case let .duplicateUID(uid): return "uid \(uid) is given more than once: each neuron needs one endpoint"
        }
    }
}

/// A rotating random permutation: each pass over the UIDs is a fresh seeded shuffle, handed out
/// `count` at a time, so every UID is queried once per pass and no UID twice in one step.
public struct UIDRotation: Sendable {
    private let uids: [Int]
    private var order: [Int] = []
    private var cursor = 0
    private var generator: SplitMix64

    public init(uids: [Int], seed: UInt64) {
        self.uids = uids.sorted()
        generator = SplitMix64(seed: seed)
    }

    public mutating func next(_ count: Int) -> [Int] {
        var picked: [Int] = []
        var seen = Set<Int>()
        while picked.count < min(count, uids.count) {
            if cursor == order.count {
                order = uids.shuffled(using: &generator)
                cursor = 0
            }
            let uid = order[cursor]
            cursor += 1
            if seen.insert(uid).inserted { picked.append(uid) }
        }
        return picked
    }
}

/// What one step did.
public struct StepReport: Sendable {
    public struct Answer: Sendable {
        public var uid: Int
        public var grade: AnswerGrade
        /// Seconds from the fan-out's start to the outcome.
        public var latency: Double
    }
    public var step: Int
    public var answers: [Answer]
    /// Wall seconds of the step (sampling, fan-out, grading, weights).
    public var seconds: Double
}

/// The loop's state and one step of it.
public final class ValidationLoop {
    public let settings: ValidationSettings
    public let netuid: UInt32
    public let block: UInt64
    public private(set) var ledger: Ledger
    public private(set) var step = 0
    private let endpoints: [Int: Endpoint]
    private let tokens: [Int32]
    private let transport: ForwardTransport
    private var rotation: UIDRotation
    private var windowGenerator: SplitMix64

    /// - Parameters:
    ///   - neurons: the UIDs to validate with their endpoints (`Endpoints.registered`).
    ///   - tokens: the corpus in the network's standard tokens.
    /// - Throws: `ValidationLoopError`.
    public init(settings: ValidationSettings, netuid: UInt32, block: UInt64, neurons: [Endpoint], tokens: [Int32],
                transport: ForwardTransport) throws {
        for (name, value) in [("--batch", settings.batch), ("--seq", settings.seq), ("--uids-per-step", settings.uidsPerStep),
                              ("--topk", settings.topk)] where value < 1 {
            throw ValidationLoopError.invalidSetting(name: name, reason: "must be at least 1, got \(value)")
        }
        guard settings.topk <= PhraseCrossEntropy.networkVocabSize else {
            throw ValidationLoopError.invalidSetting(name: "--topk", reason: "must be at most \(PhraseCrossEntropy.networkVocabSize), got \(settings.topk)")
        }
        guard settings.deadline > 0 else { throw ValidationLoopError.invalidSetting(name: "--deadline-ms", reason: "must be positive") }
        guard settings.ema > 0, settings.ema <= 1 else {
            throw ValidationLoopError.invalidSetting(name: "--ema", reason: "must be in (0, 1], got \(settings.ema)")
        }
        guard settings.excludeQuantile >= 0, settings.excludeQuantile < 1 else {
            throw ValidationLoopError.invalidSetting(name: "--exclude-quantile", reason: "must be in [0, 1), got \(settings.excludeQuantile)")
        }
        guard settings.maxWeight > 0, settings.maxWeight <= 1 else {
            throw ValidationLoopError.invalidSetting(name: "--max-weight", reason: "must be in (0, 1], got \(settings.maxWeight)")
        }
        guard !neurons.isEmpty else { throw ValidationLoopError.noNeurons }
        var seen = Set<Int>()
        for neuron in neurons where !seen.insert(neuron.uid).inserted { throw ValidationLoopError.duplicateUID(neuron.uid) }
        let needed = settings.seq + Scorer.phraseTargetLength
        guard tokens.count >= needed else { throw ValidationLoopError.corpusTooShort(tokens: tokens.count, needed: needed) }
        self.settings = settings
        self.netuid = netuid
        self.block = block
        self.tokens = tokens
        self.transport = transport
        endpoints = Dictionary(uniqueKeysWithValues: neurons.map { ($0.uid, $0) })
        ledger = Ledger(alpha: settings.ema, neurons: neurons.map { ($0.uid, $0.hotkey) })
        rotation = UIDRotation(uids: neurons.map(\.uid), seed: settings.seed)
        windowGenerator = SplitMix64(seed: settings.seed ^ 0x5EED_0F_57E9)
    }

    /// `batch` windows of `seq + 8` tokens at seeded random starts; the request carries each
    /// window's first `seq` as network-space TEXT_CAUSAL_LM_NEXT with top-k.
    public func nextRequest() -> (request: ForwardRequest, targets: [[Int32]]) {
        let span = settings.seq + Scorer.phraseTargetLength
        let starts = (0..<settings.batch).map { _ in Int.random(in: 0...(tokens.count - span), using: &windowGenerator) }
        let rows = starts.map { Array(tokens[$0..<($0 + settings.seq)]) }
        let targets = starts.map { Array(tokens[($0 + settings.seq)..<($0 + span)]) }
        let request = ForwardRequest(tokens: Tensor(int32Rows: rows), synapses: [Synapse(type: .textCausalLMNext, topk: UInt32(settings.topk))],
                                     space: .network)
        return (request, targets)
    }

    /// One step: sample, fan out to the next `uidsPerStep` UIDs of the rotation, grade, fold in.
    public func runStep() -> StepReport {
        let started = Date()
        step += 1
        let (request, targets) = nextRequest()
        let chosen = rotation.next(settings.uidsPerStep).compactMap { endpoints[$0] }
        let results = transport.forward(body: request.serializedBytes(), to: chosen, deadline: settings.deadline)
        var answers: [StepReport.Answer] = []
        for result in results {
            let grade = AnswerGrade.grade(result.outcome, targets: targets, k: settings.topk)
            ledger.add(grade, uid: result.endpoint.uid)
            answers.append(StepReport.Answer(uid: result.endpoint.uid, grade: grade, latency: result.latency))
        }
        return StepReport(step: step, answers: answers, seconds: Date().timeIntervalSince(started))
    }

    /// Every UID's record with its weight (`WeightFunction`), by UID.
    public func weights() -> [WeightEntry] {
        let weights = WeightFunction.weights(emaLosses: ledger.records.map(\.emaLoss), excludeQuantile: settings.excludeQuantile,
                                             maxWeight: settings.maxWeight)
        return zip(ledger.records, weights).map { WeightEntry(record: $0, weight: $1) }
    }

    /// `weights.json` as of now.
    public func weightsJSON() -> String {
        WeightsFile.json(netuid: netuid, block: block, step: step, entries: weights())
    }
}

extension Endpoints {
    /// The endpoints whose uid and hotkey the metagraph registers, and those it does not (each
    /// with what the metagraph has at that uid), so a stale endpoints file is never scored.
    public static func registered(_ endpoints: [Endpoint], in metagraph: Metagraph) -> (kept: [Endpoint], skipped: [(Endpoint, String)]) {
        let registered = Dictionary(uniqueKeysWithValues: metagraph.neurons.map { ($0.uid, $0.hotkey) })
        var kept: [Endpoint] = [], skipped: [(Endpoint, String)] = []
        for endpoint in endpoints {
            if registered[endpoint.uid] == endpoint.hotkey {
                kept.append(endpoint)
            } else {
                skipped.append((endpoint, registered[endpoint.uid].map { "hotkey \($0)" } ?? "no neuron"))
            }
        }
        return (kept, skipped)
    }
}
