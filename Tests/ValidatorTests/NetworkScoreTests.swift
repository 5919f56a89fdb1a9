import AxonClient
import Foundation
import GGUF
import Identity
import Server
import TestSupport
import Tokenizer
import Validator
import Wire
import XCTest

/// The validator side of network space: a phrase answer is untrusted input (checked like every
/// other answer), and scoring in network space is Bittensor's phrase cross-entropy against the next
/// 8 standard tokens, with bits per byte.
final class NetworkScoreTests: XCTestCase {
    private static let k = 3
    private static func next(_ tensors: [Tensor]) -> SynapseResult {
        SynapseResult(type: .textCausalLMNext, code: .success, tensors: tensors)
    }

    private static let probabilities = Tensor(buffer: RawBytes.float32([0.5, 0.3, 0.1]), shape: [1, 3], dtype: .float32)
    private static let phrases = Tensor(buffer: RawBytes.int32([464, 2068, 7586, -1, 13, -1]), shape: [1, 3, 2], dtype: .int32)
    private static let floor = Tensor(buffer: RawBytes.float32([0.1 / 50254]), shape: [1], dtype: .float32)

    /// Each way a phrase answer for 1 row and k = 3 can be wrong, with the words its error must contain.
    static let badPhraseAnswers: [(name: String, tensors: [Tensor], says: String)] = [
        ("FLOAT64 probabilities", [Tensor(buffer: RawBytes.float64([0.5, 0.3, 0.1]), shape: [1, 3], dtype: .float64), phrases, floor],
         "dtype FLOAT64"),
        ("two-dimensional phrases", [probabilities, Tensor(buffer: RawBytes.int32([464, 7586, 13]), shape: [1, 3], dtype: .int32), floor],
         "expected [1, 3, L]"),
        ("phrases of width 0", [probabilities, Tensor(buffer: [], shape: [1, 3, 0], dtype: .int32), floor], "L ≥ 1"),
        ("an absurd width", [probabilities, Tensor(buffer: RawBytes.int32([464]), shape: [1, 3, Int64.max], dtype: .int32), floor],
         "expected [1, 3, L]"),
        ("a short phrase buffer", [probabilities, Tensor(buffer: RawBytes.int32([464, 2068]), shape: [1, 3, 2], dtype: .int32), floor],
         "8 bytes"),
        ("FLOAT32 phrases", [probabilities, Tensor(buffer: RawBytes.float32([464, 2068, 7586, -1, 13, -1]), shape: [1, 3, 2], dtype: .float32),
                             floor], "expected INT32"),
        ("an id outside the network vocabulary", [probabilities, Tensor(buffer: RawBytes.int32([464, 60000, 7586, -1, 13, -1]),
                                                                        shape: [1, 3, 2], dtype: .int32), floor], "60000"),
        ("a negative id", [probabilities, Tensor(buffer: RawBytes.int32([464, 2068, -7, -1, 13, -1]), shape: [1, 3, 2], dtype: .int32), floor],
         "-7"),
        ("an id after the padding", [probabilities, Tensor(buffer: RawBytes.int32([464, 2068, -1, 7586, 13, -1]), shape: [1, 3, 2], dtype: .int32),
                                     floor], "after its −1 padding"),
        ("a missing floor", [probabilities, phrases], "2 tensors"),
    ]

    func testEachMalformedPhraseAnswerIsATypedError() throws {
        let good = try Self.next([Self.probabilities, Self.phrases, Self.floor]).checkedPhrases(rows: 1, k: Self.k, vocab: 50257)
        XCTAssertEqual(good.width, 2)
        XCTAssertEqual(good.phrases(row: 0), [[464, 2068], [7586], [13]])
        XCTAssertEqual(good.floor(row: 0), 0.1 / 50254)
        for bad in Self.badPhraseAnswers {
            XCTAssertThrowsError(try Self.next(bad.tensors).checkedPhrases(rows: 1, k: Self.k, vocab: 50257), bad.name) { error in
                guard case AnswerError.malformed(let reason)? = error as? AnswerError else { return XCTFail("\(bad.name): \(error)") }
                XCTAssertTrue(reason.contains(bad.says), "\(bad.name): \(reason)")
            }
        }
    }

    /// The INFO of an axon serving the default model and the network space over it.
    static func networkInfo() throws -> InfoResponse {
        var info = try UntrustedAnswerTests.info()
        let standard = try Tokenizer.networkStandard(ranksPath: TestPaths.repositoryRoot.appendingPathComponent("Models/gpt2.tiktoken").path)
        info.networkTokenizer = NetworkStandardTokenizer.name
        info.networkTokenizerSHA256 = standard.ranksSHA256
        info.networkVocabSize = UInt32(standard.vocabSize)
        return info
    }

    func testTheScorerAndQueryRejectEachMalformedPhraseAnswerFromTheWire() throws {
        try AxonCommand.requireBuilt()
        let info = try Self.networkInfo()
        for bad in Self.badPhraseAnswers {
            let axon = try UntrustedAnswerTests.axon(info: info, tensors: bad.tensors)
            let client = try AxonClient(endpoint: axon.endpoint)
            let scorer = Scorer(seq: 4, topk: Self.k, rowsPerRequest: 1, vocab: 50257, space: .network)
            XCTAssertThrowsError(try scorer.score(tokens: [464, 2068, 7586, 21831, 18045, 625], client: client), bad.name) {
                guard case AnswerError.malformed? = $0 as? AnswerError else { return XCTFail("\(bad.name): \($0)") }
            }
            client.close()
            let run = try AxonCommand.run(["query", "--endpoint", axon.endpoint, "--unsigned", "--space", "network", "--topk", "\(Self.k)",
                                           UntrustedAnswerTests.text])
            axon.stop()
            XCTAssertEqual(run.reason, .exit, "\(bad.name): axon query crashed: \(run.stderr)")
            XCTAssertEqual(run.status, 1, "\(bad.name): \(run.stderr)")
            XCTAssertTrue(run.stderr.contains("malformed") && run.stderr.contains(bad.says), "\(bad.name): \(run.stderr)")
        }
    }

    func testNetworkSpaceCommandsNeedAnAxonThatServesIt() throws {
        try AxonCommand.requireBuilt()
        let axon = try UntrustedAnswerTests.axon(info: try UntrustedAnswerTests.info(), tensors: [])
        let run = try AxonCommand.run(["query", "--endpoint", axon.endpoint, "--unsigned", "--space", "network", UntrustedAnswerTests.text])
        var otherRanks = try Self.networkInfo()
        otherRanks.networkTokenizerSHA256 = String(repeating: "0", count: 64)
        let other = try UntrustedAnswerTests.axon(info: otherRanks, tensors: [])
        let mismatch = try AxonCommand.run(["query", "--endpoint", other.endpoint, "--unsigned", "--space", "network", UntrustedAnswerTests.text])
        axon.stop()
        other.stop()
        XCTAssertEqual(run.status, 1, run.stderr)
        XCTAssertTrue(run.stderr.contains("serves no network token space"), run.stderr)
        XCTAssertEqual(mismatch.status, 1, mismatch.stderr)
        XCTAssertTrue(mismatch.stderr.contains("differs from the local gpt2"), mismatch.stderr)
    }

    func testNetworkScoresArePhraseCrossEntropyAgainstTheNextEightTokensWithBitsPerByte() throws {
        // One fixed answer for every window; the scorer must read each window's next 8 tokens.
        let info = try Self.networkInfo()
        let axon = try UntrustedAnswerTests.axon(info: info, tensors: [Self.probabilities, Self.phrases, Self.floor])
        defer { axon.stop() }
        let client = try AxonClient(endpoint: axon.endpoint)
        defer { client.close() }
        let standard = try Tokenizer.networkStandard(ranksPath: TestPaths.repositoryRoot.appendingPathComponent("Models/gpt2.tiktoken").path).tokenizer
        let tokens = standard.encode("The quick brown fox jumps over the lazy dog. The quick brown fox is quick. The end.",
                                     addSpecial: false, parseSpecial: false)
        let bytes = (0..<Int32(standard.vocabSize)).map { (try? standard.decodeBytes([$0]).count) ?? 0 }
        let seq = 4
        let scorer = Scorer(seq: seq, topk: Self.k, stride: 3, rowsPerRequest: 1, vocab: 50257, space: .network, tokenBytes: bytes)
        let result = try scorer.score(tokens: tokens, client: client)
        var lossVal = 0.0, phraseLoss = 0.0, scoredBytes = 0, positions = 0
        for start in stride(from: 0, to: tokens.count - seq, by: 3) {
            let target = Array(tokens[(start + seq)..<min(tokens.count, start + seq + 8)])
            let loss = PhraseCrossEntropy.loss(probabilities: [0.5, 0.3, 0.1], phrases: [[464, 2068], [7586], [13]], floor: 0.1 / 50254,
                                               target: target)
            lossVal += loss.lossVal
            phraseLoss += loss.loss
            scoredBytes += try standard.decodeBytes([target[0]]).count
            positions += 1
        }
        XCTAssertEqual(result.positions, positions)
        // The same Double arithmetic on the same values, summed in the same order.
        XCTAssertEqual(result.loss, lossVal / Double(positions))
        XCTAssertEqual(result.phraseLoss, phraseLoss / Double(positions))
        XCTAssertEqual(try XCTUnwrap(result.bitsPerByte), lossVal / log(2) / Double(scoredBytes), accuracy: 1e-12)
    }

    func testScoreInNetworkSpaceRunsEndToEndOnTheRealEngine() throws {
        try AxonCommand.requireBuilt()
        let file = try GGUFFile(path: TestPaths.defaultModel())
        let tokenizer = try Tokenizer(gguf: file)
        let backend = try EngineBackend(file: file, modelInfo: ModelInfo(gguf: file, tokenizer: tokenizer), threads: 2,
                                        maxRows: 4, maxSeq: 32, maxBatchTokens: 128)
        let standard = try Tokenizer.networkStandard(ranksPath: TestPaths.repositoryRoot.appendingPathComponent("Models/gpt2.tiktoken").path)
        let axon = try LocalAxon(backend: backend, seed: 41) { config in
            config.maxBatch = 4
            config.maxSeq = 32
            config.maxBatchTokens = 128
            config.networkSpace = NetworkTokenSpace(standard: standard, model: tokenizer)
        }
        let corpus = Bundle.module.url(forResource: "Fixtures/score", withExtension: "txt")?.path ?? "Tests/ValidatorTests/Fixtures/score.txt"
        let arguments = ["score", "--endpoint", "127.0.0.1:\(axon.server.port)", "--text", corpus, "--seq", "24", "--topk", "64",
                         "--rows", "4", "--json", "--key", try Self.validatorKey()]
        let network = try AxonCommand.run(arguments + ["--space", "network"])
        let model = try AxonCommand.run(arguments)
        axon.stop()
        XCTAssertEqual(network.status, 0, network.stderr)
        XCTAssertEqual(model.status, 0, model.stderr)
        let networkResult = try JSONDecoder().decode(ScoreResult.self, from: Data(network.stdout.utf8))
        let modelResult = try JSONDecoder().decode(ScoreResult.self, from: Data(model.stdout.utf8))
        let text = try String(contentsOfFile: corpus, encoding: .utf8)
        XCTAssertEqual(networkResult.positions, (standard.tokenizer.encode(text, addSpecial: false, parseSpecial: false).count - 1) / 24)
        XCTAssertEqual(modelResult.positions, (tokenizer.encode(text).count - 1) / 24)
        XCTAssertNotNil(networkResult.phraseLoss)
        XCTAssertNil(modelResult.phraseLoss)
        for result in [networkResult, modelResult] {
            XCTAssertTrue(result.loss.isFinite && result.loss > 0, "\(result)")
            XCTAssertTrue((result.bitsPerByte ?? .nan).isFinite, "\(result)")
        }
        print("score.txt: network space \(networkResult), model space \(modelResult)")
    }

    /// A validator key file in a temporary directory.
    private static func validatorKey() throws -> String {
        let directory = FileManager.default.temporaryDirectory.appendingPathComponent("axon-netscore-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: directory, withIntermediateDirectories: true)
        let path = directory.appendingPathComponent("validator.json").path
        try KeyFile.write(Hotkey.generate(), to: path)
        return path
    }
}
