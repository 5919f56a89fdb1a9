import Foundation
import GGUF
import Tokenizer
import XCTest

/// Bad input gives a typed error naming what is wrong.
final class ErrorTests: XCTestCase {
    private func ggufError(_ name: String) throws -> TokenizerError? {
        let file = try GGUFFile(path: Fixtures.url(name).path)
        do {
            _ = try Tokenizer(gguf: file)
            return nil
        } catch let error as TokenizerError {
            return error
        }
    }

    func testUnknownModelIsRejected() throws {
        let error = try ggufError("bad_model.gguf.fixture")
        guard case .unsupportedModel(let what)? = error else { return XCTFail("got \(String(describing: error))") }
        XCTAssertTrue(what.contains("llama"), what)
    }

    func testUnknownPreTokenizerIsRejected() throws {
        let error = try ggufError("bad_pre.gguf.fixture")
        guard case .unsupportedPreTokenizer(let what)? = error else { return XCTFail("got \(String(describing: error))") }
        XCTAssertTrue(what.contains("qwen2"), what)
    }

    func testMissingPreTokenizerIsRejectedNotDefaulted() throws {
        XCTAssertEqual(try ggufError("missing_pre.gguf.fixture"), .missingField("tokenizer.ggml.pre"))
    }

    func testMergeWithoutASpaceIsRejected() throws {
        let error = try ggufError("bad_merge_shape.gguf.fixture")
        guard case .malformedMerge(let index, let merge, _)? = error else { return XCTFail("got \(String(describing: error))") }
        XCTAssertEqual(index, 0)
        XCTAssertEqual(merge, "ab")
    }

    func testMergeNamingAnUnknownTokenIsRejected() throws {
        let error = try ggufError("bad_merge_token.gguf.fixture")
        guard case .malformedMerge(0, "a c", let reason)? = error else { return XCTFail("got \(String(describing: error))") }
        XCTAssertTrue(reason.contains("'c'"), reason)
    }

    func testIdOutOfRangeOnDecodeIsATypedError() throws {
        let tokenizer = try Fixtures.smollmFromGGUF.get()
        XCTAssertThrowsError(try tokenizer.decode([1, 2, 49152, 3])) { error in
            XCTAssertEqual(error as? TokenizerError, .idOutOfRange(id: 49152, position: 2, vocabSize: 49152))
        }
        XCTAssertThrowsError(try tokenizer.decode([-1])) { error in
            XCTAssertEqual(error as? TokenizerError, .idOutOfRange(id: -1, position: 0, vocabSize: 49152))
        }
    }

    func testSequenceEndingInsideACharacterDecodesToAReplacementCharacter() throws {
        let tokenizer = try Fixtures.smollmFromGGUF.get()
        let text = "👍🏽 𝟙 ⑳"
        let ids = tokenizer.encode(text)
        let bytes = try tokenizer.decodeBytes(ids)
        XCTAssertEqual(bytes, Array(text.utf8))
        // Every prefix of the ids whose bytes stop inside a character: decode marks the
        // incomplete character with U+FFFD, decodeBytes keeps the raw prefix.
        var cutsInsideACharacter = 0
        for n in 1..<ids.count {
            let prefix = try tokenizer.decodeBytes(Array(ids.prefix(n)))
            XCTAssertEqual(prefix, Array(bytes.prefix(prefix.count)))
            if String(validating: prefix, as: UTF8.self) == nil {
                cutsInsideACharacter += 1
                let decoded = try tokenizer.decode(Array(ids.prefix(n)))
                XCTAssertTrue(decoded.hasSuffix("\u{FFFD}"), decoded.debugDescription)
                XCTAssertEqual(decoded.unicodeScalars.filter { $0 == "\u{FFFD}" }.count, 1, decoded.debugDescription)
            }
        }
        XCTAssertGreaterThan(cutsInsideACharacter, 0, "the text should split a character across tokens")
    }

    // MARK: tokenizer.json

    private func smallJSON(_ edit: (inout [String: Any]) -> Void) throws -> Data {
        var root = try Fixtures.json("gpt2small.tokenizer.json")
        edit(&root)
        return try JSONSerialization.data(withJSONObject: root)
    }

    func testUnsupportedSplitRegexIsRejected() throws {
        let data = try smallJSON { root in
            var pre = root["pre_tokenizer"] as? [String: Any] ?? [:]
            var steps = pre["pretokenizers"] as? [[String: Any]] ?? []
            steps[0]["pattern"] = ["Regex": "\\w+|[^\\w\\s]+"]
            pre["pretokenizers"] = steps
            root["pre_tokenizer"] = pre
        }
        XCTAssertThrowsError(try Tokenizer(tokenizerJSON: data)) { error in
            guard case .unsupportedPreTokenizer(let what)? = error as? TokenizerError else { return XCTFail("\(error)") }
            XCTAssertTrue(what.contains("GPT-2"), what)
        }
    }

    func testNonBPEModelIsRejected() throws {
        let data = try smallJSON { root in
            var model = root["model"] as? [String: Any] ?? [:]
            model["type"] = "WordPiece"
            root["model"] = model
        }
        XCTAssertThrowsError(try Tokenizer(tokenizerJSON: data)) { error in
            guard case .unsupportedModel(let what)? = error as? TokenizerError else { return XCTFail("\(error)") }
            XCTAssertTrue(what.contains("WordPiece"), what)
        }
    }

    func testMalformedJSONMergeIsRejected() throws {
        let data = try smallJSON { root in
            var model = root["model"] as? [String: Any] ?? [:]
            var merges = model["merges"] as? [Any] ?? []
            merges[5] = ["Ġ", "t", "h"]
            model["merges"] = merges
            root["model"] = model
        }
        XCTAssertThrowsError(try Tokenizer(tokenizerJSON: data)) { error in
            guard case .malformedMerge(5, _, _)? = error as? TokenizerError else { return XCTFail("\(error)") }
        }
    }

    func testNormalizerIsRejectedRatherThanIgnored() throws {
        let data = try smallJSON { root in root["normalizer"] = ["type": "NFC"] }
        XCTAssertThrowsError(try Tokenizer(tokenizerJSON: data)) { error in
            guard case .invalidField("normalizer", _)? = error as? TokenizerError else { return XCTFail("\(error)") }
        }
    }

    func testInvalidJSONIsATypedError() {
        XCTAssertThrowsError(try Tokenizer(tokenizerJSON: Data("{\"model\": ".utf8))) { error in
            guard case .invalidJSON? = error as? TokenizerError else { return XCTFail("\(error)") }
        }
    }

    func testErrorMessagesNameTheProblem() {
        XCTAssertEqual(TokenizerError.idOutOfRange(id: 7, position: 3, vocabSize: 5).description,
                       "token id 7 at position 3 is out of range: the vocabulary has ids 0..<5")
    }
}
