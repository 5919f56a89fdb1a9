import AxonClient
import Foundation
import GGUF
import Server
import TestSupport
import Tokenizer
import Wire
import XCTest

/// `axon generate` and `axon bench --decode`, and the checks a TEXT_SEQ_2_SEQ answer from an
/// untrusted axon goes through before anything reads it.
final class GenerateCommandTests: XCTestCase {
    private static func ids(_ values: [Int32], _ shape: [Int64]) -> Tensor { Tensor(buffer: RawBytes.int32(values), shape: shape, dtype: .int32) }

    private static func seq2seq(_ tensors: [Tensor]) -> SynapseResult { SynapseResult(type: .textSeq2Seq, code: .success, tensors: tensors) }

    func testAWellFormedGenerationAnswerReadsBackItsRows() throws {
        let result = Self.seq2seq([Self.ids([5, 6, 7, 9, -1, -1], [2, 3]), Self.ids([3, 1], [2])])
        XCTAssertEqual(try result.checkedGeneration(rows: 2, maxTokens: 4, vocab: 10), [[5, 6, 7], [9]])
    }

    func testEachMalformedGenerationAnswerIsATypedError() {
        let lengths = Self.ids([2], [1])
        let cases: [(String, [Tensor], String)] = [
            ("one tensor", [Self.ids([5, 6], [1, 2])], "expected 2 (ids, lengths)"),
            ("FLOAT32 ids", [Tensor(buffer: RawBytes.float32([5, 6]), shape: [1, 2], dtype: .float32), lengths], "expected INT32"),
            ("a short id buffer", [Tensor(buffer: RawBytes.int32([5]), shape: [1, 2], dtype: .int32), lengths], "4 bytes"),
            ("an absurd width", [Tensor(buffer: RawBytes.int32([5, 6]), shape: [1, Int64.max], dtype: .int32), lengths], "shape"),
            ("rows shorter than a length", [Self.ids([5], [1, 1]), lengths], "shape [1, 1]"),
            ("a length over num_to_generate", [Self.ids([5, 6, 7, 8, 9], [1, 5]), Self.ids([5], [1])], "lengths[0] is 5, expected 0...4"),
            ("a negative length", [Self.ids([5, 6], [1, 2]), Self.ids([-1], [1])], "lengths[0] is -1"),
            ("lengths for two rows", [Self.ids([5, 6], [1, 2]), Self.ids([2, 2], [2])], "lengths has shape [2]"),
            ("an id outside the vocabulary", [Self.ids([5, 60], [1, 2]), lengths], "id 60, outside the vocabulary of 10"),
            ("padding that is not -1", [Self.ids([5, 6, 0], [1, 3]), lengths], "not padded with -1"),
        ]
        for (name, tensors, says) in cases {
            XCTAssertThrowsError(try Self.seq2seq(tensors).checkedGeneration(rows: 1, maxTokens: 4, vocab: 10), name) { error in
                guard case AnswerError.malformed(let reason)? = error as? AnswerError else { return XCTFail("\(name): \(error)") }
                XCTAssertTrue(reason.contains(says), "\(name): \(reason)")
            }
        }
    }

    func testGenerateOverTheWirePrintsTheCheckedTextAndRefusesAMalformedAnswer() throws {
        try AxonCommand.requireBuilt()
        var info = try UntrustedAnswerTests.info()
        let tokenizer = try Tokenizer(gguf: GGUFFile(path: TestPaths.defaultModel()))
        let paris = tokenizer.encode(" Paris, on the Seine.")
        let eos = try XCTUnwrap(tokenizer.eosID)
        info.eosID = UInt32(eos)
        let answer = paris + [eos]
        let good = try UntrustedAnswerTests.axon(info: info, type: .textSeq2Seq,
                                                  tensors: [Self.ids(answer, [1, Int64(answer.count)]), Self.ids([Int32(answer.count)], [1])])
        let run = try AxonCommand.run(["generate", "--endpoint", good.endpoint, "--unsigned", "--num-to-generate", "16", UntrustedAnswerTests.text])
        good.stop()
        XCTAssertEqual(run.status, 0, run.stderr)
        XCTAssertEqual(run.stdout, " Paris, on the Seine.", "the eos that ended it is not printed")
        XCTAssertTrue(run.stderr.contains("\(answer.count) generated"), run.stderr)

        let bad = try UntrustedAnswerTests.axon(info: info, type: .textSeq2Seq,
                                                 tensors: [Self.ids(answer, [1, Int64(answer.count)]), Self.ids([40], [1])])
        let refused = try AxonCommand.run(["generate", "--endpoint", bad.endpoint, "--unsigned", "--num-to-generate", "16", UntrustedAnswerTests.text])
        bad.stop()
        XCTAssertEqual(refused.reason, .exit, refused.stderr)
        XCTAssertEqual(refused.status, 1, refused.stderr)
        XCTAssertTrue(refused.stderr.contains("malformed") && refused.stderr.contains("lengths[0] is 40, expected 0...16"), refused.stderr)
        XCTAssertEqual(refused.stdout, "")
    }

    /// In network space the prompt goes out as the text's GPT-2 ids, no bos, marked as network
    /// space, and the answer is read as GPT-2 ids: its <|endoftext|> ends the text unprinted.
    func testGenerateInNetworkSpaceSendsStandardIdsAndPrintsTheStandardAnswer() throws {
        try AxonCommand.requireBuilt()
        let info = try NetworkScoreTests.networkInfo()
        let standard = try Tokenizer.networkStandard(ranksPath: TestPaths.repositoryRoot.appendingPathComponent("Models/gpt2.tiktoken").path)
        let expectedPrompt = standard.tokenizer.encode(UntrustedAnswerTests.text, addSpecial: false)
        let answer = standard.tokenizer.encode(" Paris, on the Seine.") + [NetworkStandardTokenizer.endOfText]
        let tensors = [Self.ids(answer, [1, Int64(answer.count)]), Self.ids([Int32(answer.count)], [1])]
        let axon = try MisbehavingAxon { request in
            switch request.method {
            case .info: return Response(id: request.id, code: .success, info: info)
            case .forward:
                // Anything but the standard ids in network space is refused, so the command fails.
                guard let forward = try? ForwardRequest(serializedBytes: request.body), forward.space == .network,
                      let tokens = forward.tokens, tokens.shape == [1, Int64(expectedPrompt.count)],
                      tokens.buffer == RawBytes.int32(expectedPrompt) else {
                    return Response(id: request.id, code: .invalidRequest, message: "not the text's standard ids in network space")
                }
                return Response(id: request.id, code: .success,
                                forward: ForwardResponse(results: [SynapseResult(type: .textSeq2Seq, code: .success, tensors: tensors)]))
            default: return Response(id: request.id, code: .success)
            }
        }
        let run = try AxonCommand.run(["generate", "--endpoint", axon.endpoint, "--unsigned", "--space", "network",
                                       "--num-to-generate", "16", UntrustedAnswerTests.text])
        axon.stop()
        XCTAssertEqual(run.status, 0, run.stderr)
        XCTAssertEqual(run.stdout, " Paris, on the Seine.")

        let local = try AxonCommand.run(["generate", "--fake", "--space", "network", UntrustedAnswerTests.text])
        XCTAssertEqual(local.status, 64, local.stderr)
        XCTAssertTrue(local.stderr.contains("--space network asks an axon to translate"), local.stderr)
    }

    /// Locally the text streams out: with the fake of the model's shape it is the decoded greedy
    /// continuation, recomputed here through the fake's FORWARD path.
    func testGenerateLocallyPrintsTheGreedyContinuation() throws {
        try AxonCommand.requireBuilt()
        let file = try GGUFFile(path: TestPaths.defaultModel())
        let tokenizer = try Tokenizer(gguf: file)
        let prompt = tokenizer.encode(UntrustedAnswerTests.text, addSpecial: true)
        let fake = FakeBackend(modelInfo: ModelInfo(gguf: file, tokenizer: tokenizer))
        var output: [Int32] = []
        while output.count < 10 {
            try fake.forward(rows: [prompt + output], hidden: false, logits: .last) { result in
                let logits = Array(try XCTUnwrap(result.logits))
                output.append(Int32(logits.indices.max { logits[$0] < logits[$1] || (logits[$0] == logits[$1] && $0 > $1) } ?? 0))
            }
        }
        let run = try AxonCommand.run(["generate", "--fake", "--num-to-generate", "10", "--no-repeat-ngram-size", "0",
                                       "--stop-token=-1", UntrustedAnswerTests.text])
        XCTAssertEqual(run.status, 0, run.stderr)
        XCTAssertEqual(Array(run.stdout.utf8), try tokenizer.decodeBytes(output))
        XCTAssertTrue(run.stderr.contains("\(prompt.count) prompt tokens, 10 generated"), run.stderr)
    }

    func testBenchDecodeJSONIsExactlyTheResultsObject() throws {
        try AxonCommand.requireBuilt()
        let run = try AxonCommand.run(["bench", "--decode", "--fake", "--prompt", "8", "--generate", "4", "--concurrency", "1,3", "--json"])
        XCTAssertEqual(run.status, 0, run.stderr)
        let number = #"[0-9]+(\.[0-9]+)?"#
        let entry = { (c: Int) in #"\{"concurrency":\#(c),"prompt":8,"generate":4,"decode_tokens_per_s":\#(number),"ttft_ms":\#(number)\}"# }
        let pattern = #"^\{"results":\["# + entry(1) + "," + entry(3) + #"\]\}\n$"#
        XCTAssertNotNil(run.stdout.range(of: pattern, options: .regularExpression), run.stdout)
        let parsed = try JSONSerialization.jsonObject(with: Data(run.stdout.utf8)) as? [String: [[String: Double]]]
        let rows = try XCTUnwrap(parsed?["results"])
        XCTAssertEqual(rows.map { $0["concurrency"] }, [1, 3])
        XCTAssertTrue(rows.allSatisfy { ($0["decode_tokens_per_s"] ?? 0) > 0 && ($0["ttft_ms"] ?? 0) > 0 }, run.stdout)
    }
}
