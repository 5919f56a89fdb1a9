import CBLAS

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
