import ArgumentParser
import AxonClient
import Foundation
import GGUF
import Identity
import Tokenizer
import Validator
import Wire

struct Query: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Ask a running axon for a text's next-token distribution, per-position distributions or hidden states.")
    @OptionGroup var modelOption: ModelOption

    @Option(help: "The axon's HOST:PORT.") var endpoint = "127.0.0.1:8091"
    @Option(help: "next (the next token), causal (every position) or hidden (last hidden states).") var synapse = "next"
    @Option(help: "How many top tokens to show (and ask for).") var topk = 10
    @Option(help: "Whose token ids to send: the model's, or the network's standard GPT-2 ones (the axon translates; next then answers phrases).")
    var space: TokenSpaceOption = .model
    @Option(help: "Deadline for the request, in milliseconds (0: the server's default).") var timeoutMs: UInt32 = 0
    @Flag(help: "Only PING the axon.") var ping = false
    @Flag(help: "Only print the axon's INFO.") var info = false
    @OptionGroup var keyOption: KeyOption
    @Flag(help: "Send FORWARD unsigned (for --no-auth axons).") var unsigned = false
    @Option(help: "Fan out to every axon in this JSON list of {uid, hotkey, host, port} (one event loop, concurrently).")
    var endpoints: String?
    @Option(help: "With --endpoints: a metagraph snapshot to check each endpoint's uid and hotkey against.") var metagraph: String?
    @Option(help: "With --endpoints: milliseconds each axon gets to connect and answer.") var deadlineMs = 12_000
    @Option(help: "Send only the text's last N tokens (the context nearest the next token), to fit the axon's --max-seq.")
    var maxTokens: Int?
    @Argument(help: "The text to tokenize and send.") var text: String?

    func validate() throws {
        if !["next", "causal", "hidden"].contains(synapse) { throw ValidationError("--synapse must be next, causal or hidden, got \(synapse)") }
        if topk < 1 { throw ValidationError("--topk must be at least 1, got \(topk)") }
        if !ping && !info && (text ?? "").isEmpty { throw ValidationError("give a text to query, or --ping or --info") }
        if endpoints != nil && (ping || info) { throw ValidationError("--endpoints fans out a text query; it does not combine with --ping or --info") }
        if metagraph != nil && endpoints == nil { throw ValidationError("--metagraph is for fan-out: give --endpoints too") }
        if deadlineMs < 1 { throw ValidationError("--deadline-ms must be at least 1, got \(deadlineMs)") }
        if let maxTokens, maxTokens < 1 { throw ValidationError("--max-tokens must be at least 1, got \(maxTokens)") }
    }

    func run() throws {
        if let endpoints { return try fanOut(endpointsPath: endpoints) }
        let hotkey = ping || info || unsigned ? nil : try keyOption.load(defaultName: "default")
        let client = try AxonClient(endpoint: endpoint, hotkey: hotkey)
        if ping {
            let start = Date()
            let response = try client.ping(timeoutMs: timeoutMs)
            print("PING \(endpoint): \(response.code) in \(String(format: "%.2f", Date().timeIntervalSince(start) * 1000)) ms")
            return
        }
        let remote = try client.info(timeoutMs: timeoutMs).checkedInfo()
        if info {
            printInfo(remote)
            return
        }
        let (tokenizer, vocab) = try spaceTokenizer(remote)
        // Network ids carry no bos: the axon adds the model's own when it translates.
        let ids = try fitted(tokenizer.encode(text ?? "", addSpecial: space == .model, parseSpecial: false), remote: remote)
        let type: SynapseType = synapse == "next" ? .textCausalLMNext : synapse == "causal" ? .textCausalLM : .textLastHiddenState
        let k = min(topk, vocab)
        let tokens = Tensor(int32Rows: [ids])
        let start = Date()
        let response = try client.forward(ForwardRequest(tokens: tokens, synapses: [Synapse(type: type, topk: UInt32(type == .textLastHiddenState ? 0 : k))],
                                                         space: space == .network ? .network : .model),
                                          timeoutMs: timeoutMs)
        let elapsed = Date().timeIntervalSince(start) * 1000
        let result = try response.checkedResult(type)
        let timing = response.timing.map { " (queue \($0.queueUs) µs, compute \($0.computeUs) µs, batch rows \($0.batchRows))" } ?? ""
        // Every tensor is checked against the request before printing reads it (an axon is untrusted).
        switch type {
        case .textLastHiddenState:
            let hidden = try result.checkedDense(rows: 1, positions: ids.count, width: Int(remote.networkDim))
            print("\(ids.count) \(space) tokens, \(type), answered in \(String(format: "%.1f", elapsed)) ms\(timing)")
            printHidden(hidden, ids: ids, tokenizer: tokenizer)
        case .textCausalLM:
            let top = try result.checkedTopK(rows: 1, positions: ids.count, k: k, vocab: vocab)
            print("\(ids.count) \(space) tokens, \(type), answered in \(String(format: "%.1f", elapsed)) ms\(timing)")
            printCausal(top, ids: ids, shown: min(k, 5), tokenizer: tokenizer)
        case _ where space == .network:
            let phrases = try result.checkedPhrases(rows: 1, k: k, vocab: vocab)
            print("\(ids.count) \(space) tokens, \(type), answered in \(String(format: "%.1f", elapsed)) ms\(timing)")
            printPhrases(phrases, tokenizer: tokenizer)
        default:
            let top = try result.checkedTopK(rows: 1, positions: nil, k: k, vocab: vocab)
            print("\(ids.count) \(space) tokens, \(type), answered in \(String(format: "%.1f", elapsed)) ms\(timing)")
            printNext(top, tokenizer: tokenizer)
        }
    }

    /// The tokenizer of `--space`, checked against the axon's (tokenizer_sha256, or the network
    /// tokenizer's ranks), and the vocabulary its ids must be below.
    private func spaceTokenizer(_ remote: InfoResponse) throws -> (any TextTokenizer, vocab: Int) {
        switch space {
        case .model:
            let tokenizer = try modelOption.loadTokenizer()
            try Self.checkSameTokenizer(tokenizer, remote)
            return (tokenizer, Int(remote.vocabSize))
        case .network:
            let standard = try TokenSpaceOption.networkStandard()
            try Self.checkNetworkTokenizer(standard, remote)
            return (standard.tokenizer, Int(remote.networkVocabSize))
        }
    }

    /// The local tokenizer must be the axon's, or the ids mean other text.
    static func checkSameTokenizer(_ tokenizer: any TextTokenizer, _ remote: InfoResponse) throws {
        guard tokenizer.sha256 == remote.tokenizerSHA256 else {
            throw Failure("the local tokenizer (\(tokenizer.sha256.prefix(12))…) differs from the axon's (\(remote.tokenizerSHA256.prefix(12))…); pass the axon's model with --model")
        }
    }

    /// The axon must serve network space with the same standard tokenizer (its ranks' digest).
    static func checkNetworkTokenizer(_ standard: NetworkStandardTokenizer, _ remote: InfoResponse) throws {
        guard !remote.networkTokenizer.isEmpty, remote.networkVocabSize > 0 else {
            throw Failure("the axon serves no network token space (its INFO has no network_tokenizer); use --space model, or start it with the GPT-2 ranks (Models/fetch gpt2, serve --network-tokenizer)")
        }
        guard remote.networkTokenizerSHA256 == standard.ranksSHA256, Int(remote.networkVocabSize) == standard.vocabSize else {
            throw Failure("the axon's network tokenizer (\(remote.networkTokenizer), ranks \(remote.networkTokenizerSHA256.prefix(12))…, \(remote.networkVocabSize) tokens) differs from the local \(NetworkStandardTokenizer.name) (ranks \(standard.ranksSHA256.prefix(12))…, \(standard.vocabSize) tokens)")
        }
    }

    /// The ids to send: the last `--max-tokens`, and no more than the axon takes in one row.
    private func fitted(_ all: [Int32], remote: InfoResponse) throws -> [Int32] {
        let ids = maxTokens.map { Array(all.suffix($0)) } ?? all
        guard !ids.isEmpty else { throw Failure("the text has no tokens") }
        let limit = Int(min(remote.maxSeq, remote.maxBatchTokens == 0 ? remote.maxSeq : remote.maxBatchTokens))
        guard ids.count <= limit else {
            throw Failure("the text is \(ids.count) tokens and the axon takes at most \(limit) per row (its --max-seq \(remote.maxSeq), --max-batch-tokens \(remote.maxBatchTokens)); pass --max-tokens \(limit) to send only the last \(limit), or start the server with a larger --max-seq")
        }
        return ids
    }

    /// One next-token request to every endpoint at once; per-UID lines, then a summary.
    private func fanOut(endpointsPath: String) throws {
        var list = try Endpoints.load(path: endpointsPath)
        if let metagraph {
            let (kept, skipped) = Endpoints.registered(list, in: try Metagraph.load(path: metagraph))
            for (endpoint, actual) in skipped {
                FileHandle.standardError.write(Data("warning: endpoint uid \(endpoint.uid) names \(endpoint.hotkey), the metagraph has \(actual) there; skipped\n".utf8))
            }
            list = kept
        }
        // Each endpoint's INFO is not read here: network ids are checked against the standard vocabulary.
        let tokenizer = try space == .network ? TokenSpaceOption.networkStandard().tokenizer : modelOption.loadTokenizer()
        let all = tokenizer.encode(text ?? "", addSpecial: space == .model, parseSpecial: false)
        let ids = maxTokens.map { Array(all.suffix($0)) } ?? all
        guard !ids.isEmpty else { throw Failure("the text has no tokens") }
        let body = ForwardRequest(tokens: Tensor(int32Rows: [ids]), synapses: [Synapse(type: .textCausalLMNext, topk: UInt32(topk))],
                                  space: space == .network ? .network : .model)
        let hotkey = unsigned ? nil : try keyOption.load(defaultName: "default")
        let started = Date()
        let results = FanOut(hotkey: hotkey, deadline: Double(deadlineMs) / 1000).run(endpoints: list, body: body.serializedBytes())
        let wall = Date().timeIntervalSince(started)
        print("uid    hotkey        code                 ms  top next tokens")
        for result in results.sorted(by: { $0.endpoint.uid < $1.endpoint.uid }) {
            var code = "", tops = ""
            switch result.outcome {
            case .answered(let response):
                code = "\(response.code)"
                do {
                    let result = try response.checkedResult(.textCausalLMNext)
                    if space == .network {
                        let phrases = try result.checkedPhrases(rows: 1, k: topk, vocab: PhraseCrossEntropy.networkVocabSize)
                        tops = (0..<min(3, topk)).map { shown(Array(phrases.phrase(row: 0, index: $0)), tokenizer) + String(format: " %.3f", phrases.probabilities[$0]) }
                            .joined(separator: ", ")
                    } else {
                        let top = try result.checkedTopK(rows: 1, positions: nil, k: topk, vocab: nil)
                        tops = top.span(row: 0).prefix(3).map { shown(top.ids[$0], tokenizer) + String(format: " %.3f", top.probabilities[$0]) }
                            .joined(separator: ", ")
                    }
                } catch AnswerError.malformed(let reason) {
                    code = "malformed"; tops = reason
                } catch {
                    tops = response.message
                }
            case .timedOut(let stage): code = "timeout (\(stage))"
            case .unreachable(let reason): code = "unreachable"; tops = reason
            case .failed(let reason): code = "failed"; tops = reason
            }
            print(String(format: "%-5d  ", result.endpoint.uid) + String(result.endpoint.hotkey.prefix(12)).padding(toLength: 12, withPad: " ", startingAt: 0)
                  + "  " + code.padding(toLength: 18, withPad: " ", startingAt: 0) + String(format: " %7.1f  ", result.latency * 1000) + tops)
        }
        let summary = FanOutSummary(results)
        let codes = summary.codes.sorted { $0.key.rawValue < $1.key.rawValue }.map { "\($0.key)=\($0.value)" }.joined(separator: " ")
        func ms(_ value: Double?) -> String { value.map { String(format: "%.1f", $0) } ?? "-" }
        print("\(summary.total) endpoints in \(String(format: "%.1f", wall * 1000)) ms: \(codes.isEmpty ? "no answers" : codes); timeouts \(summary.timeouts), unreachable \(summary.unreachable), failed \(summary.failed)")
        print("latency ms (answered): p50 \(ms(summary.p50))  p90 \(ms(summary.p90))  p99 \(ms(summary.p99))")
    }

    private func printInfo(_ info: InfoResponse) {
        let rows: [(String, String)] = [
            ("model", info.model), ("architecture", info.architecture), ("vocab_size", "\(info.vocabSize)"),
            ("hidden_size", "\(info.hiddenSize)"), ("network_dim", "\(info.networkDim)"), ("max_batch", "\(info.maxBatch)"),
            ("max_seq", "\(info.maxSeq)"), ("max_batch_tokens", "\(info.maxBatchTokens)"),
            ("tokenizer_sha256", info.tokenizerSHA256), ("version", info.version), ("hotkey", info.hotkey),
            ("uid", "\(info.uid)"), ("netuid", "\(info.netuid)"),
            ("bos/eos/pad", "\(info.bosID)/\(info.eosID)/\(info.padID)"),
            ("network_tokenizer", info.networkTokenizer.isEmpty ? "(none: model space only)" : info.networkTokenizer),
            ("network_sha256", info.networkTokenizerSHA256), ("network_vocab", "\(info.networkVocabSize)"),
            ("admission_state", info.admissionState),
        ]
        for (key, value) in rows { print(key.padding(toLength: 18, withPad: " ", startingAt: 0) + value) }
    }

    private func shown(_ id: Int32, _ tokenizer: any TextTokenizer) -> String { shown([id], tokenizer) }

    private func shown(_ ids: [Int32], _ tokenizer: any TextTokenizer) -> String {
        ((try? tokenizer.decode(ids)) ?? "?").debugDescription
    }

    private func printPhrases(_ answer: PhraseAnswer, tokenizer: any TextTokenizer) {
        print("rank  probability  phrase (standard ids)")
        for index in 0..<answer.k {
            let phrase = Array(answer.phrase(row: 0, index: index))
            guard !phrase.isEmpty else { continue }
            print(String(format: "%4d  %11.6f  ", index + 1, answer.probabilities[index]) + shown(phrase, tokenizer)
                  + " " + phrase.map(String.init).joined(separator: " "))
        }
        print(String(format: "floor (any other phrase): %.3e", answer.floor(row: 0)))
    }

    private func printNext(_ answer: TopKAnswer, tokenizer: any TextTokenizer) {
        print("rank  id      probability  token")
        for (rank, index) in answer.span(row: 0).enumerated() {
            print(String(format: "%4d  %-6d  %11.6f  ", rank + 1, answer.ids[index], answer.probabilities[index]) + shown(answer.ids[index], tokenizer))
        }
        print(String(format: "floor (any other token): %.3e", answer.floor(row: 0)))
    }

    private func printCausal(_ answer: TopKAnswer, ids: [Int32], shown count: Int, tokenizer: any TextTokenizer) {
        print("pos  token                 most likely next tokens")
        for position in 0..<answer.positions {
            let choices = answer.span(row: 0, position: position).prefix(count).map { index in
                shown(answer.ids[index], tokenizer) + String(format: " %.3f", answer.probabilities[index])
            }
            print(String(format: "%3d  ", position) + shown(ids[position], tokenizer).padding(toLength: 20, withPad: " ", startingAt: 0)
                  + "  " + choices.joined(separator: ", "))
        }
    }

    private func printHidden(_ answer: DenseAnswer, ids: [Int32], tokenizer: any TextTokenizer) {
        print("hidden states [\(answer.rows), \(answer.positions), \(answer.width)]")
        print("pos  token                 L2 norm   first values")
        for position in 0..<answer.positions {
            let vector = answer.vector(row: 0, position: position)
            let norm = vector.reduce(0) { $0 + Double($1) * Double($1) }.squareRoot()
            let nonZero = vector.drop { $0 == 0 }.prefix(4).map { String(format: "%.4f", $0) }
            print(String(format: "%3d  ", position) + shown(ids[position], tokenizer).padding(toLength: 20, withPad: " ", startingAt: 0)
                  + String(format: "  %8.3f  ", norm) + nonZero.joined(separator: " "))
        }
    }
}
