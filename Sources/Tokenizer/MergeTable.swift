/// Pair → (rank, merged id) lookup in one flat open-addressing table keyed by
/// (left id, right id). Immutable after construction; the storage is owned by this object.
final class MergeTable: @unchecked Sendable {
    /// Returned by `lookup` when the pair has no merge.
    static let none: UInt64 = .max
    private static let emptyKey: UInt64 = .max

    private let keys: UnsafeMutablePointer<UInt64>
    /// rank << 32 | merged id
    private let values: UnsafeMutablePointer<UInt64>
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
        keys = .allocate(capacity: capacity)
        keys.initialize(repeating: Self.emptyKey, count: capacity)
        values = .allocate(capacity: capacity)
        values.initialize(repeating: 0, count: capacity)
        mask = capacity - 1
        count = mergeCount
        for (left, right, merged, rank) in merges {
            let key = Self.key(left, right)
            var slot = Self.slot(key) & mask
            while keys[slot] != Self.emptyKey && keys[slot] != key { slot = (slot + 1) & mask }
            if keys[slot] == key { continue }
            keys[slot] = key
            values[slot] = UInt64(rank) << 32 | UInt64(UInt32(bitPattern: merged))
        }
    }

    deinit {
        keys.deallocate()
        values.deallocate()
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
            let k = keys[slot]
            if k == key { return values[slot] }
            if k == Self.emptyKey { return Self.none }
            slot = (slot + 1) & mask
        }
    }
}
