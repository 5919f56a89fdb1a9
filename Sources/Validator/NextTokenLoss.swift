import Foundation

/// The validator's loss for one next-token answer in the top-k encoding: the true token's
/// probability if it is among the top-k ids, else the floor `(1 − Σ top-k) / (vocab − k)`.
public enum NextTokenLoss {
    /// Probabilities below this count as this, so a floor rounded to zero (or below) gives a large,
    /// finite loss rather than infinity.
    public static let minimumProbability = 1e-30

    /// The probability the answer gives `token`.
    public static func probability(of token: Int32, probabilities: ArraySlice<Float>, ids: ArraySlice<Int32>,
                                   floor: Float) -> Double {
        if let index = ids.firstIndex(of: token) {
            return Double(probabilities[probabilities.startIndex + (index - ids.startIndex)])
        }
        return Double(floor)
    }

    /// −log p of `token` (natural log).
    public static func loss(of token: Int32, probabilities: ArraySlice<Float>, ids: ArraySlice<Int32>, floor: Float) -> Double {
        -log(max(minimumProbability, probability(of: token, probabilities: probabilities, ids: ids, floor: floor)))
    }
}

/// Where a corpus is scored: each window of `seq` tokens predicts the token right after it.
public struct ScoreWindow: Equatable, Sendable {
    /// Index of the window's first token in the corpus.
    public var start: Int
    /// The token that follows the window (index `start + seq`).
    public var target: Int32
}

public enum ScoreWindows {
    /// Windows starting at 0, stride, 2·stride, … while a token follows the window.
    public static func make(tokens: [Int32], seq: Int, stride: Int) -> [ScoreWindow] {
        guard seq > 0, stride > 0, tokens.count > seq else { return [] }
        return Swift.stride(from: 0, to: tokens.count - seq, by: stride).map {
            ScoreWindow(start: $0, target: tokens[$0 + seq])
        }
    }
}

/// A corpus's mean loss over its scored positions.
public struct ScoreResult: Equatable, Sendable, Codable {
    /// Mean −log p of the true next token (nats).
    public var loss: Double
    /// exp(loss).
    public var perplexity: Double
    /// Positions scored.
    public var positions: Int

    public init(totalLoss: Double, positions: Int) {
        self.positions = positions
        loss = positions == 0 ? 0 : totalLoss / Double(positions)
        perplexity = exp(loss)
    }
}
