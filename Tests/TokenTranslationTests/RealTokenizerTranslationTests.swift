import Foundation
import GGUF
import TestSupport
import Tokenizer
import TokenTranslation
import XCTest

/// The translation over the real tokenizers: GPT-2 (Models/gpt2.tiktoken) as the network space and
/// the default model's byte-level BPE, both fetched by scripts/test.
final class RealTokenizerTranslationTests: XCTestCase {
    private static let texts = [
        "The quick brown fox jumps over the lazy dog. It wasn't the dog's fault; they'd been running all day.",
        "def fibonacci(n: int) -> int:\n    return n if n < 2 else fibonacci(n - 1) + fibonacci(n - 2)\n",
        "Unbelievably, 1,234.56 people said naïve café résumé in 2024-01-15T12:34:56Z.",
        "日本語のテキスト and Arabic مرحبا بالعالم with emoji 😀👍🏽 🇫🇷.",
    ]

    private func translator() throws -> (TokenSpaceTranslator, network: Tokenizer, model: any TextTokenizer) {
        let ranks = TestPaths.repositoryRoot.appendingPathComponent("Models/gpt2.tiktoken").path
        let network = try Tokenizer.networkStandard(ranksPath: ranks).tokenizer
        let model = try TokenizerLoader.load(gguf: GGUFFile(path: TestPaths.defaultModel()))
        let t = TokenSpaceTranslator(network: TextTokenizerBytes(network), model: TextTokenizerBytes(model),
                                     modelBOS: model.addsBOS ? model.bosID : nil, modelEOS: model.eosID,
                                     networkEOS: NetworkStandardTokenizer.endOfText)
        return (t, network, model)
    }

    func testEveryPrefixOfRealTextAlignsAndTheFullTextIsTheModelsOwnTokenization() throws {
        let (t, network, model) = try translator()
        for text in Self.texts {
            let ids = network.encode(text, addSpecial: false, parseSpecial: false)
            let full = try t.align(networkIDs: ids)
            XCTAssertEqual(full.text, Array(text.utf8))
            XCTAssertEqual(Array(full.modelIDs[full.firstTextPosition...]), model.encode(text, addSpecial: false, parseSpecial: false))
            // Every prefix of network ids, including those ending inside a character (GPT-2 splits
            // emoji and CJK over byte tokens), spells its bytes in model tokens.
            for count in 1...ids.count {
                let row = try t.align(networkIDs: Array(ids.prefix(count)))
                XCTAssertEqual(row.modelEnds.last, row.text.count)
                XCTAssertEqual(row.networkEnds.count, count)
                for (j, source) in row.hiddenSources.enumerated() where row.modelEnds.contains(row.networkEnds[j]) {
                    XCTAssertEqual(row.modelEnds[source], row.networkEnds[j])
                }
            }
        }
    }

    func testARowEndingInWhitespaceIsTokenizedAsTheModelReadsItWhenAWordFollows() throws {
        // Paragraph breaks and runs of spaces before words: the model tokenizer gives a run's last
        // character to the word after it, and splits the run whole at the very end of a text.
        let (t, network, model) = try translator()
        let texts = ["It ends here.\n\nCalling write() after end() is an error.", "Two  spaces and   three\n\n\nnewlines\n word",
                     "A tab\t\tthen text", "One.\n\nTwo, then\n\nthree; and\n\n\n\nfour."]
        var checked = 0
        for text in texts {
            let bytes = Array(text.utf8)
            let whole = model.encode(text, addSpecial: false, parseSpecial: false)
            let ids = network.encode(text, addSpecial: false, parseSpecial: false)
            var end = 0
            for count in 1..<ids.count {
                end += try network.decodeBytes([ids[count - 1]]).count
                // Prefixes that end in whitespace with a letter right after them.
                guard [0x20, 0x0A, 0x09].contains(bytes[end - 1]), Character(UnicodeScalar(bytes[end])).isLetter else { continue }
                let row = try t.align(networkIDs: Array(ids.prefix(count)))
                XCTAssertEqual(row.modelEnds.last, end)
                XCTAssertEqual(Array(whole.prefix(row.modelIDs.count)), row.modelIDs,
                               "\(String(decoding: bytes[..<end], as: UTF8.self).debugDescription): the whole text's model tokens start with the row's")
                checked += 1
            }
        }
        XCTAssertGreaterThan(checked, 5)
    }

    func testTheEndOfTextIdStandsForNoText() throws {
        let (t, network, _) = try translator()
        let ids = [NetworkStandardTokenizer.endOfText] + network.encode("Hello", addSpecial: false, parseSpecial: false)
        let row = try t.align(networkIDs: ids)
        XCTAssertEqual(row.text, Array("Hello".utf8))
        XCTAssertEqual(row.networkEnds.first, 0)
    }
}
