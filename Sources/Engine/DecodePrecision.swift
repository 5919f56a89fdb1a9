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
    /// int8 symmetric per block of 32 columns (Q8_0's blocks, f32 scales apart): 1.125 bytes a
    /// weight, rounding ≤ the block's scale/2. Per-row scales (`QuantizedMatrix.Format.int8`, the
    /// s8 operand `dnnl_gemm_u8s8s32` takes) read 1 byte a weight but fell below the agreement bar
    /// on Gemma 3 (498/512 against 499; blocks: 505); see docs/ENGINE.md.
    case int8

    public var description: String { rawValue }

    /// The reduced-precision format, or nil for f32.
    public var format: QuantizedMatrix.Format? {
        switch self {
        case .f32: return nil
        case .f16: return .f16
        case .int8: return .int8Block32
        }
    }

    /// The LM head's format when the projections run at this precision (nil: the engine's f32
    /// head). Both reduced precisions read the head as int8 per block of 32 columns: a Q8_0 head (the
    /// token embeddings of SmolLM2 and Gemma 3 270M) comes back exactly, in 1.125 bytes a weight
    /// against f16's 2. Measured over 512 positions (docs/ENGINE.md): per-row int8 heads fall below
    /// the agreement bar (Gemma 3: 488/512), f16 heads pass at twice the bytes.
    ///
    /// On CPUs with AVX-512 VNNI the head's product also rounds its activations per block of 32
    /// (`w8a8Block32`, llama.cpp's Q8_0 × Q8_0): 2.7× faster at 16 rows (Gemma 3's 262144 × 640 head,
    /// 16.7 → 6.2 ms a step, 2 threads), the same bytes at batch 1, and within both bars over the
    /// same 512 positions (SmolLM2 494/512 against 492, Gemma 3 504/512 against 499, loss within
    /// 0.004 nats). Elsewhere the integer product has no fast kernel and the head stays int8Block32.
    public var headFormat: QuantizedMatrix.Format? { headFormat(sharedWithPrefill: false) }

    /// The head's format when an int8 engine's prefills of a few rows read this head too
    /// (`InferenceEngine.prefillHeadFormat`): those logits must be the f32 head's, so the head
    /// stays int8Block32, exact for a Q8_0 tensor.
    public func headFormat(sharedWithPrefill: Bool) -> QuantizedMatrix.Format? {
        if self == .f32 { return nil }
        return QuantizedMatrix.w8a8Accelerated && !sharedWithPrefill ? .w8a8Block32 : .int8Block32
    }

    /// Bytes the decode path reads per weight of an [n][k] matrix (int8 adds its block scales).
    public func bytesPerWeight(columns k: Int) -> Double {
        switch self {
        case .f32: return 4
        case .f16: return 2
        case .int8: return 1 + 4 * Double((max(k, 1) + 31) / 32) / Double(max(k, 1))
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
