import AxonClient
import Server
import Wire
import XCTest

/// Every row of the bad-input table (docs/PROTOCOL.md) gets its code, and the connection (or the
/// server) keeps working afterwards.
final class BadInputTests: XCTestCase {
    private var harness: Harness!
    private var client: AxonClient!
    private let backend = FakeBackend(vocabSize: 100, hiddenSize: 8)

    override func setUpWithError() throws {
        harness = try Harness(backend: backend) { config in
            config.maxBatch = 4
            config.maxSeq = 16
            config.maxBatchTokens = 40
            config.maxFrame = 4096
            config.maxResponse = 100_000
        }
        client = try harness.client()
    }

    override func tearDown() {
        client = nil
        harness = nil
    }

    private func forward(_ request: ForwardRequest) throws -> Response {
        try client.forward(request)
    }

    private func assertCode(_ request: ForwardRequest, _ code: ReturnCode, mentions text: String,
                            file: StaticString = #filePath, line: UInt = #line) throws {
        let response = try forward(request)
        XCTAssertEqual(response.code, code, response.message, file: file, line: line)
        XCTAssertTrue(response.message.contains(text), "'\(response.message)' should mention '\(text)'", file: file, line: line)
        // The connection still answers.
        XCTAssertEqual(try client.ping().code, .success, file: file, line: line)
    }

    private let next = [Synapse(type: .textCausalLMNext)]

    func testOversizeFrameIsAnsweredInvalidRequestAndClosed() throws {
        var prefix: [UInt8] = []
        FrameEncoder.appendVarint(4097, to: &prefix)
        try client.sendRaw(prefix)
        let response = try client.nextResponse(timeout: 5)
        XCTAssertEqual(response.code, .invalidRequest)
        XCTAssertTrue(response.message.contains("4097"), response.message)
        XCTAssertThrowsError(try client.nextResponse(timeout: 5)) { error in
            guard case ClientError.connectionClosed = error else { return XCTFail("expected a close, got \(error)") }
        }
        XCTAssertEqual(try harness.client().ping().code, .success)
    }

    func testLengthPrefixLongerThanFiveBytesIsAnsweredInvalidRequestAndClosed() throws {
        try client.sendRaw([0x80, 0x80, 0x80, 0x80, 0x80, 0x01])
        XCTAssertEqual(try client.nextResponse(timeout: 5).code, .invalidRequest)
        XCTAssertThrowsError(try client.nextResponse(timeout: 5))
    }

    func testBytesThatAreNotARequestGetRequestDeserializationException() throws {
        try client.sendRaw(FrameEncoder.frame([0x0F, 0x01]))
        let response = try client.nextResponse(timeout: 5)
        XCTAssertEqual(response.code, .requestDeserializationException)
        XCTAssertEqual(try client.ping().code, .success)
    }

    func testBodyThatIsNotAForwardRequestGetsRequestDeserializationException() throws {
        let response = try client.call(.forward, body: [0x0A, 0x10, 0x01])
        XCTAssertEqual(response.code, .requestDeserializationException)
        XCTAssertTrue(response.message.contains("ForwardRequest"), response.message)
    }

    func testUnknownMethodIsNotImplemented() throws {
        XCTAssertEqual(try client.call(Method(rawValue: 7)).code, .notImplemented)
        XCTAssertEqual(try client.call(.unspecified).code, .notImplemented)
    }

    func testTokenSpacesThisAxonDoesNotServeAreNotImplemented() throws {
        try assertCode(ForwardRequest(tokens: tokens32([[1, 2]]), synapses: next, space: .network),
                       .notImplemented, mentions: "NETWORK")
        try assertCode(ForwardRequest(tokens: tokens32([[1, 2]]), synapses: next, space: TokenSpace(rawValue: 7)),
                       .notImplemented, mentions: "token space 7")
    }

    func testForwardWithoutSynapsesOrTokensIsEmptyRequest() throws {
        try assertCode(ForwardRequest(tokens: tokens32([[1, 2]]), synapses: []), .emptyRequest, mentions: "synapses")
        try assertCode(ForwardRequest(tokens: nil, synapses: next), .emptyRequest, mentions: "tokens")
        try assertCode(ForwardRequest(tokens: Tensor(buffer: [], shape: [1, 0], dtype: .int32), synapses: next),
                       .emptyRequest, mentions: "tokens")
    }

    func testBadTokenShapesAreRequestShapeExceptions() throws {
        var threeD = tokens32([[1, 2], [3, 4]])
        threeD.shape = [1, 2, 2]
        try assertCode(ForwardRequest(tokens: threeD, synapses: next), .requestShapeException, mentions: "2 dimensions")
        var short = tokens32([[1, 2], [3, 4]])
        short.buffer.removeLast()
        try assertCode(ForwardRequest(tokens: short, synapses: next), .requestShapeException, mentions: "15 bytes")
        var wrongType = tokens32([[1, 2]])
        wrongType.dtype = .float32
        try assertCode(ForwardRequest(tokens: wrongType, synapses: next), .requestShapeException, mentions: "FLOAT32")
        try assertCode(ForwardRequest(tokens: tokens32([[1, 2], [3, 4]]), lengths: [2], synapses: next),
                       .requestShapeException, mentions: "lengths has 1")
        try assertCode(ForwardRequest(tokens: tokens32([[1, 2], [3, 4]]), lengths: [2, 3], synapses: next),
                       .requestShapeException, mentions: "lengths[1] = 3")
    }

    func testTokenIdsOutsideTheVocabularyAreInvalidRequestNamingThePosition() throws {
        try assertCode(ForwardRequest(tokens: tokens32([[1, 2, 3], [4, 5, -1]]), synapses: next),
                       .invalidRequest, mentions: "row 1, position 2")
        try assertCode(ForwardRequest(tokens: tokens64([[1, 100]]), synapses: next),
                       .invalidRequest, mentions: "token id 100 at row 0, position 1")
        // A padded position is ignored, whatever it holds.
        XCTAssertEqual(try forward(ForwardRequest(tokens: tokens32([[-5, 1]]), lengths: [1], synapses: next)).code, .success)
    }

    func testLimitsAreRequestShapeExceptionsNamingTheLimit() throws {
        let five = Array(repeating: [Int32](repeating: 1, count: 2), count: 5)
        try assertCode(ForwardRequest(tokens: tokens32(five), synapses: next), .requestShapeException, mentions: "--max-batch 4")
        try assertCode(ForwardRequest(tokens: tokens32([[Int32](repeating: 1, count: 17)]), synapses: next),
                       .requestShapeException, mentions: "--max-seq 16")
        let many = Array(repeating: [Int32](repeating: 1, count: 11), count: 4)
        try assertCode(ForwardRequest(tokens: tokens32(many), synapses: next), .requestShapeException, mentions: "--max-batch-tokens 40")
    }

    func testResponseOverTheLimitIsResponseShapeException() throws {
        // 4 x 16 positions x 100 logits x 4 bytes = 25,600 bytes per synapse; five of them exceed 100,000.
        let rows = Array(repeating: [Int32](repeating: 1, count: 10), count: 4)
        let request = ForwardRequest(tokens: tokens32(rows), synapses: Array(repeating: Synapse(type: .textCausalLM), count: 7))
        try assertCode(request, .responseShapeException, mentions: "--max-response 100000")
    }

    func testBadSynapseDtypeOrTopKFailsThatSynapseOnly() throws {
        let response = try forward(ForwardRequest(tokens: tokens32([[1, 2]]), synapses: [
            Synapse(type: .textCausalLMNext, dtype: .int32), Synapse(type: .textCausalLMNext, topk: 101),
            Synapse(type: .textCausalLMNext, topk: 3)]))
        XCTAssertEqual(response.code, .success)
        XCTAssertEqual(response.forward?.results.map(\.code), [.requestShapeException, .requestShapeException, .success])
    }

    func testEngineFailureIsUnknownExceptionForThatRequestOnly() throws {
        backend.failingToken = 66
        XCTAssertEqual(try forward(ForwardRequest(tokens: tokens32([[66]]), synapses: next)).code, .unknownException)
        XCTAssertEqual(try forward(ForwardRequest(tokens: tokens32([[65]]), synapses: next)).code, .success)
    }
}

/// Deadlines, queue limits, connection limits and timeouts.
final class LimitTests: XCTestCase {
    private let next = [Synapse(type: .textCausalLMNext)]

    func testRequestWhoseDeadlinePassesInTheQueueTimesOutWithoutCompute() throws {
        let backend = FakeBackend(vocabSize: 50, hiddenSize: 4, computeDelay: 0.3)
        let harness = try startServer(backend: backend)
        let client = try harness.client()
        let slow = ForwardRequest(tokens: tokens32([[1]]), synapses: next)
        try client.send(Request(id: 1, method: .forward, body: slow.serializedBytes()))
        Thread.sleep(forTimeInterval: 0.05)
        // Different logits needs (all vs last) keep it out of the first batch.
        let late = ForwardRequest(tokens: tokens32([[2]]), synapses: [Synapse(type: .textCausalLM)])
        try client.send(Request(id: 2, method: .forward, timeoutMs: 50, body: late.serializedBytes()))
        XCTAssertEqual(try client.response(id: 2, timeout: 5).code, .timeout)
        XCTAssertEqual(try client.response(id: 1, timeout: 5).code, .success)
        XCTAssertEqual(backend.forwardCalls, 1)
    }

    func testFullQueueAnswersBackoffAtOnce() throws {
        let backend = FakeBackend(vocabSize: 50, hiddenSize: 4, computeDelay: 0.3)
        let harness = try startServer(backend: backend) { $0.maxQueue = 1; $0.maxBatch = 1 }
        let client = try harness.client()
        let body = ForwardRequest(tokens: tokens32([[1]]), synapses: next).serializedBytes()
        for id in 1...4 { try client.send(Request(id: UInt64(id), method: .forward, body: body)) }
        let codes = try (1...4).map { try client.response(id: UInt64($0), timeout: 5).code }
        XCTAssertTrue(codes.contains(.backoff), "\(codes)")
        XCTAssertEqual(codes.first, .success)
    }

    func testConnectionsBeyondTheLimitAreRefusedAtAccept() throws {
        let harness = try Harness { $0.maxConnections = 2 }
        try assertTwoConnectionsFitAndAThirdIsRefused(harness)
        XCTAssertEqual(harness.server.counterSnapshot().refusedConnections, 1)
    }

    func testHalfAFrameThenStallingIsClosedAfterTheIdleTimeout() throws {
        let harness = try Harness { $0.idleTimeout = 0.3 }
        let client = try harness.client()
        let frame = FrameEncoder.frame(Request(id: 1, method: .ping).serializedBytes())
        try client.sendRaw(Array(frame.prefix(2)))
        let start = Date()
        XCTAssertThrowsError(try client.nextResponse(timeout: 10)) { error in
            guard case ClientError.connectionClosed = error else { return XCTFail("expected a close, got \(error)") }
        }
        XCTAssertLessThan(Date().timeIntervalSince(start), 9)
        XCTAssertEqual(try harness.client().ping().code, .success)
    }

    func testIdleConnectionIsClosed() throws {
        let harness = try Harness { $0.idleTimeout = 0.2 }
        let client = try harness.client()
        XCTAssertEqual(try client.ping().code, .success)
        XCTAssertThrowsError(try client.nextResponse(timeout: 10)) { error in
            guard case ClientError.connectionClosed = error else { return XCTFail("expected a close, got \(error)") }
        }
    }
}
