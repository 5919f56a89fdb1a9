import Foundation
import GGUF

/// Per-input-channel smoothing of the int8 path (SmoothQuant, Xiao et al. 2023): for each input
/// channel j of a projection's activations X, a factor s_j > 0 with X' = X·diag(1/s), W' = W·diag(s),
/// so X'·W'ᵀ = X·Wᵀ exactly while the outlier channels that set a token's u8 range shrink. The
/// division is folded into whatever produced X, so the forward pass is unchanged:
///
/// | input | X is | 1/s folded into | s into the columns of |
/// |---|---|---|---|
/// | attention input | RMSNorm(x)·attn_norm | attn_norm | attn_q, attn_k, attn_v |
/// | attention output's input | softmax·V | the rows of attn_v (and its bias) | attn_output |
/// | FFN input | RMSNorm(h)·ffn_norm | ffn_norm | ffn_gate, ffn_up |
/// | down's input | act(gate)·up | the rows of ffn_up | ffn_down |
///
/// act(gate)·up is linear in up, and softmax·V in V. Query heads sharing a KV head read the same V
/// channels, so the attention output's factors are per KV channel (the max over the group).
/// s_j = max|X_j|^α / max|W_j|^(1−α), the maxima over a calibration pass (`Int8Calibration`) and
/// over every output row of the projections reading channel j.
public struct SmoothingFactors: Sendable, Equatable {
    public struct Layer: Sendable, Equatable {
        /// (hidden): divides attn_norm, multiplies the columns of attn_q|k|v.
        public var attentionInput: [Float]
        /// (kvHeads · headDim): divides the rows of attn_v; multiplies attn_output's columns of
        /// every query head reading that KV head.
        public var valueChannels: [Float]
        /// (hidden): divides ffn_norm, multiplies the columns of ffn_gate|up.
        public var ffnInput: [Float]
        /// (ffn): divides the rows of ffn_up, multiplies the columns of ffn_down.
        public var downInput: [Float]

        public init(attentionInput: [Float], valueChannels: [Float], ffnInput: [Float], downInput: [Float]) {
            self.attentionInput = attentionInput
            self.valueChannels = valueChannels
            self.ffnInput = ffnInput
            self.downInput = downInput
        }
    }

    public var layers: [Layer]
    /// The migration strength α the factors were computed with.
    public let alpha: Float

    public init(layers: [Layer], alpha: Float) {
        self.layers = layers
        self.alpha = alpha
    }

    /// Factors from the channel maxima of the activations (`activations[l][p]`, one per input
    /// column of projection p of layer l) and of the weights (same shape: max over output rows of
    /// |W[row][j]|). A channel with a zero or non-finite maximum on either side keeps s = 1.
    init(config c: ModelConfig, activations: [[[Float]]], weights: [[[Float]]], alpha: Float) {
        self.alpha = alpha
        func factor(_ x: Float, _ w: Float) -> Float {
            guard x.isFinite, w.isFinite, x > 0, w > 0 else { return 1 }
            let s = powf(x, alpha) / powf(w, 1 - alpha)
            return s.isFinite && s > 0 ? s : 1
        }
        let hd = c.headDim, group = c.headCount / c.kvHeadCount
        layers = zip(activations, weights).map { x, w in
            typealias P = ProjectionWeights.Projection
            // The attention output's columns, grouped by the KV head their query head reads.
            var value = [Float](repeating: 1, count: c.kvHeadCount * hd)
            for g in 0..<c.kvHeadCount {
                for d in 0..<hd {
                    let columns = (g * group..<(g + 1) * group).map { $0 * hd + d }
                    value[g * hd + d] = factor(columns.map { x[P.attentionOutput.rawValue][$0] }.max() ?? 0,
                                               columns.map { w[P.attentionOutput.rawValue][$0] }.max() ?? 0)
                }
            }
            func channels(_ p: P) -> [Float] { zip(x[p.rawValue], w[p.rawValue]).map(factor) }
            return Layer(attentionInput: channels(.qkv), valueChannels: value, ffnInput: channels(.gateUp),
                         downInput: channels(.down))
        }
    }
}

/// A `ModelSource` with `SmoothingFactors` folded into the weights (the table on
/// `SmoothingFactors`); everything else as the wrapped source gives it. An f32 engine loaded from it
/// computes what one loaded from `base` computes, up to f32 rounding (tested); the int8 path
/// quantizes the smoothed activations and weights.
public struct SmoothedSource: ModelSourceWrapper {
    public let base: ModelSource
    public let factors: SmoothingFactors
    let headDim: Int
    let group: Int

    /// - Precondition: `factors` has `config`'s shapes (the folds check each tensor's).
    public init(_ base: ModelSource, factors: SmoothingFactors, config c: ModelConfig) {
        self.base = base
        self.factors = factors
        headDim = c.headDim
        group = c.headCount / c.kvHeadCount
    }

    /// What a tensor's role does with the factors: a vector divided elementwise, and a matrix's
    /// columns multiplied and rows divided.
    private enum Fold { case divide([Float]), matrix(columns: [Float]?, rows: [Float]?) }

    /// Whether the factors change tensor `name`.
    func folds(_ name: String) -> Bool { fold(name) != nil }

    private func fold(_ name: String) -> Fold? {
        let parts = name.split(separator: ".", maxSplits: 2)
        guard parts.count == 3, parts[0] == "blk", let l = Int(parts[1]), factors.layers.indices.contains(l) else { return nil }
        let f = factors.layers[l]
        switch parts[2] {
        case "attn_norm.weight": return .divide(f.attentionInput)
        case "attn_q.weight", "attn_k.weight": return .matrix(columns: f.attentionInput, rows: nil)
        case "attn_v.weight": return .matrix(columns: f.attentionInput, rows: f.valueChannels)
        case "attn_v.bias": return .divide(f.valueChannels)
        case "attn_output.weight":
            let hd = headDim, group = group
            let columns = (0..<(f.valueChannels.count * group)).map { c in f.valueChannels[(c / hd / group) * hd + c % hd] }
            return .matrix(columns: columns, rows: nil)
        case "ffn_norm.weight": return .divide(f.ffnInput)
        case "ffn_gate.weight": return .matrix(columns: f.ffnInput, rows: nil)
        case "ffn_up.weight": return .matrix(columns: f.ffnInput, rows: f.downInput)
        case "ffn_down.weight": return .matrix(columns: f.downInput, rows: nil)
        default: return nil
        }
    }

    public func dequantizeRows(_ name: String, rows: Range<Int>, into destination: UnsafeMutableBufferPointer<Float>) throws {
        try base.dequantizeRows(name, rows: rows, into: destination)
        guard let fold = fold(name), let d = destination.baseAddress, !rows.isEmpty else { return }
        let k = destination.count / rows.count
        switch fold {
        case let .divide(v):
            // A vector is one row of ne[0] values.
            guard v.count == destination.count else { preconditionFailure("\(name): \(destination.count) values, \(v.count) factors") }
            for i in 0..<v.count { d[i] /= v[i] }
        case let .matrix(columns, rowFactors):
            precondition(columns.map { $0.count == k } ?? true, "\(name): \(k) columns, \(columns?.count ?? 0) factors")
            precondition(rowFactors.map { rows.upperBound <= $0.count } ?? true, "\(name): rows \(rows) beyond the factors")
            for (i, r) in rows.enumerated() {
                let row = d + i * k
                if let columns { for j in 0..<k { row[j] *= columns[j] } }
                if let rowFactors { let s = rowFactors[r]; for j in 0..<k { row[j] /= s } }
            }
        }
    }
}

/// Per-column maxima of |x| at each projection's input, gathered by `Int8Projections` during a
/// calibration pass.
final class ChannelMaxima {
    /// [layer][projection][column]
    private(set) var maxima: [[[Float]]]

    init(_ weights: ProjectionWeights) {
        maxima = (0..<weights.layerCount).map { l in
            ProjectionWeights.Projection.allCases.map { [Float](repeating: 0, count: weights.shape($0, layer: l).columns) }
        }
    }

    func record(_ p: ProjectionWeights.Projection, layer l: Int, _ x: UnsafePointer<Float>, stride ldx: Int, rows m: Int) {
        maxima[l][p.rawValue].withUnsafeMutableBufferPointer { out in
            for r in 0..<m {
                let row = x + r * ldx
                for j in 0..<out.count { out[j] = max(out[j], abs(row[j])) }
            }
        }
    }
}

/// The calibration of the int8 path's smoothing at load: a forward pass over a small built-in text
/// (`text`, tokenized by the caller: the engine has no tokenizer) through the int8 engine itself,
/// still unsmoothed, recording every projection input's channel maxima; the factors then come from
/// those and the weights' column maxima (read off the per-row s8 copies), and the engine re-reads
/// what `SmoothedSource` folds (the projections, re-rounded in place one matrix at a time, and the
/// norms and V biases). Nothing is loaded twice, so peak memory is one int8 engine's plus one f32
/// matrix; the cost is one forward pass and one more rounding of the projections (docs/ENGINE.md).
public enum Int8Calibration {
    /// The migration strength α (docs/ENGINE.md, "int8 prefill": measured on both models).
    public static let alpha: Float = 0.5

    /// Most calibration tokens.
    public static let maxTokens = 1024

    /// The built-in calibration text: plain English prose. The accuracy tests evaluate on other text
    /// (Benchmarks/network/heldout.txt), never this.
    public static let text = """
        The lighthouse keeper climbed the spiral stairs every evening at dusk, counting the steps as \
        his father had taught him. There were one hundred and twelve of them, worn smooth in the middle \
        by a century of boots. At the top he trimmed the wick, polished the great lens with a soft cloth, \
        and watched the first beam sweep out across the water. Ships he would never meet passed safely \
        because of that light, and he found a quiet pride in the thought. In winter the storms came in \
        from the north, heavy with sleet, and the waves threw spray high enough to rattle the windows of \
        the lamp room. On those nights he did not sleep. He sat beside the stove with a pot of tea and \
        the logbook open on his knees, writing down the wind, the pressure and the hour of every passing \
        vessel. The entries were short and plain: a trawler heading home at two, a cargo ship riding low \
        at half past four, nothing at all until dawn. Years later, when the light was automated and the \
        keeper's cottage became a small museum, visitors would read those pages and wonder what kind of \
        man could spend so many nights alone with the sea. The answer, his daughter said, was simple. He \
        was never alone. He had the sea, the light, the ships and the birds that nested in the cliffs \
        below the tower, and he knew each of them the way other people know their neighbours.
        """

    /// The smoothing factors of `engine`, an int8 engine not yet smoothed, from one forward pass
    /// over `tokens` (one row; the engine's scratch is sized for it whatever its options).
    /// - Throws: `EngineError.tokenOutOfRange` for an id outside the vocabulary.
    static func factors(_ engine: InferenceEngine, tokens: [Int32]) throws -> SmoothingFactors {
        guard let int8 = engine.int8Projections, let weights = engine.decodeWeights else {
            preconditionFailure("an int8 engine holds int8 projections")
        }
        let vocab = engine.config.vocabSize
        if let at = tokens.firstIndex(where: { $0 < 0 || Int($0) >= vocab }) {
            throw EngineError.tokenOutOfRange(row: 0, position: at, id: tokens[at], vocabSize: vocab)
        }
        let observer = ChannelMaxima(weights)
        int8.observer = observer
        engine.runLayers(RaggedBatch(rows: [tokens]))
        int8.observer = nil
        let columnMaxima: [[[Float]]] = (0..<weights.layerCount).map { l in
            ProjectionWeights.Projection.allCases.map { p in
                guard let q = weights.quantized(p, layer: l) else { return [] }
                return q.withInt8Storage { values, scales in
                    var out = [Float](repeating: 0, count: q.columns)
                    for r in 0..<q.rows {
                        let row = values + r * q.columns, s = scales[r]
                        for j in 0..<q.columns { out[j] = max(out[j], abs(Float(row[j])) * s) }
                    }
                    return out
                } ?? []
            }
        }
        return SmoothingFactors(config: engine.config, activations: observer.maxima, weights: columnMaxima, alpha: alpha)
    }
}
