import Tokenizer
import XCTest

/// A reused `TokenizerSession` (warm cache, eviction when full) gives the reference's ids.
final class SessionTests: XCTestCase {
    func testReusedSessionMatchesHuggingFaceOnEveryCall() throws {
        let tokenizer = try Fixtures.smollmFromGGUF.get()
        let cases = Fixtures.cases(try Fixtures.json("smollm_cases.json")["cases"], prefix: "case")
            + Fixtures.cases(try Fixtures.json("smollm_random.json")["cases"], prefix: "random")
        let session = TokenizerSession(tokenizer: tokenizer)
        var mismatches = 0
        for _ in 0..<2 {
            for c in cases where session.encode(c.text) != c.ids { mismatches += 1 }
        }
        XCTAssertEqual(mismatches, 0)
    }

    func testSessionCacheEvictionKeepsResultsIdenticalToFreshCalls() throws {
        let tokenizer = try Fixtures.smollmFromGGUF.get()
        let session = TokenizerSession(tokenizer: tokenizer)
        // More distinct pieces than the cache holds (2^16 entries), in request-sized calls.
        let letters = Array("abcdefghijklmnopqrstuvwxyz")
        var words: [String] = []
        for i in 0..<80_000 {
            var n = i
            var w = " "
            repeat {
                w.append(letters[n % 26])
                n /= 26
            } while n > 0
            words.append(w)
        }
        var mismatches = 0
        for start in stride(from: 0, to: words.count, by: 400) {
            let text = words[start..<min(start + 400, words.count)].joined()
            if session.encode(text) != tokenizer.encode(text) { mismatches += 1 }
        }
        XCTAssertEqual(mismatches, 0)
    }
}
