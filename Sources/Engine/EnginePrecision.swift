import CKernels

/// The precision of the engine's projections (q|k|v, attention output, gate|up, down) on prefill
/// and every pass too large for the decode kernels (`--precision`). Attention products, norms,
/// RoPE, softmax, the embeddings and the LM head stay f32 at either.
public enum EnginePrecision: String, CaseIterable, Sendable, CustomStringConvertible {
    /// f32 weights through OpenBLAS sgemm: the exact reference path.
    case f32
    /// W8A8 through oneDNN's `dnnl_gemm_u8s8s32` (Int8Projections): weights s8 per output row, the
    /// same copy the decode kernels read (no f32 projections are kept); activations u8 per token.
    case int8

    public var description: String { rawValue }

    /// The precision to run when none is asked for: f32 on every CPU, int8 only when asked. Measured
    /// quietly side by side (Benchmarks/RESULTS.md at cd5c08b, Zen 5 with AVX-512 VNNI), the int8
    /// path is slower than f32 on OpenBLAS's AVX-512 sgemm (SmolLM2 853 vs 1351 tok/s at 1×128) and,
    /// on Gemma 3, slower even than the AVX2 (Haswell) sgemm (629 vs 817 at 4×512): it reaches 9–13%
    /// of oneDNN's own GEMM rate, so the projections are not where its time goes. Without VNNI,
    /// oneDNN's int8 GEMM goes through saturating int16 pair sums at 7-bit activations
    /// (docs/ENGINE.md, "int8 prefill"). Never pick a path slower than f32 on the CPU at hand;
    /// revisit once the int8 pass is faster.
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
