import AxonClient
import Foundation
import Logging
import Server
import Wire
import XCTest

/// Issue 10's adversarial-probe findings, each reproduced against a live server on loopback.
final class ShutdownTests: XCTestCase {
    private let next = [Synapse(type: .textCausalLMNext)]

    /// 20 connections × FORWARD, then shutdown while batches compute: before, queued and running
    /// requests were dropped at the drain deadline and their clients saw EOF.
    func testShutdownWhileBatchesComputeAnswersEveryRequestAndCountsIt() throws {
        let backend = FakeBackend(vocabSize: 64, hiddenSize: 4, computeDelay: 0.15)
        let harness = try startServer(backend: backend) { $0.maxBatch = 1; $0.drainTimeout = 0.2 }
        let clients = try (0..<20).map { _ in try harness.client() }
        let body = ForwardRequest(tokens: tokens32([Array(repeating: 3, count: 16)]), synapses: next).serializedBytes()
        for (index, client) in clients.enumerated() {
            try client.send(Request(id: UInt64(index + 1), method: .forward, body: body))
        }
        Thread.sleep(forTimeInterval: 0.05)
        harness.server.shutdown()
        var codes: [ReturnCode] = []
        for (index, client) in clients.enumerated() {
            let response = try client.response(id: UInt64(index + 1), timeout: 5)
            codes.append(response.code)
            if response.code == .unavailable { XCTAssertTrue(response.message.contains("shut down"), response.message) }
        }
        harness.server.waitUntilStopped()
        XCTAssertEqual(Set(codes).subtracting([.success, .unavailable]), [], "\(codes)")
        XCTAssertTrue(codes.contains(.unavailable), "a 0.2 s drain cannot finish 20 batches of 0.15 s: \(codes)")
        let counted = harness.server.counterSnapshot().requestsByCode
        XCTAssertEqual(counted[.success, default: 0], codes.filter { $0 == .success }.count)
        XCTAssertEqual(counted[.unavailable, default: 0], codes.filter { $0 == .unavailable }.count)
    }

    /// The server may be gone while the worker still computes: its late delivery must not touch it.
    /// Before, `deliver` went through `[unowned self]` and aborted the process ("Attempted to read an
    /// unowned reference but object ... was already destroyed").
    func testTheServerCanBeReleasedWhileTheWorkerStillComputes() throws {
        let backend = FakeBackend(vocabSize: 64, hiddenSize: 4, computeDelay: 0.5)
        weak var released: AxonServer?
        do {
            let harness = try Harness(backend: backend) { $0.drainTimeout = 0.05 }
            released = harness.server
            let client = try harness.client()
            try client.send(Request(id: 1, method: .forward, body: ForwardRequest(tokens: tokens32([[1]]), synapses: next).serializedBytes()))
            Thread.sleep(forTimeInterval: 0.1)  // the worker is inside its 0.5 s forward
            harness.stop()
            XCTAssertEqual(try client.response(id: 1, timeout: 5).code, .unavailable)
        }
        let deadline = Date().addingTimeInterval(0.3)
        while released != nil && Date() < deadline { Thread.sleep(forTimeInterval: 0.01) }
        XCTAssertNil(released, "the server should be freed before the worker finishes")
        Thread.sleep(forTimeInterval: 0.6)  // the worker finishes and delivers
        XCTAssertEqual(backend.forwardCalls, 1)
    }
}

final class DeadlineAndFloodTests: XCTestCase {
    /// A response ready after its deadline is Timeout, not a late Success. The fake computes one
    /// token (below what the throughput estimate learns from), so the seed admits the job.
    func testAResponseReadyAfterItsDeadlineIsTimeout() throws {
        let backend = FakeBackend(vocabSize: 50, hiddenSize: 4, computeDelay: 0.3)
        let harness = try startServer(backend: backend)
        let client = try harness.client()
        let response = try client.forward(ForwardRequest(tokens: tokens32([[1]]), synapses: [Synapse(type: .textCausalLMNext)]),
                                          timeoutMs: 100)
        XCTAssertEqual(response.code, .timeout, response.message)
        XCTAssertTrue(response.message.contains("after the deadline"), response.message)
        XCTAssertEqual(backend.forwardCalls, 1)
    }

    /// Encoding is charged to the deadline: 204 MB of raw logits take ≥ 51 ms to encode even at the
    /// seed's 4 GB/s, so with 20 ms left the request is refused at once, without compute.
    func testAResponseTooLargeToEncodeBeforeTheDeadlineIsRefusedWithoutCompute() throws {
        let backend = FakeBackend(vocabSize: 50_000, hiddenSize: 4)
        let harness = try startServer(backend: backend) { $0.maxSeq = 1024 }
        let client = try harness.client()
        let huge = ForwardRequest(tokens: tokens32([Array(repeating: 7, count: 1024)]), synapses: [Synapse(type: .textCausalLM)])
        let response = try client.forward(huge, timeoutMs: 20)
        XCTAssertEqual(response.code, .timeout, response.message)
        XCTAssertTrue(response.message.contains("without compute"), response.message)
        XCTAssertEqual(backend.forwardCalls, 0)
    }

    /// 10⁵ synapses in one FORWARD held the worker for seconds while every other client waited.
    /// 1,000 synapses decode within the allocation budget, so the cap is what refuses them; 10⁵ are
    /// refused whichever check sees them first (the decode budget or the cap), never computed.
    func testAFloodOfSynapsesIsRefusedAndOthersAreServed() throws {
        let backend = FakeBackend(vocabSize: 50, hiddenSize: 4)
        let harness = try startServer(backend: backend)
        let flooder = try harness.client(), other = try harness.client()
        func flood(_ count: Int) -> [UInt8] {
            ForwardRequest(tokens: tokens32([[1, 2]]), synapses: Array(repeating: Synapse(type: .textCausalLMNext, topk: 1), count: count))
                .serializedBytes()
        }
        try flooder.send(Request(id: 1, method: .forward, body: flood(1_000)))
        try flooder.send(Request(id: 2, method: .forward, body: flood(100_000)))
        let normal = try other.forward(ForwardRequest(tokens: tokens32([[3]]), synapses: [Synapse(type: .textCausalLMNext)]))
        XCTAssertEqual(normal.code, .success, normal.message)
        let capped = try flooder.response(id: 1, timeout: 10)
        XCTAssertEqual(capped.code, .requestShapeException, capped.message)
        XCTAssertTrue(capped.message.contains("1000 synapses, more than the 64"), capped.message)
        let huge = try flooder.response(id: 2, timeout: 10)
        XCTAssertTrue([ReturnCode.requestShapeException, .requestDeserializationException].contains(huge.code), "\(huge.code): \(huge.message)")
        XCTAssertEqual(backend.forwardCalls, 1, "only the normal request ran")
    }
}

/// A TCP connection that sends and never reads (`AxonClient` reads every answer on its own
/// thread). Its receive buffer is made small so the kernel absorbs little of what the server writes.
final class SilentSocket {
    private let fd: Int32

    init(port: Int) throws {
        fd = try loopbackSocket(port: port) { fd in
            var size: Int32 = 64 * 1024
            setsockopt(fd, SOL_SOCKET, SO_RCVBUF, &size, socklen_t(MemoryLayout<Int32>.size))
        }
    }

    func send(_ bytes: [UInt8]) {
        var offset = 0
        while offset < bytes.count {
            let sent = bytes.withUnsafeBytes { Glibc.send(fd, $0.baseAddress.unsafelyUnwrapped + offset, bytes.count - offset, Int32(MSG_NOSIGNAL)) }
            guard sent > 0 else { return }
            offset += sent
        }
    }

    func close() { Glibc.close(fd) }
}

/// Clients that pipeline FORWARDs and never read.
final class NonReadingClientTests: XCTestCase {
    private static func residentBytes() -> Int {
        guard let text = try? String(contentsOfFile: "/proc/self/statm", encoding: .utf8),
              let pages = text.split(separator: " ").dropFirst().first.flatMap({ Int($0) }) else { return 0 }
        return pages * Int(sysconf(Int32(_SC_PAGESIZE)))
    }

    /// Three connections each pipeline 40 FORWARDs whose answers are R = 128 × 8000 × 4 B ≈ 4.1 MB
    /// of raw logits, and never read. Before, all 120 answers (≈ 490 MB) were computed into memory.
    ///
    /// Bound: a connection takes a new request only while its pending bytes are under its budget
    /// B = 4 MiB, so it holds at most B + R. The worker runs batches of at most 2 answers
    /// (--max-batch-tokens 256), so its logit scratch is ≤ 2 R, and it encodes one answer at a time
    /// (the tensor and the frame, ≤ 2 R). With 32 MiB for allocator arenas and test bookkeeping:
    /// RSS ≤ baseline + 3 (B + R) + 4 R + 32 MiB ≈ baseline + 73 MiB.
    func testClientsThatDoNotReadHoldBoundedMemoryWhileAReadingClientIsServed() throws {
        let (budget, vocab, seq, clients, pipelined) = (4 << 20, 8000, 128, 3, 40)
        let answer = seq * vocab * 4
        let backend = FakeBackend(vocabSize: vocab, hiddenSize: 4)
        let harness = try startServer(backend: backend) { config in
            config.maxSeq = seq
            config.maxBatchTokens = 2 * seq
            config.maxQueuedOutputBytes = budget
            config.maxPendingResponseBytes = 4 * budget
        }
        let baseline = Self.residentBytes()
        let body = ForwardRequest(tokens: tokens32([Array(repeating: 5, count: seq)]), synapses: [Synapse(type: .textCausalLM)]).serializedBytes()
        var silent: [SilentSocket] = []
        for _ in 0..<clients {
            let client = try SilentSocket(port: harness.server.port)
            for id in 1...pipelined { client.send(FrameEncoder.frame(Request(id: UInt64(id), method: .forward, body: body).serializedBytes())) }
            silent.append(client)
        }
        // Sample RSS until the server stops computing for the silent clients.
        var peak = baseline, lastCalls = -1, stable = 0
        let deadline = Date().addingTimeInterval(10)
        while stable < 17 && Date() < deadline {   // until the queue is empty and no batch ran for 0.5 s
            Thread.sleep(forTimeInterval: 0.03)
            peak = max(peak, Self.residentBytes())
            let calls = backend.forwardCalls
            stable = calls == lastCalls && harness.server.counterSnapshot().queueDepth == 0 ? stable + 1 : 0
            lastCalls = calls
        }
        XCTAssertLessThan(backend.forwardCalls, clients * pipelined, "the server stopped computing answers nobody reads")
        let reader = try harness.client()
        let served = try reader.forward(ForwardRequest(tokens: tokens32([[1, 2, 3]]), synapses: [Synapse(type: .textCausalLMNext, topk: 4)]))
        XCTAssertEqual(served.code, .success, served.message)
        let bound = baseline + clients * (budget + answer) + 4 * answer + (32 << 20)
        XCTAssertLessThan(peak, bound, "peak RSS \(peak >> 20) MiB over the bound \(bound >> 20) MiB (baseline \(baseline >> 20) MiB)")

        // Closing the silent clients returns their answers' memory.
        for client in silent { client.close() }
        Thread.sleep(forTimeInterval: 0.3)
        XCTAssertEqual(harness.server.counterSnapshot().openConnections, 1)
        let after = Self.residentBytes()
        // What stays: the fake's logit scratch (≤ 2 R, kept for reuse) and the 32 MiB allowance.
        XCTAssertLessThan(after, baseline + 2 * answer + (32 << 20), "RSS \(after >> 20) MiB after the close (baseline \(baseline >> 20) MiB)")
    }
}

/// Connection slots: a per-IP cap, and PING does not hold a slot.
final class ConnectionSlotTests: XCTestCase {
    func testConnectionsBeyondThePerIPCapAreRefusedAtAccept() throws {
        let harness = try startServer { $0.maxConnectionsPerIP = 2 }
        try assertTwoConnectionsFitAndAThirdIsRefused(harness)
        XCTAssertEqual(harness.server.abuseCounts.refusedPerIP, 1)
        XCTAssertEqual(harness.server.abuseCounts.refusedConnections, 1)
    }

    /// Before, each PING reset the idle timer, so a few pinging connections held every slot forever.
    func testPingDoesNotKeepASlotButForwardProgressDoes() throws {
        let harness = try startServer { $0.idleTimeout = 0.3 }
        let pinger = try harness.client(), worker = try harness.client()
        XCTAssertEqual(try worker.forward(ForwardRequest(tokens: tokens32([[1]]), synapses: [Synapse(type: .textCausalLMNext)])).code, .success)
        var pingerClosed = false
        for _ in 0..<12 {   // 1.2 s of pings every 0.1 s, four idle timeouts
            Thread.sleep(forTimeInterval: 0.1)
            do { _ = try pinger.ping() } catch { pingerClosed = true; break }
            XCTAssertEqual(try worker.ping().code, .success)
        }
        XCTAssertTrue(pingerClosed, "a connection without an admitted FORWARD outlived its idle timeout")
        XCTAssertEqual(harness.server.abuseCounts.expiredUnproven, 1)
    }
}

/// A log handler that keeps every message (for the abuse summary).
final class CapturedLog: @unchecked Sendable {
    private let lock = NSLock()
    private var lines: [String] = []
    var messages: [String] { lock.withLock { lines } }
    func append(_ line: String) { lock.withLock { lines.append(line) } }

    struct Handler: LogHandler {
        let log: CapturedLog
        var logLevel: Logger.Level = .info
        var metadata: Logger.Metadata = [:]
        subscript(metadataKey key: String) -> Logger.Metadata.Value? { get { metadata[key] } set { metadata[key] = newValue } }
        func log(level: Logger.Level, message: Logger.Message, metadata: Logger.Metadata?, source: String,
                 file: String, function: String, line: UInt) {
            if level >= .info { log.append("\(message)") }
        }
    }
}

final class AbuseLogTests: XCTestCase {
    /// 8,004 refused connections and a stream of bad frames logged nothing at info level.
    func testRefusedConnectionsAndBadFramesAreCountedAndSummarisedAtInfoLevel() throws {
        let log = CapturedLog()
        var configuration = ServerConfiguration()
        configuration.port = 0
        configuration.maxConnectionsPerIP = 1
        configuration.abuseLogInterval = 0.2
        configuration.idleTimeout = 0.4   // the sweeper (which writes the summary) runs every 0.1 s
        let server = try AxonServer(backend: FakeBackend(), configuration: configuration,
                                    logger: Logger(label: "abuse") { _ in CapturedLog.Handler(log: log) })
        try server.start()
        addTeardownBlock { server.shutdown(); server.waitUntilStopped() }
        let held = try AxonClient(host: "127.0.0.1", port: server.port)
        XCTAssertEqual(try held.ping().code, .success)
        for _ in 0..<5 {
            let refused = try AxonClient(host: "127.0.0.1", port: server.port)
            XCTAssertThrowsError(try refused.ping())
        }
        for _ in 0..<3 {
            try held.sendRaw(FrameEncoder.frame([0xFF, 0xFF, 0xFF]))
            XCTAssertEqual(try held.nextResponse(timeout: 5).code, .requestDeserializationException)
        }
        let deadline = Date().addingTimeInterval(3)
        while !log.messages.contains(where: { $0.contains("refused connections") }) && Date() < deadline {
            Thread.sleep(forTimeInterval: 0.05)
        }
        let counts = server.abuseCounts
        XCTAssertEqual(counts.refusedConnections, 5)
        XCTAssertEqual(counts.refusedPerIP, 5)
        XCTAssertEqual(counts.badFrames, 3)
        let summary = try XCTUnwrap(log.messages.first { $0.contains("refused connections") }, "\(log.messages)")
        XCTAssertTrue(summary.contains("5 refused connections"), summary)
        XCTAssertTrue(summary.contains("3 bad frames"), summary)
        // The same counts on the metrics page.
        let page = try MetricPage(text: String(decoding: server.metricsPage(), as: UTF8.self))
        XCTAssertEqual(page.value("axon_abuse_total", ["kind": "refused_connection"]), 5)
        XCTAssertEqual(page.value("axon_abuse_total", ["kind": "refused_per_ip"]), 5)
        XCTAssertEqual(page.value("axon_abuse_total", ["kind": "bad_frame"]), 3)
        XCTAssertEqual(page.value("axon_abuse_total", ["kind": "backoff"]), 0)
    }
}
