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
/// `Tolerance.cachedLogit` (derived for exactly that in `kv_reference.json`) applies, plus, for a
/// w8a8Block32 head, the rounding of the head's input.
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
        let decodeWeights = try XCTUnwrap(int8.decodeWeights)
        XCTAssertNil(rounded.decodeWeights)
        // A w8a8Block32 head (AVX-512 VNNI CPUs) also rounds its input, the final hidden state, per
        // block of 32: each logit may then move by Σ_k |W[v][k]|·|h_k − ĥ_k| beyond the reordering
        // bound, computed here from the int8 engine's own hidden state and the head's Q8_0 values.
        let (v, h) = (int8.config.vocabSize, int8.config.hiddenSize)
        var head: [Float] = []
        if decodeWeights.headFormat == .w8a8Block32 {
            let info = try XCTUnwrap(file.tensor(named: "token_embd.weight"))
            head = [Float](repeating: 0, count: v * h)
            try head.withUnsafeMutableBufferPointer { try file.dequantizeRows(info, rows: 0..<v, into: $0) }
        }
        let prompt: [Int32] = [504, 3575, 282, 4649, 314, 253, 1345, 30, 378, 3575, 282, 8501, 314]
        let a = try int8.newSequence(), b = try rounded.newSequence()
        // The prompt (13 tokens ≤ decodeRowLimit) goes through the decode weights too; the rounded
        // engine's cached prefill computes the same products in f32.
        var next = prompt
        var worst: Float = 0
        for _ in 0..<8 {
            let result = try int8.forward(RaggedBatch(rows: [next]), sequences: [a], logits: .last)
            let x = Array(try XCTUnwrap(result.lastLogits(row: 0)))
            let y = Array(try XCTUnwrap(rounded.forward(RaggedBatch(rows: [next]), sequences: [b], logits: .last).lastLogits(row: 0)))
            var allowed = [Double](repeating: Double(Tolerance.cachedLogit), count: v)
            if !head.isEmpty {
                let hidden = result.hidden(row: 0, position: next.count - 1)
                let exact = Array(hidden).map(Double.init)
                let seen = QuantizedMatrixTests.activations(ArraySlice(hidden), format: .w8a8Block32)
                for j in 0..<v {
                    var moved = 0.0, magnitude = 0.0
                    for c in 0..<h {
                        let w = abs(Double(head[j * h + c]))
                        moved += w * abs(exact[c] - seen[c])
                        magnitude += w * abs(seen[c])
                    }
                    allowed[j] += moved + QuantizedMatrixTests.bound(k: h, path: decodeWeights.path, format: .w8a8Block32, magnitude: magnitude)
                }
            }
            for j in 0..<v where Double(abs(x[j] - y[j])) > allowed[j] {
                XCTFail("logit \(j): int8 \(x[j]), rounded f32 \(y[j]), allowed \(allowed[j])")
                break
            }
            worst = max(worst, zip(x, y).map { abs($0 - $1) }.max() ?? .infinity)
            // The same top token: always with an exact head, and with a w8a8Block32 head unless the
            // reference's top two are within the bound of each other.
            let top = Self.argmax(y), margin = y[Int(top)] - (y.enumerated().filter { $0.offset != Int(top) }.map(\.element).max() ?? 0)
            if head.isEmpty || Double(margin) > 2 * (allowed.max() ?? 0) { XCTAssertEqual(Self.argmax(x), top) }
            next = [top]
        }
        print("int8 decode steps: max |Δ logit| from the rounded f32 engine \(worst), head \(decodeWeights.headFormat?.rawValue ?? "f32")")
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
