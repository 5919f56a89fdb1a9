import Foundation

/// The sgemm rate the engine's projections could reach: the f32 GEMM (`F32GEMM`, the engine's own
/// by default OpenBLAS) timed on this model's own projection shapes (tokens × Q|K|V, attention
/// output, gate|up, down), with the engine's thread count.
/// `axon bench --roofline` times it after each timed forward pass and divides the forward pass's
/// useful GFLOP/s (`UsefulFlops`) by the median of those rates.
public enum SgemmRoofline {
    /// GFLOP/s of sgemm over the four projection shapes of `config` at `tokens` rows: total FLOPs
    /// over total time, best of `repeats` after one warm-up. Allocates its own matrices.
    public static func gflops(config c: ModelConfig, tokens: Int, threads: Int, repeats: Int = 3,
                              gemm: F32GEMM = .openBLAS) -> Double {
        let shapes = projectionShapes(c).map { ($0.n, $0.k) }
        let maxK = shapes.map(\.1).max() ?? 1, maxN = shapes.map(\.0).max() ?? 1
        let input = AlignedFloats(count: tokens * maxK), output = AlignedFloats(count: tokens * maxN)
        let weights = shapes.map { AlignedFloats(count: $0.0 * $0.1) }
        var seed: UInt32 = 1
        for buffer in [input] + weights {
            for i in 0..<buffer.count { seed = seed &* 1_664_525 &+ 1_013_904_223; buffer.base[i] = Float(seed >> 8) / 16_777_216 - 0.5 }
        }
        BLASThreads.set(threads)
        // Each shape multiplies its own weights, as the forward pass's distinct matrices do.
        return GEMMShape.bestRate(shapes.map { GEMMShape(m: tokens, n: $0.0, k: $0.1) }, rounds: repeats) {
            for (i, (n, k)) in shapes.enumerated() {
                gemm.multiply(m: tokens, n: n, k: k, a: input.base, lda: k, b: weights[i].base, ldb: k, transposeB: true,
                              c: output.base, ldc: n, threads: threads)
            }
        }
    }

    /// (n, k) of C[tokens × n] = A[tokens × k] · W[n × k]ᵀ for the four projections, as the forward
    /// pass calls them (m is left 0).
    static func projectionShapes(_ c: ModelConfig) -> [GEMMShape] {
        let h = c.hiddenSize, f = c.ffnSize, a = c.attentionWidth
        return [(c.qkvWidth, h), (h, a), (2 * f, h), (h, f)].map { GEMMShape(m: 0, n: $0.0, k: $0.1) }
    }
}

/// The int8 path's ceiling: `dnnl_gemm_u8s8s32` alone on the model's projection shapes at `tokens`
/// rows (`axon bench --roofline --precision int8`), as `SgemmRoofline` is sgemm's.
public enum Int8GemmRoofline {
    public static func gops(config c: ModelConfig, tokens: Int, threads: Int, repeats: Int = 3) -> Double {
        Int8Gemm.gops(SgemmRoofline.projectionShapes(c).map { GEMMShape(m: tokens, n: $0.n, k: $0.k) },
                      threads: threads, rounds: repeats)
    }
}

/// The multiply-adds a forward pass cannot do without, ×2: what "useful GFLOP/s" counts
/// (`axon bench`, Benchmarks/). Work the engine spends beyond them (the masked corner of a causal
/// query block, norms, RoPE, the activation, the softmax) is not counted.
public enum UsefulFlops {
    /// The four projections of every layer, for `tokens` tokens.
    public static func projections(_ c: ModelConfig, tokens: Int) -> Double {
        let perToken = 2 * Double(c.hiddenSize) * Double(c.qkvWidth + c.attentionWidth + 3 * c.ffnSize)
        return perToken * Double(c.layerCount) * Double(tokens)
    }

    /// The LM head for `rows` rows.
    public static func head(_ c: ModelConfig, rows: Int) -> Double {
        2 * Double(c.hiddenSize) * Double(c.vocabSize) * Double(rows)
    }

    /// Attention's two products, Q·Kᵀ and S·V, over only the (query, key) pairs a query sees: in a
    /// row of `length` tokens, query p sees min(p + 1, window) keys at its layer's window. Each
    /// pair costs 2·headDim FLOPs per product and per query head.
    public static func attention(_ c: ModelConfig, rowLengths: [Int]) -> Double {
        var pairs = 0.0
        for layer in c.layers {
            for length in rowLengths {
                // Σ_{p<L} min(p + 1, w) = w(w + 1)/2 + (L − w)·w for L ≥ w, else L(L + 1)/2.
                let w = min(layer.window ?? length, length)
                pairs += Double(w) * Double(w + 1) / 2 + Double(length - w) * Double(w)
            }
        }
        return 4 * Double(c.headDim) * Double(c.headCount) * pairs
    }

    /// Everything above for a batch of `rowLengths` with the head on `headRows` rows.
    public static func forward(_ c: ModelConfig, rowLengths: [Int], headRows: Int) -> Double {
        projections(c, tokens: rowLengths.reduce(0, +)) + head(c, rows: headRows) + attention(c, rowLengths: rowLengths)
    }
}
