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
    // Scratch for the widest projection, `chunk` token rows at a time.
    private let activations: UnsafeMutablePointer<UInt8>   // (chunk, widest input)
    private let products: UnsafeMutablePointer<Int32>      // (chunk, widest output)
    private let scales: UnsafeMutablePointer<Float>        // (chunk)
    private let zeros: UnsafeMutablePointer<Int32>         // (chunk)
    private let wideRangeFlags: UnsafeMutablePointer<UInt8> // (chunk): 1 for a row that also takes its residual
    private let wideRows: UnsafeMutablePointer<Int32>      // (chunk): those rows
    private let remainders: UnsafeMutablePointer<Float>    // (chunk, widest input): their rounding residuals
    private let residuals: UnsafeMutablePointer<UInt8>     // (chunk, widest input): those in u8
    private let residualScales: UnsafeMutablePointer<Float>, residualZeros: UnsafeMutablePointer<Int32>  // (chunk)
    private let widestInput: Int, widestOutput: Int
    /// Rows a product runs at once: `chunkRows`, or fewer for an engine that never runs more.
    private let chunk: Int

    /// The peak-to-rms ratio of an activation row above which its residual takes a second product.
    /// Measured on 1,025 held-out positions (docs/ENGINE.md, "int8 prefill"; llama.cpp's own
    /// agreement with f32 there is 990 on SmolLM2, 987 on Gemma 3): 12 gives SmolLM2 997 and Gemma
    /// 987, 8 gives 999 and 997 (and the run of one token within the bound) at the same speed, 6
    /// gives 1005 and 1000 for 30% more time. (A row of k Gaussian values has peak/rms ≈ 3.5.)
    static let residualPeakRatio: Float = 8
    /// Rows that took the residual product, summed over products (a measure of how often it happens).
    var residualRows = 0

    /// Records each product's input channel maxima while set (`Int8Calibration`).
    var observer: ChannelMaxima?

    /// Bytes of the weight-row sums (the int8 weights themselves belong to `ProjectionWeights`).
    let rowSumBytes: Int

    /// - Precondition: every projection of `weights` is per-row int8.
    init(weights: ProjectionWeights, maxTokens: Int, threads: Int, levels: Int32 = Int8Gemm.isa.activationLevels) {
        self.threads = threads
        self.levels = levels
        chunk = max(1, min(maxTokens, Self.chunkRows))
        var sums = 0
        layers = (0..<weights.layerCount).map { l in
            ProjectionWeights.Projection.allCases.map { p in
                guard let q = weights.quantized(p, layer: l), q.format == .int8 else {
                    preconditionFailure("the int8 path needs per-row int8 projections")
                }
                let rowSums = UnsafeMutablePointer<Int32>.allocate(capacity: q.rows)
                Self.sumRows(of: q, into: rowSums)
                sums += q.rows * 4
                return Matrix(weights: q, rowSums: rowSums)
            }
        }
        rowSumBytes = sums
        let all = layers.flatMap { $0 }
        widestInput = all.map(\.weights.columns).max() ?? 1
        widestOutput = all.map(\.weights.rows).max() ?? 1
        activations = .allocate(capacity: chunk * widestInput)
        products = .allocate(capacity: chunk * widestOutput)
        scales = .allocate(capacity: chunk)
        zeros = .allocate(capacity: chunk)
        wideRangeFlags = .allocate(capacity: chunk)
        wideRows = .allocate(capacity: chunk)
        remainders = .allocate(capacity: chunk * widestInput)
        residuals = .allocate(capacity: chunk * widestInput)
        residualScales = .allocate(capacity: chunk)
        residualZeros = .allocate(capacity: chunk)
    }

    /// Σ_k q[j][k] of every row j of `q`.
    private static func sumRows(of q: QuantizedMatrix, into rowSums: UnsafeMutablePointer<Int32>) {
        _ = q.withInt8Storage { values, _ in
            for j in 0..<q.rows {
                var s: Int32 = 0
                for c in 0..<q.columns { s += Int32(values[j * q.columns + c]) }
                rowSums[j] = s
            }
        }
    }

    /// Sums the weight rows again after they were re-rounded in place (the smoothing at load), and
    /// forgets the fallbacks counted so far.
    func refreshRowSums() {
        for m in layers.flatMap({ $0 }) { Self.sumRows(of: m.weights, into: m.rowSums) }
        residualRows = 0
    }

    deinit {
        for m in layers.flatMap({ $0 }) { m.rowSums.deallocate() }
        activations.deallocate(); products.deallocate(); scales.deallocate(); zeros.deallocate(); wideRangeFlags.deallocate()
        wideRows.deallocate(); remainders.deallocate(); residuals.deallocate()
        residualScales.deallocate(); residualZeros.deallocate()
    }

    /// Token rows a product runs at once: the scratch holds this many, so it stays a few MB whatever
    /// the batch (at 2,048 tokens a whole-batch int32 product of gate|up alone would be 25 MB). Every
    /// row's result is the same in any chunk (integer sums, per-row scales); oneDNN packs the weights
    /// once per call, which at 256 rows costs about 1% more time than one call for the batch.
    static let chunkRows = 256

    /// y = x·Wᵀ (y += with `accumulate`) for projection `p` of layer `l`; x is (m × columns) with
    /// row stride ldx, y (m × rows) with row stride ldy. A row with a non-finite value comes out 0
    /// (as its product would be garbage either way) rather than poisoning its scale.
    func project(_ p: ProjectionWeights.Projection, layer l: Int, _ x: UnsafePointer<Float>, stride ldx: Int, rows m: Int,
                 into y: UnsafeMutablePointer<Float>, stride ldy: Int, accumulate: Bool) {
        let matrix = layers[l][p.rawValue]
        observer?.record(p, layer: l, x, stride: ldx, rows: m)
        var r0 = 0
        while r0 < m {
            let count = min(chunk, m - r0)
            project(matrix, x + r0 * ldx, stride: ldx, rows: count, into: y + r0 * ldy, stride: ldy, accumulate: accumulate)
            r0 += count
        }
    }

    /// `project` for at most `chunk` rows.
    private func project(_ matrix: Matrix, _ x: UnsafePointer<Float>, stride ldx: Int, rows m: Int,
                         into y: UnsafeMutablePointer<Float>, stride ldy: Int, accumulate: Bool) {
        let w = matrix.weights
        let k = w.columns, n = w.rows, levels = levels
        let (u, c, scales, zeros) = (activations, products, scales, zeros)
        // Rows whose range is set by a few extreme channels (peak / rms over `residualPeakRatio`, e.g.
        // the massive activations of a first token or a run of control tokens) leave their other
        // channels few of the u8 levels. Their rounding residual (|e| ≤ scale/2) is quantized again
        // and multiplied too, in one more integer product over just those rows: together the two
        // carry 16-bit activations, at the cost of int8 rows rather than an f32 product.
        let flags = wideRangeFlags
        forEachTokenRange(m, threads: threads) { r0, r1 in
            _ = axon_quantize_u8_rows(x, ldx, k, r0, r1, levels, u, k, scales, zeros, Self.residualPeakRatio, flags)
        }
        var wide = 0
        for r in 0..<m where flags[r] != 0 {
            wideRows[wide] = Int32(r)
            wide += 1
        }
        _ = w.withInt8Storage { values, rowScales in
            Int8Gemm.multiply(m: m, n: n, k: k, a: u, lda: k, b: values, ldb: k, c: c, ldc: n, threads: threads)
            forEachTokenRange(m, threads: threads) { r0, r1 in
                axon_dequantize_s32_rows(c, n, n, r0, r1, scales, zeros, rowScales, matrix.rowSums, y, ldy, accumulate ? 1 : 0)
            }
            guard wide > 0 else { return }
            residualRows += wide
            let (rows, rest, e, eScales, eZeros) = (wideRows, remainders, residuals, residualScales, residualZeros)
            forEachTokenRange(wide, threads: threads) { i0, i1 in
                axon_u8_residual_rows(x, ldx, k, rows, i0, i1, u, k, scales, zeros, rest, k)
                _ = axon_quantize_u8_rows(rest, k, k, i0, i1, levels, e, k, eScales, eZeros, 0, nil)
            }
            Int8Gemm.multiply(m: wide, n: n, k: k, a: e, lda: k, b: values, ldb: k, c: c, ldc: n, threads: threads)
            for i in 0..<wide {
                axon_dequantize_s32_rows(c + i * n, n, n, 0, 1, eScales + i, eZeros + i, rowScales, matrix.rowSums,
                                         y + Int(rows[i]) * ldy, ldy, 1)
            }
        }
    }
}
