import AxonClient
import Foundation
import Identity
import Logging
import Server
import TestSupport
import Wire
import XCTest

/// Issue 10 item 4: `/metrics` over real TCP, checked by Prometheus's own parser (promtool) and
/// counted with a small parser that is itself checked against PyPI prometheus_client's on a page
/// from this server (Fixtures/metrics_page.*, scripts/reference/metrics_fixtures.py).
final class MetricsTests: XCTestCase {
    let axonKey = AdmissionServerTests.key(1)
    let validator = AdmissionServerTests.key(2)
    let denied = AdmissionServerTests.key(5)
    let stranger = AdmissionServerTests.key(6)

    // MARK: - The parser against the reference

    func testPageParserAgreesWithPrometheusClientOnAPageFromThisServer() throws {
        let fixtures = try XCTUnwrap(Bundle.module.url(forResource: "Fixtures", withExtension: nil))
        let page = try String(contentsOf: fixtures.appendingPathComponent("metrics_page.prom"), encoding: .utf8)
        let data = try Data(contentsOf: fixtures.appendingPathComponent("metrics_page.json"))
        let reference = try XCTUnwrap(try JSONSerialization.jsonObject(with: data) as? [[Any]])
        let expected = try reference.map { entry -> MetricSample in
            guard entry.count == 3, let name = entry[0] as? String, let labels = entry[1] as? [String: String],
                  let text = entry[2] as? String, let value = Double(text) else { throw FixtureError(entry: "\(entry)") }
            return MetricSample(name: name, labels: labels, value: value)
        }
        // prometheus_client gives a counter's sample the OpenMetrics `_total` suffix when the page
        // has none (axon_total_forward, Bittensor's name); Prometheus itself keeps the name as written.
        let ours = try MetricPage(text: page)
        let parsed = ours.samples.map { sample in
            ours.types[sample.name] == "counter" && !sample.name.hasSuffix("_total")
                ? MetricSample(name: sample.name + "_total", labels: sample.labels, value: sample.value) : sample
        }
        XCTAssertEqual(parsed.count, expected.count)
        XCTAssertEqual(Set(parsed), Set(expected))
        XCTAssertGreaterThan(expected.count, 50, "the fixture should be a whole page")
    }

    // MARK: - Counts

    /// Sends a known mix (7 PING, 3 INFO, 13 FORWARD with six different outcomes) and checks that
    /// the page counts exactly that.
    func testScrapeCountsEqualWhatWasSent() throws {
        let server = try startMetricsServer(rateLimit: RateLimit(requestsPerSecond: 0.001, burst: 6), computeDelay: 0.02)
        let signed = try AxonClient(host: "127.0.0.1", port: server.port, hotkey: validator, receiver: axonKey.ss58)
        let rows: [[Int32]] = [[5, 6, 7], [8, 9, 10]]
        let good = ForwardRequest(tokens: Tensor(int32Rows: rows),
                                  synapses: [Synapse(type: .textCausalLMNext, topk: 2), Synapse(type: .textLastHiddenState)])
        // A token id past the fake's 1000-entry vocabulary: InvalidRequest, after admission.
        let outOfVocabulary = ForwardRequest(tokens: Tensor(int32Rows: [[5, 1000]]), synapses: [Synapse(type: .textCausalLMNext)])
        var codes: [ReturnCode] = []
        for _ in 0..<7 { XCTAssertEqual(try signed.ping().code, .success) }
        for _ in 0..<3 { XCTAssertEqual(try signed.info().code, .success) }
        // The burst of 6 admits the first six; rate 0.001/s adds no token within the test.
        for _ in 0..<4 { codes.append(try signed.forward(good, timeoutMs: 10_000).code) }
        for _ in 0..<2 { codes.append(try signed.forward(outOfVocabulary, timeoutMs: 10_000).code) }
        for _ in 0..<3 { codes.append(try signed.forward(good, timeoutMs: 10_000).code) }
        let unknownSender = try AxonClient(host: "127.0.0.1", port: server.port, hotkey: stranger, receiver: axonKey.ss58)
        for _ in 0..<2 { codes.append(try unknownSender.forward(good, timeoutMs: 10_000).code) }
        let deniedSender = try AxonClient(host: "127.0.0.1", port: server.port, hotkey: denied, receiver: axonKey.ss58)
        codes.append(try deniedSender.forward(good, timeoutMs: 10_000).code)
        let anonymous = try AxonClient(host: "127.0.0.1", port: server.port)
        codes.append(try anonymous.forward(good, timeoutMs: 10_000).code)
        XCTAssertEqual(codes, [.success, .success, .success, .success, .invalidRequest, .invalidRequest,
                               .backoff, .backoff, .backoff, .senderUnknown, .senderUnknown, .blacklisted, .unauthenticated])

        // The four clients stay connected for the scrape (axon_connections).
        let scrape = try withExtendedLifetime([signed, unknownSender, deniedSender, anonymous]) {
            try httpExchange(port: try XCTUnwrap(server.metricsPort), Array("GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n".utf8))
        }
        XCTAssertEqual(scrape.status, 200)
        XCTAssertTrue(scrape.header.lowercased().contains("content-type: text/plain; version=0.0.4"), scrape.header)
        try assertPromtoolAccepts(scrape.body)
        let page = try MetricPage(text: scrape.body)

        let successTokens = 4 * rows.map(\.count).reduce(0, +)
        XCTAssertEqual(page.value("axon_total_forward"), 13)
        let expectedCodes: [String: Double] = ["Success": 4, "InvalidRequest": 2, "Backoff": 3, "SenderUnknown": 2,
                                               "Blacklisted": 1, "Unauthenticated": 1]
        for (code, count) in expectedCodes { XCTAssertEqual(page.value("axon_forward_codes_total", ["code": code]), count, code) }
        XCTAssertEqual(page.sum("axon_forward_codes_total"), 13, "no other code was answered")
        XCTAssertEqual(page.value("axon_tokens_total"), Double(successTokens))
        XCTAssertEqual(page.value("axon_requests_total", ["method": "PING"]), 7)
        XCTAssertEqual(page.value("axon_requests_total", ["method": "INFO"]), 3)
        XCTAssertEqual(page.value("axon_requests_total", ["method": "FORWARD"]), 13)
        XCTAssertEqual(page.value("axon_requests_total", ["method": "other"]), 0)
        // Only the four admitted, valid FORWARDs reach the synapse count, two synapses each.
        XCTAssertEqual(page.value("axon_forward_synapses_total", ["synapse": "TEXT_CAUSAL_LM_NEXT"]), 4)
        XCTAssertEqual(page.value("axon_forward_synapses_total", ["synapse": "TEXT_LAST_HIDDEN_STATE"]), 4)
        XCTAssertEqual(page.sum("axon_forward_synapses_total"), 8)
        XCTAssertEqual(page.value("axon_blacklisted_total", ["reason": "rate_limited"]), 3)
        XCTAssertEqual(page.value("axon_blacklisted_total", ["reason": "sender_unknown"]), 2)
        XCTAssertEqual(page.value("axon_blacklisted_total", ["reason": "denied"]), 1)
        XCTAssertEqual(page.value("axon_blacklisted_total", ["reason": "unauthenticated"]), 1)
        XCTAssertEqual(page.sum("axon_blacklisted_total"), 7)
        // The latency histogram holds the 13 FORWARDs and none of the 10 PING/INFO.
        XCTAssertEqual(page.value("axon_forward_latency_seconds_count"), 13)
        XCTAssertEqual(page.value("axon_forward_latency_seconds_bucket", ["le": "+Inf"]), 13)
        XCTAssertEqual(page.value("axon_forward_latency_seconds_bucket", ["le": "12.0"]).map { $0 <= 13 }, true)
        // Each successful FORWARD ran in its own batch (the client waits for each answer): four
        // batches of two rows. The fake sleeps 0.02 s per batch, so compute is at least 0.08 s.
        XCTAssertEqual(page.value("axon_batch_rows_count"), 4)
        XCTAssertEqual(page.value("axon_batch_rows_sum"), Double(4 * rows.count))
        XCTAssertGreaterThanOrEqual(page.value("axon_engine_seconds_total", ["phase": "compute"]) ?? 0, 4 * 0.02)
        XCTAssertNotNil(page.value("axon_engine_seconds_total", ["phase": "queue"]))
        XCTAssertNotNil(page.value("axon_engine_seconds_total", ["phase": "encode"]))
        XCTAssertEqual(page.value("axon_queue_depth"), 0)
        XCTAssertEqual(page.value("axon_connections"), 4)
        XCTAssertGreaterThan(page.value("process_resident_memory_bytes") ?? 0, 0)
        XCTAssertEqual(page.types["axon_forward_latency_seconds"], "histogram")
        XCTAssertEqual(page.types["axon_batch_rows"], "histogram")
        XCTAssertEqual(page.types["axon_total_forward"], "counter")
        XCTAssertEqual(page.types["axon_queue_depth"], "gauge")

        if let out = ProcessInfo.processInfo.environment["AXON_METRICS_PAGE_OUT"] {
            try scrape.body.write(toFile: out, atomically: true, encoding: .utf8)   // regenerates the fixture page
        }
    }

    /// SIGUSR1's percentiles come from FORWARDs only: with 40 fast PING/INFO and 3 FORWARDs that
    /// each sleep 50 ms in the fake backend, p50 is at least that sleep (it read ~0.01 ms when
    /// PING and INFO were mixed in).
    func testCounterPercentilesCountForwardsOnly() throws {
        let delay = 0.05
        let harness = try startServer(backend: FakeBackend(computeDelay: delay))
        let client = try harness.client()
        for _ in 0..<30 { XCTAssertEqual(try client.ping().code, .success) }
        for _ in 0..<10 { XCTAssertEqual(try client.info().code, .success) }
        let forward = ForwardRequest(tokens: Tensor(int32Rows: [[5, 6, 7]]), synapses: [Synapse(type: .textCausalLMNext, topk: 2)])
        for _ in 0..<3 { XCTAssertEqual(try client.forward(forward, timeoutMs: 10_000).code, .success) }
        let counters = harness.server.counterSnapshot()
        XCTAssertEqual(counters.totalRequests, 43)
        XCTAssertEqual(counters.forwardRequests, 3)
        // Every FORWARD's latency includes the backend's sleep, so each percentile is at least it.
        XCTAssertGreaterThanOrEqual(counters.latencyP50Ms, delay * 1000)
        XCTAssertGreaterThanOrEqual(counters.latencyP90Ms, delay * 1000)
        XCTAssertTrue(counters.description.contains("forwards 3"), counters.description)
    }

    // MARK: - The endpoint

    func testMetricsIsOffUnlessConfigured() throws {
        let harness = try startServer()
        XCTAssertNil(harness.server.metricsPort)
    }

    func testTakenPortLogsOneWarningAndTheAxonKeepsServing() throws {
        let first = try startMetricsServer()
        let taken = try XCTUnwrap(first.metricsPort)
        let log = LogCapture()
        let second = try AxonServer(backend: FakeBackend(), configuration: metricsConfiguration(port: taken),
                                    logger: Logger(label: "metrics-test") { _ in log })
        try second.start()
        addTeardownBlock { second.shutdown(); second.waitUntilStopped() }
        XCTAssertNil(second.metricsPort)
        XCTAssertEqual(try AxonClient(host: "127.0.0.1", port: second.port).ping().code, .success)
        let warnings = log.messages.filter { $0.level == .warning }
        XCTAssertEqual(warnings.count, 1, "\(warnings)")
        XCTAssertTrue(warnings.first?.text.contains("\(taken)") == true, "\(warnings)")
        XCTAssertEqual(try httpExchange(port: taken, Array("GET /metrics HTTP/1.0\r\n\r\n".utf8)).status, 200,
                       "the first server's endpoint still answers")
    }

    func testEveryMalformedOrOtherRequestGetsItsStatusAndTheEndpointKeepsWorking() throws {
        let server = try startMetricsServer()
        let port = try XCTUnwrap(server.metricsPort)
        let cases: [(String, [UInt8], Int)] = [
            ("POST", Array("POST /metrics HTTP/1.1\r\nContent-Length: 0\r\n\r\n".utf8), 405),
            ("HEAD", Array("HEAD /metrics HTTP/1.1\r\n\r\n".utf8), 405),
            ("other path", Array("GET /metricsX HTTP/1.1\r\n\r\n".utf8), 404),
            ("root", Array("GET / HTTP/1.1\r\n\r\n".utf8), 404),
            ("query string", Array("GET /metrics?x=1 HTTP/1.1\r\n\r\n".utf8), 200),
            ("bare LF", Array("GET /metrics HTTP/1.0\n\n".utf8), 200),
            ("no version", Array("GET /metrics\r\n\r\n".utf8), 400),
            ("HTTP/2 preface", Array("PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n".utf8), 400),
            ("garbage line", Array("\u{1}\u{2}garbage\r\n\r\n".utf8), 400),
            ("too many spaces", Array("GET  /metrics HTTP/1.1\r\n\r\n".utf8), 400),
            ("header over 8 KiB", Array("GET /metrics HTTP/1.1\r\nX: ".utf8) + [UInt8](repeating: 0x61, count: 9000), 431),
            ("binary, no newline", (0..<9000).map { UInt8(truncatingIfNeeded: $0 &* 131 &+ 7) }.map { $0 == 10 ? 0 : $0 }, 431),
        ]
        for (name, bytes, status) in cases {
            XCTAssertEqual(try httpExchange(port: port, bytes).status, status, name)
        }
        // One byte per write still arrives whole.
        XCTAssertEqual(try httpExchange(port: port, Array("GET /metrics HTTP/1.1\r\n\r\n".utf8), bytewise: true).status, 200)
        // Connections that send nothing, or half a request, and go away.
        for partial in [[], Array("GET /met".utf8)] as [[UInt8]] { try connectSendAndClose(port: port, partial) }
        XCTAssertEqual(try httpExchange(port: port, Array("GET /metrics HTTP/1.1\r\n\r\n".utf8)).status, 200)
        XCTAssertEqual(try AxonClient(host: "127.0.0.1", port: server.port).ping().code, .success)
    }

    // MARK: - Helpers

    private func metricsConfiguration(port: Int = 0, rateLimit: RateLimit? = nil) throws -> ServerConfiguration {
        var config = ServerConfiguration()
        config.port = 0
        config.metricsPort = port
        config.drainTimeout = 2
        config.hotkey = axonKey.ss58
        let store = MetagraphStore(try Metagraph(netuid: 7, block: 100, neurons: [
            Neuron(uid: 0, hotkey: validator.ss58, stake: 1000, validatorPermit: true),
            Neuron(uid: 3, hotkey: denied.ss58, stake: 2000, validatorPermit: true),
        ]))
        config.metagraph = store
        config.admission = try Admission(receiver: axonKey.publicKey,
                                         policy: AdmissionPolicy(deny: [denied.ss58], rateLimit: rateLimit), metagraph: store)
        return config
    }

    private func startMetricsServer(rateLimit: RateLimit? = nil, computeDelay: Double = 0) throws -> AxonServer {
        var logger = Logger(label: "metrics-test")
        logger.logLevel = .warning
        let server = try AxonServer(backend: FakeBackend(computeDelay: computeDelay),
                                    configuration: metricsConfiguration(rateLimit: rateLimit), logger: logger)
        try server.start()
        addTeardownBlock { server.shutdown(); server.waitUntilStopped() }
        return server
    }

    private func assertPromtoolAccepts(_ page: String, file: StaticString = #filePath, line: UInt = #line) throws {
        let result = try Promtool.checkMetrics(page)
        // Exit 3 is lint only. The one lint allowed is Bittensor's counter name, kept for its dashboards.
        let allowed = #"axon_total_forward counter metrics should have "_total" suffix"#
        let problems = result.output.split(separator: "\n").map(String.init).filter { $0 != allowed }
        XCTAssertTrue(result.status == 0 || result.status == 3, "promtool exit \(result.status): \(result.output)",
                      file: file, line: line)
        XCTAssertEqual(problems, [], "promtool: \(result.output)", file: file, line: line)
    }
}

// MARK: - A page parser for the test (checked against prometheus_client by the fixture test)

struct MetricSample: Hashable {
    let name: String
    let labels: [String: String]
    let value: Double
}

struct PageParseError: Error, CustomStringConvertible {
    let line: String
    var description: String { "cannot parse metrics line: \(line)" }
}

struct FixtureError: Error, CustomStringConvertible {
    let entry: String
    var description: String { "bad fixture entry: \(entry)" }
}

/// The text exposition format 0.0.4: `# TYPE name type` comments and `name{l="v",…} value [ts]` lines.
struct MetricPage {
    private(set) var samples: [MetricSample] = []
    private(set) var types: [String: String] = [:]

    init(text: String) throws {
        for line in text.split(separator: "\n", omittingEmptySubsequences: true).map(String.init) {
            if line.hasPrefix("#") {
                let parts = line.split(separator: " ", maxSplits: 3).map(String.init)
                if parts.count == 4, parts[1] == "TYPE" { types[parts[2]] = parts[3] }
                continue
            }
            samples.append(try Self.sample(line))
        }
    }

    func value(_ name: String, _ labels: [String: String] = [:]) -> Double? {
        samples.first { $0.name == name && $0.labels == labels }?.value
    }

    func sum(_ name: String) -> Double { samples.filter { $0.name == name }.map(\.value).reduce(0, +) }

    private static func sample(_ line: String) throws -> MetricSample {
        var chars = Array(line)[...]
        var name = ""
        while let c = chars.first, c != "{", c != " " { name.append(c); chars = chars.dropFirst() }
        var labels: [String: String] = [:]
        if chars.first == "{" {
            chars = chars.dropFirst()
            while chars.first != "}" {
                var key = ""
                while let c = chars.first, c != "=" { key.append(c); chars = chars.dropFirst() }
                guard chars.dropFirst().first == "\"" else { throw PageParseError(line: line) }
                chars = chars.dropFirst(2)
                var value = ""
                while let c = chars.first, c != "\"" {
                    chars = chars.dropFirst()
                    if c == "\\", let escaped = chars.first {
                        chars = chars.dropFirst()
                        value.append(escaped == "n" ? "\n" : escaped)
                    } else {
                        value.append(c)
                    }
                }
                guard !chars.isEmpty else { throw PageParseError(line: line) }
                chars = chars.dropFirst()
                labels[key.trimmingCharacters(in: .whitespaces)] = value
                if chars.first == "," { chars = chars.dropFirst() }
                guard !chars.isEmpty else { throw PageParseError(line: line) }
            }
            chars = chars.dropFirst()
        }
        let fields = String(chars).split(separator: " ")
        guard !name.isEmpty, let text = fields.first, let value = Double(text.replacingOccurrences(of: "Inf", with: "inf"))
        else { throw PageParseError(line: line) }
        return MetricSample(name: name, labels: labels, value: value)
    }
}

// MARK: - promtool, HTTP over a raw socket, and a log capture

enum Promtool {
    struct Missing: Error, CustomStringConvertible {
        var description: String { "promtool not found on PATH or in .tools/bin: run scripts/install-deps (scripts/test does)" }
    }

    static func path() throws -> String {
        let local = TestPaths.repositoryRoot.appendingPathComponent(".tools/bin/promtool").path
        let candidates = (ProcessInfo.processInfo.environment["PATH"] ?? "").split(separator: ":").map { "\($0)/promtool" } + [local]
        guard let found = candidates.first(where: { FileManager.default.isExecutableFile(atPath: $0) }) else { throw Missing() }
        return found
    }

    /// `promtool check metrics` with `page` on stdin: its exit status and what it printed.
    static func checkMetrics(_ page: String) throws -> (status: Int32, output: String) {
        let process = Process()
        process.executableURL = URL(fileURLWithPath: try path())
        process.arguments = ["check", "metrics"]
        let input = Pipe(), output = Pipe()
        process.standardInput = input
        process.standardOutput = output
        process.standardError = output
        try process.run()
        input.fileHandleForWriting.write(Data(page.utf8))
        try input.fileHandleForWriting.close()
        let printed = output.fileHandleForReading.readDataToEndOfFile()
        process.waitUntilExit()
        return (process.terminationStatus, String(decoding: printed, as: UTF8.self))
    }
}

struct HTTPAnswer {
    let status: Int
    let header: String
    let body: String
}

struct SocketError: Error, CustomStringConvertible {
    let what: String
    var description: String { "\(what): \(String(cString: strerror(errno)))" }
}

private func connectedSocket(port: Int) throws -> Int32 {
    let fd = try loopbackSocket(port: port)
    var timeout = timeval(tv_sec: 10, tv_usec: 0)
    setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &timeout, socklen_t(MemoryLayout<timeval>.size))
    return fd
}

/// Sends `bytes`, reads until the server closes, and splits the answer.
func httpExchange(port: Int, _ bytes: [UInt8], bytewise: Bool = false) throws -> HTTPAnswer {
    let fd = try connectedSocket(port: port)
    defer { close(fd) }
    let chunks: [ArraySlice<UInt8>] = bytewise ? bytes.indices.map { bytes[$0...$0] } : [bytes[...]]
    for chunk in chunks {
        // The server may answer (and close) before every byte is sent; stop writing then.
        let sent = chunk.withUnsafeBytes { send(fd, $0.baseAddress, $0.count, Int32(MSG_NOSIGNAL)) }
        if sent < 0 { break }
    }
    var received: [UInt8] = []
    var buffer = [UInt8](repeating: 0, count: 65536)
    while true {
        let n = buffer.withUnsafeMutableBytes { recv(fd, $0.baseAddress, $0.count, 0) }
        if n < 0 && errno == ECONNRESET && !received.isEmpty { break }
        guard n >= 0 else { throw SocketError(what: "recv") }
        if n == 0 { break }
        received += buffer[..<n]
    }
    let text = String(decoding: received, as: UTF8.self)
    guard let split = text.range(of: "\r\n\r\n") else { throw SocketError(what: "no HTTP header in \(text.prefix(200))") }
    let header = String(text[..<split.lowerBound])
    let statusText = header.split(separator: " ").dropFirst().first.map(String.init) ?? ""
    guard let status = Int(statusText) else { throw SocketError(what: "no status in \(header)") }
    return HTTPAnswer(status: status, header: header, body: String(text[split.upperBound...]))
}

func connectSendAndClose(port: Int, _ bytes: [UInt8]) throws {
    let fd = try connectedSocket(port: port)
    _ = bytes.withUnsafeBytes { send(fd, $0.baseAddress, $0.count, Int32(MSG_NOSIGNAL)) }
    close(fd)
}

/// Collects log messages (thread-safe), for asserting what the server logged.
final class LogCapture: LogHandler, @unchecked Sendable {
    struct Message { let level: Logger.Level; let text: String }
    private let lock = NSLock()
    private var stored: [Message] = []
    var messages: [Message] { lock.withLock { stored } }
    var metadata: Logger.Metadata = [:]
    var logLevel: Logger.Level = .trace

    subscript(metadataKey key: String) -> Logger.Metadata.Value? {
        get { metadata[key] }
        set { metadata[key] = newValue }
    }

    func log(event: LogEvent) {
        lock.withLock { stored.append(Message(level: event.level, text: event.message.description)) }
    }
}
