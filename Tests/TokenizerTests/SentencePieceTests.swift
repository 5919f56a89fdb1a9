import Foundation
import GGUF
import Tokenizer
import XCTest

/// Token-for-token identity with llama.cpp (llama-cpp-python 0.3.36, vocab_only) on Gemma 3's
/// SentencePiece-style vocabulary, from fixtures written by
/// scripts/reference/tokenizer_spm_fixtures.py.
final class SentencePieceTests: XCTestCase {
    private func fixture() throws -> [String: Any] { try Fixtures.json("gemma3_cases.json") }

    private struct Case {
        let name: String
        let text: String
        let ids: [Int32]
        let idsSpecial: [Int32]
        let idsBOS: [Int32]?
        let decoded: String
    }

    private func cases(_ key: String) throws -> [Case] {
        (try fixture()[key] as? [[String: Any]] ?? []).enumerated().map { i, c in
            let text = c["text"] as? String ?? ""
            return Case(name: c["name"] as? String ?? "\(key)[\(i)]", text: text, ids: Fixtures.ids(c["ids"]),
                        idsSpecial: Fixtures.ids(c["ids_special"]), idsBOS: c["ids_bos"].map { Fixtures.ids($0) },
                        decoded: c["decoded"] as? String ?? text)
        }
    }

    private func assertMatches(_ cases: [Case], file: StaticString = #filePath, line: UInt = #line) throws {
        XCTAssertFalse(cases.isEmpty, "no cases loaded", file: file, line: line)
        let tokenizer = try Fixtures.gemma.get()
        var failures = 0
        func check(_ got: [Int32], _ expected: [Int32], _ what: String, _ c: Case) {
            guard got != expected else { return }
            failures += 1
            if failures <= 8 {
                XCTFail("\(c.name) [\(what)] \(c.text.prefix(80).debugDescription): got \(got.prefix(30)), llama.cpp \(expected.prefix(30))",
                        file: file, line: line)
            }
        }
        for c in cases {
            check(tokenizer.encode(c.text), c.ids, "special=false", c)
            let special = tokenizer.encode(c.text, parseSpecial: true)
            check(special, c.idsSpecial, "special=true", c)
            if let bos = c.idsBOS { check(tokenizer.encode(c.text, addSpecial: true), bos, "add_bos", c) }
            let decoded = try tokenizer.decode(c.idsSpecial)
            if decoded != c.decoded {
                failures += 1
                XCTFail("\(c.name): decode gave \(decoded.debugDescription), llama.cpp \(c.decoded.debugDescription)", file: file, line: line)
            }
        }
        XCTAssertEqual(failures, 0, "\(failures) mismatches over \(cases.count) cases", file: file, line: line)
    }

    func testCorpusMatchesLlamaCppTokenForToken() throws {
        try assertMatches(cases("cases"))
    }

    func testRandomUnicodeStringsMatchLlamaCpp() throws {
        try assertMatches(cases("random_cases"))
    }

    func testLongRunsMatchLlamaCpp() throws {
        let long = try fixture()["long_cases"] as? [[String: Any]] ?? []
        XCTAssertFalse(long.isEmpty)
        let tokenizer = try Fixtures.gemma.get()
        for c in long {
            let unit = c["repeat"] as? String ?? ""
            let count = c["count"] as? Int ?? 0
            let text = String(repeating: unit, count: count)
            let expected = Fixtures.periodicDecoded(c["ids"])
            let ids = tokenizer.encode(text)
            XCTAssertEqual(ids.count, expected.count, "\(unit.debugDescription) x \(count): id count")
            XCTAssertTrue(ids == expected, "\(unit.debugDescription) x \(count): ids differ")
            XCTAssertEqual(try tokenizer.decode(ids), text, "\(unit.debugDescription) x \(count): round trip")
        }
    }

    func testDecodeOfEncodeIsTheInputWhereLlamaCppRoundTrips() throws {
        let tokenizer = try Fixtures.gemma.get()
        let all = try cases("cases") + cases("random_cases")
        let roundTripping = all.filter { $0.decoded == $0.text }
        // Every byte has a <0xNN> token, so llama.cpp round-trips every valid UTF-8 text except
        // a literal "▁" (U+2581), which it decodes as the space it stands for.
        XCTAssertEqual(all.filter { $0.decoded != $0.text }.map(\.name), all.filter { $0.text.contains("\u{2581}") }.map(\.name))
        XCTAssertGreaterThan(roundTripping.count, all.count - 5)
        for c in roundTripping {
            XCTAssertEqual(try tokenizer.decode(tokenizer.encode(c.text)), c.text, c.name)
            XCTAssertEqual(try tokenizer.decode(tokenizer.encode(c.text, parseSpecial: true)), c.text, c.name)
        }
    }

    func testReusedSessionMatchesFreshCalls() throws {
        let tokenizer = try Fixtures.gemma.get()
        let session = tokenizer.makeSession()
        var mismatches = 0
        for _ in 0..<2 {
            for c in try cases("random_cases") + cases("cases") where session.encode(c.text, addSpecial: false, parseSpecial: true) != c.idsSpecial {
                mismatches += 1
            }
        }
        XCTAssertEqual(mismatches, 0)
    }

    func testTokenAttributesMatchLlamaCppAfterItsFixUps() throws {
        let attributes = try fixture()["attributes"] as? [String: Any] ?? [:]
        let counts = attributes["counts"] as? [String: Int] ?? [:]
        let gguf = attributes["gguf_type_counts"] as? [String: Int] ?? [:]
        let tokenizer = try Fixtures.gemma.get()
        XCTAssertEqual(tokenizer.vocabSize, attributes["n_tokens"] as? Int)
        // Token types as the GGUF states them (counted by the `gguf` package).
        var types: [Int32: Int] = [:]
        for id in 0..<Int32(tokenizer.vocabSize) { types[tokenizer.tokenType(for: id) ?? -1, default: 0] += 1 }
        for (type, n) in gguf { XCTAssertEqual(types[Int32(type) ?? -1], n, "GGUF token type \(type)") }
        XCTAssertEqual(types[3], 6249)
        XCTAssertEqual(types[4], 165)
        XCTAssertEqual(types[6], 256)
        // llama.cpp's effective attributes enter the digest, so equal digests mean equal attributes.
        XCTAssertGreaterThan(counts["control"] ?? 0, 0)
        XCTAssertEqual(tokenizer.sha256, try fixture()["sha256"] as? String)
    }

    func testSpecialIdsAndFlagsComeFromTheGGUF() throws {
        let f = try fixture()
        let tokenizer = try Fixtures.gemma.get()
        XCTAssertEqual(tokenizer.family, "llama")
        XCTAssertEqual(tokenizer.addsBOS, f["add_bos"] as? Bool)
        XCTAssertEqual(tokenizer.addsEOS, f["add_eos"] as? Bool)
        XCTAssertFalse(tokenizer.addsSpacePrefix)
        XCTAssertEqual(tokenizer.bosID.map(Int.init), f["bos"] as? Int)
        XCTAssertEqual(tokenizer.eosID.map(Int.init), f["eos"] as? Int)
        XCTAssertEqual(tokenizer.piece(for: 2), "<bos>")
        XCTAssertEqual(tokenizer.id(for: "<bos>"), 2)
        XCTAssertNil(tokenizer.piece(for: Int32(tokenizer.vocabSize)))
        XCTAssertThrowsError(try tokenizer.decode([2, Int32(tokenizer.vocabSize)])) { error in
            XCTAssertEqual(error as? TokenizerError, .idOutOfRange(id: Int32(tokenizer.vocabSize), position: 1, vocabSize: tokenizer.vocabSize))
        }
    }

    func testConcurrentEncodesOfOneSharedTokenizerMatchLlamaCpp() throws {
        let tokenizer = try Fixtures.gemma.get()
        let all = try cases("random_cases")
        let lanes = 4
        let mismatches = UnsafeMutableBufferPointer<Int>.allocate(capacity: lanes)
        mismatches.initialize(repeating: 0)
        defer { mismatches.deallocate() }
        DispatchQueue.concurrentPerform(iterations: lanes) { lane in
            for c in all.enumerated() where c.offset % lanes == lane {
                if tokenizer.encode(c.element.text) != c.element.ids { mismatches[lane] += 1 }
            }
        }
        XCTAssertEqual(mismatches.reduce(0, +), 0)
    }

    // MARK: The loader

    func testLoaderPicksTheFamilyFromTheGGUF() throws {
        let gemma = try TokenizerLoader.load(gguf: Fixtures.gemmaGGUF.get())
        XCTAssertTrue(gemma is SentencePieceTokenizer)
        XCTAssertEqual(gemma.sha256, try Fixtures.gemma.get().sha256)
        let smollm = try TokenizerLoader.load(gguf: GGUFFile(path: Fixtures.url("gpt2small.gguf.fixture").path))
        XCTAssertTrue(smollm is Tokenizer)
        XCTAssertEqual(smollm.family, "gpt2")
    }

    func testLoaderNamesAnUnknownVocabularyType() throws {
        XCTAssertThrowsError(try TokenizerLoader.load(gguf: GGUFFile(path: Fixtures.url("unknown_vocab_type.gguf.fixture").path))) { error in
            guard case .unsupportedModel(let what)? = error as? TokenizerError else { return XCTFail("\(error)") }
            XCTAssertTrue(what.contains("'bert'"), what)
            XCTAssertTrue(what.contains("'gpt2'") && what.contains("'llama'"), what)
        }
    }

    func testScoresThatDoNotCoverTheTokensAreATypedError() throws {
        XCTAssertThrowsError(try TokenizerLoader.load(gguf: GGUFFile(path: Fixtures.url("spm_short_scores.gguf.fixture").path))) { error in
            guard case .invalidField("tokenizer.ggml.scores", let reason)? = error as? TokenizerError else { return XCTFail("\(error)") }
            XCTAssertTrue(reason.contains("2 scores for 3 tokens"), reason)
        }
    }
}
