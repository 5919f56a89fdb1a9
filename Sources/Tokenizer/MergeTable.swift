/// Pair → (rank, merged id) lookup in one flat open-addressing table keyed by
/// (left id, right id). Immutable after construction; the storage is owned by this object.
///
/// On a piece the cache has not seen, each merge step waits for the lookups of the pair on
/// either side of the last merge, and a quarter of all lookups find no pair, so both the
/// table's footprint and its probe runs set the speed of cold text. When every id and rank
/// fits in 16 bits (GPT-2's 50,257 tokens and 108,299 tiktoken merges, SmolLM2's 49,152
/// tokens) entries are 8 bytes instead of 16: 2 MiB for GPT-2 instead of 4. At most half the
/// slots are used either way: at 5/6 (1 MiB) a missing pair's probe run is ~18 slots, and
/// merging distinct pieces measured 18% slower.
final class MergeTable: @unchecked Sendable {
    /// Returned by `lookup` when the pair has no merge.
    static let none: UInt64 = .max

    /// left << 16 | right, and rank << 16 | merged id, side by side.
    private struct CompactEntry {
        static let emptyKey: UInt32 = .max   // ids are below 0xFFFF, so no pair has this key
        var key: UInt32
        var value: UInt32
    }
    /// left << 32 | right, and rank << 32 | merged id, for vocabularies past 16 bits.
    private struct WideEntry {
        static let emptyKey: UInt64 = .max
        var key: UInt64
        var value: UInt64
    }
    /// Exactly one of the two is allocated.
    private let compact: UnsafeMutablePointer<CompactEntry>?
    private let wide: UnsafeMutablePointer<WideEntry>?
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
        count = mergeCount
        let fitsCompact = merges.allSatisfy { left, right, merged, rank in
            (0..<0xFFFF).contains(left) && (0..<0xFFFF).contains(right) && (0...0xFFFF).contains(merged) && (0...0xFFFF).contains(rank)
        }
        var capacity = 16
        while capacity < mergeCount * 2 { capacity <<= 1 }
        if fitsCompact {
            let entries = UnsafeMutablePointer<CompactEntry>.allocate(capacity: capacity)
            entries.initialize(repeating: CompactEntry(key: CompactEntry.emptyKey, value: 0), count: capacity)
            let mask = capacity - 1
            for (left, right, merged, rank) in merges {
                let key = UInt32(left) << 16 | UInt32(right)
                var slot = Self.slot(UInt64(key)) & mask
                while entries[slot].key != CompactEntry.emptyKey && entries[slot].key != key { slot = (slot + 1) & mask }
                if entries[slot].key == key { continue }
                entries[slot] = CompactEntry(key: key, value: UInt32(rank) << 16 | UInt32(merged))
            }
            compact = entries
            wide = nil
        } else {
            let entries = UnsafeMutablePointer<WideEntry>.allocate(capacity: capacity)
            entries.initialize(repeating: WideEntry(key: WideEntry.emptyKey, value: 0), count: capacity)
            let mask = capacity - 1
            for (left, right, merged, rank) in merges {
                let key = Self.wideKey(left, right)
                var slot = Self.slot(key) & mask
                while entries[slot].key != WideEntry.emptyKey && entries[slot].key != key { slot = (slot + 1) & mask }
                if entries[slot].key == key { continue }
                entries[slot] = WideEntry(key: key, value: UInt64(rank) << 32 | UInt64(UInt32(bitPattern: merged)))
            }
            compact = nil
            wide = entries
        }
        mask = capacity - 1
    }

    deinit {
        compact?.deallocate()
        wide?.deallocate()
    }

    @inline(__always)
    private static func wideKey(_ left: Int32, _ right: Int32) -> UInt64 {
        UInt64(UInt32(bitPattern: left)) << 32 | UInt64(UInt32(bitPattern: right))
    }

    @inline(__always)
    private static func slot(_ key: UInt64) -> Int {
        Int(truncatingIfNeeded: (key &* 0x9E37_79B9_7F4A_7C15) >> 32)
    }

    /// rank << 32 | merged id, or `MergeTable.none`.
    @inline(__always)
    func lookup(_ left: Int32, _ right: Int32) -> UInt64 {
        if let entries = compact {
            // A symbol id past 16 bits (a vocabulary larger than its merges) is in no pair.
            guard UInt32(bitPattern: left) < 0xFFFF && UInt32(bitPattern: right) < 0xFFFF else { return Self.none }
            let key = UInt32(bitPattern: left) << 16 | UInt32(bitPattern: right)
            var slot = Self.slot(UInt64(key)) & mask
            while true {
                let e = entries[slot]
                if e.key == key { return UInt64(e.value >> 16) << 32 | UInt64(e.value & 0xFFFF) }
                if e.key == CompactEntry.emptyKey { return Self.none }
                slot = (slot + 1) & mask
            }
        }
        guard let entries = wide else { return Self.none }
        let key = Self.wideKey(left, right)
        var slot = Self.slot(key) & mask
        while true {
            let e = entries[slot]
            if e.key == key { return e.value }
            if e.key == WideEntry.emptyKey { return Self.none }
            slot = (slot + 1) & mask
        }
    }
}
