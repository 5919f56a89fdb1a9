import Foundation
import GGUF
import Tokenizer
import XCTest

/// A small complete vocabulary with the `gpt2` split rule, as HF tokenizer.json (Split regex +
/// ByteLevel, unk_token with fuse_unk, a bos template, a non-special added token) and as GGUF
/// (`tokenizer.ggml.pre = "gpt2"`, add_bos_token, missing bytes dropped).
final class SmallVocabularyTests: XCTestCase {
    private func cases() throws -> [[String: Any]] {
        try Fixtures.json("gpt2small_cases.json")["cases"] as? [[String: Any]] ?? []
    }

    private func check(_ tokenizer: Tokenizer, key: String) throws {
        let all = try cases()
        XCTAssertGreaterThan(all.count, 300)
        var failures = 0
        for c in all {
            let text = c["text"] as? String ?? ""
            for (suffix, ids) in [("", tokenizer.encode(text)),
                                  ("_add_special", tokenizer.encode(text, addSpecial: true)),
                                  ("_parse_special", tokenizer.encode(text, parseSpecial: true))] {
                let expected = Fixtures.ids(c[key + suffix])
                if ids != expected {
                    failures += 1
                    if failures <= 5 { XCTFail("[\(key)\(suffix)] \(text.debugDescription): got \(ids.prefix(30)), expected \(expected.prefix(30))") }
                }
            }
        }
        XCTAssertEqual(failures, 0)
    }

    func testTokenizerJSONWithSplitRegexMatchesHuggingFace() throws {
        let tokenizer = try Tokenizer(tokenizerJSON: Data(contentsOf: Fixtures.url("gpt2small.tokenizer.json")))
        XCTAssertEqual(tokenizer.preTokenizer, .gpt2)
        XCTAssertTrue(tokenizer.addsBOS)
        try check(tokenizer, key: "json")
        XCTAssertEqual(tokenizer.sha256, try Fixtures.json("gpt2small_cases.json")["sha256_json"] as? String)
    }

    func testGGUFWithGPT2PreTokenizerMatchesHuggingFace() throws {
        let tokenizer = try Tokenizer(gguf: GGUFFile(path: Fixtures.url("gpt2small.gguf.fixture").path))
        XCTAssertEqual(tokenizer.preTokenizer, .gpt2)
        XCTAssertEqual(tokenizer.bosID, 1)
        try check(tokenizer, key: "gguf")
        XCTAssertEqual(tokenizer.sha256, try Fixtures.json("gpt2small_cases.json")["sha256_gguf"] as? String)
    }
}
