import ArgumentParser
import AxonClient
import Engine
import Foundation
import GGUF
import Logging
import Server
import Tokenizer
import Validator   // SplitMix64: the same prompt ids every run
import Wire

/// `axon bench --decode`'s options.
struct DecodeBenchOptions: ParsableArguments {
    @Flag(help: "Time generation over the wire against an in-process server instead of prefill (docs/PROTOCOL.md, \"TEXT_SEQ_2_SEQ\").")
    var decode = false
    @Option(help: "--decode: prompt tokens per request.") var prompt = 128
    @Option(help: "--decode: tokens each request generates (greedy, no stop token).") var generate = 128
    @Option(help: "--decode: comma-separated numbers of concurrent requests.") var concurrency = "1,16"
    @Option(help: "--decode: KV cache MiB of the in-process server.") var kvCacheMb = 512
    @Option(help: "--decode: the in-process server's --step-tokens.") var stepTokens = 256
    @Option(help: "--decode: weights decode steps read (int8, f16, f32).") var decodePrecision: DecodePrecision = .int8
    @Option(help: "--decode: elements of the KV cache (f32, f16; default: serve's, f16 beside reduced decode weights, f32 beside f32).")
    var kvCachePrecision: KVCachePrecision?
    var resolvedKVCachePrecision: KVCachePrecision { kvCachePrecision ?? .preferred(decoding: decodePrecision) }
    @Flag(help: ArgumentHelp("--decode: a deterministic fake of the model's shape instead of the engine (tests).", visibility: .hidden))
    var fake = false

    func levels() throws -> [Int] {
        let levels = concurrency.split(separator: ",").map { Int($0.trimmingCharacters(in: .whitespaces)) }
        guard !levels.isEmpty, levels.allSatisfy({ ($0 ?? 0) >= 1 && ($0 ?? 0) <= 1024 }) else {
            throw ValidationError("--concurrency must be comma-separated counts in 1...1024, got '\(concurrency)'")
        }
        return levels.compactMap { $0 }
    }
}

/// Generation timed over the wire: an in-process axon (no admission) on 127.0.0.1 and one client
/// connection per concurrent request, each asking greedy TEXT_SEQ_2_SEQ of `generate` tokens
/// (stop_tokens [-1], so every request generates exactly that many) after `prompt` random ids.
/// The phases are read from the server's own timestamps (`AxonServer.recentGenerations`):
/// - `decode_tokens_per_s`: C requests sent at once; Σ (generated − 1) over them divided by the
///   time from the first first-token to the last answer (aggregate decode rate; a prompt still
///   being prefilled while others decode counts against it).
/// - `ttft_ms`: C − 1 requests sent and decoding, then one more: its arrival to its first token
///   (at C = 1, on an idle server).
struct DecodeBench {
    let options: DecodeBenchOptions
    let path: String
    let threads: Int
    let precision: EnginePrecision
    let json: Bool
    /// Also print `DecodeStepProfile` at the largest concurrency (to stderr with --json).
    let profile: Bool

    struct Row { let concurrency: Int; let decodeTokensPerSecond: Double; let ttftMs: Double }

    func run() throws {
        let levels = try options.levels()
        guard options.prompt >= 1, options.generate >= 2 else { throw ValidationError("--prompt must be at least 1 and --generate at least 2") }
        let most = levels.max() ?? 1
        let file = try GGUFFile(path: path)
        // The server (and its engine) are gone before the profile loads its own engine.
        let serverStepMs = try measure(file: file, levels: levels, most: most)
        guard profile, !options.fake else { return }
        let report = try DecodeStepProfile.measure(file: file, threads: threads, rows: most, prompt: options.prompt,
                                                   generate: options.generate, kvCacheBytes: options.kvCacheMb << 20,
                                                   decodePrecision: options.decodePrecision, precision: precision,
                                                   kvCachePrecision: options.resolvedKVCachePrecision)
            .text(serverStepMs: serverStepMs)
        if json { FileHandle.standardError.write(Data((report + "\n").utf8)) } else { print(report) }
    }

    /// The wire runs, printed; returns the server's decode step time at the largest level (ms): the
    /// last generation to start, from its first token to its answer, over its remaining tokens (every
    /// other generation is decoding beside it for most of that time).
    private func measure(file: GGUFFile, levels: [Int], most: Int) throws -> Double? {
        var serverStepMs: Double?
        let tokenizer = try TokenizerLoader.load(gguf: file)
        let sequenceLength = options.prompt + options.generate
        let backend = try GenerationBackendLoader.load(file: file, tokenizer: tokenizer, threads: threads,
                                                       kvCacheBytes: options.kvCacheMb << 20, maxSeq: sequenceLength,
                                                       maxSequences: most, stepTokens: options.stepTokens,
                                                       decodePrecision: options.decodePrecision, precision: precision,
                                                       kvCachePrecision: options.resolvedKVCachePrecision, fake: options.fake)
        var config = ServerConfiguration()
        config.port = 0
        config.maxSeq = sequenceLength
        config.maxBatchTokens = max(config.maxBatchTokens, options.stepTokens)
        config.maxSequences = most
        config.stepTokens = options.stepTokens
        config.maxNewTokens = options.generate
        config.maxQueue = max(config.maxQueue, 2 * most)
        config.generationWaitMs = 600_000
        var logger = Logger(label: "axon-bench")
        logger.logLevel = .error
        let server = try AxonServer(backend: backend, configuration: config, logger: logger)
        try server.start()
        defer { server.shutdown(); server.waitUntilStopped() }

        var generator = SplitMix64(seed: 0xDEC0DE)
        let vocab = UInt64(backend.modelInfo.vocabSize)
        func body(_ count: Int) -> [UInt8] {
            let ids = (0..<options.prompt).map { _ in Int32(truncatingIfNeeded: generator.next() % vocab) }
            let generation = Generation(numToGenerate: UInt32(count), noRepeatNgramSize: 0, stopTokens: [-1])
            return ForwardRequest(tokens: Tensor(int32Rows: [ids]), synapses: [Synapse(type: .textSeq2Seq, generation: generation)])
                .serializedBytes()
        }
        let clients = try (0..<most).map { _ in try AxonClient(host: "127.0.0.1", port: server.port) }
        var nextID: UInt64 = 1
        /// Sends one request on each of `on`, returning the ids.
        func send(_ on: ArraySlice<AxonClient>, tokens: Int) throws -> [(AxonClient, UInt64)] {
            try on.map { client in
                defer { nextID += 1 }
                try client.send(Request(id: nextID, method: .forward, timeoutMs: 600_000, body: body(tokens)))
                return (client, nextID)
            }
        }
        func collect(_ sent: [(AxonClient, UInt64)]) throws -> [GenerationRecord] {
            for (client, id) in sent {
                let response = try client.response(id: id, timeout: 600)
                _ = try response.checkedResult(.textSeq2Seq).checkedGeneration(rows: 1, maxTokens: options.generate, vocab: nil)
            }
            let ids = Set(sent.map(\.1))
            return server.recentGenerations.filter { ids.contains($0.requestID) }
        }

        let progress = Progress("bench --decode", total: levels.count * 2 + 1, unit: "phases", quiet: json)
        _ = try collect(try send(clients[..<1], tokens: 4))   // warm-up: page in weights and scratch
        progress.advance(detail: "warm-up")
        var rows: [Row] = []
        for level in levels {
            let together = try collect(try send(clients[..<level], tokens: options.generate))
            progress.advance(detail: "\(level) at once")
            let firstToken = together.map(\.firstToken).min() ?? 0, last = together.map(\.finished).max() ?? 0
            let decoded = together.reduce(0) { $0 + $1.generatedTokens - 1 }
            let rate = Double(decoded) / max(1e-9, Double(last - min(last, firstToken)) / 1e9)
            if level == most, let latest = together.max(by: { $0.firstToken < $1.firstToken }), latest.generatedTokens > 1 {
                serverStepMs = Double(latest.finished - min(latest.finished, latest.firstToken)) / 1e6 / Double(latest.generatedTokens - 1)
            }

            let background = try send(clients[..<(level - 1)], tokens: options.generate)
            let backgroundIDs = Set(background.map(\.1))
            let waitStart = Date()
            // Until every background generation decodes (or, with a tiny --generate, has already finished).
            while server.generationStatus.decodingRows + server.recentGenerations.filter({ backgroundIDs.contains($0.requestID) }).count < level - 1 {
                guard Date().timeIntervalSince(waitStart) < 600 else { throw Failure("the background generations never all reached decoding") }
                Thread.sleep(forTimeInterval: 0.0005)
            }
            let probe = try send(clients[(level - 1)..<level], tokens: options.generate)
            let records = try collect(background + probe)
            progress.advance(detail: "\(level - 1) decoding + 1 arriving")
            let probeRecord = try records.first { $0.requestID == probe[0].1 }.unwrapOr(Failure("the probe's timings are missing"))
            let ttft = Double(probeRecord.firstToken - min(probeRecord.firstToken, probeRecord.arrival)) / 1e6
            rows.append(Row(concurrency: level, decodeTokensPerSecond: rate, ttftMs: ttft))
        }
        progress.finish()
        for client in clients { client.close() }
        if json {
            let entries = rows.map {
                String(format: "{\"concurrency\":%d,\"prompt\":%d,\"generate\":%d,\"decode_tokens_per_s\":%.2f,\"ttft_ms\":%.2f}",
                       $0.concurrency, options.prompt, options.generate, $0.decodeTokensPerSecond, $0.ttftMs)
            }
            print("{\"results\":[" + entries.joined(separator: ",") + "]}")
        } else {
            for row in rows {
                print(String(format: "concurrency %d, prompt %d, generate %d: %.1f decode tokens/s in aggregate, time to first token %.1f ms",
                             row.concurrency, options.prompt, options.generate, row.decodeTokensPerSecond, row.ttftMs))
            }
            print("machine: \(SystemInfo.current().line)")
        }
        return serverStepMs
    }
}

private extension Optional {
    func unwrapOr(_ error: @autoclosure () -> Error) throws -> Wrapped {
        guard let value = self else { throw error() }
        return value
    }
}
