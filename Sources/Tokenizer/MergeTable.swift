/// Pair → (rank, merged id) lookup in one flat open-addressing table keyed by
/// (left id, right id). Immutable after construction; the storage is owned by this object.
final class MergeTable: @unchecked Sendable {
    /// Returned by `lookup` when the pair has no merge.
    static let none: UInt64 = .max
    private static let emptyKey: UInt64 = .max

    /// Key and value side by side, so a probe touches one cache line (the table of tiktoken's
    /// GPT-2 merges is several MB: most probes on a cold piece miss the caches).
    private struct Entry {
        var key: UInt64
        /// rank << 32 | merged id
        var value: UInt64
    }
    private let entries: UnsafeMutablePointer<Entry>
    private let mask: Int
    let count: Int

    /// `merges[rank] = (left, right, merged)`; the first occurrence of a pair wins, as in HF.
    convenience init(merges: [(left: Int32, right: Int32, merged: Int32)]) {
        self.init(count: merges.count, merges.enumerated().lazy.map { ($0.element.left, $0.element.right, $0.element.merged, $0.offset) })
    }

    /// Merges with explicit ranks (several pairs may share one); the first of a pair wins.
    convenience init(rankedMerges: [Tokenizer.RankedMerge]) {
        self.init(count: rankedMerges.count, rankedMerges.lazy.map { ($0.left, $0.right, $0.merged, $0.rank) })
    }

    private init<S: Sequence>(count mergeCount: Int, _ merges: S) where S.Element == (Int32, Int32, Int32, Int) {
        var capacity = 16
        while capacity < mergeCount * 2 { capacity <<= 1 }
        entries = .allocate(capacity: capacity)
        entries.initialize(repeating: Entry(key: Self.emptyKey, value: 0), count: capacity)
        mask = capacity - 1
        count = mergeCount
        for (left, right, merged, rank) in merges {
            let key = Self.key(left, right)
            var slot = Self.slot(key) & mask
            while entries[slot].key != Self.emptyKey && entries[slot].key != key { slot = (slot + 1) & mask }
            if entries[slot].key == key { continue }
            entries[slot] = Entry(key: key, value: UInt64(rank) << 32 | UInt64(UInt32(bitPattern: merged)))
        }
    }

    deinit {
        entries.deallocate()
    }

    @inline(__always)
    private static func key(_ left: Int32, _ right: Int32) -> UInt64 {
        UInt64(UInt32(bitPattern: left)) << 32 | UInt64(UInt32(bitPattern: right))
    }

    @inline(__always)
    private static func slot(_ key: UInt64) -> Int {
        Int(truncatingIfNeeded: (key &* 0x9E37_79B9_7F4A_7C15) >> 32)
    }

    /// rank << 32 | merged id, or `MergeTable.none`.
    @inline(__always)
    func lookup(_ left: Int32, _ right: Int32) -> UInt64 {
        let key = Self.key(left, right)
        var slot = Self.slot(key) & mask
        while true {
            let e = entries[slot]
            if e.key == key { return e.value }
            if e.key == Self.emptyKey { return Self.none }
            slot = (slot + 1) & mask
        }
    }
}
