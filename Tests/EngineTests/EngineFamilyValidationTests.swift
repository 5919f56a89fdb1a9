import XCTest
import Engine
import GGUF

/// Malformed family-specific metadata and tensors get a typed error at load, one handcrafted
/// in-memory GGUF per rule.
final class EngineFamilyValidationTests: XCTestCase {
    private func assertLoadFails(_ model: TinyModel, with expected: EngineError, file: StaticString = #filePath, line: UInt = #line) {
        XCTAssertThrowsError(try InferenceEngine(file: model.file(), options: EngineOptions(threads: 1, maxBatchTokens: 64, maxRows: 4, maxSeq: 32, maxLogitRows: 16)),
                             file: file, line: line) { error in
            XCTAssertEqual(error as? EngineError, expected, file: file, line: line)
        }
    }

    func testWellFormedTinyModelsOfEachFamilyLoadAndRun() throws {
        for model in [TinyModel(), TinyModel.qwen2(), TinyModel.gemma3()] {
            let engine = try InferenceEngine(file: model.file(), options: EngineOptions(threads: 1, maxBatchTokens: 64, maxRows: 4, maxSeq: 32, maxLogitRows: 16))
            XCTAssertEqual(engine.config.family, ModelFamily.named(model.architecture))
            let result = try engine.forward(RaggedBatch(rows: [[1, 2, 3, 4, 5, 6, 7, 8, 9]]), logits: .last)
            XCTAssertTrue(try XCTUnwrap(result.lastLogits(row: 0)).allSatisfy(\.isFinite))
        }
        let gemma = try InferenceEngine(file: TinyModel.gemma3().file(), options: EngineOptions(threads: 1, maxBatchTokens: 64, maxRows: 4, maxSeq: 32, maxLogitRows: 16)).config
        XCTAssertEqual(gemma.headDim, 16)
        XCTAssertEqual(gemma.attentionScale, 0.25)
        XCTAssertEqual(gemma.layers.map(\.window), [4, 4, 4, 4, 4, nil, 4])
    }

    func testGemma3WithoutKeyLengthIsATypedError() {
        var model = TinyModel.gemma3()
        model.keyLength = nil   // hidden/heads = 8 would silently be wrong for gemma3
        assertLoadFails(model, with: .missingHyperparameter(key: "gemma3.attention.key_length"))
    }

    func testSlidingWindowOfZeroIsATypedError() {
        var model = TinyModel.gemma3()
        model.slidingWindow = 0
        assertLoadFails(model, with: .invalidHyperparameter(key: "gemma3.attention.sliding_window", value: "0",
                                                            expected: "a positive number of positions"))
    }

    func testGemma3WithoutASlidingWindowKeyIsATypedError() {
        var model = TinyModel.gemma3()
        model.slidingWindow = nil
        assertLoadFails(model, with: .missingHyperparameter(key: "gemma3.attention.sliding_window"))
    }

    func testKvHeadsThatDoNotDivideHeadsIsATypedErrorInEveryFamily() {
        for var model in [TinyModel.qwen2(), TinyModel.gemma3()] {
            model.keyOverrides = ["\(model.architecture).attention.head_count_kv": .uint32(3)]
            assertLoadFails(model, with: .invalidHyperparameter(key: "\(model.architecture).attention.head_count_kv", value: "3",
                                                                expected: "a positive divisor of head_count 4"))
        }
    }

    func testABiasWithTheWrongShapeIsATypedError() {
        var model = TinyModel.qwen2()
        model.dimOverrides = ["blk.1.attn_k.bias": [20]]
        assertLoadFails(model, with: .tensorShapeMismatch(name: "blk.1.attn_k.bias", dims: [20], expected: [16]))
    }

    func testQwen2WithoutItsBiasesIsATypedError() {
        var model = TinyModel.qwen2()
        model.dropTensors = ["blk.0.attn_v.bias"]
        assertLoadFails(model, with: .missingTensor(name: "blk.0.attn_v.bias"))
    }

    func testAPerHeadNormOfTheWrongWidthIsATypedError() {
        var model = TinyModel.gemma3()
        model.dimOverrides = ["blk.3.attn_q_norm.weight": [32]]
        assertLoadFails(model, with: .tensorShapeMismatch(name: "blk.3.attn_q_norm.weight", dims: [32], expected: [16]))
    }

    func testUnsupportedArchitectureNamesItAndListsTheSupportedOnes() {
        var model = TinyModel()
        model.architecture = "phi3"
        assertLoadFails(model, with: .unsupportedArchitecture("phi3"))
        let message = "\(EngineError.unsupportedArchitecture("phi3"))"
        XCTAssertTrue(message.contains("'phi3'"), message)
        for arch in ["llama", "mistral", "qwen2", "qwen3", "gemma3"] { XCTAssertTrue(message.contains(arch), message) }
    }
}
