import AxonClient
import Foundation
import Server
import Wire
import XCTest

/// Pipelining, many connections, dynamic batching, disconnects and shutdown.
final class ConcurrencyTests: XCTestCase {
    private let next = [Synapse(type: .textCausalLMNext)]

    private func expectedNext(_ backend: FakeBackend, _ row: [Int32]) throws -> [UInt32] {
        try directOutputs(backend, rows: [row]).logits[0].last.map { $0.map(\.bitPattern) } ?? []
    }

    func testPipelinedRequestsOnOneConnectionAreAllAnsweredById() throws {
        let backend = FakeBackend(vocabSize: 64, hiddenSize: 4)
        let harness = try startServer(backend: backend)
        let client = try harness.client()
        let rows: [[Int32]] = (0..<100).map { [Int32($0 % 64), Int32(($0 * 7) % 64)] }
        for (index, row) in rows.enumerated() {
            try client.send(Request(id: UInt64(index + 1), method: .forward,
                                    body: ForwardRequest(tokens: tokens32([row]), synapses: next).serializedBytes()))
        }
        let reference = FakeBackend(vocabSize: 64, hiddenSize: 4)
        for (index, row) in rows.enumerated() {
            let response = try client.response(id: UInt64(index + 1), timeout: 10)
            XCTAssertEqual(response.code, .success)
            let tensor = try XCTUnwrap(response.forward?.results.first?.tensors.first)
            XCTAssertEqual(floats(tensor).map(\.bitPattern), try expectedNext(reference, row))
        }
    }

    func testThirtyTwoConcurrentConnectionsGetTheirOwnAnswers() throws {
        let backend = FakeBackend(vocabSize: 64, hiddenSize: 4)
        let harness = try startServer(backend: backend)
        let clients = try (0..<32).map { _ in try harness.client() }
        let failures = NSLock()
        var errors: [String] = []
        DispatchQueue.concurrentPerform(iterations: 32) { index in
            let reference = FakeBackend(vocabSize: 64, hiddenSize: 4)
            do {
                for request in 0..<10 {
                    let row: [Int32] = [Int32(index), Int32(request), Int32((index * request) % 64)]
                    let response = try clients[index].forward(ForwardRequest(tokens: tokens32([row]), synapses: next))
                    let values = floats(try XCTUnwrap(response.forward?.results.first?.tensors.first)).map(\.bitPattern)
                    let expected = try expectedNext(reference, row)
                    if response.code != .success || values != expected {
                        failures.withLock { errors.append("client \(index) request \(request): \(response.code)") }
                    }
                }
            } catch {
                failures.withLock { errors.append("client \(index): \(error)") }
            }
        }
        XCTAssertEqual(errors, [])
        XCTAssertEqual(harness.server.counterSnapshot().requestsByCode[.success], 320)
    }

    func testQueuedRequestsFromManyConnectionsAreBatchedTogether() throws {
        let backend = FakeBackend(vocabSize: 64, hiddenSize: 4, computeDelay: 0.5)
        let harness = try startServer(backend: backend)
        let clients = try (0..<8).map { _ in try harness.client() }
        let body = ForwardRequest(tokens: tokens32([[1, 2, 3]]), synapses: next).serializedBytes()
        // The first occupies the worker; the other seven queue behind it and must run as one batch.
        try clients[0].send(Request(id: 1, method: .forward, body: body))
        Thread.sleep(forTimeInterval: 0.1)
        for (index, client) in clients.enumerated().dropFirst() {
            try client.send(Request(id: UInt64(index + 1), method: .forward, body: body))
        }
        let responses = try clients.enumerated().map { try $1.response(id: UInt64($0 + 1), timeout: 10) }
        XCTAssertEqual(Set(responses.map(\.code)), [.success])
        XCTAssertEqual(responses.compactMap(\.timing?.batchRows), [1, 7, 7, 7, 7, 7, 7, 7])
        XCTAssertEqual(backend.forwardCalls, 2)
    }

    func testDisconnectMidResponseCostsNothingFurther() throws {
        let backend = FakeBackend(vocabSize: 64, hiddenSize: 4, computeDelay: 0.1)
        let harness = try startServer(backend: backend) { $0.maxBatch = 1 }
        let leaving = try harness.client()
        let body = ForwardRequest(tokens: tokens32([[1, 2]]), synapses: [Synapse(type: .textCausalLM)]).serializedBytes()
        for id in 1...10 { try leaving.send(Request(id: UInt64(id), method: .forward, body: body)) }
        Thread.sleep(forTimeInterval: 0.05)
        leaving.close()
        Thread.sleep(forTimeInterval: 0.4)
        // At most the batch running at the disconnect (and one started just before the close was seen) ran.
        XCTAssertLessThanOrEqual(backend.forwardCalls, 3)
        XCTAssertEqual(try harness.client().ping().code, .success)
        XCTAssertEqual(harness.server.counterSnapshot().openConnections, 1)
    }

    func testSlowReaderGetsBackpressureAndStillReceivesEverything() throws {
        let harness = try startServer(backend: FakeBackend(vocabSize: 4000, hiddenSize: 4)) { $0.maxQueuedOutputBytes = 64 * 1024 }
        let client = try harness.client()
        // 200 responses of 16 kB each, sent before reading any.
        let body = ForwardRequest(tokens: tokens32([[1]]), synapses: next).serializedBytes()
        for id in 1...200 { try client.send(Request(id: UInt64(id), method: .forward, body: body)) }
        for id in 1...200 { XCTAssertEqual(try client.response(id: UInt64(id), timeout: 10).code, .success) }
    }

    func testShutdownFinishesInFlightWorkThenStops() throws {
        let backend = FakeBackend(vocabSize: 64, hiddenSize: 4, computeDelay: 0.3)
        let harness = try startServer(backend: backend)
        let client = try harness.client()
        try client.send(Request(id: 1, method: .forward,
                                body: ForwardRequest(tokens: tokens32([[1]]), synapses: next).serializedBytes()))
        Thread.sleep(forTimeInterval: 0.05)
        harness.server.shutdown()
        XCTAssertEqual(try client.response(id: 1, timeout: 5).code, .success)
        harness.server.waitUntilStopped()
        XCTAssertThrowsError(try AxonClient(host: "127.0.0.1", port: harness.server.port).ping())
    }
}
