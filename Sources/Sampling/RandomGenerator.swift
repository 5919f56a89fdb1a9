/// SplitMix64 (Steele, Lea & Flood 2014; Vigna's `splitmix64.c`): a 64-bit counter advanced by the golden
/// gamma and mixed. Used only to expand a seed into xoshiro's state, as its authors recommend.
public struct SplitMix64: RandomNumberGenerator, Sendable {
    public private(set) var state: UInt64
    public init(seed: UInt64) { state = seed }
    public mutating func next() -> UInt64 {
        state &+= 0x9E37_79B9_7F4A_7C15
        return Self.mix(state)
    }
    /// SplitMix64's output function alone (a bijection of 64-bit words).
    @inline(__always) public static func mix(_ x: UInt64) -> UInt64 {
        var z = x
        z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
        z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
        return z ^ (z >> 31)
    }
}

/// xoshiro256** 1.0 (Blackman & Vigna, "Scrambled linear pseudorandom number generators", 2021; the
/// reference `xoshiro256starstar.c`): 256 bits of state, period 2²⁵⁶ − 1, pure 64-bit integer
/// arithmetic, so a seed gives the same stream on every machine and compiler.
///
/// - The state is four successive `SplitMix64(seed:)` outputs (never all zero).
/// - Stream `k` of a seed is the state after `k` calls of `jump()` (2¹²⁸ steps each), so the rows of one
///   request draw from non-overlapping streams of the same seed.
/// - `uniform()` is `(next() >> 11) · 2⁻⁵³`, a double in [0, 1).
///
/// scripts/reference/sampling_reference.py implements the same generator; rng.json pins its outputs.
public struct Xoshiro256StarStar: RandomNumberGenerator, Sendable {
    public private(set) var state: (UInt64, UInt64, UInt64, UInt64)

    public init(seed: UInt64, stream: Int = 0) {
        var sm = SplitMix64(seed: seed)
        state = (sm.next(), sm.next(), sm.next(), sm.next())
        for _ in 0..<max(0, stream) { jump() }
    }

    @inline(__always) private static func rotl(_ x: UInt64, _ k: UInt64) -> UInt64 { (x << k) | (x >> (64 - k)) }

    public mutating func next() -> UInt64 {
        let result = Self.rotl(state.1 &* 5, 7) &* 9
        let t = state.1 << 17
        state.2 ^= state.0
        state.3 ^= state.1
        state.1 ^= state.2
        state.0 ^= state.3
        state.2 ^= t
        state.3 = Self.rotl(state.3, 45)
        return result
    }

    /// Advances the state by 2¹²⁸ steps (the reference `jump()` polynomial).
    public mutating func jump() {
        let words: [UInt64] = [0x180E_C6D3_3CFD_0ABA, 0xD5A6_1266_F0C9_392C, 0xA958_2618_E03F_C9AA, 0x39AB_DC45_29B1_661C]
        var acc: (UInt64, UInt64, UInt64, UInt64) = (0, 0, 0, 0)
        for word in words {
            for bit in 0..<64 {
                if word & (1 << UInt64(bit)) != 0 {
                    acc.0 ^= state.0; acc.1 ^= state.1; acc.2 ^= state.2; acc.3 ^= state.3
                }
                _ = next()
            }
        }
        state = acc
    }

    /// A double in [0, 1) from the top 53 bits of the next output.
    @inline(__always) public mutating func uniform() -> Double {
        Double(next() >> 11) * 0x1p-53
    }
}
