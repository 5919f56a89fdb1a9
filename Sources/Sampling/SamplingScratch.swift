/// Reusable buffers for rows of one vocabulary size. One scratch per thread that samples (the engine's
/// step loop), shared by every sequence it serves: with 262,144-token vocabularies nothing is allocated
/// per token, and nothing vocabulary-sized per sequence. Not thread-safe; owns its memory.
public final class SamplingScratch {
    public let vocabSize: Int
    /// (vocab) e^(x − max) of the row being processed.
    let weights: UnsafeMutablePointer<Float>
    /// (vocab) radix keys of one histogram bin's members, compacted.
    let keys: UnsafeMutablePointer<UInt32>
    /// (vocab) the ids of those members, in id order.
    let ids: UnsafeMutablePointer<Int32>
    /// (bins) counts and probability masses of one radix level.
    let binCount: UnsafeMutablePointer<Int>
    let binMass: UnsafeMutablePointer<Double>
    /// (⌈vocab / 64⌉) a bitset over token ids, all clear between calls (repetition penalty's dedup).
    let marks: UnsafeMutablePointer<UInt64>
    let markWords: Int
    /// (min(vocab, heapLimit)) the min-heap of top-k's k best values.
    let heap: UnsafeMutablePointer<Float>
    let heapCapacity: Int

    /// The row being processed, once a filter has run: every score outside `support[0..<supportCount]`
    /// (ids ascending) is −∞, so later stages and the draw visit only these. `supportWeighted`: `weights`
    /// holds e^(x − max) for each of them and `supportTotal` their sum in id order (top-p leaves it so).
    /// Valid only within one `LogitsProcessor.apply` and the draw right after it on the same row.
    let support: UnsafeMutablePointer<Int32>
    var supportCount = 0
    var hasSupport = false
    var supportWeighted = false
    var supportTotal: Double = 0

    static let bins = 2048
    /// Up to this k, top-k keeps a heap (one pass, mostly vector compares); above, three radix passes.
    static let heapLimit = 4096

    /// - Parameter vocabSize: the row length every call will use (at least 1).
    public init(vocabSize: Int) {
        let n = max(1, vocabSize)
        self.vocabSize = n
        weights = .allocate(capacity: n)
        keys = .allocate(capacity: n)
        ids = .allocate(capacity: n)
        binCount = .allocate(capacity: Self.bins)
        binMass = .allocate(capacity: Self.bins)
        markWords = (n + 63) / 64
        marks = .allocate(capacity: markWords)
        marks.initialize(repeating: 0, count: markWords)
        heapCapacity = min(n, Self.heapLimit)
        heap = .allocate(capacity: heapCapacity)
        support = .allocate(capacity: n)
    }

    deinit {
        weights.deallocate(); keys.deallocate(); ids.deallocate()
        binCount.deallocate(); binMass.deallocate(); marks.deallocate()
        heap.deallocate(); support.deallocate()
    }

    /// Forgets the support: the next row starts dense.
    func resetSupport() {
        hasSupport = false
        supportWeighted = false
    }

    /// Sets the bit of `id`; returns false when it was already set.
    @inline(__always) func mark(_ id: Int) -> Bool {
        let word = id >> 6, bit = UInt64(1) << UInt64(id & 63)
        if marks[word] & bit != 0 { return false }
        marks[word] |= bit
        return true
    }

    @inline(__always) func unmark(_ id: Int) {
        marks[id >> 6] &= ~(UInt64(1) << UInt64(id & 63))
    }

    func clearBins(_ count: Int) {
        binCount.update(repeating: 0, count: count)
        binMass.update(repeating: 0, count: count)
    }
}

/// A 32-bit key whose unsigned order is the float order (−0 taken as +0, −∞ lowest): the sign bit set
/// for positives, every bit flipped for negatives.
@inline(__always) func orderKey(_ x: Float) -> UInt32 {
    let bits = (x + 0).bitPattern
    return bits & 0x8000_0000 != 0 ? ~bits : bits | 0x8000_0000
}

@inline(__always) func value(ofKey key: UInt32) -> Float {
    Float(bitPattern: key & 0x8000_0000 != 0 ? key & 0x7FFF_FFFF : ~key)
}

/// Selection in descending order without sorting the vocabulary: three radix passes on the order keys
/// (11, 11 and 10 bits; 2,048-bin histograms), each narrowing to the one bin where the cut falls, so the
/// work is a few linear passes over the row whatever its length or its ties.
enum RadixSelect {
    /// (shift, bits) of the three levels.
    static let levels: [(shift: UInt32, mask: UInt32)] = [(21, 0x7FF), (10, 0x7FF), (0, 0x3FF)]

    /// The k-th largest value of `x` (1 ≤ k ≤ x.count), counting ties with multiplicity.
    static func kthLargest(_ x: UnsafeBufferPointer<Float>, k: Int, scratch s: SamplingScratch) -> Float {
        var need = k
        var members = 0      // compacted keys in s.keys after level 0
        var prefix: UInt32 = 0
        for (level, spec) in levels.enumerated() {
            s.clearBins(Int(spec.mask) + 1)
            if level == 0 {
                for v in x { s.binCount[Int(orderKey(v) >> spec.shift)] += 1 }
            } else {
                for j in 0..<members { s.binCount[Int((s.keys[j] >> spec.shift) & spec.mask)] += 1 }
            }
            var bin = Int(spec.mask)
            while bin > 0, s.binCount[bin] < need { need -= s.binCount[bin]; bin -= 1 }
            prefix |= UInt32(bin) << spec.shift
            // Keep only this bin's members for the next level.
            if level == 0 {
                members = 0
                for v in x {
                    let key = orderKey(v)
                    if key >> spec.shift == UInt32(bin) { s.keys[members] = key; members += 1 }
                }
            } else {
                var kept = 0
                for j in 0..<members where (s.keys[j] >> spec.shift) & spec.mask == UInt32(bin) {
                    s.keys[kept] = s.keys[j]; kept += 1
                }
                members = kept
            }
        }
        return value(ofKey: prefix)
    }

    /// The k-th largest value of `x` (1 ≤ k ≤ min(x.count, heap capacity)) with a size-k min-heap; once
    /// full, a block of 8 is looked at lane by lane only when one of them beats the heap's minimum.
    static func kthLargestByHeap(_ x: UnsafeBufferPointer<Float>, k: Int, scratch s: SamplingScratch) -> Float {
        guard let base = x.baseAddress else { return -.infinity }
        let h = UnsafeMutableBufferPointer(start: s.heap, count: k)
        let n = x.count
        var i = 0
        while i < k {   // fill, sifting each value up
            var c = i
            h[c] = base[i]
            while c > 0, h[(c - 1) / 2] > h[c] { h.swapAt(c, (c - 1) / 2); c = (c - 1) / 2 }
            i += 1
        }
        @inline(__always) func offer(_ v: Float) {
            guard v > h[0] else { return }
            h[0] = v
            var c = 0
            while true {
                let l = 2 * c + 1, r = l + 1
                var m = c
                if l < k, h[l] < h[m] { m = l }
                if r < k, h[r] < h[m] { m = r }
                if m == c { break }
                h.swapAt(c, m)
                c = m
            }
        }
        while i < n, i % lanes != 0 { offer(base[i]); i += 1 }
        while i + lanes <= n {
            let v = load(base + i)
            if any(v .> FVec(repeating: h[0])) { for j in 0..<lanes { offer(v[j]) } }
            i += lanes
        }
        while i < n { offer(base[i]); i += 1 }
        return h[0]
    }

    /// At or below this many members, top-p sorts them (in place) instead of three histogram levels.
    static let sortLimit = 2048

    /// `nucleus` for a few members: the same walk over them sorted by value descending, higher id first
    /// among equals (an in-place heapsort of their ids in `scratch.ids`, nothing allocated).
    static func nucleusBySorting(_ x: UnsafeBufferPointer<Float>, weights w: UnsafePointer<Float>, p: Double,
                                 members ids: UnsafePointer<Int32>?, count: Int, scratch s: SamplingScratch) -> NucleusCut {
        let order = UnsafeMutableBufferPointer(start: s.ids, count: count)
        for j in 0..<count { order[j] = ids.map { $0[j] } ?? Int32(j) }
        // "a before b" in the walk: the larger value, then the larger id.
        @inline(__always) func before(_ a: Int32, _ b: Int32) -> Bool {
            let va = x[Int(a)], vb = x[Int(b)]
            return va > vb || (va == vb && a > b)
        }
        // Heapsort with the walk's last element at the root, so the array ends in walk order.
        func siftDown(_ start: Int, _ end: Int) {
            var root = start
            while true {
                let l = 2 * root + 1, r = l + 1
                var m = root
                if l < end, before(order[m], order[l]) { m = l }
                if r < end, before(order[m], order[r]) { m = r }
                if m == root { return }
                order.swapAt(root, m)
                root = m
            }
        }
        for start in stride(from: count / 2 - 1, through: 0, by: -1) { siftDown(start, count) }
        for end in stride(from: count - 1, to: 0, by: -1) { order.swapAt(0, end); siftDown(0, end) }
        var total: Double = 0
        for j in 0..<count { total += Double(w[Int(order[j])]) }
        let tailLimit = (1 - p) * total
        var head: Double = 0
        for j in 0..<count {
            head += Double(w[Int(order[j])])
            if total - head <= tailLimit || j == count - 1 {
                return NucleusCut(value: x[Int(order[j])], firstKeptId: Int(order[j]))
            }
        }
        return NucleusCut(value: -.infinity, firstKeptId: 0)
    }

    /// Where top-p cuts: the kept tokens are those above `value`, and those equal to it with id ≥ `firstKeptId`.
    struct NucleusCut { var value: Float; var firstKeptId: Int }

    /// Hugging Face's nucleus: sorted ascending (equal values in id order, as a stable sort leaves them),
    /// the tokens whose cumulative probability is ≤ 1 − p are removed, the last one always kept. The same
    /// set, found descending: the smallest prefix (value descending, higher id first among equals) after
    /// which the remaining mass Z − head is ≤ (1 − p)·Z. Masses are the f32 weights e^(x − max), summed in
    /// Double; Z is their sum in the order the walk visits the bins, so the walk always ends.
    /// - Parameter members: the ids to consider (ascending), or nil for every id of `x`.
    static func nucleus(_ x: UnsafeBufferPointer<Float>, weights w: UnsafePointer<Float>, p: Double,
                        members ids: UnsafePointer<Int32>?, count: Int, scratch s: SamplingScratch) -> NucleusCut {
        let spec0 = levels[0]
        s.clearBins(Int(spec0.mask) + 1)
        @inline(__always) func count0(_ i: Int) {
            let b = Int(orderKey(x[i]) >> spec0.shift)
            s.binCount[b] += 1
            s.binMass[b] += Double(w[i])
        }
        if let ids { for j in 0..<count { count0(Int(ids[j])) } } else { for i in 0..<count { count0(i) } }
        var total: Double = 0
        for b in stride(from: Int(spec0.mask), through: 0, by: -1) { total += s.binMass[b] }
        let tailLimit = (1 - p) * total
        var head: Double = 0

        /// The bin (walking down) whose mass brings the tail to the limit, the lowest non-empty one if
        /// rounding in a finer level's sums never quite gets there; `head` ends as the mass above it.
        func crossing(_ bins: Int) -> Int {
            var last = -1
            for b in stride(from: bins - 1, through: 0, by: -1) where s.binCount[b] > 0 {
                if total - (head + s.binMass[b]) <= tailLimit { return b }
                head += s.binMass[b]
                last = b
            }
            if last >= 0 { head -= s.binMass[last] }
            return max(last, 0)
        }

        var bin = crossing(Int(spec0.mask) + 1)
        var prefix = UInt32(bin) << spec0.shift
        var members = 0
        @inline(__always) func gather0(_ i: Int) {
            let key = orderKey(x[i])
            if key >> spec0.shift == UInt32(bin) { s.keys[members] = key; s.ids[members] = Int32(i); members += 1 }
        }
        if let ids { for j in 0..<count { gather0(Int(ids[j])) } } else { for i in 0..<count { gather0(i) } }
        for spec in levels.dropFirst() {
            s.clearBins(Int(spec.mask) + 1)
            for j in 0..<members {
                let b = Int((s.keys[j] >> spec.shift) & spec.mask)
                s.binCount[b] += 1
                s.binMass[b] += Double(w[Int(s.ids[j])])
            }
            bin = crossing(Int(spec.mask) + 1)
            prefix |= UInt32(bin) << spec.shift
            var kept = 0
            for j in 0..<members where (s.keys[j] >> spec.shift) & spec.mask == UInt32(bin) {
                s.keys[kept] = s.keys[j]; s.ids[kept] = s.ids[j]; kept += 1
            }
            members = kept
        }
        // Every member now has the same value (and weight); higher ids first until the tail is small enough.
        var firstKept = members > 0 ? Int(s.ids[0]) : 0
        for j in stride(from: members - 1, through: 0, by: -1) {
            let id = Int(s.ids[j])
            head += Double(w[id])
            firstKept = id
            if total - head <= tailLimit { break }
        }
        return NucleusCut(value: value(ofKey: prefix), firstKeptId: firstKept)
    }
}
