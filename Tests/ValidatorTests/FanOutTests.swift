import Foundation
import Identity
import Server
import TestSupport
import Validator
import Wire
import XCTest

/// One thread, one poll loop, 256+ connections across several axons: every endpoint is accounted for.
final class FanOutTests: XCTestCase {
    let body = ForwardRequest(tokens: Tensor(int32Rows: [[11, 12, 13, 14]]),
                              synapses: [Synapse(type: .textCausalLMNext, topk: 3)]).serializedBytes()

    func testFanOutToFourAxonsWith64ConnectionsEachAccountsForEveryRequest() throws {
        let axons = try (0..<4).map { try LocalAxon(seed: UInt8(10 + $0)) }
        let silent = try SilentListener()
        let refusedPort = try closedPort()
        var endpoints: [Endpoint] = []
        for (index, axon) in axons.enumerated() {
            for slot in 0..<64 {
                endpoints.append(Endpoint(uid: index * 64 + slot, hotkey: axon.key.ss58, host: "127.0.0.1", port: axon.server.port))
            }
        }
        let stranger = try Hotkey(seed: [UInt8](repeating: 99, count: 32))
        endpoints.append(Endpoint(uid: 1000, hotkey: stranger.ss58, host: "127.0.0.1", port: refusedPort))
        endpoints.append(Endpoint(uid: 1001, hotkey: stranger.ss58, host: "127.0.0.1", port: silent.port))

        let validator = try Hotkey(seed: [UInt8](repeating: 7, count: 32))
        // Optimised builds may release objects after their last use: keep the axons serving.
        let results = withExtendedLifetime((axons, silent)) {
            FanOut(hotkey: validator, deadline: 3).run(endpoints: endpoints, body: body)
        }

        XCTAssertEqual(results.map(\.endpoint.uid), endpoints.map(\.uid), "one result per endpoint, in order")
        for result in results.prefix(256) {
            guard case .answered(let response) = result.outcome else {
                XCTFail("uid \(result.endpoint.uid): \(result.outcome)")
                continue
            }
            XCTAssertEqual(response.code, .success, "uid \(result.endpoint.uid): \(response.message)")
            XCTAssertEqual(response.forward?.results.first?.tensors.count, 3)
        }
        guard case .unreachable = results[256].outcome else { return XCTFail("closed port: \(results[256].outcome)") }
        guard case .timedOut(let stage) = results[257].outcome else { return XCTFail("silent axon: \(results[257].outcome)") }
        XCTAssertEqual(stage, "waiting")
        let summary = FanOutSummary(results)
        XCTAssertEqual(summary.total, 258)
        XCTAssertEqual(summary.codes, [.success: 256])
        XCTAssertEqual(summary.unreachable, 1)
        XCTAssertEqual(summary.timeouts, 1)
        XCTAssertNotNil(summary.p99)
    }

    func testEachEndpointIsSignedForItsOwnHotkey() throws {
        let axon = try LocalAxon(seed: 20)
        let other = try Hotkey(seed: [UInt8](repeating: 21, count: 32))
        let endpoints = [Endpoint(uid: 0, hotkey: axon.key.ss58, host: "127.0.0.1", port: axon.server.port),
                         Endpoint(uid: 1, hotkey: other.ss58, host: "127.0.0.1", port: axon.server.port)]
        let validator = try Hotkey(seed: [UInt8](repeating: 7, count: 32))
        let results = withExtendedLifetime(axon) { FanOut(hotkey: validator, deadline: 5).run(endpoints: endpoints, body: body) }
        guard case .answered(let right) = results[0].outcome, case .answered(let wrong) = results[1].outcome else {
            return XCTFail("both must answer: \(results.map(\.outcome))")
        }
        XCTAssertEqual(right.code, .success, right.message)
        // Signed for another receiver than the axon that got it.
        XCTAssertEqual(wrong.code, .unauthenticated, wrong.message)
    }

    func testEndpointsFileErrorsNameTheEntry() throws {
        let path = FileManager.default.temporaryDirectory.appendingPathComponent("endpoints-\(UUID().uuidString).json").path
        defer { try? FileManager.default.removeItem(atPath: path) }
        try #"[{"uid": 1, "hotkey": "x", "host": "127.0.0.1", "port": 8091}, {"uid": 1, "hotkey": "y", "host": "h", "port": 1}]"#
            .write(toFile: path, atomically: true, encoding: .utf8)
        XCTAssertThrowsError(try Endpoints.load(path: path)) { XCTAssertEqual($0 as? EndpointsError, .duplicateUID(index: 1, uid: 1)) }
        try #"[{"uid": 1, "hotkey": "x", "host": "127.0.0.1", "port": 70000}]"#.write(toFile: path, atomically: true, encoding: .utf8)
        XCTAssertThrowsError(try Endpoints.load(path: path)) { XCTAssertEqual($0 as? EndpointsError, .badPort(index: 0, uid: 1, port: 70000)) }
    }

    /// `--endpoints <(…)` hands the loader a pipe, which has no size to map: it reads it whole.
    func testEndpointsLoadFromAPipe() throws {
        let path = FileManager.default.temporaryDirectory.appendingPathComponent("endpoints-\(UUID().uuidString).fifo").path
        XCTAssertEqual(mkfifo(path, 0o600), 0)
        defer { try? FileManager.default.removeItem(atPath: path) }
        let text = #"[{"uid": 7, "hotkey": "x", "host": "127.0.0.1", "port": 8091}]"#
        let writer = Thread {
            if let handle = FileHandle(forWritingAtPath: path) { handle.write(Data(text.utf8)); try? handle.close() }
        }
        writer.start()
        XCTAssertEqual(try Endpoints.load(path: path), [Endpoint(uid: 7, hotkey: "x", host: "127.0.0.1", port: 8091)])
    }
}
