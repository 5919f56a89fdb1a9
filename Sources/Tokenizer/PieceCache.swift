/// A bounded piece → ids cache: open addressing over `slots`, keys and ids in arenas. Shared
/// by the BPE and SentencePiece encoder sessions (a piece is a pre-tokenized word, or an
/// SPM chunk between two independent spaces). Never shared between threads; the owner calls
/// `free()` exactly once.
struct PieceCache {
    private struct Slot {
        var hash: UInt64   // 0 = empty
        var keyOffset: Int32
        var keyLength: Int32
        var idsOffset: Int32
        var idsCount: Int32
    }
    private static let empty = Slot(hash: 0, keyOffset: 0, keyLength: 0, idsOffset: 0, idsCount: 0)
    private var slots: GrowableBuffer<Slot>
    private var slotMask: Int
    private var used = 0
    private var keyArena = GrowableBuffer<UInt8>(capacity: 4096)
    private var idArena = GrowableBuffer<Int32>(capacity: 1024)

    /// Pieces longer than this bypass the cache (they are rare and would crowd it).
    static let maxCachedLength = 48
    /// The cache never grows past this many slots (half of them used): about 3 MB of slots.
    static let maxSlots = 1 << 17

    init(expectedBytes: Int) {
        var capacity = 256   // small calls (a prompt) stay cheap to set up
        while capacity < Swift.min(expectedBytes / 4, Self.maxSlots) { capacity <<= 1 }
        slots = GrowableBuffer(capacity: capacity)
        slots.base.initialize(repeating: Self.empty, count: capacity)
        slots.count = capacity
        slotMask = capacity - 1
    }

    func free() {
        slots.free(); keyArena.free(); idArena.free()
    }

    @inline(__always)
    static func hash(_ p: UnsafePointer<UInt8>, _ n: Int) -> UInt64 {
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
        var k = 0
        while k < n {
            if a[k] != b[k] { return false }
            k += 1
        }
        return true
    }

    /// Appends the cached ids of piece `p[0..<n]` (hash `h`) to `output` and returns true, or
    /// returns false when the piece is not cached.
    @inline(__always)
    func append(_ p: UnsafePointer<UInt8>, _ n: Int, hash h: UInt64, to output: inout GrowableBuffer<Int32>) -> Bool {
        var slot = Int(truncatingIfNeeded: h >> 17) & slotMask
        while true {
            let s = slots[slot]
            if s.hash == 0 { return false }
            if s.hash == h && Int(s.keyLength) == n && Self.equal(keyArena.base + Int(s.keyOffset), p, n) {
                let c = Int(s.idsCount)
                output.reserve(c)
                (output.base + output.count).update(from: idArena.base + Int(s.idsOffset), count: c)
                output.count += c
                return true
            }
            slot = (slot + 1) & slotMask
        }
    }

    /// Remembers the ids of a piece; when full, forgets everything first (bounded memory).
    mutating func insert(hash h: UInt64, key: UnsafePointer<UInt8>, length n: Int, ids: UnsafePointer<Int32>, count c: Int) {
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
        let keyOffset = keyArena.count
        keyArena.reserve(n)
        (keyArena.base + keyOffset).initialize(from: key, count: n)
        keyArena.count += n
        let idsOffset = idArena.count
        idArena.reserve(c)
        (idArena.base + idsOffset).initialize(from: ids, count: c)
        idArena.count += c
        var slot = Int(truncatingIfNeeded: h >> 17) & slotMask
        while slots[slot].hash != 0 { slot = (slot + 1) & slotMask }
        slots[slot] = Slot(hash: h, keyOffset: Int32(keyOffset), keyLength: Int32(n), idsOffset: Int32(idsOffset), idsCount: Int32(c))
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
