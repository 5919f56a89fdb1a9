import XCTest
import Engine
import GGUF

/// Typed errors for bad models, bad options and bad batches, on a tiny in-memory GGUF.
final class EngineValidationTests: XCTestCase {
    private func load(_ model: TinyModel, options: EngineOptions = EngineOptions(threads: 2, maxBatchTokens: 64, maxRows: 4, maxSeq: 32, maxLogitRows: 16)) throws -> InferenceEngine {
        try InferenceEngine(file: model.file(), options: options)
    }

    private func assertLoadFails(_ model: TinyModel, with expected: EngineError, file: StaticString = #filePath, line: UInt = #line) {
        XCTAssertThrowsError(try load(model), file: file, line: line) { error in
            XCTAssertEqual(error as? EngineError, expected, file: file, line: line)
            XCTAssertFalse("\(error)".isEmpty)
        }
    }

    private func assertForwardFails(_ rows: [[Int32]], logits: LogitsSelection = .last, with expected: EngineError,
                                    file: StaticString = #filePath, line: UInt = #line) throws {
        let engine = try load(TinyModel())
        XCTAssertThrowsError(try engine.forward(RaggedBatch(rows: rows), logits: logits), file: file, line: line) { error in
            XCTAssertEqual(error as? EngineError, expected, file: file, line: line)
        }
    }

    func testTinyModelConfigIsReadFromMetadataAndShapes() throws {
        let c = try load(TinyModel()).config
        XCTAssertEqual(c.architecture, "llama")
        XCTAssertEqual([c.vocabSize, c.hiddenSize, c.layerCount, c.headCount, c.kvHeadCount, c.headDim, c.ffnSize, c.contextLength],
                       [64, 32, 2, 4, 2, 8, 48, 256])
        XCTAssertEqual(c.ropeFreqBase, 10_000)
        XCTAssertEqual(c.rmsEps, Double(Float(1e-5)))
        XCTAssertTrue(c.tiedOutput)
    }

    func testMissingEpsilonKeyIsATypedError() {
        var model = TinyModel()
        model.dropKeys = ["llama.attention.layer_norm_rms_epsilon"]
        assertLoadFails(model, with: .missingHyperparameter(key: "llama.attention.layer_norm_rms_epsilon"))
    }

    func testMissingBlockCountIsATypedError() {
        var model = TinyModel()
        model.dropKeys = ["llama.block_count"]
        assertLoadFails(model, with: .missingHyperparameter(key: "llama.block_count"))
    }

    func testHeadCountThatDoesNotDivideKvHeadsIsATypedError() {
        var model = TinyModel()
        model.keyOverrides = ["llama.attention.head_count_kv": .uint32(3)]
        assertLoadFails(model, with: .invalidHyperparameter(key: "llama.attention.head_count_kv", value: "3",
                                                            expected: "a positive divisor of head_count 4"))
    }

    func testDeclaredVocabularyThatDisagreesWithEmbeddingsIsATypedError() {
        var model = TinyModel()
        model.keyOverrides = ["llama.vocab_size": .uint32(65)]
        assertLoadFails(model, with: .invalidHyperparameter(key: "llama.vocab_size", value: "65",
                                                            expected: "token_embd.weight's row count 64"))
    }

    func testPartialRopeIsATypedError() {
        var model = TinyModel()
        model.keyOverrides = ["llama.rope.dimension_count": .uint32(4)]
        assertLoadFails(model, with: .invalidHyperparameter(key: "llama.rope.dimension_count", value: "4",
                                                            expected: "the head dimension 8 (partial RoPE is not supported)"))
    }

    func testUnsupportedArchitectureIsATypedError() {
        var model = TinyModel()
        model.architecture = "gpt2"
        assertLoadFails(model, with: .unsupportedArchitecture("gpt2"))
    }

    func testMissingTensorIsATypedError() {
        var model = TinyModel()
        model.dropTensors = ["blk.1.ffn_up.weight"]
        assertLoadFails(model, with: .missingTensor(name: "blk.1.ffn_up.weight"))
    }

    func testKeyProjectionWithTheWrongShapeIsATypedError() {
        var model = TinyModel()
        model.dimOverrides = ["blk.0.attn_k.weight": [32, 32]]
        assertLoadFails(model, with: .tensorShapeMismatch(name: "blk.0.attn_k.weight", dims: [32, 32], expected: [32, 16]))
    }

    func testOptionsLargerThanTheContextAreATypedError() throws {
        XCTAssertThrowsError(try load(TinyModel(), options: EngineOptions(threads: 1, maxBatchTokens: 1024, maxRows: 4, maxSeq: 512, maxLogitRows: 16))) { error in
            guard case .invalidOptions? = error as? EngineError else { return XCTFail("\(error)") }
        }
    }

    func testOutOfVocabularyIdIsRejectedWithItsPosition() throws {
        try assertForwardFails([[1, 2, 3], [4, 64, 5]], with: .tokenOutOfRange(row: 1, position: 1, id: 64, vocabSize: 64))
    }

    func testNegativeIdIsRejected() throws {
        try assertForwardFails([[-1]], with: .tokenOutOfRange(row: 0, position: 0, id: -1, vocabSize: 64))
    }

    func testEmptyBatchAndEmptyRowAreRejected() throws {
        try assertForwardFails([], with: .emptyBatch)
        try assertForwardFails([[1], []], with: .emptyRow(row: 1))
    }

    func testOversizeBatchesAreRejected() throws {
        try assertForwardFails(Array(repeating: [1], count: 5), with: .tooManyRows(count: 5, max: 4))
        try assertForwardFails([Array(repeating: 1, count: 33)], with: .rowTooLong(row: 0, length: 33, max: 32))
        try assertForwardFails(Array(repeating: Array(repeating: 1, count: 30), count: 3), with: .tooManyTokens(count: 90, max: 64))
        try assertForwardFails([Array(repeating: 1, count: 17)], logits: .all, with: .tooManyLogitPositions(count: 17, max: 16))
        try assertForwardFails([Array(repeating: 1, count: 20)], logits: .positions(Array(0..<17)),
                               with: .tooManyLogitPositions(count: 17, max: 16))
        try assertForwardFails([[1, 2], [3]], logits: .positions([0, 3]), with: .logitPositionOutOfRange(index: 3, tokens: 3))
        try assertForwardFails([[1, 2], [3]], logits: .positions([-1]), with: .logitPositionOutOfRange(index: -1, tokens: 3))
    }

    func testSelectedPositionsGetTheHeadOfTheirHiddenStatesAndTheLastOnesEqualLast() throws {
        var model = TinyModel()
        model.tied = false
        let engine = try load(model)
        let file = try model.file()
        let head = try file.dequantize(XCTUnwrap(file.tensor(named: "output.weight")))
        let batch = RaggedBatch(rows: [[3, 1, 4, 1, 5], [9, 2, 6], [5]])
        // Each row's last two positions (one for a one-token row), as token healing asks for them.
        let chosen = [3, 4, 6, 7, 8]
        let selected = try engine.forward(batch, logits: .positions(chosen))
        let hidden = (0..<3).flatMap { Array(selected.hidden(row: $0)) }   // (9 tokens, 32)
        let logits = try chosen.indices.map { try Array(XCTUnwrap(selected.selectedLogits($0))) }
        XCTAssertNil(selected.selectedLogits(chosen.count))
        XCTAssertEqual(try Array(XCTUnwrap(selected.logits(row: 1, position: 1))), logits[2])
        XCTAssertNil(selected.logits(row: 0, position: 0))
        for (i, t) in chosen.enumerated() {
            for v in 0..<64 {
                let expected = (0..<32).reduce(Float(0)) { $0 + hidden[t * 32 + $1] * head[v * 32 + $1] }
                // Two fp32 orders of a 32-term sum differ by at most 2·32·u·Σ|h·w| (Higham's γ_K, both ways).
                let magnitude = (0..<32).reduce(Float(0)) { $0 + abs(hidden[t * 32 + $1] * head[v * 32 + $1]) }
                XCTAssertEqual(logits[i][v], expected, accuracy: 2 * 32 * Tolerance.u * magnitude, "position \(t), logit \(v)")
            }
        }
        // The rows' last positions as a selection are the same gather and the same head call as `.last`.
        let lastPositions = try engine.forward(batch, logits: .positions([4, 7, 8]))
        let lastCopies = try (0..<3).map { try Array(XCTUnwrap(lastPositions.selectedLogits($0))) }
        let last = try engine.forward(batch, logits: .last)
        for r in 0..<3 { XCTAssertEqual(try Array(XCTUnwrap(last.lastLogits(row: r))), lastCopies[r], "row \(r)") }
    }

    func testUntiedOutputHeadIsUsedForLogits() throws {
        var model = TinyModel()
        model.tied = false
        let engine = try load(model)
        XCTAssertFalse(engine.config.tiedOutput)
        let file = try model.file()
        let head = try file.dequantize(XCTUnwrap(file.tensor(named: "output.weight")))
        let result = try engine.forward(RaggedBatch(rows: [[3, 1, 4, 1, 5]]), logits: .all)
        for position in 0..<5 {
            let h = result.hidden(row: 0, position: position)
            let logits = try XCTUnwrap(result.logits(row: 0, position: position))
            for v in 0..<64 {
                let expected = (0..<32).reduce(Float(0)) { $0 + h[$1] * head[v * 32 + $1] }
                // Two fp32 orders of a 32-term sum differ by at most 2·32·u·Σ|h·w| (Higham's γ_K, both ways).
                let magnitude = (0..<32).reduce(Float(0)) { $0 + abs(h[$1] * head[v * 32 + $1]) }
                XCTAssertEqual(logits[v], expected, accuracy: 2 * 32 * Tolerance.u * magnitude)
            }
        }
    }

    func testStreamedLogitsEqualStoredLogits() throws {
        let engine = try load(TinyModel())
        let batch = RaggedBatch(rows: [[1, 2, 3, 4, 5, 6, 7], [8, 9, 10, 11, 12, 13, 14, 15, 16]])
        let stored = try engine.forward(batch, logits: .all)
        var copies: [[Float]] = []
        for r in 0..<2 { for p in 0..<batch.length(ofRow: r) { copies.append(Array(try XCTUnwrap(stored.logits(row: r, position: p)))) } }
        var seen: [(Int, Int)] = []
        var index = 0
        _ = try engine.forward(batch) { row, position, logits in
            seen.append((row, position))
            // Exact: 16 positions fit one chunk of maxLogitRows = 16, so both paths make the same
            // sgemm call (same shapes, same summation order on any OpenBLAS core).
            XCTAssertEqual(Array(logits), copies[index])
            index += 1
        }
        XCTAssertEqual(seen.map(\.0), Array(repeating: 0, count: 7) + Array(repeating: 1, count: 9))
        XCTAssertEqual(seen.map(\.1), Array(0..<7) + Array(0..<9))
    }
}
