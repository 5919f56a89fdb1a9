#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// A bounded piece → ids cache: open addressing over `slots`, keys and ids in arenas. Shared
/// by the BPE and SentencePiece encoder sessions (a piece is a pre-tokenized word, or an
/// SPM chunk between two independent spaces). Never shared between threads; the owner calls
/// `free()` exactly once.
struct PieceCache {
    /// 32 bytes, so a lookup of a piece of at most 16 bytes that yields one id (most English
    /// words) reads one slot and nothing else: the key bytes and the id are inline.
    private struct Slot {
        var hash: UInt64   // 0 = empty
        /// The first 8 bytes of the piece, zero-padded.
        var key0: UInt64
        /// Bytes 8..<16, zero-padded, for a piece of at most 16 bytes; for a longer one, the
        /// offset of its bytes in `keyArena`.
        var key1: UInt64
        /// keyLength | idsCount << 16, so the quick path tests both in one compare.
        var shape: UInt32
        var keyLength: Int { Int(shape & 0xFFFF) }
        var idsCount: Int { Int(shape >> 16) }
        /// The id itself when `idsCount == 1`, else the offset of the ids in `idArena`.
        var ids: Int32
    }
    private static let empty = Slot(hash: 0, key0: 0, key1: 0, shape: 0, ids: 0)
    /// Pieces up to this length compare on the inline key words alone.
    static let inlineKeyLength = 16
    private var slots: GrowableBuffer<Slot>
    private var slotMask: Int
    private var used = 0
    private var keyArena = GrowableBuffer<UInt8>(capacity: 4096)
    private var idArena = GrowableBuffer<Int32>(capacity: 1024)

    /// Pieces longer than this bypass the cache (they are rare, and a long run of one
    /// character is better merged than hashed). Table rules ("+-----+----+") are cached.
    static let maxCachedLength = 256
    /// The cache never grows past this many slots (half of them used): about 3 MB of slots.
    static let maxSlots = 1 << 17

    init(expectedBytes: Int) {
        // Small calls (a prompt) stay cheap to set up; big ones start at one slot per 128 bytes
        // and grow: distinct pieces grow far slower than text (20k in 2 MB of prose), and
        // clearing a bigger table up front would also flush the tables the lookups need from L2.
        var capacity = 256
        while capacity < Swift.min(expectedBytes / 128, Self.maxSlots) { capacity <<= 1 }
        slots = GrowableBuffer(capacity: capacity)
        slots.base.initialize(repeating: Self.empty, count: capacity)
        slots.count = capacity
        slotMask = capacity - 1
    }

    func free() {
        slots.free(); keyArena.free(); idArena.free()
    }

    /// A piece's lookup key: its first 16 bytes as two little-endian words, zero-padded, and
    /// its hash. Computed once per piece, for the lookup and, on a miss, the insert.
    struct Key {
        var w0: UInt64
        var w1: UInt64
        var hash: UInt64
    }

    /// The key of `p[0..<n]`, where the bytes up to `end` may be read.
    @inline(__always)
    static func key(_ p: UnsafePointer<UInt8>, _ n: Int, readableTo end: UnsafePointer<UInt8>) -> Key {
        if n <= inlineKeyLength && end - p >= 16 { return shortKey(p, n) }
        let (w0, w1) = keyWords(p, n)
        return Key(w0: w0, w1: w1, hash: n <= inlineKeyLength ? shortHash(w0, w1, n) : hash(p, n))
    }

    /// The key of a piece of 1...16 bytes with 16 bytes readable from `p`: two word loads,
    /// masked to the piece's length.
    @inline(__always)
    static func shortKey(_ p: UnsafePointer<UInt8>, _ n: Int) -> Key {
        let raw = UnsafeRawPointer(p)
        let masks = shortKeyMasks + 2 &* n
        let w0 = UInt64(littleEndian: raw.loadUnaligned(as: UInt64.self)) & masks[0]
        let w1 = UInt64(littleEndian: raw.loadUnaligned(fromByteOffset: 8, as: UInt64.self)) & masks[1]
        return Key(w0: w0, w1: w1, hash: shortHash(w0, w1, n))
    }

    /// For n in 0...16, the masks that keep min(n, 8) bytes of the first word and the rest of
    /// the second: two adjacent loads instead of shifts and selects per piece.
    private static let shortKeyMasks: UnsafePointer<UInt64> = {
        let masks = UnsafeMutablePointer<UInt64>.allocate(capacity: 2 * (inlineKeyLength + 1))
        for n in 0...inlineKeyLength {
            masks[2 * n] = n >= 8 ? .max : (1 << UInt64(8 * n)) - 1
            masks[2 * n + 1] = n <= 8 ? 0 : n == 16 ? .max : (1 << UInt64(8 * (n - 8))) - 1
        }
        return UnsafePointer(masks)   // lives for the process
    }()

    /// Appends the ids of a piece of at most 16 bytes (key from `shortKey`) when the first
    /// slot probed holds it, the common hit, and returns true; false means "ask `append`",
    /// not "absent".
    @inline(__always)
    func appendFromFirstSlot(_ key: Key, _ n: Int, to output: inout GrowableBuffer<Int32>) -> Bool {
        let s = slots[Int(truncatingIfNeeded: key.hash &>> 17) & slotMask]
        // Zero-padded key words plus the length identify a short piece.
        guard s.key0 == key.w0 && s.key1 == key.w1 && s.keyLength == n else { return false }
        appendIDs(of: s, to: &output)
        return true
    }

    @inline(__always)
    private func appendIDs(of s: Slot, to output: inout GrowableBuffer<Int32>) {
        let c = s.idsCount
        if c == 1 {
            output.append(s.ids)
        } else {
            output.append(from: idArena.base + Int(s.ids), count: c)
        }
    }

    /// The hash of a piece of at most 16 bytes from its key words: two multiplies.
    @inline(__always)
    static func shortHash(_ w0: UInt64, _ w1: UInt64, _ n: Int) -> UInt64 {
        var h = (w0 ^ 0x243F_6A88_85A3_08D3 ^ UInt64(n)) &* 0x9E37_79B9_7F4A_7C15
        h = (h ^ h >> 29 ^ w1) &* 0xBF58_476D_1CE4_E5B9
        h ^= h >> 31
        return h | 1
    }

    @inline(__always)
    static func hash(_ p: UnsafePointer<UInt8>, _ n: Int) -> UInt64 {
        if n <= inlineKeyLength {
            let (w0, w1) = keyWords(p, n)
            return shortHash(w0, w1, n)
        }
        var h: UInt64 = 0x243F_6A88_85A3_08D3 ^ UInt64(n)
        var k = 0
        let raw = UnsafeRawPointer(p)
        while k + 8 <= n {
            h = (h ^ raw.loadUnaligned(fromByteOffset: k, as: UInt64.self)) &* 0x9E37_79B9_7F4A_7C15
            h ^= h >> 29
            k += 8
        }
        if k < n {
            var w: UInt64 = 0
            var shift: UInt64 = 0
            while k < n {
                w |= UInt64(p[k]) << shift
                shift += 8
                k += 1
            }
            h = (h ^ w) &* 0x9E37_79B9_7F4A_7C15
            h ^= h >> 29
        }
        h = h &* 0xBF58_476D_1CE4_E5B9
        h ^= h >> 31
        return h | 1
    }

    @inline(__always)
    static func equal(_ a: UnsafePointer<UInt8>, _ b: UnsafePointer<UInt8>, _ n: Int) -> Bool {
        memcmp(a, b, n) == 0
    }

    /// The piece's first 16 bytes as two little-endian words, zero-padded, read without
    /// touching a byte outside `p[0..<n]` (overlapping loads, then shifts).
    @inline(__always)
    static func keyWords(_ p: UnsafePointer<UInt8>, _ n: Int) -> (UInt64, UInt64) {
        let raw = UnsafeRawPointer(p)
        if n >= 8 {
            let w0 = UInt64(littleEndian: raw.loadUnaligned(as: UInt64.self))
            if n == 8 { return (w0, 0) }
            let m = Swift.min(n, 16)
            let last = UInt64(littleEndian: raw.loadUnaligned(fromByteOffset: m - 8, as: UInt64.self))
            return (w0, last >> UInt64(8 * (16 - m)))
        }
        if n >= 4 {
            let lo = UInt64(UInt32(littleEndian: raw.loadUnaligned(as: UInt32.self)))
            let hi = UInt64(UInt32(littleEndian: raw.loadUnaligned(fromByteOffset: n - 4, as: UInt32.self)))
            return (lo | hi << UInt64(8 * (n - 4)), 0)
        }
        var w: UInt64 = 0
        var k = 0
        while k < n {
            w |= UInt64(p[k]) << UInt64(8 * k)
            k += 1
        }
        return (w, 0)
    }

    /// Appends the cached ids of piece `p[0..<n]` (key `key`) to `output` and returns true, or
    /// returns false when the piece is not cached.
    @inline(__always)
    func append(_ p: UnsafePointer<UInt8>, _ n: Int, key: Key, to output: inout GrowableBuffer<Int32>) -> Bool {
        let short = n <= Self.inlineKeyLength
        var slot = Int(truncatingIfNeeded: key.hash >> 17) & slotMask
        while true {
            let s = slots[slot]
            if s.hash == key.hash && s.keyLength == n && s.key0 == key.w0
                && (short ? s.key1 == key.w1 : Self.equal(keyArena.base + Int(s.key1), p, n)) {
                appendIDs(of: s, to: &output)
                return true
            }
            if s.hash == 0 { return false }
            slot = (slot + 1) & slotMask
        }
    }

    /// Remembers the ids of a piece; when full, forgets everything first (bounded memory).
    mutating func insert(_ k: Key, key: UnsafePointer<UInt8>, length n: Int, ids: UnsafePointer<Int32>, count c: Int) {
        let h = k.hash
        if (used + 1) * 2 > slots.count {
            if slots.count < Self.maxSlots {
                rehash(to: slots.count * 2)
            } else {
                slots.base.update(repeating: Self.empty, count: slots.count)
                used = 0
                keyArena.count = 0
                idArena.count = 0
            }
        }
        // `ids` may point into the caller's output buffer, which these appends do not touch.
        let w0 = k.w0
        var w1 = k.w1
        if n > Self.inlineKeyLength {
            w1 = UInt64(keyArena.count)
            keyArena.append(from: key, count: n)
        }
        var idsField = c == 1 ? ids[0] : 0
        if c != 1 {
            idsField = Int32(idArena.count)
            idArena.append(from: ids, count: c)
        }
        var slot = Int(truncatingIfNeeded: h >> 17) & slotMask
        while slots[slot].hash != 0 { slot = (slot + 1) & slotMask }
        slots[slot] = Slot(hash: h, key0: w0, key1: w1, shape: UInt32(n) | UInt32(c) << 16, ids: idsField)
        used += 1
    }

    private mutating func rehash(to capacity: Int) {
        let old = slots
        slots = GrowableBuffer(capacity: capacity)
        slots.base.initialize(repeating: Self.empty, count: capacity)
        slots.count = capacity
        slotMask = capacity - 1
        for i in 0..<old.count where old[i].hash != 0 {
            var slot = Int(truncatingIfNeeded: old[i].hash >> 17) & slotMask
            while slots[slot].hash != 0 { slot = (slot + 1) & slotMask }
            slots[slot] = old[i]
        }
        old.free()
    }
}
