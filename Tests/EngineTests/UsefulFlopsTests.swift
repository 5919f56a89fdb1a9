import Engine
import XCTest

/// `UsefulFlops` against a count made straight from the definitions: the mask of the forward pass
/// (query p sees key k when k ≤ p and p − k < window) and the shapes of each product.
final class UsefulFlopsTests: XCTestCase {
    func testCountsMatchTheMaskAndTheShapes() throws {
        let model = TinyModel.gemma3()   // 7 layers, window 4 on six of them, 4 heads of 16, 2 KV heads
        let c = try InferenceEngine(file: model.file(),
                                    options: EngineOptions(threads: 1, maxBatchTokens: 64, maxRows: 8, maxSeq: 32, maxLogitRows: 16)).config
        XCTAssertEqual(c.layers.filter { $0.window == 4 }.count, 6)
        let lengths = [1, 3, 4, 5, 12, 13]
        var pairs = 0
        for layer in c.layers {
            for length in lengths {
                for p in 0..<length {
                    for k in 0...p where layer.window.map({ p - k < $0 }) ?? true { pairs += 1 }
                }
            }
        }
        // Q·Kᵀ and S·V: one multiply-add per head dimension, per pair, per query head, each.
        XCTAssertEqual(UsefulFlops.attention(c, rowLengths: lengths), Double(2 * 2 * 16 * 4 * pairs))
        // Per layer and token: [hidden] × [(4 + 2·2)·16 | 4·16 | 3·ffn] weights.
        let tokens = lengths.reduce(0, +)
        let perLayer = 2 * 32 * ((4 + 2 * 2) * 16 + 4 * 16 + 3 * 48)
        XCTAssertEqual(UsefulFlops.projections(c, tokens: tokens), Double(perLayer * 7 * tokens))
        XCTAssertEqual(UsefulFlops.head(c, rows: 3), Double(2 * 32 * 64 * 3))
        XCTAssertEqual(UsefulFlops.forward(c, rowLengths: lengths, headRows: 3),
                       Double(perLayer * 7 * tokens + 2 * 32 * 64 * 3 + 2 * 2 * 16 * 4 * pairs))
    }
}
