/// Per-call scratch for encoding: BPE symbol buffers, the merge heap, the output buffer and a
/// bounded piece → ids cache. Never shared between threads; the `Tokenizer` it serves is.
/// A struct held in one local variable, so the hot loop pays no dynamic exclusivity checks;
/// the owner calls `free()` exactly once.
struct EncoderSession {
    private let model: BPEModel

    // BPE scratch, sized to the longest piece seen.
    private var symbols = GrowableBuffer<Int32>(capacity: 64)
    private var ranks = GrowableBuffer<UInt64>(capacity: 64)
    private var prev = GrowableBuffer<Int32>(capacity: 64)
    private var next = GrowableBuffer<Int32>(capacity: 64)
    private var heap = GrowableBuffer<UInt64>(capacity: 64)

    /// The ids produced so far.
    var output = GrowableBuffer<Int32>(capacity: 256)

    // Cache: open addressing over `slots`; keys and ids live in arenas.
    private struct Slot {
        var hash: UInt64   // 0 = empty
        var keyOffset: Int32
        var keyLength: Int32
        var idsOffset: Int32
        var idsCount: Int32
    }
    private var slots: GrowableBuffer<Slot>
    private var slotMask: Int
    private var used = 0
    private var keyArena = GrowableBuffer<UInt8>(capacity: 4096)
    private var idArena = GrowableBuffer<Int32>(capacity: 1024)

    /// Pieces longer than this bypass the cache (they are rare and would crowd it).
    static let maxCachedLength = 48
    /// The cache never grows past this many slots (half of them used): about 3 MB of slots.
    static let maxSlots = 1 << 17
    /// Pieces with at most this many symbols merge by rescanning; longer ones use the heap.
    static let maxLinearSymbols = 32

    init(model: BPEModel, expectedBytes: Int) {
        self.model = model
        var capacity = 256   // small calls (a prompt) stay cheap to set up
        while capacity < Swift.min(expectedBytes / 4, Self.maxSlots) { capacity <<= 1 }
        slots = GrowableBuffer(capacity: capacity)
        slots.base.initialize(repeating: Slot(hash: 0, keyOffset: 0, keyLength: 0, idsOffset: 0, idsCount: 0), count: capacity)
        slots.count = capacity
        slotMask = capacity - 1
        output.reserve(expectedBytes / 3 + 16)
    }

    func free() {
        symbols.free(); ranks.free(); prev.free(); next.free(); heap.free()
        output.free(); slots.free(); keyArena.free(); idArena.free()
    }

    /// The ids so far as an array.
    func takeOutput() -> [Int32] {
        Array(UnsafeBufferPointer(start: output.base, count: output.count))
    }

    @inline(__always)
    private static func hash(_ p: UnsafePointer<UInt8>, _ n: Int) -> UInt64 {
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

    /// Appends the ids of one pre-tokenized piece (raw UTF-8 bytes).
    @inline(__always)
    mutating func encodePiece(_ p: UnsafePointer<UInt8>, _ n: Int) {
        if n == 1 {
            // One byte: its byte-level token (or the unknown policy).
            let id = model.byteTokenIDs[Int(p[0])]
            if id >= 0 { output.append(id); return }
        }
        guard n <= Self.maxCachedLength else {
            mergePiece(p, n)
            return
        }
        let h = Self.hash(p, n)
        var slot = Int(truncatingIfNeeded: h >> 17) & slotMask
        while true {
            let s = slots[slot]
            if s.hash == 0 { break }
            if s.hash == h && Int(s.keyLength) == n && memoryEqual(keyArena.base + Int(s.keyOffset), p, n) {
                let c = Int(s.idsCount)
                output.reserve(c)
                (output.base + output.count).update(from: idArena.base + Int(s.idsOffset), count: c)
                output.count += c
                return
            }
            slot = (slot + 1) & slotMask
        }
        let before = output.count
        mergePiece(p, n)
        insert(hash: h, key: p, length: n, ids: output.base + before, count: output.count - before)
    }

    @inline(__always)
    private func memoryEqual(_ a: UnsafePointer<UInt8>, _ b: UnsafePointer<UInt8>, _ n: Int) -> Bool {
        var k = 0
        while k < n {
            if a[k] != b[k] { return false }
            k += 1
        }
        return true
    }

    private mutating func insert(hash h: UInt64, key: UnsafePointer<UInt8>, length n: Int, ids: UnsafePointer<Int32>, count c: Int) {
        if (used + 1) * 2 > slots.count {
            if slots.count < Self.maxSlots {
                rehash(to: slots.count * 2)
            } else {
                // Bounded: forget everything and start over.
                slots.base.update(repeating: Slot(hash: 0, keyOffset: 0, keyLength: 0, idsOffset: 0, idsCount: 0), count: slots.count)
                used = 0
                keyArena.count = 0
                idArena.count = 0
            }
        }
        // Copy the ids first: `ids` points into `output`, which these appends do not touch.
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
        slots.base.initialize(repeating: Slot(hash: 0, keyOffset: 0, keyLength: 0, idsOffset: 0, idsCount: 0), count: capacity)
        slots.count = capacity
        slotMask = capacity - 1
        for i in 0..<old.count where old[i].hash != 0 {
            var slot = Int(truncatingIfNeeded: old[i].hash >> 17) & slotMask
            while slots[slot].hash != 0 { slot = (slot + 1) & slotMask }
            slots[slot] = old[i]
        }
        old.free()
    }

    // MARK: BPE

    /// Byte-level BPE of one piece: initial symbols are the byte tokens, then the pair with the
    /// lowest merge rank (leftmost on ties) is merged until no pair has a merge.
    private mutating func mergePiece(_ p: UnsafePointer<UInt8>, _ n: Int) {
        symbols.count = 0
        symbols.reserve(n)
        let byteIDs = model.byteTokenIDs
        var previousWasUnknown = false
        for k in 0..<n {
            let id = byteIDs[Int(p[k])]
            if id >= 0 {
                symbols.append(id)
                previousWasUnknown = false
            } else if let unk = model.unknownID {
                // HF BPE: a character missing from the vocabulary becomes unk (fused if asked).
                if !(model.fuseUnknown && previousWasUnknown) { symbols.append(unk) }
                previousWasUnknown = true
            }
            // Otherwise HF BPE without unk drops the character.
        }
        let count = symbols.count
        if count <= Self.maxLinearSymbols {
            mergeLinear(count)
        } else {
            mergeWithHeap(count)
        }
    }

    private mutating func mergeLinear(_ initialCount: Int) {
        var n = initialCount
        let sym = symbols.base
        if n >= 2 {
            ranks.count = 0
            ranks.reserve(n)
            let rk = ranks.base
            let table = model.merges
            for k in 0..<(n - 1) { rk[k] = table.lookup(sym[k], sym[k + 1]) }
            while n >= 2 {
                var best = MergeTable.none
                var bestK = -1
                for k in 0..<(n - 1) where rk[k] < best {
                    best = rk[k]
                    bestK = k
                }
                if bestK < 0 { break }
                sym[bestK] = Int32(truncatingIfNeeded: best & 0xFFFF_FFFF)
                // Drop symbol bestK+1 and the rank of pair bestK+1.
                let tail = n - bestK - 2
                if tail > 0 { (sym + bestK + 1).update(from: sym + bestK + 2, count: tail) }
                let rankTail = n - bestK - 3
                if rankTail > 0 { (rk + bestK + 1).update(from: rk + bestK + 2, count: rankTail) }
                n -= 1
                if bestK > 0 { rk[bestK - 1] = table.lookup(sym[bestK - 1], sym[bestK]) }
                if bestK + 1 < n { rk[bestK] = table.lookup(sym[bestK], sym[bestK + 1]) }
            }
        }
        output.reserve(n)
        (output.base + output.count).update(from: sym, count: n)
        output.count += n
    }

    private mutating func mergeWithHeap(_ n: Int) {
        let table = model.merges
        prev.count = 0; prev.reserve(n)
        next.count = 0; next.reserve(n)
        heap.count = 0; heap.reserve(n)
        let sym = symbols.base, pv = prev.base, nx = next.base
        for k in 0..<n {
            pv[k] = Int32(k - 1)
            nx[k] = Int32(k + 1)
        }
        for k in 0..<(n - 1) {
            let r = table.lookup(sym[k], sym[k + 1])
            if r != MergeTable.none { heap.append((r >> 32) << 32 | UInt64(k)) }
        }
        var k = (heap.count + 2) / 4
        while k > 0 {
            k -= 1
            siftDown(k)
        }
        while heap.count > 0 {
            let top = heap[0]
            heap.count -= 1
            if heap.count > 0 {
                heap[0] = heap[heap.count]
                siftDown(0)
            }
            let pos = Int(top & 0xFFFF_FFFF)
            let rank = top >> 32
            guard sym[pos] >= 0 else { continue }
            let right = Int(nx[pos])
            guard right < n else { continue }
            let r = table.lookup(sym[pos], sym[right])
            guard r != MergeTable.none, r >> 32 == rank else { continue }   // stale entry
            sym[pos] = Int32(truncatingIfNeeded: r & 0xFFFF_FFFF)
            sym[right] = -1
            let after = Int(nx[right])
            nx[pos] = Int32(after)
            if after < n { pv[after] = Int32(pos) }
            let before = Int(pv[pos])
            if before >= 0 {
                let lr = table.lookup(sym[before], sym[pos])
                if lr != MergeTable.none { push((lr >> 32) << 32 | UInt64(before)) }
            }
            if after < n {
                let rr = table.lookup(sym[pos], sym[after])
                if rr != MergeTable.none { push((rr >> 32) << 32 | UInt64(pos)) }
            }
        }
        var i = 0
        while i < n {
            output.append(sym[i])
            i = Int(nx[i])
        }
    }

    // The heap is 4-ary: half the depth of a binary heap, and the four children of a node
    // share a cache line, which matters when one piece is megabytes long.
    @inline(__always)
    private mutating func push(_ value: UInt64) {
        heap.append(value)
        var i = heap.count - 1
        let h = heap.base
        while i > 0 {
            let parent = (i - 1) >> 2
            if h[parent] <= value { break }
            h[i] = h[parent]
            i = parent
        }
        h[i] = value
    }

    @inline(__always)
    private mutating func siftDown(_ start: Int) {
        let h = heap.base
        let n = heap.count
        let value = h[start]
        var i = start
        while true {
            let first = 4 * i + 1
            if first >= n { break }
            var child = first
            let last = Swift.min(first + 4, n)
            var k = first + 1
            while k < last {
                if h[k] < h[child] { child = k }
                k += 1
            }
            if h[child] >= value { break }
            h[i] = h[child]
            i = child
        }
        h[i] = value
    }
}
