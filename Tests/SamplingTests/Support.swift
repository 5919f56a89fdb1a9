import Foundation
import Sampling

/// The JSON fixtures written by scripts/reference/sampling_reference.py (−∞ is the string "-inf").
enum Fixture {
    static func load<T: Decodable>(_ name: String, as type: T.Type) throws -> T {
        guard let url = Bundle.module.url(forResource: name, withExtension: nil, subdirectory: "Fixtures") else {
            throw CocoaError(.fileNoSuchFile, userInfo: [NSFilePathErrorKey: "Fixtures/\(name)"])
        }
        let decoder = JSONDecoder()
        decoder.nonConformingFloatDecodingStrategy = .convertFromString(positiveInfinity: "inf", negativeInfinity: "-inf", nan: "nan")
        return try decoder.decode(T.self, from: Data(contentsOf: url))
    }

    /// The parameters of a fixture case under Hugging Face's names; an absent key is HF's "off".
    struct Params: Decodable {
        var do_sample: Bool?
        var temperature: Float?
        var top_k: Int?
        var top_p: Float?
        var repetition_penalty: Float?
        var no_repeat_ngram_size: Int?

        func sampling(maxNewTokens: Int = 256, seed: UInt64? = nil, stopTokens: [Int32] = []) -> SamplingParameters {
            SamplingParameters(maxNewTokens: maxNewTokens, topK: top_k ?? 0, doSample: do_sample ?? false, topP: top_p ?? 1,
                               temperature: temperature ?? 1, repetitionPenalty: repetition_penalty ?? 1,
                               noRepeatNgramSize: no_repeat_ngram_size ?? 0, numBeams: 1, seed: seed, stopTokens: stopTokens)
        }
    }

    static func hex(_ s: String) -> UInt64 { UInt64(s, radix: 16) ?? 0 }
}

/// The deterministic fake model of scripts/reference/sampling_reference.py (`fake_logits`), exact in f32:
/// h = FNV-1a over the prefix's ids (as u32) from `salt`; token v's logit is the top 24 bits of
/// SplitMix64's mix of h + (v + 1)·golden, scaled to [−4, 4) in steps of 2⁻²¹, times `scale`; each stop
/// token then gets + 0.375·((len(prefix) + 3) mod 7) − 1.
enum FakeModel {
    static func logits(_ prefix: TokenHistory, vocab: Int, salt: UInt64, stop: [Int32] = [], scale: Float = 1,
                       into out: UnsafeMutableBufferPointer<Float>) {
        var h: UInt64 = 0xCBF2_9CE4_8422_2325 ^ salt
        for i in 0..<prefix.count { h = (h ^ UInt64(UInt32(bitPattern: prefix[i]))) &* 0x0000_0100_0000_01B3 }
        for v in 0..<vocab {
            let z = SplitMix64.mix(h &+ UInt64(v + 1) &* 0x9E37_79B9_7F4A_7C15)
            out[v] = (Float(z >> 40) * 0x1p-21 - 4) * scale
        }
        let bonus = Float(0.375 * Double((prefix.count + 3) % 7) - 1.0)
        for s in stop { out[Int(s)] += bonus }
    }
}

/// Error bounds from the f32 arithmetic of the module (u = 2⁻²⁴, the unit roundoff), not from passing runs.
enum Tolerance {
    static let u = 0x1p-24
    /// `SamplingMath.exp`: Cephes' expf polynomial is within about 1 ulp of e^r on the reduced range, the
    /// reduction x − n·ln2 in two parts adds well under 1 ulp, and 2^n is exact: 2 ulp ≤ 4u relative.
    static let exp = 4 * u
    /// A probability from f32 scores: x − max rounds by u·|x − m| (relative on the weight after exp), exp
    /// adds 4u, the normaliser Σw inherits at most the largest weight error (R + 4)u for a range R of kept
    /// scores (the Double sum itself is exact to 1e-16), and the division's rounding u:
    /// |Δp|/p ≤ (|x − m| + R + 9)·u.
    static func probability(_ p: Double, offset: Double, range: Double) -> Double {
        p * u * (offset + range + 9)
    }
    /// One beam-search step's processed log-prob y = ((x − m) − lse)·penalty with fake-model logits of range
    /// R ≤ 10.25 (uniform [−4, 4) plus the stop bonus in [−1, 1.25]) and vocabulary 40 (lse ≤ L = log 40):
    /// (x − m) rounds by u·R, lse inherits the normaliser's (R + 4)u and its own rounding u·L, the
    /// subtraction u·(R + L): (3R + 2L + 4)u ≤ 42u; the penalty p scales that and its product rounds by
    /// u·p·|y| ≤ u·p·(R + L) ≤ 14u·p: 56u·p per step. Each of the L steps also rounds the f32 running sum
    /// by u·|S| ≤ u·|S_final| (scores only decrease). The hypothesis score divides by length^lengthPenalty.
    static func beamScore(sumLogProbs: Double, length: Int, lengthPenalty: Double, penalty: Double) -> Double {
        let total = Double(length) * (56 * max(penalty, 1) * u + u * abs(sumLogProbs))
        return total / pow(Double(length), lengthPenalty)
    }
}

extension Array where Element == Float {
    /// Runs `body` over a mutable copy's buffer.
    func withRow<R>(_ body: (UnsafeMutableBufferPointer<Float>) throws -> R) rethrows -> (R, [Float]) {
        var copy = self
        let r = try copy.withUnsafeMutableBufferPointer { try body($0) }
        return (r, copy)
    }
}
