import CDNNL
import Dispatch

/// oneDNN's integer GEMM (`dnnl_gemm_u8s8s32`, Debian libdnnl-dev) as the int8 prefill path calls
/// it: row-major C[m×n] (int32) = A[m×k] (u8) · Bᵀ, B stored [n][k] (s8, a weight [out][in]), no
/// offsets (the zero points are compensated by the caller, per token).
///
/// oneDNN's CPU runtime in Debian's build is OpenMP (GNU libgomp), and oneDNN 2.6 has no thread
/// count of its own: the team size is OpenMP's per-thread nthreads-var, so every call first sets
/// it on the calling thread to the engine's count. oneDNN and OpenBLAS never run at once (the
/// engine calls them in turn), so together they never use more threads than the engine's.
public enum Int8Gemm {
    /// The ISA oneDNN dispatches to on this CPU, as oneDNN names it.
    public static var isa: ISA { ISA(dnnl_get_effective_cpu_isa()) }

    /// oneDNN's instruction set on this CPU, for the runtime choice of precision.
    public struct ISA: Sendable, CustomStringConvertible {
        let raw: dnnl_cpu_isa_t
        init(_ raw: dnnl_cpu_isa_t) { self.raw = raw }

        /// Whether u8·s8 products accumulate straight into int32 (VNNI: vpdpbusd), rather than
        /// through vpmaddubsw's saturating int16 pair sums (AVX2, AVX-512 without VNNI).
        public var hasVNNI: Bool {
            let value = raw.rawValue
            return value == dnnl_cpu_isa_avx2_vnni.rawValue
                || (value & dnnl_cpu_isa_avx512_core_vnni.rawValue) == dnnl_cpu_isa_avx512_core_vnni.rawValue
        }

        /// The largest activation level that cannot saturate: with int16 pair sums, two products
        /// 127·127 fit in int16 and 255·127 do not, so activations keep 7 bits there.
        public var activationLevels: Int32 { hasVNNI ? 255 : 127 }

        public var description: String {
            switch raw.rawValue {
            case dnnl_cpu_isa_avx2.rawValue: return "avx2"
            case dnnl_cpu_isa_avx2_vnni.rawValue: return "avx2_vnni"
            case dnnl_cpu_isa_avx512_core.rawValue: return "avx512_core"
            case dnnl_cpu_isa_avx512_core_vnni.rawValue: return "avx512_core_vnni"
            case dnnl_cpu_isa_avx512_core_bf16.rawValue: return "avx512_core_bf16"
            case dnnl_cpu_isa_avx512_core_amx.rawValue: return "avx512_core_amx"
            default: return "isa 0x" + String(raw.rawValue, radix: 16)
            }
        }
    }

    /// C = A·Bᵀ on `threads` OpenMP threads. Shapes are the engine's own (checked at load), so a
    /// failure is a bug: oneDNN rejects only invalid arguments.
    public static func multiply(m: Int, n: Int, k: Int, a: UnsafePointer<UInt8>, lda: Int,
                                b: UnsafePointer<Int8>, ldb: Int, c: UnsafeMutablePointer<Int32>, ldc: Int, threads: Int) {
        guard m > 0, n > 0 else { return }
        omp_set_num_threads(Int32(threads))
        var offset: Int32 = 0
        let status = dnnl_gemm_u8s8s32(CChar(UInt8(ascii: "N")), CChar(UInt8(ascii: "T")), CChar(UInt8(ascii: "F")),
                                       dnnl_dim_t(m), dnnl_dim_t(n), dnnl_dim_t(k), 1, a, dnnl_dim_t(lda), 0,
                                       b, dnnl_dim_t(ldb), 0, 0, c, dnnl_dim_t(ldc), &offset)
        precondition(status == dnnl_success, "dnnl_gemm_u8s8s32 \(m)×\(n)×\(k) failed with status \(status.rawValue)")
    }

    public typealias Shape = GEMMShape

    /// GOP/s of `dnnl_gemm_u8s8s32` alone over one pass of `shapes`, best of `rounds` passes after
    /// a warm-up (as `SgemmProbe.gflops`): the ceiling the int8 path's useful GOP/s is measured against.
    public static func gops(_ shapes: [Shape], threads: Int, rounds: Int = 3) -> Double {
        guard !shapes.isEmpty else { return 0 }
        let a = UnsafeMutablePointer<UInt8>.allocate(capacity: max(1, shapes.map { $0.m * $0.k }.max() ?? 0))
        let b = UnsafeMutablePointer<Int8>.allocate(capacity: max(1, shapes.map { $0.n * $0.k }.max() ?? 0))
        let c = UnsafeMutablePointer<Int32>.allocate(capacity: max(1, shapes.map { $0.m * $0.n }.max() ?? 0))
        defer { a.deallocate(); b.deallocate(); c.deallocate() }
        for i in 0..<max(1, shapes.map { $0.m * $0.k }.max() ?? 0) { a[i] = UInt8(i % 251) }
        for i in 0..<max(1, shapes.map { $0.n * $0.k }.max() ?? 0) { b[i] = Int8(i % 255 - 127) }
        func pass() {
            for s in shapes { multiply(m: s.m, n: s.n, k: s.k, a: a, lda: s.k, b: b, ldb: s.k, c: c, ldc: s.n, threads: threads) }
        }
        return GEMMShape.bestRate(shapes, rounds: rounds, pass: pass)
    }
}
