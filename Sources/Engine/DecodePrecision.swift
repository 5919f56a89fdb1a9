import CKernels

/// The precision of the weights the decode path reads (`--decode-precision`). Activations stay f32
/// in every case (weight-only rounding): the accuracy cost is that of the weights' rounding alone.
/// Prefill keeps f32 weights on sgemm; the decode path reads each weight once per step, so its
/// speed at batch 1 is bytes per token over memory bandwidth.
public enum DecodePrecision: String, CaseIterable, Sendable, CustomStringConvertible {
    /// The engine's own f32 weights through sgemm/sgemv: the exact reference path, 4 bytes a weight.
    case f32
    /// IEEE binary16 copies: 2 bytes a weight, relative rounding ≤ 2⁻¹¹.
    case f16
    /// int8 symmetric per output row (one f32 scale per row): 1 byte a weight, rounding ≤ scale/2.
    /// The layout `dnnl_gemm_u8s8s32` takes as its s8 operand (weights [n][k], per-row scales).
    case int8

    public var description: String { rawValue }

    /// The reduced-precision format, or nil for f32.
    public var format: QuantizedMatrix.Format? {
        switch self {
        case .f32: return nil
        case .f16: return .f16
        case .int8: return .int8
        }
    }

    /// The LM head's precision when the projections run at this one: f16 for both reduced
    /// precisions. Measured on SmolLM2 over 512 positions (docs/ENGINE.md): an f16 head moves
    /// logits by at most 0.02 and agrees with f32 everywhere; an int8 head moves them by up to 0.66
    /// and, under int8 projections, falls below llama.cpp's own agreement with fp32.
    public var headPrecision: DecodePrecision { self == .f32 ? .f32 : .f16 }

    /// Bytes the decode path reads per weight of an [n][k] matrix (int8 adds its row scales).
    public func bytesPerWeight(columns k: Int) -> Double {
        switch self {
        case .f32: return 4
        case .f16: return 2
        case .int8: return 1 + 4 / Double(max(k, 1))
        }
    }
}

/// The instruction-set path of the reduced-precision kernels. Chosen at run time from CPUID (the
/// CPU changes between sessions): `.best` on the machine at hand, any `supported` one on request.
public enum DecodeKernelPath: Int32, CaseIterable, Sendable, CustomStringConvertible {
    /// Plain C, any CPU: the fallback, and the one path tested on every machine.
    case scalar = 0
    /// AVX2 + FMA + F16C (x86-64-v3): 8 f32 lanes.
    case avx2 = 1
    /// AVX-512 F, with the OS saving zmm state: 16 f32 lanes.
    case avx512 = 2

    /// Whether this CPU (and OS) can run the path.
    public var isSupported: Bool { axon_isa_supported(rawValue) == 1 }

    /// The paths this machine can run, slowest first (the scalar fallback always).
    public static var supported: [DecodeKernelPath] { allCases.filter(\.isSupported) }

    /// The widest supported path.
    public static var best: DecodeKernelPath { supported.last ?? .scalar }

    /// Partial sums per output: each output is `lanes` sums over ⌈k/lanes⌉ products, then summed
    /// by a fixed tree (1 for scalar: one sum in k order).
    public var lanes: Int { Int(axon_isa_lanes(rawValue)) }

    public var description: String {
        switch self {
        case .scalar: return "scalar"
        case .avx2: return "AVX2"
        case .avx512: return "AVX-512"
        }
    }
}
