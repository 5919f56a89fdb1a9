import CKernels

/// The decode-attention kernels (`axon_attend_scores`, `axon_attend_values`, which `attendOne` runs
/// on the KV cache's blocks) on explicit rows, for tests and measurements: the cached rows are laid
/// out as the cache lays out one KV head (keys transposed (headDim, 16) per block, then the block's
/// values (16, headDim)), its blocks stored in reverse order behind a block table, in the
/// cache's `precision` (at f16 the rows are rounded to nearest even as `KVCache.store` does).
public enum DecodeAttentionKernels {
    /// Scores (group × (cached + new), row-major) of `queries` (group × headDim) against the keys of
    /// positions first..<first + cached (`cachedKeys`, cached × headDim) and then `newKeys`, times `scale`.
    public static func scores(path: DecodeKernelPath, precision: KVCachePrecision = .f32, queries: [Float], group: Int,
                              headDim hd: Int, scale: Float, first: Int, cachedKeys: [Float], newKeys: [Float]) -> [Float] {
        let cached = cachedKeys.count / hd, fresh = newKeys.count / hd, n = cached + fresh
        let layout = Layout(first: first, cached: cached, headDim: hd, precision: precision)
        for i in 0..<cached {
            let p = first + i
            for d in 0..<hd { layout.set(layout.block(p) + d * 16 + p % 16, cachedKeys[i * hd + d]) }
        }
        var scores = [Float](repeating: .nan, count: group * n)
        scores.withUnsafeMutableBufferPointer { out in
            axon_attend_scores(path.rawValue, layout.half, queries, group, hd, scale, layout.pool, layout.table, layout.blockFloats, 16 * hd,
                               first, cached, newKeys, hd, fresh, out.baseAddress, n)
        }
        return scores
    }

    /// out (group × headDim) = Σ_i weights[j·n + i] · value_i over the same positions as `scores`.
    public static func values(path: DecodeKernelPath, precision: KVCachePrecision = .f32, weights: [Float], group: Int,
                              headDim hd: Int, first: Int, cachedValues: [Float], newValues: [Float]) -> [Float] {
        let cached = cachedValues.count / hd, fresh = newValues.count / hd, n = cached + fresh
        let layout = Layout(first: first, cached: cached, headDim: hd, precision: precision)
        for i in 0..<cached {
            let p = first + i
            for d in 0..<hd { layout.set(layout.block(p) + 16 * hd + (p % 16) * hd + d, cachedValues[i * hd + d]) }
        }
        var out = [Float](repeating: .nan, count: group * hd)
        out.withUnsafeMutableBufferPointer { out in
            axon_attend_values(path.rawValue, layout.half, weights, group, n, hd, layout.pool, layout.table, layout.blockFloats, 16 * hd,
                               first, cached, newValues, hd, fresh, out.baseAddress)
        }
        return out
    }

    /// One KV head's blocks for positions up to first + cached, the physical blocks in reverse order.
    private final class Layout {
        let blockFloats: Int
        let blocks: Int
        let precision: KVCachePrecision
        let pool: UnsafeMutableRawPointer
        let table: UnsafeMutablePointer<Int32>

        init(first: Int, cached: Int, headDim hd: Int, precision: KVCachePrecision) {
            blockFloats = 2 * 16 * hd
            blocks = max(1, (first + cached + 15) / 16)
            self.precision = precision
            pool = .allocate(byteCount: blocks * blockFloats * precision.bytesPerElement, alignment: 64)
            table = .allocate(capacity: blocks)
            for b in 0..<blocks { table[b] = Int32(blocks - 1 - b) }
            for i in 0..<(blocks * blockFloats) { set(i, .nan) }   // unwritten slots must never be read
        }

        var half: Int32 { precision == .f16 ? 1 : 0 }

        func block(_ position: Int) -> Int { Int(table[position / 16]) * blockFloats }

        func set(_ i: Int, _ value: Float) {
            switch precision {
            case .f32: pool.assumingMemoryBound(to: Float.self)[i] = value
            case .f16: pool.assumingMemoryBound(to: UInt16.self)[i] = Float16(value).bitPattern
            }
        }

        deinit { pool.deallocate(); table.deallocate() }
    }
}
