// Element-wise kernels of the forward pass, vectorized with SIMD8<Float> (one AVX register,
// two SSE registers). Each works on one contiguous vector; callers loop over tokens.

typealias Vec = SIMD8<Float>
let vecWidth = 8

@inline(__always) func loadVec(_ p: UnsafePointer<Float>) -> Vec {
    UnsafeRawPointer(p).loadUnaligned(as: Vec.self)
}

@inline(__always) func storeVec(_ v: Vec, _ p: UnsafeMutablePointer<Float>) {
    UnsafeMutableRawPointer(p).storeBytes(of: v, as: Vec.self)
}

// The standard library's pointwiseMin/Max handle NaN lane by lane in a call; a compare and blend
// keeps these in registers.
@inline(__always) func lanewiseMax(_ a: Vec, _ b: Vec) -> Vec { a.replacing(with: b, where: b .> a) }
@inline(__always) func lanewiseMin(_ a: Vec, _ b: Vec) -> Vec { a.replacing(with: b, where: b .< a) }

/// Largest lane, by halving (the standard library's `max()` is a scalar loop).
@inline(__always) func horizontalMax(_ v: Vec) -> Float {
    let a = v.lowHalf.replacing(with: v.highHalf, where: v.highHalf .> v.lowHalf)
    let b = a.lowHalf.replacing(with: a.highHalf, where: a.highHalf .> a.lowHalf)
    return Swift.max(b[0], b[1])
}

/// e^x for 8 lanes: Cody–Waite reduction x = n·ln2 + r, a degree-6 polynomial for e^r (Cephes
/// expf coefficients, about 1 ulp), and 2^n built in the exponent bits. Inputs below −87 give ~0.
@inline(__always) func vexp(_ x: Vec) -> Vec {
    let clamped = lanewiseMax(lanewiseMin(x, Vec(repeating: 88.0)), Vec(repeating: -87.0))
    // Round x·log2(e) to the nearest integer with the 1.5·2^23 trick; the integer lands in the low mantissa bits.
    let magic = Vec(repeating: 12_582_912.0)
    let shifted = clamped * 1.442_695_04 + magic
    let n = shifted - magic
    var r = clamped - n * 0.693_359_375
    r = r + n * 2.121_944_4e-4
    var p = Vec(repeating: 1.987_569_15e-4)
    p = p * r + 1.398_199_95e-3
    p = p * r + 8.333_451_9e-3
    p = p * r + 4.166_579_59e-2
    p = p * r + 1.666_666_55e-1
    p = p * r + 5.000_000_12e-1
    p = p * (r * r) + r + 1
    let nBits = unsafeBitCast(shifted, to: SIMD8<Int32>.self) &- 0x4B40_0000
    let scale = unsafeBitCast((nBits &+ 127) &<< 23, to: Vec.self)
    return p * scale
}

/// out = x / sqrt(mean(x²) + eps) ⊙ weight, over `n` values.
@inline(__always)
func rmsNorm(_ x: UnsafePointer<Float>, weight: UnsafePointer<Float>, out: UnsafeMutablePointer<Float>, n: Int, eps: Float) {
    var acc = Vec()
    var i = 0
    while i + vecWidth <= n {
        let v = loadVec(x + i)
        acc += v * v
        i += vecWidth
    }
    var sum = acc.sum()
    while i < n { sum += x[i] * x[i]; i += 1 }
    let scale = 1 / (sum / Float(n) + eps).squareRoot()
    i = 0
    while i + vecWidth <= n {
        storeVec(loadVec(x + i) * scale * loadVec(weight + i), out + i)
        i += vecWidth
    }
    while i < n { out[i] = x[i] * scale * weight[i]; i += 1 }
}

/// Rotates `heads` consecutive head vectors of one token in place by RoPE in the given style.
/// `cos`/`sin` are this position's rows of a `RopeTable` of the same style.
@inline(__always)
func rope(_ style: ModelFamily.RopeStyle, _ v: UnsafeMutablePointer<Float>, heads: Int, headDim: Int,
          cos: UnsafePointer<Float>, sin: UnsafePointer<Float>) {
    switch style {
    case .adjacentPairs: ropeAdjacentPairs(v, heads: heads, headDim: headDim, cosDup: cos, sinSigned: sin)
    case .rotateHalf: ropeRotateHalf(v, heads: heads, headDim: headDim, cos: cos, sin: sin)
    }
}

/// Adjacent-pair layout (x[2i], x[2i+1]) as llama-architecture GGUF files store Q and K.
/// `cosDup`/`sinSigned` are [c0, c0, c1, c1, …] and [−s0, s0, −s1, s1, …].
@inline(__always)
func ropeAdjacentPairs(_ v: UnsafeMutablePointer<Float>, heads: Int, headDim: Int,
                       cosDup: UnsafePointer<Float>, sinSigned: UnsafePointer<Float>) {
    for h in 0..<heads {
        let p = v + h * headDim
        var i = 0
        while i < headDim {
            let a = p[i], b = p[i + 1]
            p[i] = a * cosDup[i] + b * sinSigned[i]
            p[i + 1] = b * cosDup[i + 1] + a * sinSigned[i + 1]
            i += 2
        }
    }
}

/// Rotate-half layout: x[i] pairs with x[i + hd/2]. `cos` is [c0 … c(hd/2−1), c0 …], `sin` is
/// [−s0 … −s(hd/2−1), s0 …], so both halves are whole vectors.
@inline(__always)
func ropeRotateHalf(_ v: UnsafeMutablePointer<Float>, heads: Int, headDim: Int,
                    cos: UnsafePointer<Float>, sin: UnsafePointer<Float>) {
    let half = headDim / 2
    for h in 0..<heads {
        let lo = v + h * headDim, hi = lo + half
        var i = 0
        while i + vecWidth <= half {
            let a = loadVec(lo + i), b = loadVec(hi + i)
            storeVec(a * loadVec(cos + i) + b * loadVec(sin + i), lo + i)
            storeVec(b * loadVec(cos + half + i) + a * loadVec(sin + half + i), hi + i)
            i += vecWidth
        }
        while i < half {
            let a = lo[i], b = hi[i]
            lo[i] = a * cos[i] + b * sin[i]
            hi[i] = b * cos[half + i] + a * sin[half + i]
            i += 1
        }
    }
}

/// Masked softmax of one score row in place: softmax over values `first..<valid`, zeros before
/// (keys outside a sliding window) and after (future keys), up to `total`.
@inline(__always)
func softmaxRange(_ row: UnsafeMutablePointer<Float>, first: Int, valid: Int, total: Int) {
    if first > 0 { row.update(repeating: 0, count: first) }
    softmaxPrefix(row + first, valid: valid - first, total: total - first)
}

/// Causal softmax of one score row in place: softmax over the first `valid` values, zeros after,
/// up to `total`.
@inline(__always)
func softmaxPrefix(_ s: UnsafeMutablePointer<Float>, valid: Int, total: Int) {
    var vmax = Vec(repeating: -.infinity)
    var i = 0
    while i + vecWidth <= valid { vmax = lanewiseMax(vmax, loadVec(s + i)); i += vecWidth }
    var m = horizontalMax(vmax)
    while i < valid { m = max(m, s[i]); i += 1 }
    let mv = Vec(repeating: m)
    var acc = Vec()
    i = 0
    while i + vecWidth <= valid {
        let e = vexp(loadVec(s + i) - mv)
        storeVec(e, s + i)
        acc += e
        i += vecWidth
    }
    var sum = acc.sum()
    while i < valid {
        // The tail goes through the vector exp too, so every value uses the same approximation.
        let e = vexp(Vec(repeating: s[i] - m))[0]
        s[i] = e
        sum += e
        i += 1
    }
    let inv = 1 / sum
    i = 0
    while i + vecWidth <= valid { storeVec(loadVec(s + i) * inv, s + i); i += vecWidth }
    while i < valid { s[i] *= inv; i += 1 }
    if total > valid { (s + valid).update(repeating: 0, count: total - valid) }
}

/// gate ← act(gate) ⊙ up over `n` values, for the family's activation.
@inline(__always)
func gatedActivation(_ activation: ModelFamily.Activation, gate: UnsafeMutablePointer<Float>, up: UnsafePointer<Float>, n: Int) {
    switch activation {
    case .silu: siluMul(gate, up: up, n: n)
    case .geluTanh: geluTanhMul(gate, up: up, n: n)
    }
}

/// gate ← GELU(gate) ⊙ up with the tanh form, exact in f32 (llama.cpp's CPU path reads an fp16
/// table instead). 0.5·(1 + tanh(u)) = σ(2u), so GELU(x) = x / (1 + e^(−2u)),
/// u = √(2/π)·(x + 0.044715·x³); e^(−2u) overflowing to +∞-like values gives 0 as it should.
@inline(__always)
func geluTanhMul(_ gate: UnsafeMutablePointer<Float>, up: UnsafePointer<Float>, n: Int) {
    let c: Float = 0.797_884_56 * -2, c3: Float = 0.044_715
    var i = 0
    while i + vecWidth <= n {
        let g = loadVec(gate + i)
        let u = g * (1 + c3 * g * g) * c
        storeVec(g / (1 + vexp(u)) * loadVec(up + i), gate + i)
        i += vecWidth
    }
    while i < n {
        let g = gate[i]
        gate[i] = g / (1 + vexp(Vec(repeating: g * (1 + c3 * g * g) * c))[0]) * up[i]
        i += 1
    }
}

/// gate ← SiLU(gate) ⊙ up = gate / (1 + e^−gate) ⊙ up, over `n` values.
@inline(__always)
func siluMul(_ gate: UnsafeMutablePointer<Float>, up: UnsafePointer<Float>, n: Int) {
    var i = 0
    while i + vecWidth <= n {
        let g = loadVec(gate + i)
        storeVec(g / (1 + vexp(-g)) * loadVec(up + i), gate + i)
        i += vecWidth
    }
    while i < n {
        let g = gate[i]
        gate[i] = g / (1 + vexp(Vec(repeating: -g))[0]) * up[i]
        i += 1
    }
}

/// x ← x·factor over `n` values.
@inline(__always)
func scale(_ x: UnsafeMutablePointer<Float>, by factor: Float, n: Int) {
    var i = 0
    while i + vecWidth <= n { storeVec(loadVec(x + i) * factor, x + i); i += vecWidth }
    while i < n { x[i] *= factor; i += 1 }
}

/// y ← y + x over `n` values.
@inline(__always)
func add(_ x: UnsafePointer<Float>, into y: UnsafeMutablePointer<Float>, n: Int) {
    var i = 0
    while i + vecWidth <= n { storeVec(loadVec(y + i) + loadVec(x + i), y + i); i += vecWidth }
    while i < n { y[i] += x[i]; i += 1 }
}

/// x ← cap·tanh(x/cap) over `n` values, with tanh(y) = 1 − 2/(1 + e^(2y)) (absolute error ~1e-7·cap).
@inline(__always)
func softcap(_ x: UnsafeMutablePointer<Float>, cap: Float, n: Int) {
    let twoOverCap = 2 / cap
    var i = 0
    while i + vecWidth <= n {
        storeVec(cap * (1 - 2 / (1 + vexp(loadVec(x + i) * twoOverCap))), x + i)
        i += vecWidth
    }
    while i < n { x[i] = cap * (1 - 2 / (1 + vexp(Vec(repeating: x[i] * twoOverCap))[0])); i += 1 }
}
