import Engine
import TestSupport
import XCTest

/// Both libraries of the f32 products (`F32GEMM`), whichever this machine prefers, against the
/// numpy fp32 reference of EngineReferenceTests: every call site (projections with the residual
/// accumulated, attention's Q·Kᵀ and S·V layouts, the LM head above one row) runs on each, and
/// either only reorders f32 sums, so the reordering bounds of `Tolerance` apply.
final class F32GEMMTests: XCTestCase {
    func testEachLibraryMatchesTheFp32Reference() throws {
        let fixture = try ReferenceFixture.reference()
        let rows = fixture.rows.map(\.ids)
        for gemm in F32GEMM.allCases {
            let engine = try InferenceEngine(path: TestPaths.defaultModel(),
                                             options: EngineOptions(threads: 2, f32GEMM: gemm))
            XCTAssertEqual(engine.f32GEMM, gemm)
            // Several rows, so the head is an sgemm and attention has items on both workers.
            let result = try engine.forward(RaggedBatch(rows: rows), logits: .last)
            var worstLogit: Float = 0, worstHidden: Float = 0
            for (r, row) in fixture.rows.enumerated() {
                let expected = try XCTUnwrap(row.positions.last)
                let logits = try XCTUnwrap(result.lastLogits(row: r))
                for (id, value) in zip(expected.top_ids, expected.top_logits) {
                    worstLogit = max(worstLogit, abs(logits[Int(id)] - value))
                }
                for (a, b) in zip(result.hidden(row: r, position: expected.position), expected.hidden) {
                    worstHidden = max(worstHidden, abs(a - b))
                }
            }
            XCTAssertLessThanOrEqual(worstLogit, Tolerance.logit, "\(gemm): logits")
            XCTAssertLessThanOrEqual(worstHidden, Tolerance.hidden, "\(gemm): hidden states")
        }
    }
}
