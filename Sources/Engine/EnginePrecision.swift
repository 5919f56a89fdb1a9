import CKernels

/// The precision of the engine's projections (q|k|v, attention output, gate|up, down) on prefill
/// and every pass too large for the decode kernels (`--precision`). Attention products, norms,
/// RoPE, softmax, the embeddings and the LM head stay f32 at either.
public enum EnginePrecision: String, CaseIterable, Sendable, CustomStringConvertible {
    /// f32 weights through sgemm (`F32GEMM`: OpenBLAS, or oneDNN's when OpenBLAS runs an older core
    /// than the CPU has): the exact reference path.
    case f32
    /// W8A8 through oneDNN's `dnnl_gemm_u8s8s32` (Int8Projections): weights s8 per output row, the
    /// same copy the decode kernels read (no f32 projections are kept); activations u8 per token.
    case int8

    public var description: String { rawValue }

    /// The precision to run when none is asked for: f32 on every CPU, int8 only when asked. Since
    /// the residual product (2026-12-03, Zen 5 with AVX-512 VNNI, Benchmarks/engine/RESULTS.md) int8
    /// prefill is 2.2–2.7× f32 under the pinned Haswell sgemm and faster than OpenBLAS's AVX-512
    /// sgemm too (SmolLM2 4.4–5.7× llama.cpp against f32's 2.0–2.1×; Gemma 3 1.9–2.3× against
    /// 0.8–1.2×), and it holds the prose bars in both token spaces. Since f32 runs oneDNN's sgemm
    /// where OpenBLAS's core is older than the CPU (`F32GEMM`), f32 there is 2.7–3.7× llama.cpp on
    /// SmolLM2 and 1.05–1.7× on Gemma 3, so int8's lead is 1.3–1.6×. It stays opt-in because a run of
    /// control tokens still lands 0.9–1.0 nats off f32 (the smoothed s8 weights), and because at
    /// int8 decode steps read the same per-row s8 copy, which missed Gemma 3's decode agreement bar
    /// by one position (docs/ENGINE.md, "Decode kernels"), where f32's default decode copy is per
    /// block. Without VNNI, oneDNN's int8 GEMM goes through saturating int16 pair sums at 7-bit
    /// activations (docs/ENGINE.md, "int8 prefill"): never pick a path slower than f32 there.
    public static var preferred: EnginePrecision { .f32 }

    /// Whether the int8 path can run on this CPU at all (its activation kernels are AVX2 code).
    public static var int8Available: Bool { axon_isa_supported(Int32(AXON_ISA_AVX2.rawValue)) == 1 }

    /// One line for the start-up log: what runs and why.
    public static func startupLine(_ precision: EnginePrecision, requested: EnginePrecision?) -> String {
        let isa = int8Available ? "oneDNN ISA \(Int8Gemm.isa)" : "no AVX2"
        let why = requested == nil ? "chosen for this CPU (\(isa))" : "as requested (\(isa))"
        return "precision \(precision): \(why)"
    }
}
