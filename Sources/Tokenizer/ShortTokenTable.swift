/// Token bytes (1...16 of them) → id, for tiktoken's whole-piece rule: most pieces of prose
/// (" the", "ing") are one token, and this answers them without the session's piece cache or
/// any merging, warm or cold. Each slot holds the key words inline, as `PieceCache.Key` has
/// them, so a hit reads one 32-byte slot. Immutable after construction. A struct of plain
/// pointers, so the encoder's hot loop copies it without reference counting; the owner
/// (`BPEModel`) calls `free()` exactly once.
struct ShortTokenTable: @unchecked Sendable {
    private struct Slot {
        var key0: UInt64
        var key1: UInt64
        var length: UInt32   // 0 = empty
        var id: Int32
        var padding: UInt64 = 0
    }
    private let slots: UnsafeMutablePointer<Slot>
    private let mask: Int

    /// `tokens[id]` are the token bytes; empty entries and tokens longer than 16 bytes are
    /// skipped. Later duplicates win, as in `TokenTextIndex`.
    init(_ tokens: [[UInt8]]) {
        let short = tokens.enumerated().filter { !$0.element.isEmpty && $0.element.count <= PieceCache.inlineKeyLength }
        var capacity = 16
        while capacity < short.count * 5 / 2 { capacity <<= 1 }   // load <= 0.4: short probe runs when absent
        slots = .allocate(capacity: capacity)
        slots.initialize(repeating: Slot(key0: 0, key1: 0, length: 0, id: 0), count: capacity)
        mask = capacity - 1
        for (id, bytes) in short {
            // `keyWords` reads only the token's own bytes (`shortKey` would read 16).
            let (w0, w1) = bytes.withUnsafeBufferPointer { b in b.baseAddress.map { PieceCache.keyWords($0, b.count) } ?? (0, 0) }
            let key = PieceCache.Key(w0: w0, w1: w1, hash: PieceCache.shortHash(w0, w1, bytes.count))
            var slot = Self.slot(key) & mask
            while slots[slot].length != 0 && !(slots[slot].key0 == key.w0 && slots[slot].key1 == key.w1
                                               && Int(slots[slot].length) == bytes.count) {
                slot = (slot + 1) & mask
            }
            slots[slot] = Slot(key0: key.w0, key1: key.w1, length: UInt32(bytes.count), id: Int32(id))
        }
    }

    func free() { slots.deallocate() }

    /// A different bit range of the hash than the piece cache's, so the two tables' clusters
    /// are independent.
    @inline(__always)
    private static func slot(_ key: PieceCache.Key) -> Int {
        Int(truncatingIfNeeded: key.hash &>> 40)
    }

    /// The id of the token whose bytes have key `key` and length `n` (1...16), or -1.
    @inline(__always)
    func id(_ key: PieceCache.Key, _ n: Int) -> Int32 {
        var slot = Self.slot(key) & mask
        let length = UInt32(truncatingIfNeeded: n)
        while true {
            let s = slots[slot]
            if s.key0 == key.w0 && s.key1 == key.w1 && s.length == length { return s.id }
            if s.length == 0 { return -1 }
            slot = (slot + 1) & mask
        }
    }
}
