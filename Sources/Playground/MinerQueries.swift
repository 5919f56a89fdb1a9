// The three questions the page asks one miner, all in network space (GPT-2 ids in and out, so
// every miner answers on the same scale whatever its model): the next phrases, a continuation,
// and the hidden states of two texts. Each is one signed FORWARD through the validator's fan-out;
// every answer is read through AxonClient's checks, and every way it can fail becomes a return
// code with a message the page shows.
import AxonClient
import Foundation
import Identity
import Tokenizer
import Validator
import Wire

/// What the playground accepts and how long it waits.
public struct PlaygroundLimits: Sendable {
    /// UTF-8 bytes of one text.
    public var maxTextBytes = 2000
    /// Standard tokens sent per text (the last ones: the context nearest the next token).
    public var maxTextTokens = 256
    /// The largest `max_tokens` a generation may ask for.
    public var maxNewTokens = 128
    /// Queries (one miner each) in flight at once; more are refused with 429.
    public var maxConcurrentQueries = 8
    /// Seconds each miner gets for next-token and embedding questions (Bittensor's 12 s).
    public var deadline = 12.0
    /// Seconds for a generation (Bittensor's TextSeq2Seq timeout, 36 s).
    public var generationDeadline = 36.0
    /// Seconds for INFO, asked when the page lists the miners.
    public var infoDeadline = 3.0
    /// Phrases shown per miner.
    public var topk = 10

    public init() {}
}

/// One next phrase and its probability.
public struct PhraseRow: Encodable, Equatable, Sendable {
    public var text: String
    public var ids: [Int32]
    public var probability: Float
}

/// Everything the page shows for one miner's answer. `code` is always set: the axon's return
/// code, or the one the playground assigns (Timeout when no answer came, Unavailable when the
/// miner could not be reached, InvalidResponse when its answer broke the contract), with `message`.
public struct MinerAnswer: Encodable, Sendable {
    public var miner: String
    public var label: String
    public var code: Int32
    public var codeName: String
    public var message: String
    public var latencyMs: Double?
    public var phrases: [PhraseRow]?
    public var floor: Float?
    public var text: String?
    public var tokens: Int?
    public var cosine: Double?
    public var width: Int?

    init(miner: Miner, code: ReturnCode, message: String, latency: Double?) {
        self.miner = miner.id
        label = miner.label
        self.code = code.rawValue
        codeName = code.description
        self.message = message
        latencyMs = latency.map { ($0 * 10_000).rounded() / 10 }
    }
}

/// A question's parameters, as the page sends them.
public enum Question: Sendable {
    case next(text: String)
    case generate(text: String, temperature: Float, topP: Float, maxTokens: Int)
    case embed(text: String, other: String)

    var synapse: SynapseType {
        switch self {
        case .next: return .textCausalLMNext
        case .generate: return .textSeq2Seq
        case .embed: return .textLastHiddenState
        }
    }
}

/// A contract the answer broke, beyond what AxonClient's shape checks cover.
struct ImplausibleAnswer: Error, CustomStringConvertible {
    let description: String
}

/// Asks miners questions (thread-safe; each call blocks its thread until the miner answers or its deadline).
public final class MinerQueries: @unchecked Sendable {
    public let roster: MinerRoster
    public let limits: PlaygroundLimits
    private let hotkey: Hotkey?
    private let standard: NetworkStandardTokenizer

    /// - Parameters:
    ///   - hotkey: the validator key FORWARDs are signed with; nil sends them unsigned (`--no-auth` axons).
    ///   - standard: the network's GPT-2 tokenizer (its ranks' digest is checked against each miner's INFO).
    public init(roster: MinerRoster, hotkey: Hotkey?, standard: NetworkStandardTokenizer, limits: PlaygroundLimits = PlaygroundLimits()) {
        self.roster = roster
        self.hotkey = hotkey
        self.standard = standard
        self.limits = limits
    }

    /// INFO from every miner at once; each answer is remembered (the mixture's hotkey, each
    /// miner's network width) and returned as a code and message, by miner id.
    public func refreshInfo(_ miners: [Miner]) -> [String: (code: ReturnCode, message: String, info: InfoResponse?)] {
        let endpoints = miners.map { Endpoint(uid: $0.uid ?? -1, hotkey: $0.hotkey ?? "", host: $0.host, port: $0.port) }
        let results = FanOut(hotkey: nil, deadline: limits.infoDeadline).run(endpoints: endpoints, method: .info)
        var outcomes: [String: (code: ReturnCode, message: String, info: InfoResponse?)] = [:]
        for (miner, result) in zip(miners, results) {
            let (code, message) = Self.transportCode(result.outcome, deadline: limits.infoDeadline)
            guard case .answered(let response) = result.outcome else {
                outcomes[miner.id] = (code, message, nil)
                continue
            }
            do {
                let info = try response.checkedInfo()
                roster.remember(info, of: miner)
                outcomes[miner.id] = (.success, networkProblem(info) ?? "", info)
            } catch {
                outcomes[miner.id] = Self.failure(error)
                    .map { ($0.code, $0.message, nil) } ?? (.invalidResponse, "\(error)", nil)
            }
        }
        return outcomes
    }

    /// Why `info`'s axon cannot answer network-space questions with our tokenizer, or nil.
    func networkProblem(_ info: InfoResponse) -> String? {
        guard !info.networkTokenizer.isEmpty, info.networkVocabSize > 0 else {
            return "serves no network token space (its INFO has no network_tokenizer; start it with Models/fetch gpt2)"
        }
        guard info.networkTokenizerSHA256 == standard.ranksSHA256, Int(info.networkVocabSize) == standard.vocabSize else {
            return "its network tokenizer (\(info.networkTokenizer), ranks \(info.networkTokenizerSHA256.prefix(12))…) differs from the playground's gpt2 (ranks \(standard.ranksSHA256.prefix(12))…)"
        }
        return nil
    }

    /// The standard ids of a text: its last `maxTextTokens`, no bos (the axon adds its model's own).
    func ids(_ text: String) -> [Int32] {
        Array(standard.tokenizer.encode(text, addSpecial: false, parseSpecial: false).suffix(limits.maxTextTokens))
    }

    /// Asks `miner` one question and waits for its answer (at most the question's deadline, plus an INFO when needed).
    public func ask(_ question: Question, miner: Miner) -> MinerAnswer {
        if roster.info(of: miner) == nil || roster.endpoint(of: miner) == nil {
            if let outcome = refreshInfo([miner])[miner.id], outcome.info == nil {
                return MinerAnswer(miner: miner, code: outcome.code, message: "INFO failed, so the question was not sent: \(outcome.message)",
                                   latency: nil)
            }
        }
        guard let info = roster.info(of: miner), let endpoint = roster.endpoint(of: miner) else {
            return MinerAnswer(miner: miner, code: .badEndpoint, message: "the axon's INFO reports no hotkey to sign for", latency: nil)
        }
        if let problem = networkProblem(info) {
            return MinerAnswer(miner: miner, code: .notImplemented, message: "the axon \(problem)", latency: nil)
        }
        let request: ForwardRequest
        switch question {
        case .next(let text):
            request = ForwardRequest(tokens: Tensor(int32Rows: [ids(text)]),
                                     synapses: [Synapse(type: .textCausalLMNext, topk: UInt32(limits.topk))], space: .network)
        case let .generate(text, temperature, topP, maxTokens):
            let generation = Generation(numToGenerate: UInt32(maxTokens), doSample: true, topP: topP, temperature: temperature)
            request = ForwardRequest(tokens: Tensor(int32Rows: [ids(text)]), synapses: [Synapse(type: .textSeq2Seq, generation: generation)],
                                     space: .network)
        case let .embed(text, other):
            let rows = [ids(text), ids(other)]
            let width = rows.map(\.count).max() ?? 0
            let padded = rows.map { Array(repeating: NetworkStandardTokenizer.endOfText, count: width - $0.count) + $0 }
            request = ForwardRequest(tokens: Tensor(int32Rows: padded), lengths: rows.map { UInt32($0.count) },
                                     synapses: [Synapse(type: .textLastHiddenState)], space: .network)
        }
        let deadline: Double
        if case .generate = question { deadline = limits.generationDeadline } else { deadline = limits.deadline }
        let result = FanOut(hotkey: hotkey, deadline: deadline).run(endpoints: [endpoint], body: request.serializedBytes())[0]
        guard case .answered(let response) = result.outcome else {
            let (code, message) = Self.transportCode(result.outcome, deadline: deadline)
            return MinerAnswer(miner: miner, code: code, message: message, latency: result.latency)
        }
        var answer = MinerAnswer(miner: miner, code: .success, message: response.message, latency: result.latency)
        do {
            switch question {
            case .next: try readPhrases(response, into: &answer)
            case .generate(_, _, _, let maxTokens):
                try readGeneration(response.checkedResult(question.synapse), maxTokens: maxTokens, into: &answer)
            case .embed:
                try readEmbedding(response.checkedResult(question.synapse), request: request, width: Int(info.networkDim), into: &answer)
            }
        } catch let rejection as PhraseAnswerRejection {
            let code: ReturnCode
            if case .code(let refused) = rejection.failure { code = refused } else { code = .invalidResponse }
            answer.code = code.rawValue
            answer.codeName = code.description
            answer.message = code == .invalidResponse ? "malformed answer: \(rejection.detail)"
                : (rejection.detail.isEmpty ? "the axon answered \(code)" : rejection.detail)
        } catch {
            let (code, message) = Self.failure(error) ?? (.invalidResponse, "\(error)")
            answer.code = code.rawValue
            answer.codeName = code.description
            answer.message = message
        }
        return answer
    }

    /// The phrases through the validator's own checks (`AnswerGrade.checkedPhrases`: shapes, ids,
    /// probabilities and floor in [0, 1], sums within 1 + 1e-6), so the page shows what a validator
    /// would score. - Throws: `PhraseAnswerRejection`.
    private func readPhrases(_ response: Response, into answer: inout MinerAnswer) throws {
        let phrases = try AnswerGrade.checkedPhrases(response, rows: 1, k: limits.topk, vocabSize: standard.vocabSize).get()
        let probabilities = phrases.probabilities, floor = phrases.floor(row: 0)
        answer.phrases = (0..<phrases.k).compactMap { index in
            let ids = Array(phrases.phrase(row: 0, index: index))
            guard !ids.isEmpty else { return nil }
            return PhraseRow(text: text(ids), ids: ids, probability: probabilities[index])
        }
        answer.floor = floor
    }

    private func readGeneration(_ synapse: SynapseResult, maxTokens: Int, into answer: inout MinerAnswer) throws {
        let ids = try synapse.checkedGeneration(rows: 1, maxTokens: maxTokens, vocab: standard.vocabSize)[0]
        answer.tokens = ids.count
        answer.text = text(ids.filter { $0 != NetworkStandardTokenizer.endOfText })
    }

    private func readEmbedding(_ synapse: SynapseResult, request: ForwardRequest, width: Int, into answer: inout MinerAnswer) throws {
        let positions = Int(request.tokens?.shape.last ?? 0)
        let hidden = try synapse.checkedDense(rows: 2, positions: positions, width: width)
        let means = try (0..<2).map { row -> [Double] in
            let valid = Int(request.lengths[row])
            var sum = [Double](repeating: 0, count: width)
            for position in (positions - valid)..<positions {
                for (index, value) in hidden.vector(row: row, position: position).enumerated() {
                    guard value.isFinite else { throw ImplausibleAnswer(description: "text \(row + 1)'s hidden states hold \(value)") }
                    sum[index] += Double(value)
                }
            }
            return sum.map { $0 / Double(max(1, valid)) }
        }
        let dot = zip(means[0], means[1]).reduce(0) { $0 + $1.0 * $1.1 }
        let norms = means.map { $0.reduce(0) { $0 + $1 * $1 }.squareRoot() }
        guard norms[0] > 0, norms[1] > 0 else {
            throw ImplausibleAnswer(description: "the mean hidden state of text \(norms[0] > 0 ? 2 : 1) is all zeros; its cosine is undefined")
        }
        answer.cosine = max(-1, min(1, dot / (norms[0] * norms[1])))
        answer.width = width
    }

    /// Standard ids as text; bytes that are not UTF-8 (half a character) become U+FFFD.
    private func text(_ ids: [Int32]) -> String {
        String(decoding: (try? standard.tokenizer.decodeBytes(ids)) ?? [], as: UTF8.self)
    }

    /// The code and message for an answer that could not be used.
    static func failure(_ error: Error) -> (code: ReturnCode, message: String)? {
        switch error {
        case AnswerError.refused(_, let code, let message): return (code, message.isEmpty ? "the axon answered \(code)" : message)
        case AnswerError.synapseRefused(_, let code, let message): return (code, message.isEmpty ? "the axon answered \(code)" : message)
        case AnswerError.malformed(let reason): return (.invalidResponse, "malformed answer: \(reason)")
        case let error as ImplausibleAnswer: return (.invalidResponse, "implausible answer: \(error.description)")
        default: return nil
        }
    }

    /// The code for a fan-out outcome without an answer (success for an answer).
    static func transportCode(_ outcome: FanOutOutcome, deadline: Double) -> (ReturnCode, String) {
        switch outcome {
        case .answered: return (.success, "")
        case .timedOut(let stage): return (.timeout, "no answer within \(Int(deadline * 1000)) ms (still \(stage))")
        case .unreachable(let reason): return (.unavailable, "unreachable: \(reason)")
        case .failed(let reason): return (.invalidResponse, reason)
        }
    }
}
