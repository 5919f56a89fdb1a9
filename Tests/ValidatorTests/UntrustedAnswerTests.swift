import AxonClient
import Foundation
import GGUF
import TestSupport
import Tokenizer
import Validator
import Wire
import XCTest

/// An axon's answer is untrusted input: a FLOAT64 tensor, a short buffer, an absurd shape, a
/// missing tensor or an id outside the vocabulary is a typed `AnswerError`, in the library and in
/// every command that reads answers (query, its fan-out, score, loadgen), never a crash.
final class UntrustedAnswerTests: XCTestCase {
    /// "The capital of France is" in the default model's tokenizer (`axon tokenize`).
    static let text = "The capital of France is"
    static let k = 5

    /// A next-token top-k result with the given tensors.
    private static func next(_ tensors: [Tensor]) -> SynapseResult {
        SynapseResult(type: .textCausalLMNext, code: .success, tensors: tensors)
    }

    private static let goodProbabilities = Tensor(buffer: RawBytes.float32([0.5, 0.2, 0.1, 0.05, 0.05]), shape: [1, 5], dtype: .float32)
    private static let goodIDs = Tensor(buffer: RawBytes.int32([7, 3, 9, 1, 2]), shape: [1, 5], dtype: .int32)
    private static let goodFloor = Tensor(buffer: RawBytes.float32([0.001]), shape: [1], dtype: .float32)

    /// Each way a next-token answer for 1 row and k = 5 can be wrong, with the words its error must contain.
    static let badNextAnswers: [(name: String, tensors: [Tensor], says: String)] = [
        ("FLOAT64 probabilities", [Tensor(buffer: RawBytes.float64([0.5, 0.2, 0.1, 0.05, 0.05]), shape: [1, 5], dtype: .float64),
                                   goodIDs, goodFloor], "dtype FLOAT64"),
        ("a short probability buffer", [Tensor(buffer: RawBytes.float32([0.5, 0.2]), shape: [1, 5], dtype: .float32),
                                        goodIDs, goodFloor], "8 bytes"),
        ("a short id buffer", [goodProbabilities, Tensor(buffer: RawBytes.int32([7]), shape: [1, 5], dtype: .int32), goodFloor], "4 bytes"),
        ("an absurd shape", [Tensor(buffer: RawBytes.float32([0.5, 0.2, 0.1, 0.05, 0.05]), shape: [1 << 40, Int64.max], dtype: .float32),
                             goodIDs, goodFloor], "shape"),
        ("fewer ids than probabilities", [goodProbabilities, Tensor(buffer: RawBytes.int32([7, 3]), shape: [1, 2], dtype: .int32),
                                          goodFloor], "shape [1, 2]"),
        ("FLOAT32 ids", [goodProbabilities, Tensor(buffer: RawBytes.float32([7, 3, 9, 1, 2]), shape: [1, 5], dtype: .float32),
                         goodFloor], "expected INT32"),
        ("an id outside the vocabulary", [goodProbabilities, Tensor(buffer: RawBytes.int32([7, 3, 9, 1, 2_000_000]), shape: [1, 5], dtype: .int32),
                                          goodFloor], "2000000"),
        ("a missing floor", [goodProbabilities, goodIDs], "2 tensors"),
        ("no floor element", [goodProbabilities, goodIDs, Tensor(buffer: [], shape: [1], dtype: .float32)], "0 bytes"),
    ]

    func testEachMalformedNextTokenAnswerIsATypedError() throws {
        let good = try Self.next([Self.goodProbabilities, Self.goodIDs, Self.goodFloor])
            .checkedTopK(rows: 1, positions: nil, k: Self.k, vocab: 49_152)
        XCTAssertEqual(good.ids, [7, 3, 9, 1, 2])
        XCTAssertEqual(Array(good.probabilities[good.span(row: 0)]), [0.5, 0.2, 0.1, 0.05, 0.05])
        XCTAssertEqual(good.floor(row: 0), 0.001)
        for bad in Self.badNextAnswers {
            XCTAssertThrowsError(try Self.next(bad.tensors).checkedTopK(rows: 1, positions: nil, k: Self.k, vocab: 49_152), bad.name) { error in
                guard case AnswerError.malformed(let reason)? = error as? AnswerError else { return XCTFail("\(bad.name): \(error)") }
                XCTAssertTrue(reason.contains(bad.says), "\(bad.name): \(reason)")
            }
        }
    }

    func testDenseAnswersAreCheckedAgainstTheRequestedShape() throws {
        let values = RawBytes.float32((0..<12).map(Float.init))
        let hidden = SynapseResult(type: .textLastHiddenState, code: .success, tensors: [Tensor(buffer: values, shape: [1, 3, 4], dtype: .float32)])
        XCTAssertEqual(Array(try hidden.checkedDense(rows: 1, positions: 3, width: 4).vector(row: 0, position: 2)), [8, 9, 10, 11])
        XCTAssertThrowsError(try hidden.checkedDense(rows: 1, positions: 4, width: 4))   // asked for 4 positions
        let short = SynapseResult(type: .textLastHiddenState, code: .success,
                                  tensors: [Tensor(buffer: Array(values.prefix(40)), shape: [1, 3, 4], dtype: .float32)])
        XCTAssertThrowsError(try short.checkedDense(rows: 1, positions: 3, width: 4)) {
            XCTAssertEqual($0 as? AnswerError, .malformed("TEXT_LAST_HIDDEN_STATE values has 40 bytes, shape [1, 3, 4] of FLOAT32 needs 48"))
        }
    }

    func testRefusalsAndMissingResultsAreTypedErrors() {
        let refused = Response(id: 1, code: .requestShapeException, message: "seq 5307 exceeds --max-seq 2048")
        XCTAssertThrowsError(try refused.checkedResult(.textCausalLMNext)) {
            XCTAssertEqual($0 as? AnswerError, .refused(method: .forward, code: .requestShapeException, message: "seq 5307 exceeds --max-seq 2048"))
        }
        let empty = Response(id: 1, code: .success, forward: ForwardResponse(results: []))
        XCTAssertThrowsError(try empty.checkedResult(.textCausalLMNext))
        let other = Response(id: 1, code: .success, forward: ForwardResponse(results: [SynapseResult(type: .textLastHiddenState, code: .success)]))
        XCTAssertThrowsError(try other.checkedResult(.textCausalLMNext))
        let synapseFailed = Response(id: 1, code: .success,
                                     forward: ForwardResponse(results: [SynapseResult(type: .textCausalLMNext, code: .requestShapeException, message: "topk")]))
        XCTAssertThrowsError(try synapseFailed.checkedResult(.textCausalLMNext)) {
            XCTAssertEqual($0 as? AnswerError, .synapseRefused(type: .textCausalLMNext, code: .requestShapeException, message: "topk"))
        }
        var zeroVocab = InfoResponse()
        zeroVocab.hiddenSize = 576; zeroVocab.networkDim = 576; zeroVocab.maxBatch = 64; zeroVocab.maxSeq = 2048
        XCTAssertThrowsError(try Response(id: 1, code: .success, info: zeroVocab).checkedInfo()) {
            XCTAssertEqual($0 as? AnswerError, .malformed("INFO reports vocab_size 0"))
        }
    }

    // MARK: - over TCP, against a misbehaving axon

    /// The INFO a real axon serving the default model gives (so the CLI's tokenizer check passes).
    static func info() throws -> InfoResponse {
        let tokenizer = try Tokenizer(gguf: GGUFFile(path: TestPaths.defaultModel()))
        var info = InfoResponse()
        info.model = "misbehaving"; info.architecture = "llama"
        info.vocabSize = UInt32(tokenizer.vocabSize); info.hiddenSize = 576; info.networkDim = 576
        info.maxBatch = 64; info.maxSeq = 2048; info.maxBatchTokens = 4096
        info.tokenizerSHA256 = tokenizer.sha256
        return info
    }

    /// An axon answering INFO with `info` and every FORWARD with one result of `type` and `tensors`.
    static func axon(info: InfoResponse, type: SynapseType = .textCausalLMNext, tensors: [Tensor]) throws -> MisbehavingAxon {
        try MisbehavingAxon { request in
            switch request.method {
            case .info: return Response(id: request.id, code: .success, info: info)
            case .forward:
                return Response(id: request.id, code: .success,
                                forward: ForwardResponse(results: [SynapseResult(type: type, code: .success, tensors: tensors)]))
            default: return Response(id: request.id, code: .success)
            }
        }
    }

    func testTheScorerRejectsAMalformedAnswerFromTheWire() throws {
        let info = try Self.info()
        for bad in Self.badNextAnswers {
            let axon = try Self.axon(info: info, tensors: bad.tensors)
            let client = try AxonClient(endpoint: axon.endpoint)
            let scorer = Scorer(seq: 4, topk: Self.k, rowsPerRequest: 1, vocab: Int(info.vocabSize))
            XCTAssertThrowsError(try scorer.score(tokens: [1, 2, 3, 4, 5], client: client), bad.name) {
                guard case AnswerError.malformed? = $0 as? AnswerError else { return XCTFail("\(bad.name): \($0)") }
            }
            client.close()
            axon.stop()
        }
    }

    func testQueryPrintsAMessageAndExits1OnEachMalformedAnswer() throws {
        try AxonCommand.requireBuilt()
        let info = try Self.info()
        let seq = Int64(5)   // the text's token count
        let hiddenShort = Tensor(buffer: RawBytes.float32([Float](repeating: 1, count: 576)), shape: [1, seq, 576], dtype: .float32)
        let causalFewer = [Tensor(buffer: RawBytes.float32([0.5, 0.2, 0.1, 0.05, 0.05]), shape: [1, seq, 5], dtype: .float32),
                           Tensor(buffer: RawBytes.int32([7, 3, 9, 1, 2]), shape: [1, seq, 5], dtype: .int32),
                           Tensor(buffer: RawBytes.float32([0.001]), shape: [1, seq], dtype: .float32)]
        var cases: [(name: String, synapse: String, type: SynapseType, tensors: [Tensor], says: String)] =
            Self.badNextAnswers.map { ($0.name, "next", .textCausalLMNext, $0.tensors, $0.says) }
        cases.append(("hidden states for one position of five", "hidden", .textLastHiddenState, [hiddenShort], "2304 bytes"))
        cases.append(("per-position top-k for one position of five", "causal", .textCausalLM, causalFewer, "20 bytes"))
        for bad in cases {
            let axon = try Self.axon(info: info, type: bad.type, tensors: bad.tensors)
            let run = try AxonCommand.run(["query", "--endpoint", axon.endpoint, "--unsigned", "--synapse", bad.synapse, "--topk", "\(Self.k)", Self.text])
            axon.stop()
            XCTAssertEqual(run.reason, .exit, "\(bad.name): axon query crashed: \(run.stderr)")
            XCTAssertEqual(run.status, 1, "\(bad.name): \(run.stderr)")
            XCTAssertTrue(run.stderr.contains("malformed") && run.stderr.contains(bad.says), "\(bad.name): \(run.stderr)")
            XCTAssertFalse(run.stderr.contains("Usage:"), "a runtime failure prints no usage text: \(run.stderr)")
        }
    }

    func testTheFanOutReportsAMalformedAnswerPerEndpoint() throws {
        try AxonCommand.requireBuilt()
        let info = try Self.info()
        let bad = Self.badNextAnswers[0]
        let axon = try Self.axon(info: info, tensors: bad.tensors)
        let directory = FileManager.default.temporaryDirectory.appendingPathComponent("axon-fanout-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: directory, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(at: directory) }
        let list = directory.appendingPathComponent("axons.json")
        try Data("[{\"uid\": 7, \"hotkey\": \"5GrwvaEF5zXb26Fz9rcQpDWS57CtERHpNehXCPcNoHGKutQY\", \"host\": \"127.0.0.1\", \"port\": \(axon.port)}]".utf8)
            .write(to: list)
        let run = try AxonCommand.run(["query", "--endpoints", list.path, "--unsigned", "--topk", "\(Self.k)", Self.text])
        axon.stop()
        XCTAssertEqual(run.reason, .exit, run.stderr)
        XCTAssertEqual(run.status, 0, run.stderr)
        let line = run.stdout.split(separator: "\n").first { $0.hasPrefix("7 ") }.map(String.init) ?? ""
        XCTAssertTrue(line.contains("malformed") && line.contains(bad.says), run.stdout)
    }

    func testLoadgenFailsWithAMessageOnAZeroVocabularyOrAMalformedAnswer() throws {
        try AxonCommand.requireBuilt()
        var zeroVocab = try Self.info()
        zeroVocab.vocabSize = 0
        let empty = try Self.axon(info: zeroVocab, tensors: [])
        let refused = try AxonCommand.run(["loadgen", "--endpoint", empty.endpoint, "--unsigned", "--connections", "1", "--requests", "1", "--warmup", "0"])
        empty.stop()
        XCTAssertEqual(refused.reason, .exit, "loadgen crashed on vocab_size 0: \(refused.stderr)")
        XCTAssertEqual(refused.status, 1, refused.stderr)
        XCTAssertTrue(refused.stderr.contains("INFO reports vocab_size 0"), refused.stderr)

        let axon = try Self.axon(info: try Self.info(), tensors: Self.badNextAnswers[0].tensors)
        let run = try AxonCommand.run(["loadgen", "--endpoint", axon.endpoint, "--unsigned", "--connections", "1", "--requests", "2", "--warmup", "0",
                               "--topk", "\(Self.k)", "--shape", "1x4"])
        axon.stop()
        XCTAssertEqual(run.reason, .exit, run.stderr)
        XCTAssertEqual(run.status, 1, "a malformed answer is a failure, not a success: \(run.stdout)")
        XCTAssertTrue(run.stdout.contains("dtype FLOAT64"), run.stdout)
    }
}

extension UntrustedAnswerTests {
    func testAnAxonFloodingAnswersNobodyAskedForIsDisconnected() throws {
        // Every PING is answered once with its id and then many times with ids nobody sent.
        let flood = AxonClient.maxUncollectedResponses + 10
        let axon = try MisbehavingAxon { request in
            Response(id: request.id, code: .success)
        } extra: { request in
            (0..<flood).map { Response(id: request.id + 1_000_000 + UInt64($0), code: .success) }
        }
        let client = try AxonClient(endpoint: axon.endpoint)
        defer { client.close(); axon.stop() }
        XCTAssertEqual(try client.ping().code, .success)
        let deadline = Date(timeIntervalSinceNow: 10)
        var outcome: Error?
        while outcome == nil && Date() < deadline {
            do { _ = try client.ping(); Thread.sleep(forTimeInterval: 0.05) } catch { outcome = error }
        }
        guard case ClientError.connectionClosed(let reason)? = outcome as? ClientError else {
            return XCTFail("expected the client to close the flooded connection, got \(String(describing: outcome))")
        }
        XCTAssertTrue(reason.contains("no caller collected"), reason)
    }
}
