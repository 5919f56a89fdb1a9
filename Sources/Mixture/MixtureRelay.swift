// The mixture axon's model: other axons. Each network-space TEXT_CAUSAL_LM_NEXT is sent to the
// experts at once (signed with the mixture's hotkey, under a deadline shorter than the caller's),
// the answers that arrive well-formed are mixed by `PhraseMixture`, the others left out and the
// rest renormalised. The server (AxonServer(relay:)) does the admission, priority and metrics.
import AxonClient
import Dispatch
import Foundation
import Identity
import Logging
import Server
import Validator
import Wire

/// How a mixture queries its experts.
public struct MixtureSettings: Sendable {
    /// Experts asked: the top N of weights.json by weight.
    public var experts = 2
    /// Seconds each expert gets at most (`--upstream-deadline-ms`).
    public var upstreamDeadline = 8.0
    /// Kept back from the caller's deadline for mixing and writing the answer: this fraction of
    /// the time left, and at least `minimumMargin` seconds.
    public var marginFraction = 0.1
    public var minimumMargin = 0.05

    public init() {}

    /// The experts' deadline for a request with `left` seconds to go: the upstream deadline, or
    /// less when the caller's leaves less after the margin (≤ 0: no time to ask anyone).
    public func upstreamBudget(left: Double) -> Double {
        min(upstreamDeadline, left - max(minimumMargin, left * marginFraction))
    }
}

/// Why a mixture cannot start.
public enum MixtureError: Error, CustomStringConvertible {
    case noExperts(weightsPath: String, skipped: [String])

    public var description: String {
        switch self {
        case let .noExperts(path, skipped):
            return "no experts in '\(path)': no entry has weight > 0 with an endpoint of the same uid and hotkey"
                + (skipped.isEmpty ? "" : " (" + skipped.joined(separator: "; ") + ")")
                + "; run axon validate until some UIDs score, or check --endpoints and --metagraph"
        }
    }
}

/// A `ForwardRelay` mixing the experts of a weights file.
public final class MixtureRelay: ForwardRelay, @unchecked Sendable {
    public let network: RelayNetworkIdentity
    public let settings: MixtureSettings
    private let hotkey: Hotkey?
    private let endpointsPath: String
    private let weightsPath: String
    private let metagraph: MetagraphStore
    private let logger: Logger
    private let queue = DispatchQueue(label: "axon-mixture-upstream", attributes: .concurrent)
    private let lock = NSLock()
    private var roster: ExpertRoster
    private var outcomes: [Int: [String: Int]] = [:]

    /// - Parameters:
    ///   - hotkey: signs every upstream request (nil: unsigned, for `--no-auth` experts in tests).
    ///   - metagraph: the store the server admits by (SIGHUP reloads it first); experts must be
    ///     registered in it under their hotkey when it has neurons.
    /// - Throws: `EndpointsError`, `WeightsFileError`, or `MixtureError.noExperts`.
    public init(network: RelayNetworkIdentity, settings: MixtureSettings, hotkey: Hotkey?, endpointsPath: String,
                weightsPath: String, metagraph: MetagraphStore, logger: Logger) throws {
        self.network = network
        self.settings = settings
        self.hotkey = hotkey
        self.endpointsPath = endpointsPath
        self.weightsPath = weightsPath
        self.metagraph = metagraph
        self.logger = logger
        roster = try Self.load(endpointsPath: endpointsPath, weightsPath: weightsPath, metagraph: metagraph.current, count: settings.experts)
    }

    private static func load(endpointsPath: String, weightsPath: String, metagraph: Metagraph, count: Int) throws -> ExpertRoster {
        let roster = ExpertRoster.choose(try WeightsFile.read(path: weightsPath), endpoints: try Endpoints.load(path: endpointsPath),
                                         metagraph: metagraph, count: count)
        guard !roster.experts.isEmpty else { throw MixtureError.noExperts(weightsPath: weightsPath, skipped: roster.skipped) }
        return roster
    }

    /// The experts in force.
    public var experts: ExpertRoster { lock.withLock { roster } }

    /// Each expert's outcomes so far, by uid: "ok" or the validator's failure names (Timeout, …).
    public var expertOutcomes: [Int: [String: Int]] { lock.withLock { outcomes } }

    public var modelInfo: ModelInfo {
        ModelInfo(name: experts.description, architecture: "mixture", vocabSize: network.vocabSize, hiddenSize: 1,
                  bosID: UInt32(network.vocabSize - 1), eosID: UInt32(network.vocabSize - 1), padID: UInt32(network.vocabSize - 1),
                  tokenizerSHA256: network.sha256)
    }

    /// SIGHUP: re-reads the weights and endpoints files; a file that fails keeps the experts in force.
    public func reload() { _ = reloadExperts() }

    @discardableResult
    public func reloadExperts() -> Result<ExpertRoster, Error> {
        do {
            let fresh = try Self.load(endpointsPath: endpointsPath, weightsPath: weightsPath, metagraph: metagraph.current,
                                      count: settings.experts)
            lock.withLock { roster = fresh }
            let skipped = fresh.skipped.isEmpty ? "" : "; passed over: " + fresh.skipped.joined(separator: "; ")
            logger.info("weights reloaded from \(weightsPath) (step \(fresh.step)): \(fresh.description)\(skipped)")
            return .success(fresh)
        } catch {
            logger.error("weights reload of \(weightsPath) refused, keeping \(experts.description): \(error)")
            return .failure(error)
        }
    }

    /// What each synapse of a request gets: mixed phrases at its k, or a refusal.
    private enum Plan {
        case mix(k: Int, dtype: DataType)
        case refuse(ReturnCode, String)
    }

    private func plan(_ synapse: Synapse, index: Int) -> Plan {
        guard synapse.type == .textCausalLMNext else {
            return .refuse(.notImplemented, "synapse \(index) has type \(synapse.type): a mixture axon answers only TEXT_CAUSAL_LM_NEXT in network space (ask an expert for the others; docs/VALIDATING.md)")
        }
        guard synapse.dtype == .unknown || synapse.dtype == .float32 || synapse.dtype == .float16 else {
            return .refuse(.requestShapeException, "synapse \(index) asks for dtype \(synapse.dtype), expected FLOAT32 or FLOAT16")
        }
        guard (1...network.vocabSize).contains(Int(synapse.topk)) else {
            return .refuse(.requestShapeException, "synapse \(index): TEXT_CAUSAL_LM_NEXT in network space answers phrases and needs topk 1...\(network.vocabSize), got \(synapse.topk)")
        }
        return .mix(k: Int(synapse.topk), dtype: synapse.dtype == .float16 ? .float16 : .float32)
    }

    public func relay(_ forward: RelayedForward, reply: @escaping @Sendable (RelayReply) -> Void) {
        let plans = forward.request.synapses.enumerated().map { plan($1, index: $0) }
        let ks = plans.compactMap { plan -> Int? in if case .mix(let k, _) = plan { return k }; return nil }
        guard let k = ks.max() else {
            return reply(.answered(ForwardResponse(results: zip(forward.request.synapses, plans).map { synapse, plan in
                guard case let .refuse(code, message) = plan else { return SynapseResult(type: synapse.type, code: .unknownException) }
                return SynapseResult(type: synapse.type, code: code, message: message)
            })))
        }
        let left = forward.secondsLeft
        let budget = settings.upstreamBudget(left: left)
        guard budget > 0 else {
            return reply(.refused(.timeout, String(format: "%.0f ms left is too little to ask the experts and mix their answers", left * 1000)))
        }
        let roster = experts
        queue.async { [self] in
            let body = ForwardRequest(tokens: forward.request.tokens, lengths: forward.request.lengths,
                                      synapses: [Synapse(type: .textCausalLMNext, topk: UInt32(k))], space: .network).serializedBytes()
            let outcomes = FanOut(hotkey: hotkey, deadline: budget).run(endpoints: roster.experts.map(\.endpoint), body: body)
            var live: [(weight: Double, answer: PhraseAnswer)] = []
            var failures: [(uid: Int, rejection: PhraseAnswerRejection)] = []
            for (expert, result) in zip(roster.experts, outcomes) {
                switch AnswerGrade.checkedPhrases(result.outcome, rows: forward.batch, k: k, vocabSize: network.vocabSize) {
                case .success(let answer): live.append((expert.mixingWeight, answer))
                case .failure(let rejection): failures.append((expert.endpoint.uid, rejection))
                }
            }
            count(roster, failures: failures)
            guard !live.isEmpty else {
                let code: ReturnCode = failures.allSatisfy { $0.rejection.failure == .timeout } ? .timeout : .unavailable
                return reply(.refused(code, "no expert answered usably within \(Int(budget * 1000)) ms: "
                                      + failures.map { "uid \($0.uid) \($0.rejection.failure.key) (\($0.rejection.detail))" }.joined(separator: "; ")))
            }
            let results = zip(forward.request.synapses, plans).map { synapse, plan -> SynapseResult in
                switch plan {
                case let .refuse(code, message): return SynapseResult(type: synapse.type, code: code, message: message)
                case let .mix(k, dtype):
                    let rows = (0..<forward.batch).map { row in
                        PhraseMixture.mix(live.map { (weight: $0.weight, answer: ExpertPhrases($0.answer, row: row)) }, k: k,
                                          vocabSize: network.vocabSize)
                    }
                    return SynapseResult(type: synapse.type, code: .success, tensors: PhraseTensors.encode(rows, k: k, dtype: dtype))
                }
            }
            reply(.answered(ForwardResponse(results: results)))
        }
    }

    private func count(_ roster: ExpertRoster, failures: [(uid: Int, rejection: PhraseAnswerRejection)]) {
        let failed = Dictionary(failures.map { ($0.uid, $0.rejection) }, uniquingKeysWith: { first, _ in first })
        lock.withLock {
            for expert in roster.experts {
                outcomes[expert.endpoint.uid, default: [:]][failed[expert.endpoint.uid]?.failure.key ?? "ok", default: 0] += 1
            }
        }
        for (uid, rejection) in failures {
            logger.debug("expert uid \(uid) left out: \(rejection.failure.key) (\(rejection.detail))")
        }
    }
}

/// The network-space phrase encoding of mixed rows: probabilities `[rows, k]`, phrases INT32
/// `[rows, k, L]` padded with −1 (L the longest phrase; a slot past the phrases there are has
/// probability 0 and no ids), floor `[rows]`.
enum PhraseTensors {
    static func encode(_ rows: [PhraseMixture.Mixed], k: Int, dtype: DataType) -> [Tensor] {
        let width = max(1, rows.flatMap { $0.phrases.map(\.count) }.max() ?? 1)
        var probabilities = [Float](repeating: 0, count: rows.count * k)
        var phrases = [Int32](repeating: -1, count: rows.count * k * width)
        for (r, row) in rows.enumerated() {
            for (c, (phrase, p)) in zip(row.phrases, row.probabilities).enumerated() {
                probabilities[r * k + c] = Float(p)
                for (i, id) in phrase.enumerated() { phrases[(r * k + c) * width + i] = id }
            }
        }
        let floors = rows.map { Float($0.floor) }
        return [floats(probabilities, shape: [rows.count, k], dtype: dtype),
                Tensor(buffer: phrases.flatMap { withUnsafeBytes(of: $0.littleEndian, Array.init) },
                       shape: [Int64(rows.count), Int64(k), Int64(width)], dtype: .int32),
                floats(floors, shape: [rows.count], dtype: dtype)]
    }

    private static func floats(_ values: [Float], shape: [Int], dtype: DataType) -> Tensor {
        let bytes = dtype == .float16
            ? values.flatMap { withUnsafeBytes(of: Float16($0).bitPattern.littleEndian, Array.init) }
            : values.flatMap { withUnsafeBytes(of: $0.bitPattern.littleEndian, Array.init) }
        return Tensor(buffer: bytes, shape: shape.map(Int64.init), dtype: dtype)
    }
}
