// The mixing math of a mixture axon (issue 15, part 2): one phrase distribution from several
// experts' network-space TEXT_CAUSAL_LM_NEXT answers for the same row.
import AxonClient
import Foundation

/// One expert's answer for one row: its listed phrases and floor.
public struct ExpertPhrases: Sendable {
    public var phrases: [[Int32]]
    public var probabilities: [Float]
    /// The probability it gives each phrase it did not list.
    public var floor: Float

    public init(phrases: [[Int32]], probabilities: [Float], floor: Float) {
        self.phrases = phrases; self.probabilities = probabilities; self.floor = floor
    }

    /// Row `row` of a checked answer (empty phrase slots dropped).
    public init(_ answer: PhraseAnswer, row: Int) {
        let span = answer.span(row: row)
        let listed = answer.phrases(row: row)
        phrases = []; probabilities = []
        for (index, phrase) in listed.enumerated() where !phrase.isEmpty {
            phrases.append(phrase)
            probabilities.append(answer.probabilities[span.lowerBound + index])
        }
        floor = answer.floor(row: row)
    }
}

/// The mixture: with experts i of mixing weights πᵢ (renormalised over the experts that answered),
/// each phrase x any expert listed gets P(x) = Σᵢ πᵢ·pᵢ(x), where pᵢ(x) is expert i's probability
/// for x if it listed x (equal phrases of one expert summed) and its floor fᵢ otherwise: an expert's
/// floor stands for every phrase it did not list. The answer lists the k most probable of those
/// phrases (descending; equal probabilities: the phrase that sorts first by ids) and the floor
/// (1 − Σ listed)/(V − k), at least 0, as every network-space answer does.
public enum PhraseMixture {
    public struct Mixed: Equatable, Sendable {
        public var phrases: [[Int32]]
        public var probabilities: [Double]
        public var floor: Double
    }

    /// - Parameters:
    ///   - experts: the answers that arrived, with their mixing weights (any positive scale).
    ///   - k: phrases to list.
    public static func mix(_ experts: [(weight: Double, answer: ExpertPhrases)], k: Int,
                           vocabSize: Int = PhraseCrossEntropy.networkVocabSize) -> Mixed {
        let live = experts.filter { $0.weight > 0 && $0.weight.isFinite }
        let total = live.reduce(0) { $0 + $1.weight }
        guard total > 0, k > 0 else { return Mixed(phrases: [], probabilities: [], floor: 1 / Double(vocabSize)) }
        var mixed: [[Int32]: Double] = [:]
        let floors = live.map { $0.weight / total * Double(min(max($0.answer.floor, 0), 1)) }
        let floorSum = floors.reduce(0, +)
        var listed: [[[Int32]: Double]] = []
        for (_, answer) in live {
            var own: [[Int32]: Double] = [:]
            for (phrase, p) in zip(answer.phrases, answer.probabilities) { own[phrase, default: 0] += Double(min(max(p, 0), 1)) }
            listed.append(own)
        }
        for (index, own) in listed.enumerated() {
            let pi = live[index].weight / total
            for (phrase, p) in own {
                // Start from every expert's floor, then replace this expert's floor by its own probability.
                let base = mixed[phrase] ?? floorSum
                mixed[phrase] = base - floors[index] + pi * p
            }
        }
        let ranked = mixed.sorted { a, b in a.value != b.value ? a.value > b.value : a.key.lexicographicallyPrecedes(b.key) }.prefix(k)
        let sum = ranked.reduce(0) { $0 + $1.value }
        let rest = max(0, vocabSize - k)
        return Mixed(phrases: ranked.map(\.key), probabilities: ranked.map(\.value),
                     floor: rest == 0 ? 0 : max(0, 1 - sum) / Double(rest))
    }
}
