import CKernels

/// Persistent threads for the decode step's short parallel sections (its projections and its
/// attention): `threads` in all, the caller included, which runs a share of every job. After a job
/// the workers spin for `spinNanoseconds`, so the next section of the same step starts in well under a
/// microsecond, then park until woken (an idle server costs no CPU). libdispatch's
/// `concurrentPerform` costs several microseconds a call here, and a batch-1 projection is 20–200 µs
/// of work (docs/ENGINE.md, "Decode kernels").
///
/// One job at a time; a call made while another runs (from another thread, or from inside a part)
/// runs its parts on the calling thread, so calls never wait on each other.
public final class WorkerPool: @unchecked Sendable {
    let pool: OpaquePointer?

    /// How long a worker spins after a job before it parks: longer than the gaps between a decode
    /// step's sections (norms, RoPE, a layer's bookkeeping: a few µs), much shorter than the gap
    /// between steps on an idle server.
    public static let defaultSpinNanoseconds: Int64 = 200_000

    public init(threads: Int, spinNanoseconds: Int64 = WorkerPool.defaultSpinNanoseconds) {
        pool = axon_pool_create(Int32(max(1, min(threads, 256))), spinNanoseconds)
    }

    deinit { axon_pool_destroy(pool) }

    /// Threads that run a job, the caller included (fewer than asked only if threads failed to start).
    public var threads: Int { Int(axon_pool_threads(pool)) }

    /// Runs `body(part)` for every part in 0..<parts, each once, across the pool, and returns when
    /// all are done. Parts are claimed one at a time, so a thread the OS sets aside holds up one part.
    public func run(parts: Int, _ body: (_ part: Int) -> Void) {
        guard parts > 1, threads > 1 else {
            for p in 0..<max(0, parts) { body(p) }
            return
        }
        withoutActuallyEscaping(body) { body in
            var job = body
            withUnsafeMutablePointer(to: &job) { context in
                axon_pool_run(pool, { context, part, _ in
                    context?.assumingMemoryBound(to: ((Int) -> Void).self).pointee(part)
                }, context, parts)
            }
        }
    }

    /// `QuantizedMatrix` products on this pool (the C driver splits the outputs: no Swift per part).
    func multiply(parts: Int, alignment: Int, isa: Int32, format: Int32, x: UnsafePointer<Float>, ldx: Int, m: Int,
                  w: UnsafeRawPointer, scales: UnsafePointer<Float>?, k: Int, outputs: Range<Int>,
                  y: UnsafeMutablePointer<Float>, ldy: Int, accumulate: Int32) {
        axon_decode_gemm_pooled(pool, parts, alignment, isa, format, x, ldx, m, w, scales, k,
                                outputs.lowerBound, outputs.upperBound, y, ldy, accumulate)
    }
}
