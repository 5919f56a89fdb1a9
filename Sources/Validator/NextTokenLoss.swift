import Foundation
import Wire

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
    /// The tokens that follow the window, `target` first (as many as were asked for and exist).
    public var following: [Int32]
}

public enum ScoreWindows {
    /// Windows starting at 0, stride, 2·stride, … while a token follows the window; each notes up to
    /// `following` tokens after it.
    public static func make(tokens: [Int32], seq: Int, stride: Int, following: Int = 1) -> [ScoreWindow] {
        guard seq > 0, stride > 0, tokens.count > seq else { return [] }
        return Swift.stride(from: 0, to: tokens.count - seq, by: stride).map { window(tokens, start: $0, seq: seq, following: following) }
    }

    /// `count` windows at distinct random starts (seeded: the same on every run), each predicting
    /// the token after it; fewer when the corpus has fewer positions. Sorted by start.
    public static func sample(tokens: [Int32], seq: Int, count: Int, seed: UInt64, following: Int = 1) -> [ScoreWindow] {
        guard seq > 0, count > 0, tokens.count > seq else { return [] }
        var starts = Array(0..<(tokens.count - seq))
        var generator = SplitMix64(seed: seed)
        starts.shuffle(using: &generator)
        return starts.prefix(count).sorted().map { window(tokens, start: $0, seq: seq, following: following) }
    }

    private static func window(_ tokens: [Int32], start: Int, seq: Int, following: Int) -> ScoreWindow {
        let next = tokens[(start + seq)..<min(tokens.count, start + seq + max(1, following))]
        return ScoreWindow(start: start, target: tokens[start + seq], following: Array(next))
    }
}

/// A seeded generator (SplitMix64), so sampled windows are the same on every run and machine.
public struct SplitMix64: RandomNumberGenerator, Sendable {
    private var state: UInt64
    public init(seed: UInt64) { state = seed }
    public mutating func next() -> UInt64 {
        state &+= 0x9E37_79B9_7F4A_7C15
        var z = state
        z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
        z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
        return z ^ (z >> 31)
    }
}

/// A corpus's mean loss over its scored positions.
public struct ScoreResult: Equatable, Sendable, Codable {
    /// Mean −log p of the true next token (nats); in network space the mean `lossVal` of the next
    /// standard token (Bittensor's phrase cross-entropy).
    public var loss: Double
    /// exp(loss).
    public var perplexity: Double
    /// Positions scored.
    public var positions: Int
    /// Network space: the mean phrase loss against the next 8 standard tokens.
    public var phraseLoss: Double?
    /// Σ loss / ln 2 / Σ bytes of the scored tokens: bits per byte of text, which compares across
    /// tokenizers (nil when the tokens' bytes were not given).
    public var bitsPerByte: Double?

    public init(totalLoss: Double, positions: Int) {
        self.positions = positions
        loss = positions == 0 ? 0 : totalLoss / Double(positions)
        perplexity = exp(loss)
    }

    public init(_ totals: ScoreTotals, space: TokenSpace, bytesKnown: Bool) {
        self.init(totalLoss: totals.loss, positions: totals.positions)
        if space == .network, totals.positions > 0 { phraseLoss = totals.phraseLoss / Double(totals.positions) }
        if bytesKnown, totals.bytes > 0 { bitsPerByte = totals.loss / log(2) / Double(totals.bytes) }
    }
}
