import CBLAS
import CDNNL
import Dispatch

/// The one matrix-multiply wrapper of the engine: row-major C[m×n] = alpha·A[m×k]·op(B) + beta·C,
/// where op(B) is Bᵀ for weights stored [out][in] (`transposeB`), else B[k×n].
@inline(__always)
func sgemm(m: Int, n: Int, k: Int, alpha: Float = 1,
           a: UnsafePointer<Float>, lda: Int,
           b: UnsafePointer<Float>, ldb: Int, transposeB: Bool,
           beta: Float = 0, c: UnsafeMutablePointer<Float>, ldc: Int) {
    cblas_sgemm(CblasRowMajor, CblasNoTrans, transposeB ? CblasTrans : CblasNoTrans,
                blasint(m), blasint(n), blasint(k), alpha, a, blasint(lda), b, blasint(ldb),
                beta, c, blasint(ldc))
}

/// The library that multiplies the f32 path's matrices (projections, attention, LM head).
///
/// OpenBLAS is the reference. But its kernels are whatever core it runs, and the environment may
/// pin an older one than the CPU has (OPENBLAS_CORETYPE=Haswell on an AVX-512 Zen 5: ~215 GFLOP/s
/// on SmolLM2's projection shapes at 2 threads). oneDNN's sgemm is JIT code for the CPU at hand
/// whatever OpenBLAS was told (~380–450 GFLOP/s there), and the environment is left as it is.
public enum F32GEMM: String, CaseIterable, Sendable, CustomStringConvertible {
    case openBLAS = "openblas"
    /// `dnnl_sgemm` (Debian libdnnl-dev, OpenMP teams sized per call as `Int8Gemm` does).
    case oneDNN = "onednn"

    public var description: String { self == .openBLAS ? "OpenBLAS" : "oneDNN" }

    /// oneDNN when OpenBLAS runs an older kernel generation than the CPU supports
    /// (`SystemInfo.coreIsSlowerThanCPU`), else OpenBLAS. Decided once per process, so every
    /// engine in it multiplies alike.
    public static let preferred: F32GEMM = SystemInfo.current().coreIsSlowerThanCPU ? .oneDNN : .openBLAS

    /// One line for the start-up log: which library runs the f32 products, and why.
    public static func startupLine(_ gemm: F32GEMM, requested: F32GEMM?) -> String {
        let core = SystemInfo.current().openBLASCore
        if requested != nil { return "f32 products: \(gemm) sgemm, as requested (OpenBLAS core \(core))" }
        return gemm == .oneDNN
            ? "f32 products: oneDNN sgemm, chosen because OpenBLAS runs the \(core) core, older than this CPU's best"
            : "f32 products: OpenBLAS sgemm (core \(core))"
    }

    /// Row-major C[m×n] = alpha·A[m×k]·op(B) + beta·C as `sgemm` defines it, on `threads` threads
    /// (OpenBLAS's count is process-wide, `BLASThreads`; oneDNN's is set here for the calling thread).
    @inline(__always)
    func multiply(m: Int, n: Int, k: Int, alpha: Float = 1, a: UnsafePointer<Float>, lda: Int,
                  b: UnsafePointer<Float>, ldb: Int, transposeB: Bool, beta: Float = 0,
                  c: UnsafeMutablePointer<Float>, ldc: Int, threads: Int) {
        switch self {
        case .openBLAS:
            sgemm(m: m, n: n, k: k, alpha: alpha, a: a, lda: lda, b: b, ldb: ldb, transposeB: transposeB,
                  beta: beta, c: c, ldc: ldc)
        case .oneDNN:
            guard m > 0, n > 0 else { return }
            omp_set_num_threads(Int32(threads))
            let status = dnnl_sgemm(CChar(UInt8(ascii: "N")), CChar(UInt8(ascii: transposeB ? "T" : "N")),
                                    dnnl_dim_t(m), dnnl_dim_t(n), dnnl_dim_t(k), alpha, a, dnnl_dim_t(lda),
                                    b, dnnl_dim_t(ldb), beta, c, dnnl_dim_t(ldc))
            // The shapes are the engine's own (checked at load): oneDNN rejects only invalid arguments.
            precondition(status == dnnl_success, "dnnl_sgemm \(m)×\(n)×\(k) failed with status \(status.rawValue)")
        }
    }
}

/// y[rows] = M[rows×columns]·x, M row-major (a weight stored [out][in]).
@inline(__always)
func sgemv(rows: Int, columns: Int, matrix: UnsafePointer<Float>, vector: UnsafePointer<Float>,
           result: UnsafeMutablePointer<Float>) {
    cblas_sgemv(CblasRowMajor, CblasNoTrans, blasint(rows), blasint(columns), 1, matrix, blasint(columns),
                vector, 1, 0, result, 1)
}

/// OpenBLAS's thread count is process-wide; the engine pins it to one thread while its own
/// workers run the many small attention products, and restores it for the projections.
enum BLASThreads {
    static func set(_ n: Int) { openblas_set_num_threads(Int32(n)) }
}

/// One product C[m×n] = A[m×k]·Bᵀ, as the probes time it.
public struct GEMMShape: Sendable, Equatable {
    public let m: Int, n: Int, k: Int
    public init(m: Int, n: Int, k: Int) { self.m = m; self.n = n; self.k = k }
    /// Multiply-adds counted as two operations.
    var operations: Double { 2 * Double(m) * Double(n) * Double(k) }

    /// G-operations/s of one `pass` over `shapes`, best of `rounds` passes after a warm-up pass
    /// (the best pass is the one least disturbed by other load).
    static func bestRate(_ shapes: [GEMMShape], rounds: Int, pass: () -> Void) -> Double {
        pass()
        var best = Double.infinity
        for _ in 0..<max(1, rounds) {
            let start = DispatchTime.now().uptimeNanoseconds
            pass()
            best = min(best, Double(DispatchTime.now().uptimeNanoseconds - start) * 1e-9)
        }
        return shapes.reduce(0) { $0 + $1.operations } / max(best, 1e-9) * 1e-9
    }
}

/// Times sgemm as the engine's projections call it (row-major C[m×n] = A[m×k]·Bᵀ) on given shapes:
/// a fact about the machine and the OpenBLAS core, for telling a slow core from a fast one.
public enum SgemmProbe {
    public typealias Shape = GEMMShape

    /// GFLOP/s of one pass over every shape, best of `rounds` passes after a warm-up pass (the best
    /// pass is the one least disturbed by other load), on `threads` OpenBLAS threads (the
    /// process-wide count is restored afterwards).
    public static func gflops(_ shapes: [Shape], threads: Int, rounds: Int = 3) -> Double {
        guard !shapes.isEmpty else { return 0 }
        let previous = Int(openblas_get_num_threads())
        BLASThreads.set(threads)
        defer { BLASThreads.set(previous) }
        let a = filled(shapes.map { $0.m * $0.k }.max() ?? 0)
        let b = filled(shapes.map { $0.n * $0.k }.max() ?? 0)
        let c = UnsafeMutablePointer<Float>.allocate(capacity: shapes.map { $0.m * $0.n }.max() ?? 0)
        defer { a.deallocate(); b.deallocate(); c.deallocate() }
        func pass() {
            for s in shapes { sgemm(m: s.m, n: s.n, k: s.k, a: a, lda: s.k, b: b, ldb: s.k, transposeB: true, c: c, ldc: s.n) }
        }
        return GEMMShape.bestRate(shapes, rounds: rounds, pass: pass)
    }

    /// Small finite values in a fixed pattern, so no denormals or infinities slow a kernel down.
    private static func filled(_ count: Int) -> UnsafeMutablePointer<Float> {
        let p = UnsafeMutablePointer<Float>.allocate(capacity: max(count, 1))
        for i in 0..<max(count, 1) { p[i] = Float(i % 17) * 0.0625 - 0.5 }
        return p
    }
}
