import GGUF
import Server
import TestSupport
import XCTest

/// `serve --max-seq`'s default: min(2048, the model's trained context), read from the GGUF.
final class RowLimitTests: XCTestCase {
    func testDefaultIsCappedAt2048ForALongContextModel() throws {
        // SmolLM2: llama.context_length 8192 (REFERENCE.md).
        let limit = RowLimit(requested: nil, gguf: try GGUFFile(path: try TestPaths.defaultModel()))
        XCTAssertEqual(limit, RowLimit(requested: nil, contextLength: 8192))
        XCTAssertEqual(limit.maxSeq, 2048)
        XCTAssertNil(limit.clampedToContext)
    }

    func testDefaultFallsToAShorterTrainedContext() throws {
        // The synthetic llama fixture is written with context_length 128 (scripts/reference/engine_families.py).
        let path = TestPaths.repositoryRoot.appendingPathComponent("Tests/EngineTests/Fixtures/family_llama.gguf.fixture").path
        let limit = RowLimit(requested: nil, gguf: try GGUFFile(path: path))
        XCTAssertEqual(limit.maxSeq, 128)
        XCTAssertEqual(limit.clampedToContext, 128)
    }

    func testAnExplicitLimitIsHonouredAndNeverReportedAsClamped() {
        XCTAssertEqual(RowLimit(requested: 4096, contextLength: 128).maxSeq, 4096)
        XCTAssertNil(RowLimit(requested: 64, contextLength: 128).clampedToContext)
        XCTAssertNil(RowLimit(requested: 4096, contextLength: 128).clampedToContext)
    }

    func testAModelWithoutAContextLengthGetsTheDefault() {
        let limit = RowLimit(requested: nil, contextLength: nil)
        XCTAssertEqual(limit.maxSeq, RowLimit.defaultMaximum)
        XCTAssertNil(limit.clampedToContext)
    }
}
