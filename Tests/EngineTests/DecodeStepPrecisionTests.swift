import Engine
import GGUF
import TestSupport
import XCTest

/// `EngineOptions.decodePrecision` reaches the forward pass: a cached step of at most
/// `decodeRowLimit` tokens reads the reduced-precision copies, and nothing else does.
///
/// The reference is the f32 engine loaded with the same rounding applied to its projection weights
/// (`RoundedProjectionsSource`, int8 per block of 32). SmolLM2's head is Q8_0 in the file, which the
/// int8 block format holds exactly, so both engines multiply the same numbers and differ only in the
/// order of the f32 sums (the kernels' lane sums against sgemm's): the reordering bound of
/// `Tolerance.cachedLogit` (derived for exactly that in `kv_reference.json`) applies.
final class DecodeStepPrecisionTests: XCTestCase {
    private static func argmax(_ logits: [Float]) -> Int32 {
        Int32(logits.indices.max { logits[$0] < logits[$1] } ?? 0)
    }

    func testInt8DecodeStepsEqualTheF32EngineOverTheSameRoundedWeights() throws {
        let file = try GGUFFile(path: TestPaths.defaultModel())
        let int8 = try InferenceEngine(file: file, options: EngineOptions(threads: 2, kvCacheBytes: 16 << 20,
                                                                           decodePrecision: .int8))
        let rounded = try InferenceEngine(source: RoundedProjectionsSource(file, format: .int8Block32),
                                          options: EngineOptions(threads: 2, kvCacheBytes: 16 << 20))
        XCTAssertNotNil(int8.decodeWeights)
        XCTAssertNil(rounded.decodeWeights)
        let prompt: [Int32] = [504, 3575, 282, 4649, 314, 253, 1345, 30, 378, 3575, 282, 8501, 314]
        let a = try int8.newSequence(), b = try rounded.newSequence()
        // The prompt (13 tokens ≤ decodeRowLimit) goes through the decode weights too; the rounded
        // engine's cached prefill computes the same products in f32.
        var next = prompt
        var worst: Float = 0
        for _ in 0..<8 {
            let x = Array(try XCTUnwrap(int8.forward(RaggedBatch(rows: [next]), sequences: [a], logits: .last).lastLogits(row: 0)))
            let y = Array(try XCTUnwrap(rounded.forward(RaggedBatch(rows: [next]), sequences: [b], logits: .last).lastLogits(row: 0)))
            worst = max(worst, zip(x, y).map { abs($0 - $1) }.max() ?? .infinity)
            XCTAssertEqual(Self.argmax(x), Self.argmax(y))
            next = [Self.argmax(y)]
        }
        XCTAssertLessThanOrEqual(worst, Tolerance.cachedLogit, "int8 decode steps moved from the rounded f32 engine by \(worst)")
    }

    func testCachelessAndLongCachedPassesKeepTheF32Weights() throws {
        let file = try GGUFFile(path: TestPaths.defaultModel())
        let int8 = try InferenceEngine(file: file, options: EngineOptions(threads: 2, kvCacheBytes: 16 << 20,
                                                                           decodePrecision: .int8, decodeRowLimit: 4))
        let exact = try InferenceEngine(file: file, options: EngineOptions(threads: 2, kvCacheBytes: 16 << 20))
        let row: [Int32] = [504, 3575, 282, 4649, 314, 253, 1345, 30]
        // Cache-less: bit for bit the f32 engine.
        let x = Array(try XCTUnwrap(int8.forward(RaggedBatch(rows: [row]), logits: .last).lastLogits(row: 0)))
        let y = Array(try XCTUnwrap(exact.forward(RaggedBatch(rows: [row]), logits: .last).lastLogits(row: 0)))
        XCTAssertEqual(x, y)
        // A cached pass of 8 tokens, above decodeRowLimit 4: f32 sgemm, bit for bit too.
        let a = try int8.newSequence(), b = try exact.newSequence()
        let p = Array(try XCTUnwrap(int8.forward(RaggedBatch(rows: [row]), sequences: [a], logits: .last).lastLogits(row: 0)))
        let q = Array(try XCTUnwrap(exact.forward(RaggedBatch(rows: [row]), sequences: [b], logits: .last).lastLogits(row: 0)))
        XCTAssertEqual(p, q)
    }
}
