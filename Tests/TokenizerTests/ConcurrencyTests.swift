import Dispatch
import Tokenizer
import XCTest

/// One shared `Tokenizer` serves concurrent callers: each call has its own scratch.
final class ConcurrencyTests: XCTestCase {
    func testConcurrentEncodesOfOneSharedTokenizerMatchHuggingFace() throws {
        let tokenizer = try Fixtures.smollmFromGGUF.get()
        let cases = Fixtures.cases(try Fixtures.json("smollm_random.json")["cases"], prefix: "random")
        XCTAssertFalse(cases.isEmpty)
        let lanes = 4
        let mismatches = UnsafeMutableBufferPointer<Int>.allocate(capacity: lanes)
        mismatches.initialize(repeating: 0)
        defer { mismatches.deallocate() }
        DispatchQueue.concurrentPerform(iterations: lanes) { lane in
            for c in cases.enumerated() where c.offset % lanes == lane {
                if tokenizer.encode(c.element.text) != c.element.ids { mismatches[lane] += 1 }
            }
        }
        XCTAssertEqual(mismatches.reduce(0, +), 0)
    }
}
