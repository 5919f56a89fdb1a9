import XCTest
import Engine
import GGUF

/// A model that fails to load raises a typed error and frees its memory once (issue 10 item 7:
/// the arena was freed in `ModelWeights.init` and again in its `deinit`, a SIGABRT).
final class EngineLoadFailureTests: XCTestCase {
    private let options = EngineOptions(threads: 2, maxBatchTokens: 64, maxRows: 4, maxSeq: 32, maxLogitRows: 16)

    /// A GGUF file whose tensor `failing` throws when it is dequantized.
    private struct ThrowingSource: ModelSource {
        struct Failure: Error, CustomStringConvertible { var description: String { "disk went away" } }
        let file: GGUFFile
        let failing: String
        func metadataInt(_ key: String) -> Int? { file.metadataInt(key) }
        func metadataDouble(_ key: String) -> Double? { file.metadataDouble(key) }
        func metadataString(_ key: String) -> String? { file.metadataString(key) }
        func tensorDims(_ name: String) -> [Int]? { file.tensorDims(name) }
        func tensorType(_ name: String) -> GGMLType? { file.tensorType(name) }
        func dequantizeRows(_ name: String, rows: Range<Int>, into destination: UnsafeMutableBufferPointer<Float>) throws {
            if name == failing { throw Failure() }
            try file.dequantizeRows(name, rows: rows, into: destination)
        }
    }

    func testASourceThatThrowsWhileLoadingGivesTensorLoadFailedAndNoDoubleFree() throws {
        let source = ThrowingSource(file: try TinyModel().file(), failing: "blk.1.ffn_down.weight")
        // Twice: a second load after a failed one must find the allocator intact.
        for _ in 0..<2 {
            XCTAssertThrowsError(try InferenceEngine(source: source, options: options)) { error in
                XCTAssertEqual(error as? EngineError, .tensorLoadFailed(name: "blk.1.ffn_down.weight", reason: "disk went away"))
            }
        }
        XCTAssertNoThrow(try InferenceEngine(file: TinyModel().file(), options: options))
    }

    func testATensorTypeWithoutADequantizerIsRefusedBeforeAnythingIsAllocated() throws {
        // Q5_K is common in Q4_K_M/Q5_K_M files; its blocks are 256 wide, so ffn_down's rows are 256 long.
        var model = TinyModel()
        model.ffn = 256
        model.typeOverrides = ["blk.0.ffn_down.weight": .q5_K]
        let expected = EngineError.tensorLoadFailed(name: "blk.0.ffn_down.weight",
                                                    reason: "\(GGUFError.unsupportedDequantization(type: .q5_K))")
        XCTAssertThrowsError(try InferenceEngine(file: model.file(), options: options)) { error in
            XCTAssertEqual(error as? EngineError, expected)
            XCTAssertTrue("\(error)".contains("Q5_K"), "\(error)")
        }
    }
}
