import CKernels
import Dispatch

/// The int8 prefill path's projections (`EngineOptions.precision == .int8`): y = x·Wᵀ through
/// oneDNN's `dnnl_gemm_u8s8s32` (W8A8). Each token's activation row is quantized to u8 with its own
/// scale and zero point; W is the decode path's per-row s8 copy (`QuantizedMatrix.Format.int8`,
/// shared, not copied); the int32 products come back to f32 with the zero-point compensation
/// Σ_k (u − z)·q = Σ_k u·q − z·Σ_k q[j][k] (the weight-row sums are kept here).
///
/// Not thread-safe (one scratch): the engine calls it from its forward pass only.
final class Int8Projections {
    struct Matrix {
        let weights: QuantizedMatrix
        /// Σ_k q[j][k] per output j.
        let rowSums: UnsafeMutablePointer<Int32>
    }

    private let layers: [[Matrix]]   // [layer][Projection.rawValue]
    let threads: Int
    /// 255 with VNNI, else 127 (`Int8Gemm.ISA.activationLevels`).
    let levels: Int32
    // Scratch for the widest projection at the engine's batch limit; pages are touched only as far
    // as a batch reaches.
    private let activations: UnsafeMutablePointer<UInt8>   // (tokens, widest input)
    private let products: UnsafeMutablePointer<Int32>      // (tokens, widest output)
    private let scales: UnsafeMutablePointer<Float>        // (tokens)
    private let zeros: UnsafeMutablePointer<Int32>         // (tokens)
    private let widestInput: Int, widestOutput: Int
    private let maxTokens: Int

    /// The peak-to-rms ratio of an activation row above which it falls back to f32 activations.
    /// Measured on 1,025 held-out positions (docs/ENGINE.md, "int8 prefill"): 24 left SmolLM2 at
    /// 987/1025 (bar 990) and Gemma 3 at 983 (bar 987); 12 gives 998 and 1000; 6 gives 1004 on
    /// SmolLM2 with more rows on the slower path. (A row of k Gaussian values has peak/rms ≈ 3.5.)
    static let fallbackPeakRatio: Float = 12
    /// Rows that fell back, summed over products (a measure of how often it happens).
    var fallbackRows = 0

    /// Records each product's input channel maxima while set (`Int8Calibration`).
    var observer: ChannelMaxima?

    /// Bytes of the weight-row sums (the int8 weights themselves belong to `ProjectionWeights`).
    let rowSumBytes: Int

    /// - Precondition: every projection of `weights` is per-row int8.
    init(weights: ProjectionWeights, maxTokens: Int, threads: Int, levels: Int32 = Int8Gemm.isa.activationLevels) {
        self.threads = threads
        self.levels = levels
        self.maxTokens = maxTokens
        var sums = 0
        layers = (0..<weights.layerCount).map { l in
            ProjectionWeights.Projection.allCases.map { p in
                guard let q = weights.quantized(p, layer: l), q.format == .int8 else {
                    preconditionFailure("the int8 path needs per-row int8 projections")
                }
                let rowSums = UnsafeMutablePointer<Int32>.allocate(capacity: q.rows)
                _ = q.withInt8Storage { values, _ in
                    for j in 0..<q.rows {
                        var s: Int32 = 0
                        for c in 0..<q.columns { s += Int32(values[j * q.columns + c]) }
                        rowSums[j] = s
                    }
                }
                sums += q.rows * 4
                return Matrix(weights: q, rowSums: rowSums)
            }
        }
        rowSumBytes = sums
        let all = layers.flatMap { $0 }
        widestInput = all.map(\.weights.columns).max() ?? 1
        widestOutput = all.map(\.weights.rows).max() ?? 1
        activations = .allocate(capacity: maxTokens * widestInput)
        products = .allocate(capacity: maxTokens * widestOutput)
        scales = .allocate(capacity: maxTokens)
        zeros = .allocate(capacity: maxTokens)
    }

    deinit {
        for m in layers.flatMap({ $0 }) { m.rowSums.deallocate() }
        activations.deallocate(); products.deallocate(); scales.deallocate(); zeros.deallocate()
    }

    /// y = x·Wᵀ (y += with `accumulate`) for projection `p` of layer `l`; x is (m × columns) with
    /// row stride ldx, y (m × rows) with row stride ldy. A row with a non-finite value comes out 0
    /// (as its product would be garbage either way) rather than poisoning its scale.
    func project(_ p: ProjectionWeights.Projection, layer l: Int, _ x: UnsafePointer<Float>, stride ldx: Int, rows m: Int,
                 into y: UnsafeMutablePointer<Float>, stride ldy: Int, accumulate: Bool) {
        precondition(m <= maxTokens, "\(m) rows over the int8 scratch's \(maxTokens)")
        let matrix = layers[l][p.rawValue], w = matrix.weights
        let k = w.columns, n = w.rows, levels = levels
        let (u, c, scales, zeros) = (activations, products, scales, zeros)
        observer?.record(p, layer: l, x, stride: ldx, rows: m)
        forEachTokenRange(m, threads: threads) { r0, r1 in
            _ = axon_quantize_u8_rows(x, ldx, k, r0, r1, levels, u, k, scales, zeros)
        }
        // Rows whose range is set by a few extreme channels (peak / rms over `fallbackPeakRatio`, e.g.
        // the massive activations of a first token or a run of control tokens) would lose most of
        // their other channels to the u8 step: they skip the int8 product (scale 0 makes the epilogue
        // add nothing) and take the weight-only product on the same s8 rows with f32 activations.
        var fallback: [Int] = []
        for r in 0..<m where scales[r] > 0 {
            let row = x + r * ldx
            var peak: Float = 0, squares: Float = 0
            for j in 0..<k { let v = row[j]; peak = max(peak, abs(v)); squares += v * v }
            if peak * peak > Self.fallbackPeakRatio * Self.fallbackPeakRatio * squares / Float(k) {
                fallback.append(r)
                scales[r] = 0
                zeros[r] = 0
            }
        }
        fallbackRows += fallback.count
        _ = w.withInt8Storage { values, rowScales in
            Int8Gemm.multiply(m: m, n: n, k: k, a: u, lda: k, b: values, ldb: k, c: c, ldc: n, threads: threads)
            forEachTokenRange(m, threads: threads) { r0, r1 in
                axon_dequantize_s32_rows(c, n, n, r0, r1, scales, zeros, rowScales, matrix.rowSums, y, ldy, accumulate ? 1 : 0)
            }
        }
        for r in fallback {
            w.multiply(x + r * ldx, rows: 1, stride: ldx, into: y + r * ldy, stride: ldy, accumulate: true, threads: threads)
        }
    }
}
