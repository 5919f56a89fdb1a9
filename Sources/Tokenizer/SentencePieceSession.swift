/// The compiled, immutable SentencePiece tables shared by every encode call.
final class SentencePieceModel: @unchecked Sendable {
    let index: TokenTextIndex
    /// Per token, its score as an order key: smaller is a higher score (bit-sortable, -0 = +0).
    let scoreKeys: UnsafeMutablePointer<UInt32>
    /// `<0xNN>` token of each byte (else the one-byte token, as llama.cpp), or -1.
    let byteIDs: UnsafeMutablePointer<Int32>
    let unknownID: Int32
    let partition: SpecialTokenPartition
    let addSpacePrefix: Bool
    /// ASCII characters, as a bitmap, and other scalars that precede "▁" inside some token: a
    /// "▁" after any other character starts an independent chunk.
    private let joinsMarkerASCII: (UInt64, UInt64)
    private let joinsMarker: Set<UInt32>

    init(tokens: [[UInt8]], scores: [Float], unknownID: Int32?, partition: SpecialTokenPartition, addSpacePrefix: Bool) {
        let index = TokenTextIndex(tokens)
        self.index = index
        scoreKeys = .allocate(capacity: scores.count)
        for (i, s) in scores.enumerated() { scoreKeys[i] = Self.orderKey(s) }
        byteIDs = .allocate(capacity: 256)
        let hex = Array("0123456789ABCDEF".utf8)
        for b in 0..<256 {
            let name: [UInt8] = [0x3C, 0x30, 0x78, hex[b >> 4], hex[b & 15], 0x3E]   // <0xNN>
            var id = name.withUnsafeBufferPointer { index.lookup($0.baseAddress!, 6) }
            if id < 0 { id = [UInt8(b)].withUnsafeBufferPointer { index.lookup($0.baseAddress!, 1) } }
            byteIDs[b] = id
        }
        self.unknownID = unknownID ?? -1
        self.partition = partition
        self.addSpacePrefix = addSpacePrefix
        var ascii: (UInt64, UInt64) = (0, 0)
        var others: Set<UInt32> = []
        for t in tokens where t.count > 3 {
            var i = 0
            var previous: UInt32? = nil
            while i < t.count {
                let (scalar, length) = Self.scalar(t, at: i)
                if scalar == 0x2581, let c = previous {
                    if c < 64 { ascii.0 |= 1 << UInt64(c) } else if c < 128 { ascii.1 |= 1 << UInt64(c - 64) } else { others.insert(c) }
                }
                previous = scalar
                i += length
            }
        }
        joinsMarkerASCII = ascii
        joinsMarker = others
    }

    deinit {
        scoreKeys.deallocate()
        byteIDs.deallocate()
    }

    /// Higher scores give smaller keys; equal floats give equal keys (as C++ `<` sees them).
    static func orderKey(_ f: Float) -> UInt32 {
        let bits = (f == 0 ? Float(0) : f).bitPattern
        let ascending = bits & 0x8000_0000 != 0 ? ~bits : bits | 0x8000_0000
        return ~ascending
    }

    /// The scalar starting at `i` of valid UTF-8 (lenient on malformed input), and its length.
    @inline(__always)
    static func scalar(_ t: UnsafePointer<UInt8>, count: Int, at i: Int) -> (UInt32, Int) {
        let b0 = t[i]
        if b0 < 0x80 { return (UInt32(b0), 1) }
        let length = b0 < 0xE0 ? 2 : b0 < 0xF0 ? 3 : 4
        var s = UInt32(b0) & (length == 2 ? 0x1F : length == 3 ? 0x0F : 0x07)
        var k = 1
        while k < length && i + k < count {
            s = s << 6 | UInt32(t[i + k] & 0x3F)
            k += 1
        }
        return (s, k)
    }

    static func scalar(_ t: [UInt8], at i: Int) -> (UInt32, Int) {
        t.withUnsafeBufferPointer { scalar($0.baseAddress!, count: $0.count, at: i) }
    }

    @inline(__always)
    func joinsMarker(_ c: UInt32) -> Bool {
        if c < 64 { return joinsMarkerASCII.0 >> UInt64(c) & 1 != 0 }
        if c < 128 { return joinsMarkerASCII.1 >> UInt64(c - 64) & 1 != 0 }
        return joinsMarker.contains(c)
    }
}

/// Per-call scratch for SentencePiece encoding. A struct held in one local variable (no
/// exclusivity checks in the hot loop); the owner calls `free()` exactly once.
struct SentencePieceSession {
    private let model: SentencePieceModel
    private var output = GrowableBuffer<Int32>(capacity: 256)
    private var cache: PieceCache
    private var escaped = GrowableBuffer<UInt8>(capacity: 256)
    private var segments: [SpecialTokenPartition.Segment] = []
    // Symbols: byte start and length in the chunk, merged token id (-1: a lone character).
    private var starts = GrowableBuffer<Int32>(capacity: 64)
    private var lengths = GrowableBuffer<Int32>(capacity: 64)
    private var ids = GrowableBuffer<Int32>(capacity: 64)
    private var prev = GrowableBuffer<Int32>(capacity: 64)
    private var next = GrowableBuffer<Int32>(capacity: 64)
    private var pairs = GrowableBuffer<UInt64>(capacity: 64)
    private var heap = MinHeap()

    /// Chunks with at most this many characters merge by rescanning; longer ones use the heap.
    static let maxLinearSymbols = 32
    private static let noPair = UInt64.max

    init(model: SentencePieceModel, expectedBytes: Int) {
        self.model = model
        cache = PieceCache(expectedBytes: expectedBytes)
        output.reserve(expectedBytes / 3 + 16)
    }

    func free() {
        output.free(); cache.free(); escaped.free()
        starts.free(); lengths.free(); ids.free(); prev.free(); next.free(); pairs.free(); heap.free()
    }

    mutating func encode(_ text: UnsafeBufferPointer<UInt8>, bos: Int32?, eos: Int32?, parseSpecial: Bool) -> [Int32] {
        output.count = 0
        if let bos { output.append(bos) }
        if let base = text.baseAddress, text.count > 0 {
            model.partition.partition(base, count: text.count, parseSpecial: parseSpecial, into: &segments)
            var previousWasSpecial = true
            for s in segments {
                if s.id >= 0 {
                    output.append(s.id)
                    previousWasSpecial = true
                } else {
                    escape(base + s.start, s.end - s.start, prefixSpace: model.addSpacePrefix && previousWasSpecial)
                    encodeFragment(escaped.base, escaped.count)
                    previousWasSpecial = false
                }
            }
        }
        if let eos { output.append(eos) }
        return Array(UnsafeBufferPointer(start: output.base, count: output.count))
    }

    /// `escaped` = the fragment with every space as "▁" (llama_escape_whitespace).
    private mutating func escape(_ p: UnsafePointer<UInt8>, _ n: Int, prefixSpace: Bool) {
        escaped.count = 0
        escaped.reserve(3 * n + 3)
        let out = escaped.base
        var o = 0
        if prefixSpace {
            out[0] = 0xE2; out[1] = 0x96; out[2] = 0x81
            o = 3
        }
        for i in 0..<n {
            let b = p[i]
            if b == 0x20 {
                out[o] = 0xE2; out[o + 1] = 0x96; out[o + 2] = 0x81
                o += 3
            } else {
                out[o] = b
                o += 1
            }
        }
        escaped.count = o
    }

    /// Splits an escaped fragment into independent chunks (before each "▁" whose preceding
    /// character never precedes "▁" in a token) and encodes each.
    private mutating func encodeFragment(_ p: UnsafePointer<UInt8>, _ n: Int) {
        var chunkStart = 0
        var i = 0
        var previous = -1
        while i < n {
            let b = p[i]
            if b == 0xE2 && i > chunkStart && i + 2 < n && p[i + 1] == 0x96 && p[i + 2] == 0x81 {
                let c = SentencePieceModel.scalar(p, count: n, at: previous).0
                if !model.joinsMarker(c) {
                    encodeChunk(p + chunkStart, i - chunkStart, readableTo: p + n)
                    chunkStart = i
                }
            }
            previous = i
            i += b < 0x80 ? 1 : b < 0xE0 ? 2 : b < 0xF0 ? 3 : 4
        }
        if chunkStart < n { encodeChunk(p + chunkStart, n - chunkStart, readableTo: p + n) }
    }

    @inline(__always)
    private mutating func encodeChunk(_ p: UnsafePointer<UInt8>, _ n: Int, readableTo end: UnsafePointer<UInt8>) {
        guard n <= PieceCache.maxCachedLength else {
            merge(p, n)
            return
        }
        let key = PieceCache.key(p, n, readableTo: end)
        if n <= PieceCache.inlineKeyLength && cache.appendFromFirstSlot(key, n, to: &output) { return }
        if cache.append(p, n, key: key, to: &output) { return }
        let before = output.count
        merge(p, n)
        cache.insert(key, key: p, length: n, ids: output.base + before, count: output.count - before)
    }

    // MARK: Merging (llm_tokenizer_spm_session::tokenize)

    /// Token id of the concatenation of `len` bytes at `start`, as (score key << 32 | id), or `noPair`.
    @inline(__always)
    private func pairKey(_ p: UnsafePointer<UInt8>, _ start: Int32, _ length: Int32) -> UInt64 {
        let id = model.index.lookup(p + Int(start), Int(length))
        guard id >= 0 else { return Self.noPair }
        return UInt64(model.scoreKeys[Int(id)]) << 32 | UInt64(UInt32(bitPattern: id))
    }

    private mutating func merge(_ p: UnsafePointer<UInt8>, _ n: Int) {
        starts.count = 0; starts.reserve(n)
        lengths.count = 0; lengths.reserve(n)
        ids.count = 0; ids.reserve(n)
        var i = 0
        while i < n {
            let b = p[i]
            let length = Swift.min(b < 0x80 ? 1 : b < 0xE0 ? 2 : b < 0xF0 ? 3 : 4, n - i)
            starts.append(Int32(i))
            lengths.append(Int32(length))
            ids.append(-1)
            i += length
        }
        let m = starts.count
        if m <= Self.maxLinearSymbols {
            mergeLinear(p, m)
        } else {
            mergeWithHeap(p, m)
        }
    }

    /// Rescans the pairs: the highest score wins, the leftmost on ties (the heap's order).
    private mutating func mergeLinear(_ p: UnsafePointer<UInt8>, _ initialCount: Int) {
        var m = initialCount
        let st = starts.base, ln = lengths.base, sid = ids.base
        if m >= 2 {
            pairs.count = 0
            pairs.reserve(m)
            let pk = pairs.base
            for k in 0..<(m - 1) { pk[k] = pairKey(p, st[k], ln[k] + ln[k + 1]) }
            while m >= 2 {
                var best = Self.noPair >> 32
                var bestK = -1
                for k in 0..<(m - 1) where pk[k] >> 32 < best {
                    best = pk[k] >> 32
                    bestK = k
                }
                if bestK < 0 { break }
                sid[bestK] = Int32(truncatingIfNeeded: pk[bestK] & 0xFFFF_FFFF)
                ln[bestK] += ln[bestK + 1]
                let tail = m - bestK - 2
                if tail > 0 {
                    (st + bestK + 1).update(from: st + bestK + 2, count: tail)
                    (ln + bestK + 1).update(from: ln + bestK + 2, count: tail)
                    (sid + bestK + 1).update(from: sid + bestK + 2, count: tail)
                }
                let pairTail = m - bestK - 3
                if pairTail > 0 { (pk + bestK + 1).update(from: pk + bestK + 2, count: pairTail) }
                m -= 1
                if bestK > 0 { pk[bestK - 1] = pairKey(p, st[bestK - 1], ln[bestK - 1] + ln[bestK]) }
                if bestK + 1 < m { pk[bestK] = pairKey(p, st[bestK], ln[bestK] + ln[bestK + 1]) }
            }
        }
        for k in 0..<m { emit(p, st[k], ln[k], sid[k]) }
    }

    /// llama.cpp's priority queue over index-linked symbols, stale entries skipped on pop.
    /// Key: score key << 32 | left symbol index, so the top is the highest score, leftmost.
    private mutating func mergeWithHeap(_ p: UnsafePointer<UInt8>, _ m: Int) {
        prev.count = 0; prev.reserve(m)
        next.count = 0; next.reserve(m)
        heap.reset(capacity: m)
        let st = starts.base, ln = lengths.base, sid = ids.base, pv = prev.base, nx = next.base
        for k in 0..<m {
            pv[k] = Int32(k - 1)
            nx[k] = Int32(k + 1 < m ? k + 1 : -1)
        }
        for k in 0..<(m - 1) {
            let key = pairKey(p, st[k], ln[k] + ln[k + 1])
            if key != Self.noPair { heap.appendUnordered((key >> 32) << 32 | UInt64(k)) }
        }
        heap.heapify()
        while !heap.isEmpty {
            let top = heap.popMin()
            let left = Int(top & 0xFFFF_FFFF)
            guard ln[left] > 0 else { continue }
            let right = Int(nx[left])
            guard right >= 0 else { continue }
            let key = pairKey(p, st[left], ln[left] + ln[right])
            guard key != Self.noPair, key >> 32 == top >> 32 else { continue }   // stale entry
            sid[left] = Int32(truncatingIfNeeded: key & 0xFFFF_FFFF)
            ln[left] += ln[right]
            ln[right] = 0
            let after = Int(nx[right])
            nx[left] = Int32(after)
            if after >= 0 { pv[after] = Int32(left) }
            let before = Int(pv[left])
            if before >= 0 {
                let k = pairKey(p, st[before], ln[before] + ln[left])
                if k != Self.noPair { heap.push((k >> 32) << 32 | UInt64(before)) }
            }
            if after >= 0 {
                let k = pairKey(p, st[left], ln[left] + ln[after])
                if k != Self.noPair { heap.push((k >> 32) << 32 | UInt64(left)) }
            }
        }
        var k = 0
        while k >= 0 {
            emit(p, st[k], ln[k], sid[k])
            k = Int(nx[k])
        }
    }

    /// resegment: a merged symbol is its token; a lone character its token if it has one, else
    /// its bytes' tokens (unk, or nothing, for a byte the vocabulary lacks).
    @inline(__always)
    private mutating func emit(_ p: UnsafePointer<UInt8>, _ start: Int32, _ length: Int32, _ merged: Int32) {
        if merged >= 0 {
            output.append(merged)
            return
        }
        let id = model.index.lookup(p + Int(start), Int(length))
        if id >= 0 {
            output.append(id)
            return
        }
        for j in Int(start)..<Int(start + length) {
            let b = model.byteIDs[Int(p[j])]
            if b >= 0 {
                output.append(b)
            } else if model.unknownID >= 0 {
                output.append(model.unknownID)
            }
        }
    }
}
