import AxonClient
import Engine
import Foundation
import GGUF
import TestSupport
import Wire
import XCTest

/// Issue 13's "Memory": a real `axon serve` process under 64 concurrent TEXT_SEQ_2_SEQ requests of
/// 512 prompt + 256 generated tokens, with `--kv-cache-mb` holding the reservations of a quarter of
/// them. Its RSS (/proc/PID/status) stays under the warm-up's plus the KV budget plus the scratch it
/// may still touch, and flat; `axon_kv_cache_bytes` never passes the budget; some requests get
/// `Backoff` and every one completes on retry.
///
/// The model is Fixtures/generation_memory.gguf.fixture (scripts/reference/generation_memory_fixture.py):
/// 4,096 KV bytes per token and 200 KB of weights, so the cache is what the memory is made of and the
/// run takes seconds. `Benchmarks/decode/memory` runs this same scenario on SmolLM2 through
/// `AXON_MEMORY_MODEL` (and writes the figures to `AXON_MEMORY_REPORT`).
final class GenerationMemoryTests: XCTestCase {
    /// The issue's load, and the share of it whose KV reservations fit at once.
    static let clients = 64, prompt = 512, generate = 256, fitting = 16
    static let threads = 2, stepTokens = 256
    /// Rows of prompt + generation exactly: the engine's maxSeq, and the tokens one request or step may hold.
    static let maxSeq = prompt + generate, maxBatchTokens = maxSeq
    /// The engine's paged cache: blocks of 16 positions of one layer (docs/ENGINE.md, "The pool").
    static let blockTokens = 16

    var home = ""
    var children: [ReplicaTests.Child] = []

    override func setUpWithError() throws {
        home = FileManager.default.temporaryDirectory.appendingPathComponent("axon-memory-\(UUID().uuidString)").path
        try FileManager.default.createDirectory(atPath: home, withIntermediateDirectories: true)
    }

    override func tearDown() {
        for child in children { child.stop(SIGKILL) }
        children = []
        try? FileManager.default.removeItem(atPath: home)
    }

    /// KV bytes of one reservation, from the model's hyperparameters: the server reserves, per row,
    /// the engine's block bound for prompt + num_to_generate − 1 cached positions (the last token is
    /// never fed back), ⌈positions / 16⌉ blocks per full-attention layer, each block
    /// 2 (K, V) · kvHeads · 16 · headDim f32 (docs/PROTOCOL.md "KV cache", docs/ENGINE.md "The pool").
    static func reservationBytes(_ c: ModelConfig) throws -> (bytes: Int, bytesPerToken: Int) {
        guard c.layers.allSatisfy({ $0.window == nil }) else {
            throw ClientFailure(text: "\(c.architecture) has windowed layers, whose bound is smaller: this scenario derives full attention's")
        }
        let bytesPerToken = c.layerCount * 2 * c.kvHeadCount * c.headDim * MemoryLayout<Float>.size
        let blocks = (prompt + generate - 1 + blockTokens - 1) / blockTokens
        return (blocks * blockTokens * bytesPerToken, bytesPerToken)
    }

    /// What besides the KV pool may become resident after the warm-up, each term an upper bound.
    struct Margin {
        /// The forward pass's scratch, all of it (RunState and CachedAttentionScratch, allocated at load and
        /// touched only as far as a batch reaches): the warm-up ran one row, the load runs 16.
        let engineScratch: Int
        /// Requests in flight: each holds its frame, the decoded ids and a row copy (3 × the prompt's ids), its
        /// answer twice (encoded and framed) and its sampler's history (prompt + generated ids).
        let requests: Int
        /// glibc keeps up to M_TRIM_THRESHOLD (128 KiB) free at the top of each arena without returning it,
        /// and makes at most 8 arenas per core.
        let allocator: Int

        init(_ c: ModelConfig, maxSeq: Int) {
            let f = MemoryLayout<Float>.size
            let tokens = GenerationMemoryTests.maxBatchTokens, threads = GenerationMemoryTests.threads
            let maxRows = GenerationMemoryTests.clients
            let logitRows = max(maxRows, min(tokens, max(512, 2 * maxRows)))   // EngineBackend's maxLogitRows
            let groupRows = c.headCount / c.kvHeadCount * 64                     // RunState.queryBlock
            let perToken = 2 * c.hiddenSize + (c.headCount + 2 * c.kvHeadCount) * c.headDim + c.headCount * c.headDim + 2 * c.ffnSize
            engineScratch = f * (tokens * perToken + logitRows * (c.hiddenSize + c.vocabSize)
                                 + threads * groupRows * (2 * c.headDim + maxSeq) + threads * 2 * maxSeq * c.headDim)
            let ids = MemoryLayout<Int32>.size
            let prompt = GenerationMemoryTests.prompt, generate = GenerationMemoryTests.generate
            requests = GenerationMemoryTests.clients * ids * (3 * prompt + 2 * generate + prompt + generate)
            allocator = 8 * ProcessInfo.processInfo.activeProcessorCount * (128 << 10)
        }

        var total: Int { engineScratch + requests + allocator }
        /// Two halves of the run repeat the same shapes: only requests in flight and allocator retention may differ.
        var flat: Int { requests + allocator }
    }

    struct Sample { let seconds: Double; let rssBytes: Int; let kvBytes: Int? }

    /// VmRSS or VmHWM of `pid`, in bytes.
    static func status(_ field: String, pid: Int32) -> Int? {
        guard let text = try? String(contentsOfFile: "/proc/\(pid)/status", encoding: .utf8),
              let line = text.split(separator: "\n").first(where: { $0.hasPrefix(field + ":") }),
              let kib = Int(line.split(separator: " ", omittingEmptySubsequences: true).dropFirst().first ?? "") else { return nil }
        return kib << 10
    }

    func testRSSStaysBoundedAndFlatWhileTheKVBudgetTurnsRequestsAway() throws {
        let environment = ProcessInfo.processInfo.environment
        let model = try environment["AXON_MEMORY_MODEL"].flatMap { $0.isEmpty ? nil : $0 }
            ?? XCTUnwrap(Bundle.module.url(forResource: "Fixtures/generation_memory.gguf", withExtension: "fixture")).path
        let config = try ModelConfig(source: GGUFFile(path: model))
        let maxSeq = Self.maxSeq
        XCTAssertGreaterThanOrEqual(config.contextLength, maxSeq, "the model's context must hold prompt + generation")
        let (reservation, bytesPerToken) = try Self.reservationBytes(config)
        // The budget, in whole MiB, that holds `fitting` reservations and not one more.
        let kvCacheMb = (Self.fitting * reservation + (1 << 20) - 1) >> 20
        let blockBytes = 2 * config.kvHeadCount * Self.blockTokens * config.headDim * MemoryLayout<Float>.size
        let budget = (kvCacheMb << 20) / blockBytes * blockBytes
        XCTAssertEqual(budget / reservation, Self.fitting, "the budget holds \(budget / reservation) reservations")
        let margin = Margin(config, maxSeq: maxSeq)

        let port = try ReplicaTests.freePort(), metricsPort = try ReplicaTests.freePort()
        let waitMs = environment["AXON_MEMORY_WAIT_MS"] ?? "200"
        let axon = ReplicaTests.axonExecutable
        guard FileManager.default.isExecutableFile(atPath: axon) else { throw ReplicaTests.NotStarted(what: "\(axon) (swift build --build-tests builds it)") }
        let server = try ReplicaTests.Child("axon serve", axon, [
            "serve", "--model", model, "--port", "\(port)", "--metrics-port", "\(metricsPort)", "--no-auth", "--log-level", "warning",
            "--threads", "\(Self.threads)", "--max-batch", "\(Self.clients)", "--max-seq", "\(maxSeq)", "--max-batch-tokens", "\(Self.maxBatchTokens)",
            "--max-sequences", "\(Self.clients)", "--step-tokens", "\(Self.stepTokens)", "--max-new-tokens", "\(Self.generate)",
            "--kv-cache-mb", "\(kvCacheMb)", "--kv-cache-precision", "f32", "--generation-wait-ms", waitMs], home: home)
        children.append(server)
        guard ReplicaTests.waitUntil(300, { ReplicaTests.accepting(port) || !server.process.isRunning }), server.process.isRunning else { throw ReplicaTests.NotStarted(what: "axon serve on \(port)") }
        let pid = server.process.processIdentifier

        let vocab = config.vocabSize
        func promptIDs(_ client: Int) -> [Int32] {
            // Ids in 3..<vocab (past the fixture's <unk>, <s>, </s>), a different row per client.
            var state = UInt64(client + 1) &* 0x9E37_79B9_7F4A_7C15
            return (0..<Self.prompt).map { _ in
                state = state &* 6364136223846793005 &+ 1442695040888963407
                return Int32(3 + Int((state >> 33) % UInt64(vocab - 3)))
            }
        }
        // Greedy, no n-gram ban, no stop token: every completed row is exactly `generate` ids.
        let synapse = Synapse(type: .textSeq2Seq, generation: Generation(numToGenerate: UInt32(Self.generate), noRepeatNgramSize: 0,
                                                                          stopTokens: [-1]))
        // One body per client, and one more for the warm-up.
        let bodies = (0...Self.clients).map { ForwardRequest(tokens: tokens32([promptIDs($0)]), synapses: [synapse]) }
        let timeoutMs: UInt32 = 3_600_000

        // Warm-up: one request of the same shape, alone, pages in the weights and the step's scratch.
        let warm = try AxonClient(host: "127.0.0.1", port: port)
        let warmed = try warm.forward(bodies[Self.clients], timeoutMs: timeoutMs)
        warm.close()
        XCTAssertEqual(warmed.code, .success, warmed.message)
        let warmRSS = try XCTUnwrap(Self.status("VmRSS", pid: pid))

        // Sample RSS and the KV gauge until the load ends.
        final class Shared: @unchecked Sendable {
            let lock = NSLock()
            var samples: [Sample] = [], running = true
            var completed = 0, backoffs = 0, failures: [String] = []
        }
        let shared = Shared()
        let began = Date()
        let sampler = Thread {
            while shared.lock.withLock({ shared.running }) {
                if let rss = Self.status("VmRSS", pid: pid) {
                    let kv = ReplicaTests.metric("axon_kv_cache_bytes", port: metricsPort)
                    shared.lock.withLock { shared.samples.append(Sample(seconds: Date().timeIntervalSince(began), rssBytes: rss, kvBytes: kv)) }
                }
                Thread.sleep(forTimeInterval: 0.01)
            }
        }
        sampler.start()

        // 64 clients, one request each, retried on Backoff until it completes.
        let group = DispatchGroup()
        for client in 0..<Self.clients {
            group.enter()
            let thread = Thread {
                defer { group.leave() }
                do {
                    let connection = try AxonClient(host: "127.0.0.1", port: port)
                    defer { connection.close() }
                    let body = bodies[client]
                    while true {
                        let response = try connection.forward(body, timeoutMs: timeoutMs)
                        if response.code == .backoff {
                            shared.lock.withLock { shared.backoffs += 1 }
                            continue
                        }
                        guard response.code == .success else { throw ClientFailure(text: "\(response.code): \(response.message)") }
                        let result = try XCTUnwrap(response.forward?.results.first)
                        let rows = try result.checkedGeneration(rows: 1, maxTokens: Self.generate, vocab: vocab)
                        guard rows[0].count == Self.generate else { throw ClientFailure(text: "\(rows[0].count) ids, expected \(Self.generate)") }
                        shared.lock.withLock { shared.completed += 1 }
                        return
                    }
                } catch {
                    shared.lock.withLock { shared.failures.append("client \(client): \(error)") }
                }
            }
            thread.stackSize = 1 << 20
            thread.start()
        }
        group.wait()
        let seconds = Date().timeIntervalSince(began)
        Thread.sleep(forTimeInterval: 0.05)
        shared.lock.withLock { shared.running = false }
        while sampler.isExecuting { Thread.sleep(forTimeInterval: 0.01) }
        let peak = try XCTUnwrap(Self.status("VmHWM", pid: pid))
        let endRSS = try XCTUnwrap(Self.status("VmRSS", pid: pid))
        let finalKV = ReplicaTests.metric("axon_kv_cache_bytes", port: metricsPort)
        let (samples, completed, backoffs, failures) = shared.lock.withLock { (shared.samples, shared.completed, shared.backoffs, shared.failures) }

        let half = seconds / 2
        let firstMax = samples.filter { $0.seconds < half }.map(\.rssBytes).max() ?? 0
        let secondMax = samples.filter { $0.seconds >= half }.map(\.rssBytes).max() ?? 0
        let kvMax = samples.compactMap(\.kvBytes).max() ?? 0
        let bound = warmRSS + budget + margin.total
        func mib(_ bytes: Int) -> String { String(format: "%.1f MiB", Double(bytes) / Double(1 << 20)) }
        let figures: [String: Any] = [
            "model": (model as NSString).lastPathComponent, "clients": Self.clients, "prompt": Self.prompt, "generate": Self.generate,
            "kv_bytes_per_token": bytesPerToken, "reservation_bytes": reservation, "kv_cache_mb": kvCacheMb, "budget_bytes": budget,
            "generation_wait_ms": Int(waitMs) ?? 0, "seconds": seconds, "completed": completed, "backoffs": backoffs,
            "samples": samples.count, "warm_rss_bytes": warmRSS, "first_half_max_rss_bytes": firstMax,
            "second_half_max_rss_bytes": secondMax, "peak_rss_bytes": peak, "end_rss_bytes": endRSS, "max_kv_cache_bytes": kvMax,
            "bound_bytes": bound, "margin_bytes": margin.total, "engine_scratch_bytes": margin.engineScratch,
            "flat_bound_bytes": margin.flat]
        print("GenerationMemoryTests: \((model as NSString).lastPathComponent), \(Self.clients) clients × (\(Self.prompt) + \(Self.generate)), "
              + "\(bytesPerToken) KV B/token, reservation \(mib(reservation)), --kv-cache-mb \(kvCacheMb): \(completed) completed, "
              + "\(backoffs) Backoff in \(String(format: "%.1f", seconds)) s; RSS warm \(mib(warmRSS)), first half max \(mib(firstMax)), "
              + "second half max \(mib(secondMax)), peak (VmHWM) \(mib(peak)) ≤ bound \(mib(bound)) (KV \(mib(budget)) + margin "
              + "\(mib(margin.total))), end \(mib(endRSS)); axon_kv_cache_bytes max \(mib(kvMax)) over \(samples.count) samples")
        if let out = environment["AXON_MEMORY_REPORT"], !out.isEmpty {
            try JSONSerialization.data(withJSONObject: figures, options: [.prettyPrinted, .sortedKeys]).write(to: URL(fileURLWithPath: out))
        }

        XCTAssertEqual(failures, [])
        XCTAssertEqual(completed, Self.clients, "every request completes with \(Self.generate) ids, on retry after Backoff")
        XCTAssertGreaterThan(backoffs, 0, "a budget of \(Self.fitting) reservations turns some of \(Self.clients) away")
        XCTAssertGreaterThan(samples.count, 20, "too few RSS samples to judge the run")
        XCTAssertGreaterThan(kvMax, 0)
        XCTAssertLessThanOrEqual(kvMax, budget, "axon_kv_cache_bytes passed --kv-cache-mb")
        XCTAssertEqual(finalKV, 0, "every sequence was released")
        XCTAssertLessThanOrEqual(peak, bound, "peak RSS \(mib(peak)) over warm-up \(mib(warmRSS)) + KV \(mib(budget)) + margin \(mib(margin.total))")
        XCTAssertLessThanOrEqual(secondMax, firstMax + margin.flat,
                                 "RSS grew from \(mib(firstMax)) in the first half to \(mib(secondMax)) in the second (allowed \(mib(margin.flat)))")
    }

    /// A client's or the scenario's failure, in words.
    struct ClientFailure: Error, CustomStringConvertible { let text: String; var description: String { text } }
}
