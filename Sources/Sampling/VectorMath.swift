// Vector helpers over one row of scores, SIMD8<Float> (one AVX register). The Engine has its own; this
// module depends on nothing, and its exp differs on purpose: a removed token (−∞) must weigh exactly 0.

typealias FVec = SIMD8<Float>
let lanes = 8

@inline(__always) func load(_ p: UnsafePointer<Float>) -> FVec {
    UnsafeRawPointer(p).loadUnaligned(as: FVec.self)
}

@inline(__always) func store(_ v: FVec, _ p: UnsafeMutablePointer<Float>) {
    UnsafeMutableRawPointer(p).storeBytes(of: v, as: FVec.self)
}

/// Lane-wise max by compare and blend (keeps the loop in registers; NaN never reaches it, see `sanitize`).
@inline(__always) func lanewiseMax(_ a: FVec, _ b: FVec) -> FVec { a.replacing(with: b, where: b .> a) }

@inline(__always) func horizontalMax(_ v: FVec) -> Float {
    let a = v.lowHalf.replacing(with: v.highHalf, where: v.highHalf .> v.lowHalf)
    let b = a.lowHalf.replacing(with: a.highHalf, where: a.highHalf .> a.lowHalf)
    return Swift.max(b[0], b[1])
}

/// e^x for x ≤ 0, 8 lanes: Cody–Waite reduction x = n·ln2 + r, Cephes expf's degree-6 polynomial for e^r
/// (relative error within 2 ulp = 4u, checked by SamplingTests over [−87, 0]), 2^n built in the exponent
/// bits. Below −87.3 (e^x under the smallest normal float), −∞ included, the result is exactly 0.
/// Plain IEEE operations in a fixed order, no fused multiply-add: the same bits on every x86 machine.
@inline(__always) func expNonPositive(_ x: FVec) -> FVec {
    let floor = FVec(repeating: -87.336_54)
    let underflow = x .< floor
    let xc = x.replacing(with: floor, where: underflow)
    // Round x·log2(e) to the nearest integer with the 1.5·2^23 trick; the integer lands in the low mantissa bits.
    let magic = FVec(repeating: 12_582_912.0)
    let shifted = xc * 1.442_695_04 + magic
    let n = shifted - magic
    var r = xc - n * 0.693_359_375
    r = r + n * 2.121_944_4e-4
    var p = FVec(repeating: 1.987_569_15e-4)
    p = p * r + 1.398_199_95e-3
    p = p * r + 8.333_451_9e-3
    p = p * r + 4.166_579_59e-2
    p = p * r + 1.666_666_55e-1
    p = p * r + 5.000_000_12e-1
    p = p * (r * r) + r + 1
    let nBits = unsafeBitCast(shifted, to: SIMD8<Int32>.self) &- 0x4B40_0000
    let scale = unsafeBitCast((nBits &+ 127) &<< 23, to: FVec.self)
    return (p * scale).replacing(with: 0, where: underflow)
}

/// One lane of `expNonPositive`, for tails, so every value goes through the same approximation.
@inline(__always) func expNonPositive(_ x: Float) -> Float { expNonPositive(FVec(repeating: x))[0] }

/// The exponential every weight in this module goes through, public so that its error bound is testable.
public enum SamplingMath {
    /// e^x for x ≤ 0 (`expNonPositive`): within 4u relative for x ≥ −87.3, exactly 0 below and at −∞.
    public static func exp(_ x: Float) -> Float { expNonPositive(x) }

    /// softmax of one row into `out` (same count) with the weights the draw uses, normalised in Double;
    /// false (and `out` untouched) when every score is −∞.
    public static func softmax(_ scores: UnsafeBufferPointer<Float>, into out: UnsafeMutableBufferPointer<Float>) -> Bool {
        let m = RowMath.max(scores)
        guard m > -.infinity, out.count == scores.count, let o = out.baseAddress else { return false }
        let total = RowMath.exponentials(scores, max: m, into: o)
        for i in out.indices { out[i] = Float(Double(out[i]) / total) }
        return true
    }
}

enum RowMath {
    /// Replaces NaN by −∞ (never chosen) and +∞ by the largest finite float, so that max, exp and the
    /// radix keys below see ordered, finite-or-−∞ values. Hugging Face has no such step; a model that
    /// emits NaN would make its softmax NaN. Returns true when anything was replaced.
    @discardableResult
    static func sanitize(_ x: UnsafeMutableBufferPointer<Float>) -> Bool {
        guard let base = x.baseAddress else { return false }
        let n = x.count
        let inf = FVec(repeating: .infinity)
        var changed = false
        var i = 0
        while i + lanes <= n {
            if any(.!(load(base + i) .< inf)) { changed = sanitize(base + i, count: lanes) || changed }
            i += lanes
        }
        return sanitize(base + i, count: n - i) || changed
    }

    private static func sanitize(_ p: UnsafeMutablePointer<Float>, count: Int) -> Bool {
        var changed = false
        for j in 0..<count where !(p[j] < .infinity) {
            p[j] = p[j].isNaN ? -.infinity : .greatestFiniteMagnitude
            changed = true
        }
        return changed
    }

    /// The largest value (−∞ for an empty or all −∞ row).
    static func max(_ x: UnsafeBufferPointer<Float>) -> Float {
        guard let base = x.baseAddress else { return -.infinity }
        let n = x.count
        var acc = FVec(repeating: -.infinity)
        var i = 0
        while i + lanes <= n { acc = lanewiseMax(acc, load(base + i)); i += lanes }
        var m = horizontalMax(acc)
        while i < n { m = Swift.max(m, base[i]); i += 1 }
        return m
    }

    /// The first index holding the largest value (torch.argmax's choice among ties), or nil when every
    /// value is −∞.
    static func argmax(_ x: UnsafeBufferPointer<Float>) -> Int? {
        let m = max(x)
        guard m > -.infinity else { return nil }
        return x.firstIndex(of: m)
    }

    /// w[i] = e^(x[i] − m) for every i, and Σ w accumulated in Double (four Double lanes per half
    /// vector): a Float total of 262,144 terms would be off by far more than the top-p decisions allow.
    /// x − m ≤ 0 since m is the row's max.
    static func exponentials(_ x: UnsafeBufferPointer<Float>, max m: Float, into w: UnsafeMutablePointer<Float>) -> Double {
        guard let base = x.baseAddress else { return 0 }
        let n = x.count
        let mv = FVec(repeating: m)
        var low = SIMD4<Double>(), high = SIMD4<Double>()
        var i = 0
        while i + lanes <= n {
            let e = expNonPositive(load(base + i) - mv)
            store(e, w + i)
            low += SIMD4<Double>(e.lowHalf)
            high += SIMD4<Double>(e.highHalf)
            i += lanes
        }
        var total = (low + high).sum()
        while i < n {
            let e = expNonPositive(base[i] - m)
            w[i] = e
            total += Double(e)
            i += 1
        }
        return total
    }
}
