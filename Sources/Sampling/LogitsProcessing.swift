import Foundation

/// One of Hugging Face's logits processors, as data (`SamplingParameters.stages` lists them in HF's order;
/// `LogitsProcessor.apply` is the one code path that reads them). Sources: transformers'
/// `generation/logits_process.py`, cited per case; docs/GENERATION.md.
public enum LogitsStage: Hashable, Sendable {
    /// `RepetitionPenaltyLogitsProcessor`: for each distinct token in the sequence (prompt included),
    /// score < 0 ? score · penalty : score / penalty.
    case repetitionPenalty(Float)
    /// `NoRepeatNGramLogitsProcessor`: −∞ for every token that would complete an n-gram already present.
    case noRepeatNgram(Int)
    /// `TemperatureLogitsWarper`: score / temperature.
    case temperature(Float)
    /// `TopKLogitsWarper`: −∞ for every score below the k-th largest (ties with it are kept).
    case topK(Int)
    /// `TopPLogitsWarper`: −∞ for the least likely tokens whose cumulative probability is ≤ 1 − p.
    case topP(Float)
}

/// The sequence a row of scores continues, as two contiguous parts (a prompt shared by every beam, and
/// one sequence's or beam's generated tokens), read by position.
public struct TokenHistory {
    public var prompt: ArraySlice<Int32>
    public var generated: ArraySlice<Int32>

    public init(prompt: ArraySlice<Int32>, generated: ArraySlice<Int32> = []) {
        self.prompt = prompt; self.generated = generated
    }

    public var count: Int { prompt.count + generated.count }

    @inline(__always) public subscript(position: Int) -> Int32 {
        position < prompt.count ? prompt[prompt.startIndex + position]
                                : generated[generated.startIndex + position - prompt.count]
    }
}

/// Applies logits stages to one row of scores (`vocab` floats, overwritten in place).
public enum LogitsProcessor {
    /// NaN becomes −∞ and +∞ the largest finite float, so the stages see ordered values (the samplers do
    /// this first). Returns true when anything was replaced.
    @discardableResult
    public static func sanitize(_ scores: UnsafeMutableBufferPointer<Float>) -> Bool { RowMath.sanitize(scores) }

    /// Applies `stages` in order.
    /// - Parameters:
    ///   - scores: one row of at most the scratch's vocabulary size (a longer row is a programming error
    ///     and traps rather than writing past the scratch); NaN and +∞ must already be gone (`sanitize`).
    ///   - history: the sequence so far; ids outside the row are ignored.
    public static func apply(_ stages: [LogitsStage], to scores: UnsafeMutableBufferPointer<Float>,
                             history: TokenHistory, scratch: SamplingScratch) {
        precondition(scores.count <= scratch.vocabSize, "a row of \(scores.count) scores for a scratch of \(scratch.vocabSize)")
        scratch.resetSupport()
        for stage in stages { run(stage, on: scores, history: history, scratch: scratch) }
    }

    /// One stage alone on a fresh row.
    public static func apply(_ stage: LogitsStage, to scores: UnsafeMutableBufferPointer<Float>,
                             history: TokenHistory, scratch: SamplingScratch) {
        precondition(scores.count <= scratch.vocabSize, "a row of \(scores.count) scores for a scratch of \(scratch.vocabSize)")
        scratch.resetSupport()
        run(stage, on: scores, history: history, scratch: scratch)
    }

    /// The stages after the first filter keep −∞ as −∞, so the support it leaves stays valid (the penalty
    /// and the n-gram ban come first in HF's order anyway).
    private static func run(_ stage: LogitsStage, on scores: UnsafeMutableBufferPointer<Float>,
                            history: TokenHistory, scratch: SamplingScratch) {
        switch stage {
        case .repetitionPenalty(let penalty): repetitionPenalty(scores, penalty: penalty, history: history, scratch: scratch)
        case .noRepeatNgram(let n): banRepeatedNgrams(scores, n: n, history: history)
        case .temperature(let t): temperature(scores, t)
        case .topK(let k): topK(scores, k: k, scratch: scratch)
        case .topP(let p): topP(scores, p: p, scratch: scratch)
        }
    }

    /// HF gathers the scores of every id in the sequence, penalises them and scatters them back, so an id
    /// that occurs several times is penalised once; a score of exactly 0 is divided (stays 0).
    static func repetitionPenalty(_ x: UnsafeMutableBufferPointer<Float>, penalty: Float, history: TokenHistory,
                                  scratch: SamplingScratch) {
        let n = x.count
        for i in 0..<history.count {
            let id = Int(history[i])
            guard id >= 0, id < n, scratch.mark(id) else { continue }
            let v = x[id]
            x[id] = v < 0 ? v * penalty : v / penalty
        }
        for i in 0..<history.count {
            let id = Int(history[i])
            if id >= 0, id < n { scratch.unmark(id) }
        }
    }

    /// HF's `_get_ngrams` / `_get_generated_ngrams`: with L tokens, the last n − 1 are the prefix; every
    /// earlier window of n tokens that starts with it bans its last token. Nothing is banned while L < n;
    /// n = 1 bans every token already present. A scan of the sequence, O(L·n), no table to keep or copy.
    static func banRepeatedNgrams(_ x: UnsafeMutableBufferPointer<Float>, n: Int, history: TokenHistory) {
        let length = history.count
        guard n > 0, length >= n else { return }
        let prefixStart = length - (n - 1)
        for start in 0...(length - n) {
            var match = true
            var j = 0
            while j < n - 1 {
                if history[start + j] != history[prefixStart + j] { match = false; break }
                j += 1
            }
            if match {
                let id = Int(history[start + n - 1])
                if id >= 0, id < x.count { x[id] = -.infinity }
            }
        }
    }

    static func temperature(_ x: UnsafeMutableBufferPointer<Float>, _ t: Float) {
        guard let base = x.baseAddress else { return }
        let n = x.count
        let tv = FVec(repeating: t)
        var i = 0
        while i + lanes <= n { store(load(base + i) / tv, base + i); i += lanes }
        while i < n { base[i] = base[i] / t; i += 1 }
    }

    /// k = min(max(k, 1), vocab) (HF's `min_tokens_to_keep` = 1 and its safety clamp); scores below the
    /// k-th largest become −∞, and the rest (k and any ties) become the row's support.
    static func topK(_ x: UnsafeMutableBufferPointer<Float>, k: Int, scratch s: SamplingScratch) {
        let k = min(max(k, 1), x.count)
        guard k < x.count, let base = x.baseAddress else { return }
        let row = UnsafeBufferPointer(x)
        let kth = k <= s.heapCapacity ? RadixSelect.kthLargestByHeap(row, k: k, scratch: s)
                                      : RadixSelect.kthLargest(row, k: k, scratch: s)
        let n = x.count
        let kv = FVec(repeating: kth), removed = FVec(repeating: -.infinity)
        var count = 0
        var i = 0
        while i + lanes <= n {
            let v = load(base + i)
            let below = v .< kv
            if all(below) {
                store(removed, base + i)
            } else {
                for j in 0..<lanes {
                    if below[j] { base[i + j] = -.infinity } else { s.support[count] = Int32(i + j); count += 1 }
                }
            }
            i += lanes
        }
        while i < n {
            if base[i] < kth { base[i] = -.infinity } else { s.support[count] = Int32(i); count += 1 }
            i += 1
        }
        s.supportCount = count
        s.hasSupport = true
        s.supportWeighted = false
    }

    /// The nucleus (`RadixSelect.nucleus`) over the support when a filter left one, else over the row;
    /// p ≥ 1 changes nothing (HF does not add the warper). Leaves the kept ids as the support, weighted.
    static func topP(_ x: UnsafeMutableBufferPointer<Float>, p: Float, scratch s: SamplingScratch) {
        guard p < 1 else { return }
        let row = UnsafeBufferPointer(x)
        let members: UnsafePointer<Int32>? = s.hasSupport ? UnsafePointer(s.support) : nil
        let count = s.hasSupport ? s.supportCount : x.count
        guard weigh(row, members: members, count: count, scratch: s) else { return }
        let cut = count <= RadixSelect.sortLimit
            ? RadixSelect.nucleusBySorting(row, weights: s.weights, p: Double(p), members: members, count: count, scratch: s)
            : RadixSelect.nucleus(row, weights: s.weights, p: Double(p), members: members, count: count, scratch: s)
        var kept = 0
        var total: Double = 0
        @inline(__always) func visit(_ i: Int) {
            let v = x[i]
            if v < cut.value || (v == cut.value && i < cut.firstKeptId) {
                x[i] = -.infinity
            } else {
                s.support[kept] = Int32(i)
                kept += 1
                total += Double(s.weights[i])
            }
        }
        if let ids = members {
            for j in 0..<count { visit(Int(ids[j])) }
        } else {
            for i in 0..<count { visit(i) }
        }
        s.supportCount = kept
        s.hasSupport = true
        s.supportWeighted = true
        s.supportTotal = total
    }

    /// weights[i] = e^(x[i] − max) for the members (all of x when nil), max taken over them. False when
    /// every member is −∞.
    static func weigh(_ x: UnsafeBufferPointer<Float>, members: UnsafePointer<Int32>?, count: Int,
                      scratch s: SamplingScratch) -> Bool {
        guard let ids = members else {
            let m = RowMath.max(x)
            guard m > -.infinity else { return false }
            _ = RowMath.exponentials(x, max: m, into: s.weights)
            return true
        }
        var m = -Float.infinity
        for j in 0..<count { m = Swift.max(m, x[Int(ids[j])]) }
        guard m > -.infinity else { return false }
        let mv = FVec(repeating: m)
        var j = 0
        while j + lanes <= count {
            var v = FVec()
            for l in 0..<lanes { v[l] = x[Int(ids[j + l])] }
            let e = expNonPositive(v - mv)
            for l in 0..<lanes { s.weights[Int(ids[j + l])] = e[l] }
            j += lanes
        }
        while j < count { s.weights[Int(ids[j])] = expNonPositive(x[Int(ids[j])] - m); j += 1 }
        return true
    }

    /// Log-softmax in place, as torch computes it: (x − max) − log Σ e^(x − max), the sum in Double.
    /// Returns false (and leaves the row) when every score is −∞.
    static func logSoftmax(_ x: UnsafeMutableBufferPointer<Float>, scratch: SamplingScratch) -> Bool {
        let row = UnsafeBufferPointer(x)
        let m = RowMath.max(row)
        guard m > -.infinity, let base = x.baseAddress else { return false }
        let z = RowMath.exponentials(row, max: m, into: scratch.weights)
        let lse = Float(Foundation.log(z))
        let mv = FVec(repeating: m), lv = FVec(repeating: lse)
        let n = x.count
        var i = 0
        while i + lanes <= n { store((load(base + i) - mv) - lv, base + i); i += lanes }
        while i < n { base[i] = (base[i] - m) - lse; i += 1 }
        return true
    }
}
