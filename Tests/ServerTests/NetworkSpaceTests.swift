import AxonClient
import Foundation
import Server
import Tokenizer
import TokenTranslation
import Wire
import XCTest

/// Network-space FORWARD (docs/PROTOCOL.md, "Token spaces") through a real socket, on a fake backend
/// with the default model's shape and tokenizer: each bad input gets its code and a message naming
/// the problem, INFO describes the standard tokenizer, and the limits count model tokens.
final class NetworkSpaceTests: XCTestCase {
    private let endOfText = NetworkStandardTokenizer.endOfText

    private func server(network: Bool = true, configure: (inout ServerConfiguration) -> Void = { _ in }) throws -> (Harness, AxonClient) {
        let model = try NetworkSpaces.defaultModel()
        let space = network ? try NetworkSpaces.overDefaultModel() : nil
        let harness = try startServer(backend: FakeBackend(modelInfo: model.info)) { config in
            config.networkSpace = space
            config.maxBatch = 4
            config.maxSeq = 32
            config.maxBatchTokens = 64
            configure(&config)
        }
        return (harness, try harness.client())
    }

    private func network(_ rows: [[Int32]], lengths: [UInt32] = [], synapses: [Synapse] = [Synapse(type: .textCausalLMNext, topk: 8)])
        -> ForwardRequest {
        ForwardRequest(tokens: Tensor(int32Rows: rows), lengths: lengths, synapses: synapses, space: .network)
    }

    private func assertRefused(_ client: AxonClient, _ request: ForwardRequest, _ code: ReturnCode, mentions texts: [String],
                               file: StaticString = #filePath, line: UInt = #line) throws {
        let response = try client.forward(request)
        XCTAssertEqual(response.code, code, response.message, file: file, line: line)
        for text in texts {
            XCTAssertTrue(response.message.contains(text), "'\(response.message)' should mention '\(text)'", file: file, line: line)
        }
        XCTAssertEqual(try client.ping().code, .success, file: file, line: line)
    }

    func testAnIdOutsideTheNetworkVocabularyIsInvalidRequestNamingRowAndPosition() throws {
        let (_, client) = try server()
        let the = try NetworkSpaces.ids(" the")[0]
        try assertRefused(client, network([[the, the, the], [the, 50257, the]]), .invalidRequest,
                          mentions: ["50257", "row 1, position 1", "network vocabulary [0, 50257)"])
        try assertRefused(client, network([[-3, the]]), .invalidRequest, mentions: ["-3", "row 0, position 0"])
        // 50000 is a GPT-2 id beyond the model's 49,152: network ids are checked against the network's vocabulary.
        let valid = try client.forward(network([[the, 50000]]))
        XCTAssertEqual(valid.code, .success, valid.message)
    }

    func testLengthsBeyondSeqAreARequestShapeException() throws {
        let (_, client) = try server()
        let ids = try NetworkSpaces.ids("Hello world")
        try assertRefused(client, network([ids], lengths: [UInt32(ids.count + 1)]), .requestShapeException,
                          mentions: ["lengths[0] = \(ids.count + 1) exceeds seq \(ids.count)"])
    }

    func testARowWithoutTextAfterPaddingIsAnEmptyRequestNamingTheRow() throws {
        let (_, client) = try server()
        let hello = try NetworkSpaces.ids("Hello")[0]
        // Only <|endoftext|> (validators pad with it) in row 1.
        try assertRefused(client, network([[endOfText, endOfText, hello], [endOfText, endOfText, endOfText]]), .emptyRequest,
                          mentions: ["row 1 has no text after padding", "only <|endoftext|>"])
        // Length 0 in row 0.
        try assertRefused(client, network([[hello, hello], [hello, hello]], lengths: [0, 2]), .emptyRequest,
                          mentions: ["row 0 has no text after padding", "length is 0"])
        // Leading padding before text is fine.
        let padded = try client.forward(network([[endOfText, endOfText, hello]]))
        XCTAssertEqual(padded.code, .success, padded.message)
    }

    func testTextWhoseModelTokensExceedMaxSeqSaysWhatToShortenAndTheShortenedRowFits() throws {
        let (_, client) = try server { $0.maxSeq = 12 }
        // The model splits every digit into its own token; GPT-2 keeps runs of them together.
        let text = "Call 5551234567 or 5559876543 now"
        let ids = try NetworkSpaces.ids(text)
        let modelTokens = try NetworkSpaces.defaultModel().tokenizer.encode(text, addSpecial: false, parseSpecial: false).count
        XCTAssertLessThanOrEqual(ids.count, 12, "the network row itself fits --max-seq")
        XCTAssertGreaterThan(modelTokens, 12, "its model tokens do not")
        let response = try client.forward(network([ids]))
        XCTAssertEqual(response.code, .requestShapeException, response.message)
        XCTAssertTrue(response.message.contains("row 0 is \(modelTokens) model tokens once translated (from \(ids.count) network tokens), over --max-seq 12"),
                      response.message)
        let keep = try XCTUnwrap(response.message.range(of: #"keep at most its last (\d+)"#, options: .regularExpression)
            .flatMap { Int(response.message[$0].split(separator: " ").last ?? "") })
        XCTAssertTrue(response.message.contains("shorten the row by about \(ids.count - keep) network tokens from its start"), response.message)
        let shortened = try client.forward(network([Array(ids.suffix(keep))]))
        XCTAssertEqual(shortened.code, .success, shortened.message)
        let longer = try client.forward(network([Array(ids.suffix(keep + 1))]))
        XCTAssertEqual(longer.code, .requestShapeException, "one network token more no longer fits: \(longer.message)")
    }

    func testModelTokensBeyondMaxBatchTokensAreARequestShapeException() throws {
        let (_, client) = try server { $0.maxBatchTokens = 24 }
        let ids = try NetworkSpaces.ids("Dial 1234567890 today")
        let modelTokens = try NetworkSpaces.defaultModel().tokenizer.encode("Dial 1234567890 today", addSpecial: false, parseSpecial: false).count
        XCTAssertLessThanOrEqual(2 * ids.count, 24)
        XCTAssertGreaterThan(2 * modelTokens, 24)
        try assertRefused(client, network([ids, ids]), .requestShapeException,
                          mentions: ["\(2 * modelTokens) model tokens once translated (from \(2 * ids.count) network tokens), over --max-batch-tokens 24"])
    }

    func testWithoutTheNetworkTokenizerNetworkSpaceIsNotImplementedAndInfoSaysNothing() throws {
        let (harness, client) = try server(network: false)
        try assertRefused(client, network([try NetworkSpaces.ids("Hello")]), .notImplemented, mentions: ["NETWORK is not served"])
        let info = try XCTUnwrap(harness.client().info().info)
        XCTAssertEqual(info.networkTokenizer, "")
        XCTAssertEqual(info.networkTokenizerSHA256, "")
        XCTAssertEqual(info.networkVocabSize, 0)
    }

    func testAnUnknownTokenSpaceIsNotImplemented() throws {
        let (_, client) = try server()
        var request = network([try NetworkSpaces.ids("Hello")])
        request.space = TokenSpace(rawValue: 5)
        try assertRefused(client, request, .notImplemented, mentions: ["token space 5"])
    }

    func testInfoDescribesTheStandardTokenizer() throws {
        let (harness, _) = try server()
        let info = try XCTUnwrap(harness.client().info().info)
        XCTAssertEqual(info.networkTokenizer, "gpt2")
        // The ranks file's sha256 as the issue and Models/manifest.json give it.
        XCTAssertEqual(info.networkTokenizerSHA256, "306cd27f03c1a714eca7108e03d66b7dc042abe8c258b44c199a7ed9838dd930")
        XCTAssertEqual(info.networkVocabSize, 50257)
        XCTAssertEqual(info.vocabSize, 49152, "the model's own vocabulary is reported unchanged")
    }

    func testSynapsesTheNetworkSpaceCannotServeFailAloneAndTheOthersSucceed() throws {
        let (_, client) = try server()
        let response = try client.forward(network([try NetworkSpaces.ids("Hello world")], synapses: [
            Synapse(type: .textCausalLMNext, topk: 0), Synapse(type: .textCausalLMNext, topk: 50258),
            Synapse(type: .textCausalLM, topk: 50258), Synapse(type: .textSeq2Seq), Synapse(type: .textLastHiddenState),
            Synapse(type: .textCausalLMNext, topk: 50257)]))
        XCTAssertEqual(response.code, .success, response.message)
        let results = try XCTUnwrap(response.forward?.results)
        XCTAssertEqual(results.map(\.code), [.requestShapeException, .requestShapeException, .requestShapeException,
                                             .notImplemented, .success, .success])
        XCTAssertTrue(results[0].message.contains("needs topk 1...50257"), results[0].message)
        XCTAssertTrue(results[1].message.contains("network vocabulary (50257)"), results[1].message)
        // k = the whole network vocabulary: the floor is 0.
        XCTAssertEqual(floats(results[5].tensors[2]), [0])
    }

    func testFullLogProbabilitiesAreBoundedByMaxResponseAndAreADistribution() throws {
        let ids = try NetworkSpaces.ids("Hello world")   // 2 tokens
        let rows = [[endOfText] + ids]                     // seq 3, the first position padding
        let bytes = 3 * 50257 * 4
        let (_, small) = try server { $0.maxResponse = bytes - 1 }
        try assertRefused(small, network(rows, lengths: [2], synapses: [Synapse(type: .textCausalLM)]), .responseShapeException,
                          mentions: ["\(bytes) bytes", "--max-response \(bytes - 1)"])
        let (_, client) = try server { $0.maxResponse = bytes }
        let response = try client.forward(network(rows, lengths: [2], synapses: [Synapse(type: .textCausalLM)]))
        XCTAssertEqual(response.code, .success, response.message)
        let tensor = try XCTUnwrap(response.forward?.results.first?.tensors.first)
        XCTAssertEqual(tensor.shape, [1, 3, 50257])
        XCTAssertEqual(tensor.dtype, .float32)
        let values = floats(tensor)
        XCTAssertTrue(values[0..<50257].allSatisfy { $0 == 0 }, "padding reads back as zeros")
        for position in 1..<3 {
            let total = values[(position * 50257)..<((position + 1) * 50257)].reduce(0.0) { $0 + exp(Double($1)) }
            // Each network token's probability is a float32 sum of model probabilities (the engine's
            // softmax, within 26u of exact: Tolerance.swift in EngineTests): at most 49,152 terms in
            // all, so γ = 49,152·u, plus the rounding of each logarithm (|log p|·u, under 104u).
            let u = 0x1p-24
            XCTAssertEqual(total, 1, accuracy: (49152 + 26 + 104) * u, "position \(position)")
        }
    }

    func testANetworkRequestCostsItsModelTokens() throws {
        let (harness, client) = try server()
        let text = "In 2024, 31415 people came"
        let ids = try NetworkSpaces.ids(text)
        let modelTokens = try NetworkSpaces.defaultModel().tokenizer.encode(text, addSpecial: false, parseSpecial: false).count
        XCTAssertNotEqual(ids.count, modelTokens)
        let response = try client.forward(network([ids]))
        XCTAssertEqual(response.code, .success, response.message)
        // The tokens counter (and the scheduler's price of the job) are the tokens the engine ran.
        XCTAssertEqual(harness.server.counterSnapshot().tokens, modelTokens)
    }

    func testNextPhrasesHaveTheContractsShapesAndFloor() throws {
        let (_, client) = try server()
        let rows = [try NetworkSpaces.ids("The capital of France is"), try NetworkSpaces.ids("Hello")]
        let (tokens, lengths) = leftPadded(rows, pad: endOfText)
        let response = try client.forward(ForwardRequest(tokens: tokens, lengths: lengths,
                                                         synapses: [Synapse(type: .textCausalLMNext, topk: 64)], space: .network))
        XCTAssertEqual(response.code, .success, response.message)
        let tensors = try XCTUnwrap(response.forward?.results.first?.tensors)
        XCTAssertEqual(tensors.count, 3)
        XCTAssertEqual(tensors[0].shape, [2, 64])
        let width = Int(try XCTUnwrap(tensors[1].shape.last))
        XCTAssertEqual(tensors[1].shape, [2, 64, Int64(width)])
        XCTAssertEqual(tensors[2].shape, [2])
        let probabilities = floats(tensors[0]), phrases = int32s(tensors[1]), floor = floats(tensors[2])
        var longest = 0
        for r in 0..<2 {
            let p = Array(probabilities[(r * 64)..<((r + 1) * 64)])
            XCTAssertEqual(p, p.sorted(by: >), "descending")
            XCTAssertEqual(floor[r], max(0, 1 - p.reduce(0, +)) / Float(50257 - 64))
            for c in 0..<64 {
                let phrase = Array(phrases[((r * 64 + c) * width)..<((r * 64 + c + 1) * width)])
                let ids = phrase.prefix { $0 != -1 }
                XCTAssertFalse(ids.isEmpty, "row \(r) phrase \(c)")
                XCTAssertTrue(phrase.dropFirst(ids.count).allSatisfy { $0 == -1 }, "padded with −1 after the ids")
                XCTAssertTrue(ids.allSatisfy { (0..<50257).contains($0) })
                longest = max(longest, ids.count)
            }
        }
        XCTAssertEqual(longest, width, "L is the longest phrase of the answer")
    }
}
