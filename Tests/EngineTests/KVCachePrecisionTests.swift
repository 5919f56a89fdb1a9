import Engine
import GGUF
import TestSupport
import XCTest

/// `EngineOptions.kvCachePrecision` f16: the pool holds twice the blocks in the same bytes, and
/// decode steps over it stay next to the f32 cache's. The kernels' own arithmetic at f16 is checked
/// against its definition in DecodeAttentionKernelTests; the effect of rounding the cached keys and
/// values on the logits is measured here and printed (docs/ENGINE.md, "Decode step profile"), not
/// bounded: f16 stays opt-in.
final class KVCachePrecisionTests: XCTestCase {
    func testAnF16CacheHoldsTwiceTheBlocksAndDecodesBesideTheF32One() throws {
        let file = try GGUFFile(path: TestPaths.defaultModel())
        let f32 = try InferenceEngine(file: file, options: EngineOptions(threads: 2, kvCacheBytes: 16 << 20, decodePrecision: .int8))
        let f16 = try InferenceEngine(file: file, options: EngineOptions(threads: 2, kvCacheBytes: 16 << 20, decodePrecision: .int8,
                                                                         kvCachePrecision: .f16))
        XCTAssertEqual(f16.kvCacheUsage.bytesPerBlock * 2, f32.kvCacheUsage.bytesPerBlock)
        XCTAssertEqual(f16.kvCacheUsage.totalBlocks, (16 << 20) / f16.kvCacheUsage.bytesPerBlock)
        XCTAssertEqual(f32.kvCacheUsage.totalBlocks, (16 << 20) / f32.kvCacheUsage.bytesPerBlock)
        let prompt: [Int32] = [504, 3575, 282, 4649, 314, 253, 1345, 30, 378, 3575, 282, 8501, 314, 5248, 30, 378]
        let a = try f32.newSequence(), b = try f16.newSequence()
        var next = prompt, worst: Float = 0, agree = 0
        let steps = 32
        for _ in 0..<steps {
            let x = Array(try XCTUnwrap(f32.forward(RaggedBatch(rows: [next]), sequences: [a], logits: .last).lastLogits(row: 0)))
            let y = Array(try XCTUnwrap(f16.forward(RaggedBatch(rows: [next]), sequences: [b], logits: .last).lastLogits(row: 0)))
            XCTAssertTrue(y.allSatisfy(\.isFinite))
            worst = max(worst, zip(x, y).map { abs($0 - $1) }.max() ?? .infinity)
            let top = Int32(x.indices.max { x[$0] < x[$1] } ?? 0)
            if top == Int32(y.indices.max { y[$0] < y[$1] } ?? 0) { agree += 1 }
            next = [top]   // both follow the f32 cache's greedy tokens
        }
        print("f16 KV cache vs f32, SmolLM2 int8 decode, \(steps) steps: max logit Δ \(worst), top-1 agrees at \(agree)/\(steps)")
    }
}
