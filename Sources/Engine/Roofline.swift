import Foundation

/// The sgemm rate the engine's projections could reach: OpenBLAS timed on this model's own
/// projection shapes (tokens × Q|K|V, attention output, gate|up, down), with the engine's thread count.
/// `axon bench --roofline` divides the forward pass's useful GFLOP/s by it.
public enum SgemmRoofline {
    /// GFLOP/s of sgemm over the four projection shapes of `config` at `tokens` rows: total FLOPs
    /// over total time, best of `repeats` after one warm-up. Allocates its own matrices.
    public static func gflops(config c: ModelConfig, tokens: Int, threads: Int, repeats: Int = 3) -> Double {
        let h = c.hiddenSize, f = c.ffnSize, a = c.attentionWidth
        // (n, k) of C[tokens × n] = A[tokens × k] · W[n × k]ᵀ, as the forward pass calls them.
        let shapes = [(c.qkvWidth, h), (h, a), (2 * f, h), (h, f)]
        let maxK = shapes.map(\.1).max() ?? 1, maxN = shapes.map(\.0).max() ?? 1
        let input = AlignedFloats(count: tokens * maxK), output = AlignedFloats(count: tokens * maxN)
        let weights = shapes.map { AlignedFloats(count: $0.0 * $0.1) }
        var seed: UInt32 = 1
        for buffer in [input] + weights {
            for i in 0..<buffer.count { seed = seed &* 1_664_525 &+ 1_013_904_223; buffer.base[i] = Float(seed >> 8) / 16_777_216 - 0.5 }
        }
        BLASThreads.set(threads)
        var best = Double.infinity
        for round in 0...repeats {
            let start = DispatchTime.now().uptimeNanoseconds
            for (i, (n, k)) in shapes.enumerated() {
                sgemm(m: tokens, n: n, k: k, a: input.base, lda: k, b: weights[i].base, ldb: k, transposeB: true, c: output.base, ldc: n)
            }
            let seconds = Double(DispatchTime.now().uptimeNanoseconds - start) * 1e-9
            if round > 0 { best = min(best, seconds) }
        }
        let flops = shapes.reduce(0.0) { $0 + 2 * Double(tokens) * Double($1.0) * Double($1.1) }
        return flops / best * 1e-9
    }
}
