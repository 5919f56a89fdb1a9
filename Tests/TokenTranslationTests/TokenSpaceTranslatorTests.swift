import TokenTranslation
import XCTest

/// The translation's rules (docs/PROTOCOL.md, "Token spaces") on toy tokenizers whose outputs can
/// be worked out by hand, plus properties checked over seeded random texts.
final class TokenSpaceTranslatorTests: XCTestCase {
    // The network splits " unbelievable" as " unbel|iev|able", the model as " un|believ|able".
    private let network = ToyTokenizer(words: [" the", " there", " hel", "lo", " unbel", "iev", "able", " cat"])
    private let model = ToyTokenizer(words: [" the", " there", " hel", " hello", " help", " un", "believ", "belief",
                                             "able", " cat", " cats", "s"])

    private func translator(bos: Bool = false) -> TokenSpaceTranslator {
        TokenSpaceTranslator(network: network, model: model, modelBOS: bos ? model.eos : nil, modelEOS: model.eos,
                             networkEOS: network.eos)
    }

    private func ids(_ words: [String], in tokenizer: ToyTokenizer) -> [Int32] { words.map(tokenizer.id) }

    /// A distribution over the model vocabulary with the given probabilities, zero elsewhere.
    private func distribution(_ entries: [(String, Float)]) -> [Float] {
        var p = [Float](repeating: 0, count: model.vocabSize)
        for (word, q) in entries { p[Int(word == "<eos>" ? model.eos : model.id(word))] = q }
        return p
    }

    func testAlignmentTiesBothSpacesToTheTextsBytes() throws {
        let row = try translator().align(networkIDs: ids([" unbel", "iev", "able", " cat"], in: network))
        XCTAssertEqual(row.text, Array(" unbelievable cat".utf8))
        XCTAssertEqual(row.networkEnds, [6, 9, 13, 17])
        XCTAssertEqual(row.modelIDs, ids([" un", "believ", "able", " cat"], in: model))
        XCTAssertEqual(row.modelEnds, [3, 9, 13, 17])
        // " unbel" ends inside "believ": the last model token ending by byte 6 is " un"; "iev" ends
        // with "believ", "able" and " cat" with themselves.
        XCTAssertEqual(row.hiddenSources, [0, 1, 2, 3])
    }

    func testAlignmentAfterABosSkipsIt() throws {
        let row = try translator(bos: true).align(networkIDs: ids([" unbel", "iev"], in: network))
        XCTAssertEqual(row.modelIDs, [model.eos] + ids([" un", "believ"], in: model))
        XCTAssertEqual(row.modelEnds, [0, 3, 9])
        XCTAssertEqual(row.firstTextPosition, 1)
        XCTAssertEqual(row.hiddenSources, [1, 2])
    }

    func testBadRowsAreTypedErrors() {
        XCTAssertThrowsError(try translator().align(networkIDs: [5, Int32(network.vocabSize)])) { error in
            XCTAssertEqual(error as? TokenSpaceError, .idOutOfRange(id: Int32(network.vocabSize), position: 1,
                                                                     vocabSize: network.vocabSize))
        }
        XCTAssertThrowsError(try translator().align(networkIDs: [network.eos, network.eos])) { error in
            XCTAssertEqual(error as? TokenSpaceError, .noText)
        }
    }

    func testHealingKeepsOnlyContinuationsOfTheBytesAfterTheBackedOffBoundary() throws {
        // Text " hel" ends at a network boundary; the model reads it as one token " hel", which it
        // would rarely choose if the word went on. Backing off to the start, the candidates starting
        // with " hel" are " hel" (exact), " hello" (adds "lo") and " help" (adds "p"); " the" is not.
        // (The first token can be backed off only to a bos.)
        let t = translator(bos: true)
        let row = try t.align(networkIDs: ids([" hel"], in: network))
        let healed = distribution([(" hello", 0.45), (" help", 0.15), (" hel", 0.15), (" the", 0.25)])
        let full = distribution([(" cat", 0.5), ("<eos>", 0.25)])
        let answer = healed.withUnsafeBufferPointer { h in
            full.withUnsafeBufferPointer { f in t.nextPhrases(row, healed: h, full: f, k: 4) }
        }
        // Renormalised over the consistent 0.75: "lo" 0.6, "p" 0.2, and the exact 0.2 times what
        // follows the whole text: " cat" 0.1, eos 0.05.
        XCTAssertEqual(answer.phrases, [ids(["lo"], in: network), [Int32(UInt8(ascii: "p"))], ids([" cat"], in: network),
                                        [network.eos]])
        let expected: [Float] = [0.6, 0.2, 0.1, 0.05]
        for (got, want) in zip(answer.probabilities, expected) {
            // Each is one or two float32 products and quotients of values ≤ 1: a few ulps of 1.
            XCTAssertEqual(got, want, accuracy: 4 * Float.ulpOfOne)
        }
        XCTAssertEqual(answer.floor, (1 - answer.probabilities.reduce(0, +)) / Float(network.vocabSize - 4))
    }

    func testAContinuationThatWouldMergeTheLastNetworkTokenIsDroppedAndAlignedAnswersAreExact() throws {
        // The network has " there": had the text gone on with "re", it would not have ended at " the".
        // So the one candidate extending " the" is inconsistent, and the answer is the full
        // distribution's phrases with the model's own probabilities, bit for bit.
        let t = translator(bos: true)
        let row = try t.align(networkIDs: ids([" the"], in: network))
        let healed = distribution([(" there", 0.5), (" the", 0.5)])
        let full = distribution([(" cat", 0.625), (" hel", 0.125), ("s", 0.0625)])
        let answer = healed.withUnsafeBufferPointer { h in
            full.withUnsafeBufferPointer { f in t.nextPhrases(row, healed: h, full: f, k: 3) }
        }
        XCTAssertEqual(answer.phrases, [ids([" cat"], in: network), ids([" hel"], in: network), ids(["s"], in: network)])
        XCTAssertEqual(answer.probabilities, [0.625, 0.125, 0.0625])
    }

    func testTheFloorCountsTheKSlotsAskedForEvenWhenFewerPhrasesExist() throws {
        // Three phrases hold 0.8125 and k = 10 was asked: the answer pads 7 slots with probability 0,
        // so the contract's floor is (1 − 0.8125) / (vocabulary − 10).
        let t = translator(bos: true)
        let row = try t.align(networkIDs: ids([" the"], in: network))
        let healed = distribution([(" the", 1)])
        let full = distribution([(" cat", 0.625), (" hel", 0.125), ("s", 0.0625)])
        let answer = healed.withUnsafeBufferPointer { h in
            full.withUnsafeBufferPointer { f in t.nextPhrases(row, healed: h, full: f, k: 10) }
        }
        XCTAssertEqual(answer.phrases.count, 3)
        XCTAssertEqual(answer.floor, (1 - 0.8125) / Float(network.vocabSize - 10))
    }

    func testCandidatesWithTheSamePhraseAreMerged() throws {
        // After " hel", the healed candidate " help" adds "p", and so does the byte token "p" after
        // the whole text: one phrase, their probabilities summed (0.5 + 0.5 × 0.5).
        let t = translator(bos: true)
        let row = try t.align(networkIDs: ids([" hel"], in: network))
        let healed = distribution([(" help", 0.5), (" hel", 0.5)])
        let full = distribution([("p", 0.5), (" cat", 0.5)])
        let answer = healed.withUnsafeBufferPointer { h in
            full.withUnsafeBufferPointer { f in t.nextPhrases(row, healed: h, full: f, k: 10) }
        }
        XCTAssertEqual(answer.phrases, [ids(["p"], in: network), ids([" cat"], in: network)])
        XCTAssertEqual(answer.probabilities, [0.75, 0.25])
    }

    func testNextTokenAtABoundaryInsideAModelTokenConditionsOnItsPrefix() throws {
        // Positions of " unbel|iev|able": " unbel" ends inside "believ" (after " un"), so its next
        // token comes from the model's distribution after " un", over candidates starting with "bel":
        // "believ" adds "iev" and "belief" adds "ief" (network: "i", then "ef" as bytes → first "i").
        let t = translator()
        let row = try t.align(networkIDs: ids([" unbel", "iev", "able"], in: network))
        let afterUn = distribution([("believ", 0.3), ("belief", 0.1), ("able", 0.6)])
        let afterBeliev = distribution([("able", 1)])
        let afterAble = distribution([(" cat", 1)])
        let rows = [afterUn, afterBeliev, afterAble]
        let answers = t.nextTokens(row, k: 2) { i in rows[i].withUnsafeBufferPointer { $0 } }
        XCTAssertEqual(answers[0].ids, [network.id("iev"), network.id("i")])
        XCTAssertEqual(answers[0].probabilities[0], 0.75, accuracy: 2 * Float.ulpOfOne)
        XCTAssertEqual(answers[0].probabilities[1], 0.25, accuracy: 2 * Float.ulpOfOne)
        XCTAssertEqual(answers[1].ids.first, network.id("able"))
        XCTAssertEqual(answers[1].probabilities.first, 1)
        XCTAssertEqual(answers[2].ids.first, network.id(" cat"))
    }

    func testPropertiesHoldOverRandomTexts() throws {
        var random = SplitMix64(seed: 7)
        let pieces = [" the", " there", " hel", "lo", " help", " un", "bel", "iev", "able", " cat", "s", "x", " ", "é"]
        let t = translator(bos: true)
        for _ in 0..<300 {
            let text = (0..<Int.random(in: 1...8, using: &random)).map { _ in pieces.randomElement(using: &random)! }.joined()
            let row = try t.align(networkIDs: network.encode(bytes: Array(text.utf8)))
            XCTAssertEqual(row.text, Array(text.utf8))
            XCTAssertEqual(row.modelEnds.last, row.text.count)
            XCTAssertEqual(row.modelEnds, row.modelEnds.sorted())
            for (j, source) in row.hiddenSources.enumerated() {
                let end = row.networkEnds[j]
                if row.modelEnds.contains(end) {
                    XCTAssertEqual(row.modelEnds[source], end, "aligned boundaries pick the model token ending there")
                } else if row.modelEnds[row.firstTextPosition] > end {
                    XCTAssertEqual(source, row.firstTextPosition)
                } else {
                    XCTAssertLessThanOrEqual(row.modelEnds[source], end)
                    XCTAssertGreaterThan(row.modelEnds[source + 1], end)
                }
            }
            // Any distribution: probabilities descend, lie in [0, 1], and with the floor account for
            // at most all the mass (k sums of float32 values ≤ 1 round by at most k ulps).
            var p = (0..<model.vocabSize).map { _ in Float.random(in: 0..<1, using: &random) }
            let total = p.reduce(0, +)
            p = p.map { $0 / total }
            let answer = p.withUnsafeBufferPointer { p in t.nextPhrases(row, healed: p, full: p, k: 16) }
            XCTAssertEqual(answer.probabilities, answer.probabilities.sorted(by: >))
            XCTAssertTrue(answer.probabilities.allSatisfy { $0 >= 0 && $0 <= 1 })
            let listed = answer.probabilities.reduce(0, +)
            XCTAssertLessThanOrEqual(listed, 1 + Float(model.vocabSize) * Float.ulpOfOne)
            XCTAssertGreaterThanOrEqual(answer.floor, 0)
            XCTAssertEqual(Set(answer.phrases).count, answer.phrases.count, "equal phrases are merged")
        }
    }
}

/// A seeded generator, so the random texts are the same on every run.
struct SplitMix64: RandomNumberGenerator {
    var state: UInt64
    init(seed: UInt64) { state = seed }
    mutating func next() -> UInt64 {
        state &+= 0x9E37_79B9_7F4A_7C15
        var z = state
        z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
        z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
        return z ^ (z >> 31)
    }
}
