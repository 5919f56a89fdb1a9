import AxonClient
import Foundation
import Identity
import Server
import TestSupport
import Wire
import XCTest

/// Issue 16's "Must show", on loopback: `axon serve --fake` replicas of one hotkey sharing admission
/// state in a real redis-server, behind a real haproxy running deploy/haproxy.cfg (scripts/test
/// installs both through scripts/install-deps).
final class ReplicaTests: XCTestCase {
    /// A loopback port free right now (bound to 0, read back, released).
    static func freePort() throws -> Int {
        let fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
        defer { close(fd) }
        var address = sockaddr_in()
        address.sin_family = sa_family_t(AF_INET)
        address.sin_addr.s_addr = inet_addr("127.0.0.1")
        var length = socklen_t(MemoryLayout<sockaddr_in>.size)
        let bound = withUnsafeMutablePointer(to: &address) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { bind(fd, $0, length) == 0 && getsockname(fd, $0, &length) == 0 }
        }
        guard bound else { throw SocketError(what: "bind a free port") }
        return Int(UInt16(bigEndian: address.sin_port))
    }

    static func waitUntil(_ seconds: Double, _ condition: () -> Bool) -> Bool {
        let end = Date().addingTimeInterval(seconds)
        while Date() < end {
            if condition() { return true }
            Thread.sleep(forTimeInterval: 0.02)
        }
        return condition()
    }

    static func accepting(_ port: Int) -> Bool {
        guard let fd = try? loopbackSocket(port: port) else { return false }
        close(fd)
        return true
    }

    /// A child process stopped at teardown.
    final class Child {
        let process = Process()
        let name: String
        init(_ name: String, _ executable: String, _ arguments: [String], home: String) throws {
            self.name = name
            process.executableURL = URL(fileURLWithPath: executable)
            process.arguments = arguments
            var environment = ProcessInfo.processInfo.environment
            environment["HOME"] = home
            process.environment = environment
            process.standardOutput = FileHandle.nullDevice
            process.standardError = ProcessInfo.processInfo.environment["AXON_TEST_LOG"] == nil ? FileHandle.nullDevice : FileHandle.standardError
            try process.run()
        }
        func stop(_ signal: Int32 = SIGTERM) {
            guard process.isRunning else { return }
            kill(process.processIdentifier, signal)
            process.waitUntilExit()
        }
    }

    struct MissingTool: Error, CustomStringConvertible {
        let tool: String
        var description: String { "\(tool) is not installed: scripts/test installs it (scripts/install-deps)" }
    }

    struct NotStarted: Error, CustomStringConvertible {
        let what: String
        var description: String { "\(what) did not start (AXON_TEST_LOG=1 shows its log)" }
    }

    static func tool(_ name: String) throws -> String {
        for dir in ["/usr/bin", "/usr/sbin", "/usr/local/bin", "/usr/local/sbin"] where FileManager.default.isExecutableFile(atPath: "\(dir)/\(name)") {
            return "\(dir)/\(name)"
        }
        throw MissingTool(tool: name)
    }

    var home = ""
    var children: [Child] = []

    override func setUpWithError() throws {
        home = FileManager.default.temporaryDirectory.appendingPathComponent("axon-replicas-\(UUID().uuidString)").path
        try FileManager.default.createDirectory(atPath: home, withIntermediateDirectories: true)
    }

    override func tearDown() {
        for child in children.reversed() { child.stop(SIGKILL) }
        children = []
        try? FileManager.default.removeItem(atPath: home)
    }

    func spawn(_ name: String, _ executable: String, _ arguments: [String]) throws -> Child {
        let child = try Child(name, executable, arguments, home: home)
        children.append(child)
        return child
    }

    /// redis-server on `port` with deploy/redis.conf's settings (no persistence).
    func startRedis(port: Int) throws -> Child {
        let conf = TestPaths.repositoryRoot.appendingPathComponent("deploy/redis.conf").path
        let redis = try spawn("redis", try Self.tool("redis-server"), [conf, "--port", "\(port)", "--dir", home])
        guard Self.waitUntil(5, { Self.accepting(port) }) else { throw NotStarted(what: "redis-server answering on \(port)") }
        return redis
    }

    /// The `axon` built beside the test bundle (other tests that spawn `axon serve` use it too).
    static var axonExecutable: String {
        Bundle.module.bundleURL.deletingLastPathComponent().appendingPathComponent("axon").path
    }

    /// One `axon serve --fake` replica; the first one creates the shared default hotkey in `home`.
    func startReplica(port: Int, redisPort: Int, metricsPort: Int = 0, extra: [String] = []) throws -> Child {
        let axonExecutable = Self.axonExecutable
        guard FileManager.default.isExecutableFile(atPath: axonExecutable) else { throw NotStarted(what: "\(axonExecutable) (swift build --build-tests builds it)") }
        let child = try spawn("replica \(port)", axonExecutable,
                              ["serve", "--fake", "--model", try TestPaths.defaultModel(), "--port", "\(port)", "--metrics-port", "\(metricsPort)",
                               "--state", "redis://127.0.0.1:\(redisPort)"] + extra)
        guard Self.waitUntil(10, { Self.accepting(port) }) else { throw NotStarted(what: "axon replica on \(port)") }
        // Connected to Redis: INFO says so.
        _ = Self.waitUntil(5, { (try? AxonClient(host: "127.0.0.1", port: port).info().info?.admissionState.hasSuffix("connected")) == true })
        return child
    }

    /// deploy/haproxy.cfg with its frontend on `port` and its server lines for `replicas`.
    func startHAProxy(port: Int, replicas: [Int]) throws -> Child {
        let template = try String(contentsOf: TestPaths.repositoryRoot.appendingPathComponent("deploy/haproxy.cfg"), encoding: .utf8)
        var lines: [String] = [], skipping = false
        for line in template.split(separator: "\n", omittingEmptySubsequences: false) {
            if line.contains("# REPLICAS") {
                skipping = true
                lines.append(String(line))
                lines += replicas.enumerated().map { "    server replica\($0.offset + 1) 127.0.0.1:\($0.element)" }
            } else if line.contains("# END REPLICAS") {
                skipping = false
                lines.append(String(line))
            } else if !skipping {
                lines.append(line.contains("bind 0.0.0.0:8091") ? "    bind 127.0.0.1:\(port)" : String(line))
            }
        }
        let path = "\(home)/haproxy.cfg"
        try lines.joined(separator: "\n").write(toFile: path, atomically: true, encoding: .utf8)
        let haproxy = try spawn("haproxy", try Self.tool("haproxy"), ["-db", "-f", path])
        guard Self.waitUntil(5, { Self.accepting(port) }) else { throw NotStarted(what: "haproxy on \(port)") }
        return haproxy
    }

    /// A signed FORWARD frame for the replicas' hotkey, from `session`.
    func signedFrame(id: UInt64, session: SigningSession, receiver: String) -> [UInt8] {
        let body = ForwardRequest(tokens: Tensor(int32Rows: [[5, 6, 7]]), synapses: [Synapse(type: .textCausalLMNext, topk: 2)]).serializedBytes()
        return FrameEncoder.frame(Request(id: id, method: .forward, timeoutMs: 5000, body: body, auth: session.auth(receiver: receiver, body: body)).serializedBytes())
    }

    func answer(_ frame: [UInt8], at port: Int) throws -> Response {
        let client = try AxonClient(host: "127.0.0.1", port: port)
        defer { client.close() }
        try client.sendRaw(frame)
        return try client.nextResponse(timeout: 5)
    }

    static let sender: Hotkey = {
        guard let key = try? Hotkey(seed: [UInt8](repeating: 9, count: 32)) else { preconditionFailure("libsodium seed keypair failed") }
        return key
    }()

    // MARK: - The health check

    /// deploy/haproxy.cfg's check bytes are the encoder's PING frame, and a real replica's answer.
    func testHealthCheckBytesAreTheWirePingAndItsAnswer() throws {
        let config = try String(contentsOf: TestPaths.repositoryRoot.appendingPathComponent("deploy/haproxy.cfg"), encoding: .utf8)
        func hex(after directive: String) -> String? {
            config.split(separator: "\n").first { $0.trimmingCharacters(in: .whitespaces).hasPrefix(directive) }
                .map { String($0.trimmingCharacters(in: .whitespaces).dropFirst(directive.count)).trimmingCharacters(in: .whitespaces) }
        }
        let hexOf = { (bytes: [UInt8]) in bytes.map { String(format: "%02x", $0) }.joined() }
        let ping = FrameEncoder.frame(Request(id: 1, method: .ping).serializedBytes())
        XCTAssertEqual(hex(after: "tcp-check send-binary"), hexOf(ping))

        let redisPort = try Self.freePort(), port = try Self.freePort()
        _ = try startRedis(port: redisPort)
        _ = try startReplica(port: port, redisPort: redisPort)
        let fd = try loopbackSocket(port: port)
        defer { close(fd) }
        XCTAssertEqual(ping.withUnsafeBytes { send(fd, $0.baseAddress, $0.count, 0) }, ping.count)
        var reply = [UInt8](repeating: 0, count: 64)
        var received = 0
        let expected = Response(id: 1, code: .success).serializedFrame()
        while received < expected.count {
            let n = reply.withUnsafeMutableBytes { recv(fd, $0.baseAddress! + received, $0.count - received, 0) }
            guard n > 0 else { break }
            received += n
        }
        XCTAssertEqual(hexOf(Array(reply[..<received])), hexOf(expected))
        XCTAssertEqual(hex(after: "tcp-check expect binary"), hexOf(expected))
    }

    // MARK: - Replays

    func testReplayAcrossReplicasIsRefusedDirectlyAndThroughHAProxy() throws {
        let redisPort = try Self.freePort(), a = try Self.freePort(), b = try Self.freePort(), front = try Self.freePort()
        _ = try startRedis(port: redisPort)
        _ = try startReplica(port: a, redisPort: redisPort)
        _ = try startReplica(port: b, redisPort: redisPort)
        _ = try startHAProxy(port: front, replicas: [a, b])
        let receiver = try AxonClient(host: "127.0.0.1", port: a).receiver()
        let session = SigningSession(hotkey: Self.sender)

        let first = signedFrame(id: 1, session: session, receiver: receiver)
        XCTAssertEqual(try answer(first, at: a).code, .success)
        for port in [b, front] {
            let replay = try answer(first, at: port)
            XCTAssertEqual(replay.code, .unauthenticated, replay.message)
            XCTAssertTrue(replay.message.contains("replay"), replay.message)
        }
        // Accepted through HAProxy (by either replica), then replayed to each replica directly.
        let second = signedFrame(id: 2, session: session, receiver: receiver)
        XCTAssertEqual(try answer(second, at: front).code, .success)
        for port in [a, b] { XCTAssertEqual(try answer(second, at: port).code, .unauthenticated) }

        // Clients that leave while their check waits for Redis cost the replica nothing.
        for i in 0..<50 {
            let client = try AxonClient(host: "127.0.0.1", port: a)
            try client.sendRaw(signedFrame(id: UInt64(100 + i), session: session, receiver: receiver))
            client.close()
        }
        XCTAssertEqual(try AxonClient(host: "127.0.0.1", port: a).ping().code, .success)
        XCTAssertEqual(try answer(signedFrame(id: 200, session: session, receiver: receiver), at: a).code, .success)
    }

    func testStateURLsParseOrSayWhatIsWrong() throws {
        XCTAssertEqual(try RedisEndpoint(url: "redis://127.0.0.1:6379"), RedisEndpoint(host: "127.0.0.1", port: 6379))
        XCTAssertEqual(try RedisEndpoint(url: "redis://10.0.0.5:6380/3"), RedisEndpoint(host: "10.0.0.5", port: 6380, database: 3))
        XCTAssertEqual(try RedisEndpoint(url: "redis://[::1]:6379/1"), RedisEndpoint(host: "::1", port: 6379, database: 1))
        XCTAssertEqual(RedisEndpoint(host: "::1", port: 6379, database: 1).description, "redis://[::1]:6379/1")
        for (url, why) in [("http://h:1", "redis://"), ("redis://h", "HOST:PORT"), ("redis://h:0", "port"), ("redis://h:1/x", "database"),
                           ("redis://:pw@h:1", "credentials"), ("redis://:1", "host is empty")] {
            XCTAssertThrowsError(try RedisEndpoint(url: url), url) { error in
                XCTAssertTrue("\(error)".contains(why), "\(url): \(error)")
            }
        }
    }

    /// 1,000 signed requests, each sent byte for byte to A and to B at once: exactly one of each pair
    /// is accepted, the other refused as a replay.
    func testRacedPairsAreAcceptedExactlyOnce() throws {
        let redisPort = try Self.freePort(), a = try Self.freePort(), b = try Self.freePort()
        _ = try startRedis(port: redisPort)
        // A queue for all of them, so no admitted request is answered Backoff for a full queue.
        _ = try startReplica(port: a, redisPort: redisPort, extra: ["--max-queue", "2048"])
        _ = try startReplica(port: b, redisPort: redisPort, extra: ["--max-queue", "2048"])
        let receiver = try AxonClient(host: "127.0.0.1", port: a).receiver()
        let session = SigningSession(hotkey: Self.sender)
        let pairs = 1_000
        let frames = (1...pairs).map { signedFrame(id: UInt64($0), session: session, receiver: receiver) }
        let clients = [try AxonClient(host: "127.0.0.1", port: a), try AxonClient(host: "127.0.0.1", port: b)]
        var codes = [[UInt64: ReturnCode]](repeating: [:], count: 2)
        var failures = [String](repeating: "", count: 2)
        DispatchQueue.concurrentPerform(iterations: 4) { task in
            let side = task % 2, client = clients[side]
            if task < 2 {
                for frame in frames { do { try client.sendRaw(frame) } catch { failures[side] = "send: \(error)"; return } }
            } else {
                var seen: [UInt64: ReturnCode] = [:]
                while seen.count < pairs {
                    guard let response = try? client.nextResponse(timeout: 20) else { failures[side] = "answers stopped at \(seen.count)"; break }
                    seen[response.id] = response.code
                }
                codes[side] = seen
            }
        }
        XCTAssertEqual(failures, ["", ""])
        var exactlyOne = 0, split = [0, 0]
        for id in 1...UInt64(pairs) {
            let pair = [codes[0][id], codes[1][id]]
            if pair.filter({ $0 == .success }).count == 1 && pair.filter({ $0 == .unauthenticated }).count == 1 { exactlyOne += 1 }
            if pair[0] == .success { split[0] += 1 } else if pair[1] == .success { split[1] += 1 }
        }
        XCTAssertEqual(exactlyOne, pairs, "accepted at A \(split[0]), at B \(split[1])")
    }

    // MARK: - Rate limits

    /// A sender over `--rate-limit 5 --rate-burst 10` is admitted at most burst + rate × elapsed + 1
    /// times, and at least the burst, whether all its requests go to one replica or round-robin to three.
    func testRateLimitIsSharedAcrossReplicas() throws {
        let redisPort = try Self.freePort()
        _ = try startRedis(port: redisPort)
        let ports = try (0..<3).map { _ in try Self.freePort() }
        for port in ports { _ = try startReplica(port: port, redisPort: redisPort, extra: ["--rate-limit", "5", "--rate-burst", "10"]) }
        let receiver = try AxonClient(host: "127.0.0.1", port: ports[0]).receiver()
        let (rate, burst, requests) = (5.0, 10.0, 60)
        for spread in [[ports[0]], ports] {
            // A new sender per run, so each starts from a full bucket.
            let sender = try Hotkey(seed: [UInt8](repeating: UInt8(20 + spread.count), count: 32))
            let session = SigningSession(hotkey: sender)
            let clients = try spread.map { try AxonClient(host: "127.0.0.1", port: $0) }
            let started = Date()
            var accepted = 0, backoffs = 0
            for i in 0..<requests {
                let client = clients[i % clients.count]
                try client.sendRaw(signedFrame(id: UInt64(i + 1), session: session, receiver: receiver))
                let code = try client.nextResponse(timeout: 5).code
                if code == .success { accepted += 1 } else if code == .backoff { backoffs += 1 }
            }
            let elapsed = Date().timeIntervalSince(started)
            XCTAssertEqual(accepted + backoffs, requests)
            XCTAssertGreaterThanOrEqual(Double(accepted), burst, "\(spread.count) replicas")
            XCTAssertLessThanOrEqual(Double(accepted), burst + rate * elapsed + 1, "\(spread.count) replicas in \(elapsed) s")
        }
    }

    // MARK: - Faults

    /// Redis stopped: FORWARD answers Unavailable at once (PING and INFO still answer); Redis started
    /// again on its port: service resumes without restarting the replica. With --state-fallback local,
    /// the replica keeps serving from its own tables meanwhile.
    func testRedisStoppedFailsClosedAndServiceResumes() throws {
        let redisPort = try Self.freePort(), closed = try Self.freePort(), fallback = try Self.freePort()
        let closedMetrics = try Self.freePort(), fallbackMetrics = try Self.freePort()
        let redis = try startRedis(port: redisPort)
        _ = try startReplica(port: closed, redisPort: redisPort, metricsPort: closedMetrics)
        _ = try startReplica(port: fallback, redisPort: redisPort, metricsPort: fallbackMetrics, extra: ["--state-fallback", "local"])
        let receiver = try AxonClient(host: "127.0.0.1", port: closed).receiver()
        let session = SigningSession(hotkey: Self.sender)
        XCTAssertEqual(try answer(signedFrame(id: 1, session: session, receiver: receiver), at: closed).code, .success)

        redis.stop()
        let started = Date()
        let refused = try answer(signedFrame(id: 2, session: session, receiver: receiver), at: closed)
        XCTAssertEqual(refused.code, .unavailable, refused.message)
        XCTAssertTrue(refused.message.contains("unreachable"), refused.message)
        // "At once": well inside the check timeout (500 ms), since the connection's loss is seen.
        XCTAssertLessThan(Date().timeIntervalSince(started), 0.5)
        let client = try AxonClient(host: "127.0.0.1", port: closed)
        XCTAssertEqual(try client.ping().code, .success)
        let info = try XCTUnwrap(client.info().info)
        XCTAssertTrue(info.admissionState.hasSuffix("down: FORWARD fails closed"), info.admissionState)
        XCTAssertEqual(try answer(signedFrame(id: 3, session: session, receiver: receiver), at: fallback).code, .success)
        // Each way of meeting a down Redis is counted: one refusal on the closed replica, one local decision on the other.
        XCTAssertEqual(Self.metric("axon_state_unavailable_total", port: closedMetrics), 1)
        XCTAssertEqual(Self.metric("axon_state_fallback_total", port: fallbackMetrics), 1)
        XCTAssertEqual(Self.metric("axon_state_redis_up", port: fallbackMetrics), 0)
        let fallbackInfo = try XCTUnwrap(AxonClient(host: "127.0.0.1", port: fallback).info().info)
        XCTAssertTrue(fallbackInfo.admissionState.hasSuffix("down: local fallback"), fallbackInfo.admissionState)

        _ = try startRedis(port: redisPort)
        var resumed: Response?
        _ = Self.waitUntil(5) {
            resumed = try? answer(signedFrame(id: 4, session: session, receiver: receiver), at: closed)
            return resumed?.code == .success
        }
        XCTAssertEqual(resumed?.code, .success, resumed?.message ?? "no answer")
    }

    /// Under load through HAProxy, a replica killed (SIGKILL) is taken out by the PING health check:
    /// clients see connection errors only for the requests in flight on it, then every request is
    /// served by the others; restarted, it passes the check again and takes connections.
    func testKilledReplicaIsTakenOutAndRejoins() throws {
        let redisPort = try Self.freePort(), front = try Self.freePort()
        _ = try startRedis(port: redisPort)
        let ports = try (0..<2).map { _ in try Self.freePort() }, metricsPort = try Self.freePort()
        var replicas = [try startReplica(port: ports[0], redisPort: redisPort),
                        try startReplica(port: ports[1], redisPort: redisPort, metricsPort: metricsPort)]
        _ = try startHAProxy(port: front, replicas: ports)
        let receiver = try AxonClient(host: "127.0.0.1", port: ports[0]).receiver()
        XCTAssertTrue(Self.waitUntil(5) { (try? AxonClient(host: "127.0.0.1", port: front).ping().code) == .success })

        // Four clients, each one request at a time on one connection, reconnecting after an error.
        final class Tally: @unchecked Sendable { var served = 0, errors = 0, stop = false }
        let lock = NSLock(), tally = Tally()
        let workers = DispatchGroup()
        for worker in 0..<4 {
            DispatchQueue.global().async(group: workers) {
                let session = SigningSession(hotkey: Self.sender, uuid: "worker-\(worker)")
                var client: AxonClient?
                var id: UInt64 = 0
                while !lock.withLock({ tally.stop }) {
                    id += 1
                    do {
                        if client == nil { client = try AxonClient(host: "127.0.0.1", port: front) }
                        try client?.sendRaw(self.signedFrame(id: id, session: session, receiver: receiver))
                        let code = try client?.nextResponse(timeout: 5).code
                        lock.withLock { if code == .success { tally.served += 1 } }
                    } catch {
                        lock.withLock { tally.errors += 1 }
                        client?.close()
                        client = nil
                    }
                }
                client?.close()
            }
        }
        Thread.sleep(forTimeInterval: 1)
        replicas[1].stop(SIGKILL)
        let servedAtKill = lock.withLock { tally.served }
        Thread.sleep(forTimeInterval: 2)
        let (servedAfter, errorsAfterKill) = lock.withLock { (tally.served, tally.errors) }
        // At most one in-flight request per client can fail, and every client keeps being served.
        XCTAssertLessThanOrEqual(errorsAfterKill, 4)
        XCTAssertGreaterThan(servedAfter, servedAtKill)
        print("ReplicaTests: killed one of 2 replicas under 4 clients: \(errorsAfterKill) connection errors, \(servedAfter - servedAtKill) requests served in the 2 s after")

        replicas[1] = try startReplica(port: ports[1], redisPort: redisPort, metricsPort: metricsPort)
        // Rejoined: HAProxy's check passes again and new connections reach it (leastconn sends them
        // to the replica with fewest), so it answers FORWARDs of its own.
        let probe = SigningSession(hotkey: Self.sender, uuid: "probe")
        var probeID: UInt64 = 0
        let rejoined = Self.waitUntil(8) {
            for _ in 0..<4 {
                probeID += 1
                _ = try? self.answer(self.signedFrame(id: probeID, session: probe, receiver: receiver), at: front)
            }
            return (Self.metric("axon_total_forward", port: metricsPort) ?? 0) > 0
        }
        lock.withLock { tally.stop = true }
        workers.wait()
        XCTAssertTrue(rejoined, "the restarted replica served nothing through HAProxy")
    }

    /// An unlabelled series' value from a replica's /metrics page (nil when it cannot be read).
    static func metric(_ name: String, port metricsPort: Int) -> Int? {
        guard let fd = try? loopbackSocket(port: metricsPort) else { return nil }
        defer { close(fd) }
        let request = Array("GET /metrics HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n".utf8)
        _ = request.withUnsafeBytes { send(fd, $0.baseAddress, $0.count, 0) }
        var page = [UInt8](), chunk = [UInt8](repeating: 0, count: 65536)
        while true {
            let n = chunk.withUnsafeMutableBytes { recv(fd, $0.baseAddress, $0.count, 0) }
            if n <= 0 { break }
            page += chunk[..<n]
        }
        let line = String(decoding: page, as: UTF8.self).split(separator: "\n").first { $0.hasPrefix(name + " ") }
        return line.flatMap { Double($0.split(separator: " ").last ?? "") }.map { Int($0) }
    }
}
