import Foundation
import Tokenizer
import XCTest

/// The network's standard tokenizer (GPT-2 from tiktoken ranks) against PyPI `tiktoken`, from
/// fixtures written by scripts/reference/tokenizer_tiktoken_fixtures.py.
final class NetworkTokenizerTests: XCTestCase {
    private func fixture() throws -> [String: Any] { try Fixtures.json("gpt2_tiktoken_cases.json") }

    private func assertMatches(_ key: String, file: StaticString = #filePath, line: UInt = #line) throws {
        let cases = try fixture()[key] as? [[String: Any]] ?? []
        XCTAssertFalse(cases.isEmpty, "no cases loaded", file: file, line: line)
        let tokenizer = try Fixtures.network.get().tokenizer
        var failures = 0
        for (i, c) in cases.enumerated() {
            let text = c["text"] as? String ?? ""
            let name = c["name"] as? String ?? "\(key)[\(i)]"
            for (what, got, expected) in [("encode_ordinary", tokenizer.encode(text), Fixtures.ids(c["ids"])),
                                          ("allowed_special=all", tokenizer.encode(text, parseSpecial: true), Fixtures.ids(c["ids_special"]))]
            where got != expected {
                failures += 1
                if failures <= 8 {
                    XCTFail("\(name) [\(what)] \(text.prefix(80).debugDescription): got \(got.prefix(30)), tiktoken \(expected.prefix(30))", file: file, line: line)
                }
            }
            let decoded = try tokenizer.decode(Fixtures.ids(c["ids_special"]))
            if decoded != c["decoded"] as? String ?? text {
                failures += 1
                XCTFail("\(name): decode gave \(decoded.debugDescription)", file: file, line: line)
            }
        }
        XCTAssertEqual(failures, 0, "\(failures) mismatches over \(cases.count) cases", file: file, line: line)
    }

    func testCorpusMatchesTiktokenTokenForToken() throws {
        try assertMatches("cases")
    }

    func testRandomUnicodeStringsMatchTiktoken() throws {
        try assertMatches("random_cases")
    }

    /// One session over every case twice: the second pass answers from the warm piece cache
    /// (inline keys of every length, shared prefixes) and must still be tiktoken's ids.
    func testWarmSessionMatchesTiktoken() throws {
        let cases = try fixture()["cases"] as? [[String: Any]] ?? []
        XCTAssertFalse(cases.isEmpty)
        let session = TokenizerSession(tokenizer: try Fixtures.network.get().tokenizer)
        for pass in 1...2 {
            for (i, c) in cases.enumerated() {
                let text = c["text"] as? String ?? ""
                XCTAssertEqual(session.encode(text), Fixtures.ids(c["ids"]), "pass \(pass), \(c["name"] as? String ?? "cases[\(i)]")")
            }
        }
    }

    func testLongRunsMatchTiktoken() throws {
        let long = try fixture()["long_cases"] as? [[String: Any]] ?? []
        XCTAssertFalse(long.isEmpty)
        let tokenizer = try Fixtures.network.get().tokenizer
        for c in long {
            let unit = c["repeat"] as? String ?? ""
            let count = c["count"] as? Int ?? 0
            let text = String(repeating: unit, count: count)
            let ids = tokenizer.encode(text)
            XCTAssertTrue(ids == Fixtures.periodicDecoded(c["ids"]), "\(unit.debugDescription) x \(count): ids differ")
            XCTAssertEqual(try tokenizer.decode(ids), text, "\(unit.debugDescription) x \(count): round trip")
        }
    }

    func testIdentityFieldsMatchTheRanksFileAndTheDigestDefinition() throws {
        let network = try Fixtures.network.get()
        let f = try fixture()
        XCTAssertEqual(NetworkStandardTokenizer.name, "gpt2")
        XCTAssertEqual(network.vocabSize, f["n_vocab"] as? Int)
        XCTAssertEqual(network.ranksSHA256, f["ranks_sha256"] as? String)
        XCTAssertEqual(network.tokenizer.sha256, f["sha256"] as? String)
        XCTAssertEqual(network.tokenizer.eosID, NetworkStandardTokenizer.endOfText)
        XCTAssertEqual(network.tokenizer.piece(for: 50256), "<|endoftext|>")
    }

    func testMalformedRanksAreTypedErrorsNamingTheLine() {
        let cases: [(String, String)] = [
            ("IQ== 0\nnot-a-line\n", "line 2"),
            ("IQ== 0\nIg== 0\n", "repeats rank 0"),
            ("IQ== 0\nIg== 2\n", "rank 1 is missing"),
            ("IQ== 0\nIQ== 1\n", "repeats the bytes"),
            ("IQ== 0\n", "has no rank"),
        ]
        for (text, expected) in cases {
            XCTAssertThrowsError(try Tokenizer(tiktokenRanks: Array(text.utf8), preTokenizer: .gpt2, specialTokens: [])) { error in
                guard case .invalidField(_, let reason)? = error as? TokenizerError else { return XCTFail("\(error)") }
                XCTAssertTrue(reason.contains(expected), "\(reason) should mention \(expected)")
            }
        }
    }
}
