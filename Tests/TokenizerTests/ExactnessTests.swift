import Foundation
import Tokenizer
import XCTest

/// Token-for-token identity with HF `tokenizers` for the default model, built both from the
/// GGUF and from HF's tokenizer.json.
final class ExactnessTests: XCTestCase {
    private func tokenizers() throws -> [(String, Tokenizer)] {
        [("gguf", try Fixtures.smollmFromGGUF.get()), ("tokenizer.json", try Fixtures.smollmFromJSON.get())]
    }

    private func assertMatches(_ cases: [Fixtures.Case], file: StaticString = #filePath, line: UInt = #line) throws {
        XCTAssertFalse(cases.isEmpty, "no cases loaded", file: file, line: line)
        for (source, tokenizer) in try tokenizers() {
            var failures = 0
            for c in cases {
                let ids = tokenizer.encode(c.text)
                if ids != c.ids {
                    failures += 1
                    if failures <= 5 {
                        XCTFail("[\(source)] \(c.name) \(c.text.debugDescription): got \(ids.prefix(40)), expected \(c.ids.prefix(40))", file: file, line: line)
                    }
                }
                let decoded = try tokenizer.decode(ids)
                if decoded != c.decoded {
                    failures += 1
                    XCTFail("[\(source)] \(c.name): decode gave \(decoded.debugDescription), HF decodes \(c.decoded.debugDescription)", file: file, line: line)
                }
            }
            XCTAssertEqual(failures, 0, "[\(source)] \(failures) of \(cases.count) cases differ", file: file, line: line)
        }
    }

    func testCorpusMatchesHuggingFaceTokenForToken() throws {
        try assertMatches(Fixtures.cases(Fixtures.json("smollm_cases.json")["cases"], prefix: "case"))
    }

    func testPreTokenizerPiecesMatchHuggingFace() throws {
        let cases = try Fixtures.json("smollm_cases.json")["cases"] as? [[String: Any]] ?? []
        let tokenizer = try Fixtures.smollmFromGGUF.get()
        var checked = 0
        for c in cases {
            guard let text = c["text"] as? String, let pieces = c["pieces"] as? [String] else { continue }
            XCTAssertEqual(tokenizer.preTokenize(text), pieces, c["name"] as? String ?? "")
            checked += 1
        }
        XCTAssertGreaterThan(checked, 30)
    }

    func testRandomUnicodeStringsMatchHuggingFace() throws {
        try assertMatches(Fixtures.cases(Fixtures.json("smollm_random.json")["cases"], prefix: "random"))
    }

    func testDecodeOfEncodeIsTheInputWhenEveryByteHasAToken() throws {
        let cases = Fixtures.cases(try Fixtures.json("smollm_cases.json")["cases"], prefix: "case")
            + Fixtures.cases(try Fixtures.json("smollm_random.json")["cases"], prefix: "random")
        let roundTripping = cases.filter { $0.decoded == $0.text }
        // Random scalars in planes 4-11 need byte 0xF1/0xF2, which this vocabulary lacks.
        XCTAssertGreaterThan(roundTripping.count, cases.count * 3 / 4)
        for (source, tokenizer) in try tokenizers() {
            for c in roundTripping {
                XCTAssertEqual(try tokenizer.decode(tokenizer.encode(c.text)), c.text, "[\(source)] \(c.name)")
            }
        }
    }

    func testLongRunsMatchHuggingFace() throws {
        let long = try Fixtures.json("smollm_cases.json")["long_cases"] as? [[String: Any]] ?? []
        XCTAssertFalse(long.isEmpty)
        let tokenizer = try Fixtures.smollmFromGGUF.get()
        for c in long {
            let unit = c["repeat"] as? String ?? ""
            let count = c["count"] as? Int ?? 0
            let text = String(repeating: unit, count: count)
            let expected = Fixtures.runLengthDecoded(c["ids_rle"])
            let ids = tokenizer.encode(text)
            XCTAssertEqual(ids.count, expected.count, "\(unit.debugDescription) x \(count): id count")
            XCTAssertTrue(ids == expected, "\(unit.debugDescription) x \(count): ids differ")
            XCTAssertEqual(try tokenizer.decode(ids), text, "\(unit.debugDescription) x \(count): round trip")
        }
    }

    func testSpecialTokensAreTextUnlessParseSpecialIsSet() throws {
        let specials = try Fixtures.json("smollm_cases.json")["special_cases"] as? [[String: Any]] ?? []
        XCTAssertFalse(specials.isEmpty)
        for (source, tokenizer) in try tokenizers() {
            for c in specials {
                let text = c["text"] as? String ?? ""
                XCTAssertEqual(tokenizer.encode(text), Fixtures.ids(c["ids"]), "[\(source)] plain \(text.debugDescription)")
                let parsed = tokenizer.encode(text, parseSpecial: true)
                XCTAssertEqual(parsed, Fixtures.ids(c["ids_parse_special"]), "[\(source)] parseSpecial \(text.debugDescription)")
                XCTAssertEqual(try tokenizer.decode(parsed), text, "[\(source)] special tokens decode to their text")
            }
        }
    }

    func testAddSpecialAddsNoBOSBecauseTheModelSaysNot() throws {
        for (source, tokenizer) in try tokenizers() {
            XCTAssertFalse(tokenizer.addsBOS, source)
            XCTAssertEqual(tokenizer.encode("Hello", addSpecial: true), tokenizer.encode("Hello"), source)
        }
    }

    func testDigestMatchesTheReferenceDefinitionForBothSources() throws {
        let expected = try Fixtures.json("smollm_cases.json")["sha256"] as? String
        XCTAssertNotNil(expected)
        for (source, tokenizer) in try tokenizers() {
            XCTAssertEqual(tokenizer.sha256, expected, source)
        }
    }

    func testVocabularyFactsMatchTheGGUF() throws {
        let tokenizer = try Fixtures.smollmFromGGUF.get()
        // Values from the GGUF metadata as read by the `gguf` package (see REFERENCE.md).
        XCTAssertEqual(tokenizer.vocabSize, 49152)
        XCTAssertEqual(tokenizer.bosID, 1)
        XCTAssertEqual(tokenizer.eosID, 2)
        XCTAssertEqual(tokenizer.unkID, 0)
        XCTAssertEqual(tokenizer.padID, 2)
        XCTAssertEqual(tokenizer.preTokenizer, .smollm)
        XCTAssertEqual(tokenizer.piece(for: 1), "<|im_start|>")
        XCTAssertEqual(tokenizer.id(for: "<|im_end|>"), 2)
        XCTAssertNil(tokenizer.piece(for: 49152))
        XCTAssertNil(tokenizer.piece(for: -1))
        for id in Int32(0)..<200 {
            if let p = tokenizer.piece(for: id) { XCTAssertEqual(tokenizer.id(for: p), id) }
        }
    }
}
