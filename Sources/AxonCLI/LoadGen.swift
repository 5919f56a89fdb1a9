import ArgumentParser
import AxonClient
import Foundation
import Server
import Tokenizer
import TokenTranslation
import Wire

/// Results gathered from the connection threads.
private final class Tally: @unchecked Sendable {
    private let lock = NSLock()
    private var latencies: [Double] = []
    private var codes: [ReturnCode: Int] = [:]
    private var failures: [String] = []

    func add(latencies more: [Double], codes moreCodes: [ReturnCode: Int]) {
        lock.withLock {
            latencies += more
            for (code, count) in moreCodes { codes[code, default: 0] += count }
        }
    }

    func fail(_ message: String) { lock.withLock { failures.append(message) } }

    /// Latencies sorted ascending, codes, failures.
    func results() -> ([Double], [ReturnCode: Int], [String]) {
        lock.withLock { (latencies.sorted(), codes, failures) }
    }
}

/// A load generator for an axon: N connections, each sending M requests one after another.
struct LoadGen: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "loadgen",
        abstract: "Load an axon with N connections x M requests; report throughput and latency percentiles.")

    @Option(help: "The axon's HOST:PORT.") var endpoint = "127.0.0.1:8091"
    @Option(help: "Concurrent connections.") var connections = 8
    @Option(help: "Requests per connection, sent one after another.") var requests = 20
    @Option(help: "Requests per connection sent before measuring (not counted).") var warmup = 2
    @Option(help: "Tokens per request, ROWSxSEQ.") var shape = "1x128"
    @Option(help: "next, causal or hidden.") var synapse = "next"
    @Option(help: "Top-k for next/causal (0: raw logits).") var topk = 0
    @Option(help: "Deadline per request in milliseconds (0: the server's default).") var timeoutMs: UInt32 = 0
    @Flag(help: "Run the model in-process instead (no server): the engine's own throughput for one batch of --shape.")
    var direct = false
    @OptionGroup var modelOption: ModelOption
    @Option(help: "Engine threads for --direct.") var threads: Int?
    @Flag(help: ArgumentHelp("With --direct, use the fake backend.", visibility: .hidden)) var fake = false
    @OptionGroup var keyOption: KeyOption
    @Flag(help: "Send unsigned requests (for --no-auth axons).") var unsigned = false
    @Option(help: "With --versus-model-space: the UTF-8 text whose standard tokens fill the rows (ROWS windows of SEQ, one after another).")
    var text: String?
    @Flag(help: "Network-space cost: one connection alternates a network-space request of --shape standard tokens cut from --text and a model-space request of the same texts in model tokens, and reports both throughputs (standard tokens/s) and their ratio.")
    var versusModelSpace = false

    private var dimensions: (rows: Int, seq: Int)? {
        let parts = shape.lowercased().split(separator: "x").compactMap { Int($0) }
        guard parts.count == 2, parts[0] > 0, parts[1] > 0 else { return nil }
        return (parts[0], parts[1])
    }

    func validate() throws {
        if dimensions == nil { throw ValidationError("--shape must be ROWSxSEQ with positive numbers, got \(shape)") }
        if !["next", "causal", "hidden"].contains(synapse) { throw ValidationError("--synapse must be next, causal or hidden, got \(synapse)") }
        if connections < 1 || requests < 1 { throw ValidationError("--connections and --requests must be at least 1") }
        if versusModelSpace && (text == nil || direct) { throw ValidationError("--versus-model-space needs --text FILE and a server (not --direct)") }
    }

    private var synapseType: SynapseType {
        synapse == "next" ? .textCausalLMNext : synapse == "causal" ? .textCausalLM : .textLastHiddenState
    }

    /// Deterministic token ids in [0, vocab).
    private static func rows(_ rows: Int, _ seq: Int, vocab: Int, seed: UInt64) -> [[Int32]] {
        var state = seed &* 6364136223846793005 &+ 1442695040888963407
        return (0..<rows).map { _ in
            (0..<seq).map { _ in
                state = state &* 6364136223846793005 &+ 1442695040888963407
                return Int32((state >> 33) % UInt64(vocab))
            }
        }
    }

    /// Runs `body(0..<count)` on `count` threads at once (not a pool: every connection must be busy).
    private static func onThreads(_ count: Int, _ body: @escaping @Sendable (Int) -> Void) {
        let group = DispatchGroup()
        for index in 0..<count {
            group.enter()
            let thread = Thread {
                body(index)
                group.leave()
            }
            thread.start()
        }
        group.wait()
    }

    func run() throws {
        guard let (rowCount, seq) = dimensions else { return }
        if direct { return try runDirect(rowCount: rowCount, seq: seq) }
        if versusModelSpace, let text { return try runVersusModelSpace(rowCount: rowCount, seq: seq, textPath: text) }
        let probe = try AxonClient(endpoint: endpoint)
        let info = try probe.info().checkedInfo()
        probe.close()
        let vocab = Int(info.vocabSize)
        let tally = Tally()
        // One signing session (uuid) per connection, so each connection's nonces arrive in order.
        let hotkey = unsigned ? nil : try keyOption.load(defaultName: "default")
        let clients = try (0..<connections).map { _ in try AxonClient(endpoint: endpoint, hotkey: hotkey, receiver: info.hotkey) }
        let synapses = [Synapse(type: synapseType, topk: UInt32(topk))]
        let check = AnswerCheck(type: synapseType, rows: rowCount, seq: seq, topk: topk, info: info)
        // Warm-up outside the timed window.
        Self.onThreads(connections) { index in
            for w in 0..<warmup {
                let body = ForwardRequest(tokens: Tensor(int32Rows: Self.rows(rowCount, seq, vocab: vocab, seed: UInt64(index * 1_000_003 + w))),
                                          synapses: synapses)
                _ = try? clients[index].forward(body, timeoutMs: timeoutMs)
            }
        }
        let progress = Progress("loadgen \(endpoint)", total: connections * requests, unit: "responses")
        let start = Date()
        Self.onThreads(connections) { index in
            var mine: [Double] = []
            var myCodes: [ReturnCode: Int] = [:]
            mine.reserveCapacity(requests)
            for r in 0..<requests {
                let body = ForwardRequest(tokens: Tensor(int32Rows: Self.rows(rowCount, seq, vocab: vocab, seed: UInt64(index * 1_000_003 + r + 7919))),
                                          synapses: synapses)
                let sent = Date()
                do {
                    let response = try clients[index].forward(body, timeoutMs: timeoutMs)
                    mine.append(Date().timeIntervalSince(sent) * 1000)
                    myCodes[response.code, default: 0] += 1
                    if response.code == .success { try check.verify(response) }
                    progress.advance()
                } catch {
                    tally.fail("connection \(index): \(error)")
                    break
                }
            }
            tally.add(latencies: mine, codes: myCodes)
        }
        let seconds = Date().timeIntervalSince(start)
        progress.finish()
        for client in clients { client.close() }
        let (latencies, codes, failures) = tally.results()
        let done = latencies.count
        func percentile(_ p: Double) -> Double { Server.percentile(latencies, p) }
        let tokensPerSecond = Double(done * rowCount * seq) / seconds
        let codeText = codes.sorted { $0.key.rawValue < $1.key.rawValue }.map { "\($0.key)=\($0.value)" }.joined(separator: " ")
        print("\(connections) connections x \(requests) requests, shape \(rowCount)x\(seq), \(synapseType) topk \(topk)")
        print(String(format: "%d responses in %.2f s: %.1f requests/s, %.0f tokens/s", done, seconds, Double(done) / seconds, tokensPerSecond))
        print(String(format: "latency ms: p50 %.2f  p90 %.2f  p99 %.2f  max %.2f", percentile(0.5), percentile(0.9), percentile(0.99), latencies.last ?? 0))
        print("codes: \(codeText)")
        for failure in failures.prefix(5) { print("error: \(failure)") }
        print(String(format: "RESULT {\"mode\":\"server\",\"connections\":%d,\"requests\":%d,\"responses\":%d,\"seconds\":%.4f,\"tokens_per_second\":%.1f,\"p50_ms\":%.3f,\"p90_ms\":%.3f,\"p99_ms\":%.3f,\"success\":%d}",
                     connections, requests, done, seconds, tokensPerSecond, percentile(0.5), percentile(0.9), percentile(0.99), codes[.success] ?? 0))
        if !failures.isEmpty { throw ExitCode(1) }
    }

    /// The engine's own time for batches of `rowCount` x `seq` (no server, no encoding), `requests` times.
    private func runDirect(rowCount: Int, seq: Int) throws {
        let loaded = try BackendLoader.load(path: modelOption.resolvedPath(), threads: threads, maxBatch: max(64, rowCount),
                                            maxSeq: seq, maxBatchTokens: max(4096, rowCount * seq), fake: fake)
        let backend = loaded.backend
        let vocab = backend.modelInfo.vocabSize
        let logits: LogitsWanted = synapseType == .textCausalLM ? .all : synapseType == .textCausalLMNext ? .last : .none
        var times: [Double] = []
        let progress = Progress("loadgen --direct", total: warmup + requests, unit: "batches")
        for r in 0..<(warmup + requests) {
            let batch = Self.rows(rowCount, seq, vocab: vocab, seed: UInt64(r))
            let start = Date()
            try backend.forward(rows: batch, hidden: synapseType == .textLastHiddenState, logits: logits) { _ in }
            if r >= warmup { times.append(Date().timeIntervalSince(start) * 1000) }
            progress.advance()
        }
        progress.finish()
        times.sort()
        let total = times.reduce(0, +) / 1000
        let tokensPerSecond = Double(times.count * rowCount * seq) / total
        print("direct \(loaded.description): \(times.count) batches of \(rowCount)x\(seq), logits \(logits)")
        print(String(format: "%.0f tokens/s; batch ms: p50 %.2f  min %.2f  max %.2f", tokensPerSecond, times[times.count / 2], times.first ?? 0, times.last ?? 0))
        print(String(format: "RESULT {\"mode\":\"direct\",\"batches\":%d,\"tokens_per_second\":%.1f,\"p50_ms\":%.3f}", times.count, tokensPerSecond, times[times.count / 2]))
    }
}

extension LoadGen {
    /// `--versus-model-space`: what answering in network space costs against model space for the
    /// same texts (issue 12: ≥ 0.9× the model-space throughput). Requests alternate, so drift on a
    /// shared machine hits both alike; each figure is standard tokens of the texts per second.
    private func runVersusModelSpace(rowCount: Int, seq: Int, textPath: String) throws {
        let corpus: String
        do { corpus = try String(contentsOfFile: textPath, encoding: .utf8) } catch {
            throw Failure("--text \(textPath) cannot be read as UTF-8: \(error.localizedDescription)")
        }
        let standard = try TokenSpaceOption.networkStandard()
        let model = try modelOption.loadTokenizer()
        let hotkey = unsigned ? nil : try keyOption.load(defaultName: "default")
        let client = try AxonClient(endpoint: endpoint, hotkey: hotkey)
        defer { client.close() }
        let info = try client.info().checkedInfo()
        try Query.checkSameTokenizer(model, info)
        try Query.checkNetworkTokenizer(standard, info)
        let tokens = standard.tokenizer.encode(corpus, addSpecial: false, parseSpecial: false)
        guard tokens.count > seq else {
            throw Failure("--text has \(tokens.count) standard tokens; rows of --shape \(rowCount)x\(seq) need more than \(seq)")
        }
        let modelBytes = TextTokenizerBytes(model)
        let bos: [Int32] = model.addsBOS ? [model.bosID].compactMap { $0 } : []
        let k = UInt32(topk), type = synapseType
        // Request r holds windows r·rows … of seq standard tokens, wrapping around the text.
        func pair(_ r: Int) throws -> (network: ForwardRequest, model: ForwardRequest) {
            let windows = (0..<rowCount).map { i -> [Int32] in
                let start = ((r * rowCount + i) * seq) % (tokens.count - seq + 1)
                return Array(tokens[start..<(start + seq)])
            }
            let modelRows = try windows.map { try bos + modelBytes.encode(bytes: standard.tokenizer.decodeBytes($0)) }
            let width = modelRows.map(\.count).max() ?? 0
            let padded = modelRows.map { [Int32](repeating: Int32(info.padID), count: width - $0.count) + $0 }
            return (ForwardRequest(tokens: Tensor(int32Rows: windows), synapses: [Synapse(type: type, topk: k)], space: .network),
                    ForwardRequest(tokens: Tensor(int32Rows: padded), lengths: modelRows.map { UInt32($0.count) },
                                   synapses: [Synapse(type: type, topk: k)]))
        }
        var networkSeconds: [Double] = [], modelSeconds: [Double] = []
        var modelTokens = 0
        let progress = Progress("loadgen --versus-model-space", total: warmup + requests, unit: "pairs")
        for r in 0..<(warmup + requests) {
            let (network, modelSpace) = try pair(r)
            for (request, isNetwork) in [(network, true), (modelSpace, false)] {
                let sent = Date()
                let response = try client.forward(request, timeoutMs: timeoutMs)
                let seconds = Date().timeIntervalSince(sent)
                guard response.code == .success else {
                    throw Failure("the axon answered the \(isNetwork ? "network" : "model")-space request with \(response.code): \(response.message)")
                }
                _ = try response.checkedResult(type)
                guard r >= warmup else { continue }
                if isNetwork { networkSeconds.append(seconds) } else {
                    modelSeconds.append(seconds)
                    modelTokens += modelSpace.lengths.reduce(0) { $0 + Int($1) }
                }
            }
            progress.advance()
        }
        progress.finish()
        let standardTokens = Double(requests * rowCount * seq)
        let networkRate = standardTokens / networkSeconds.reduce(0, +), modelRate = standardTokens / modelSeconds.reduce(0, +)
        func median(_ values: [Double]) -> Double { values.sorted()[values.count / 2] * 1000 }
        print("\(requests) pairs of \(rowCount)x\(seq) standard tokens from \(textPath) (\(modelTokens / requests) model tokens per request), \(type) topk \(topk)")
        print(String(format: "network space %.0f standard tokens/s (median %.0f ms), model space %.0f (median %.0f ms): %.3fx (target >= 0.9x)",
                     networkRate, median(networkSeconds), modelRate, median(modelSeconds), networkRate / modelRate))
        print(String(format: "RESULT {\"mode\":\"versus_model_space\",\"pairs\":%d,\"rows\":%d,\"seq\":%d,\"model_tokens_per_request\":%d,\"network_tokens_per_second\":%.1f,\"model_space_tokens_per_second\":%.1f,\"network_p50_ms\":%.1f,\"model_space_p50_ms\":%.1f,\"ratio\":%.4f}",
                     requests, rowCount, seq, modelTokens / requests, networkRate, modelRate, median(networkSeconds), median(modelSeconds), networkRate / modelRate))
    }
}

/// What loadgen's answers must look like: the tensors of its synapse for its shape, checked like
/// every client path checks an axon's answer, so a misbehaving axon counts as a failure.
private struct AnswerCheck: Sendable {
    let type: SynapseType
    let rows: Int, seq: Int, topk: Int, vocab: Int, width: Int

    init(type: SynapseType, rows: Int, seq: Int, topk: Int, info: InfoResponse) {
        self.type = type; self.rows = rows; self.seq = seq; self.topk = topk
        vocab = Int(info.vocabSize)
        width = Int(info.networkDim)
    }

    /// - Throws: `AnswerError`.
    func verify(_ response: Response) throws {
        let result = try response.checkedResult(type)
        let positions: Int? = type == .textCausalLMNext ? nil : seq
        if type == .textLastHiddenState {
            _ = try result.checkedDense(rows: rows, positions: positions, width: width)
        } else if topk == 0 {
            _ = try result.checkedDense(rows: rows, positions: positions, width: vocab)
        } else {
            _ = try result.checkedTopK(rows: rows, positions: positions, k: topk, vocab: vocab)
        }
    }
}
