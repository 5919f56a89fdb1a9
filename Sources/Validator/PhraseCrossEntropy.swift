import Foundation

/// Bittensor v3's phrase cross-entropy (`phrase_cross_entropy` in bittensor/utils/tokenizer_utils.py,
/// v3.6.3): how v3 validators scored a network-space TEXT_CAUSAL_LM_NEXT answer, a distribution over
/// phrases of standard tokens, against the text that really followed.
///
/// With k phrases, probabilities pᵢ and floor f (each clamped to [0, 1]) and the network vocabulary V:
/// - normalise by total = Σpᵢ + max(0, V − k)·f;
/// - `lossVal` = −log of the normalised probability of the phrases whose first token is the target's
///   first, or of the normalised floor when none is;
/// - `loss` = −log of Σ over c = 1 … min(L, len(target)) of the normalised probability of the phrases
///   exactly equal to target[:c] (compared over that many positions, padding included), or of the
///   normalised floor for a c no phrase matches; L is the phrases' padded width; the sum is capped at 1.
/// Both take −log(p + 1e-40), as Bittensor does.
public enum PhraseCrossEntropy {
    /// The network vocabulary Bittensor normalised the floor with.
    public static let networkVocabSize = 50257
    /// What a NaN loss counts as (v3 validators' rule).
    public static let nanLoss = 20.0
    /// The largest loss an answer can get: −log(0 + 1e-40), a target given probability 0. The
    /// validator's loop counts a timeout, an error or a malformed answer as this.
    public static let worstLoss = -log(1e-40)

    public struct Loss: Equatable, Sendable {
        /// Cross-entropy of the first target token.
        public var lossVal: Double
        /// Cross-entropy of the target as a phrase.
        public var loss: Double
    }

    /// - Parameters:
    ///   - probabilities: one per phrase.
    ///   - phrases: `phrases[i]` the network ids of phrase i, padded with `padding` to one width L.
    ///   - target: the standard tokens that followed (v3 validators held out 8).
    public static func loss(probabilities: [Float], phrases: [[Int32]], floor: Float, target: [Int32],
                            padding: Int32 = -1, vocabSize: Int = networkVocabSize) -> Loss {
        precondition(probabilities.count == phrases.count, "one probability per phrase")
        let k = probabilities.count
        let width = phrases.map(\.count).max() ?? 0
        let p = probabilities.map { Double(min(max($0, 0), 1)) }
        let f = Double(min(max(floor, 0), 1))
        let total = p.reduce(0, +) + Double(max(0, vocabSize - k)) * f
        let normalised = p.map { $0 / total }
        let normalisedFloor = f / total
        func padded(_ phrase: [Int32], _ length: Int) -> [Int32] {
            Array((phrase + [Int32](repeating: padding, count: max(0, length - phrase.count))).prefix(length))
        }

        var first = 0.0, matchedFirst = false
        if let head = target.first {
            for (i, phrase) in phrases.enumerated() where phrase.first == head {
                first += normalised[i]
                matchedFirst = true
            }
        }
        let valProbability = matchedFirst ? first : normalisedFloor

        var phraseProbability = 0.0
        let checked = min(width, target.count)
        if checked > 0 {
            let rows = phrases.map { padded($0, checked) }
            for c in 1...checked {
                let sub = padded(Array(target.prefix(c)), checked)
                var sum = 0.0, matched = false
                for (i, row) in rows.enumerated() where row == sub {
                    sum += normalised[i]
                    matched = true
                }
                phraseProbability += matched ? sum : normalisedFloor
            }
        }
        func crossEntropy(_ q: Double) -> Double {
            let value = -log(min(max(q, 0), 1) + 1e-40)
            return value.isNaN ? nanLoss : value
        }
        return Loss(lossVal: crossEntropy(valProbability), loss: crossEntropy(phraseProbability))
    }
}
