/// Per-call scratch for encoding: BPE symbol buffers, the merge heap, the output buffer and a
/// bounded piece → ids cache (`PieceCache`). Never shared between threads; the `Tokenizer` it serves is.
/// A struct held in one local variable, so the hot loop pays no dynamic exclusivity checks;
/// the owner calls `free()` exactly once.
struct EncoderSession {
    private let model: BPEModel
    /// `model.shortWholePieces`, copied here: its pointers, without a retain per piece.
    private let shortWholePieces: ShortTokenTable?

    // BPE scratch, sized to the longest piece seen.
    private var symbols = GrowableBuffer<Int32>(capacity: 64)
    private var ranks = GrowableBuffer<UInt64>(capacity: 64)
    private var prev = GrowableBuffer<Int32>(capacity: 64)
    private var next = GrowableBuffer<Int32>(capacity: 64)
    private var heap = MinHeap()

    /// The ids produced so far.
    var output = GrowableBuffer<Int32>(capacity: 256)

    private var cache: PieceCache

    /// Pieces with at most this many symbols merge by rescanning; longer ones use the heap.
    static let maxLinearSymbols = 32

    init(model: BPEModel, expectedBytes: Int) {
        self.model = model
        shortWholePieces = model.shortWholePieces
        cache = PieceCache(expectedBytes: expectedBytes)
        output.reserve(expectedBytes / 3 + 16)
    }

    func free() {
        symbols.free(); ranks.free(); prev.free(); next.free(); heap.free()
        output.free(); cache.free()
    }

    /// The ids so far as an array.
    func takeOutput() -> [Int32] {
        Array(UnsafeBufferPointer(start: output.base, count: output.count))
    }

    /// Appends the ids of one pre-tokenized piece (raw UTF-8 bytes); bytes up to `end` may be
    /// read (the cache key loads whole words). The common cases stay inline: a one-byte piece,
    /// a short piece that is one token (tiktoken's rule), and a short piece in the first
    /// cache slot probed.
    @inline(__always)
    mutating func encodePiece(_ p: UnsafePointer<UInt8>, _ n: Int, readableTo end: UnsafePointer<UInt8>) {
        // With a whole-token table one-byte pieces go through it too: a quarter of prose's
        // pieces are one byte, at random among the rest, and a branch on it mispredicts.
        if shortWholePieces == nil && n == 1 {
            // One byte: its byte-level token (or the unknown policy).
            let id = model.byteTokenIDs[Int(p[0])]
            if id >= 0 { output.append(id); return }
        }
        if n <= PieceCache.inlineKeyLength && end - p >= 16 {
            encodeShortPiece(p, n, key: PieceCache.shortKey(p, n))
            return
        }
        encodeLongPiece(p, n, readableTo: end)
    }

    /// Appends the ids of a piece of 1...16 bytes whose key (`PieceCache.shortKey`'s) is known.
    @inline(__always)
    private mutating func encodeShortPiece(_ p: UnsafePointer<UInt8>, _ n: Int, key: PieceCache.Key) {
        if let whole = shortWholePieces {
            let id = whole.id(key, n)
            if id >= 0 {
                output.append(id)
                return
            }
        }
        if cache.appendFromFirstSlot(key, n, to: &output) { return }
        encodeThroughCache(p, n, key: key, knownNotWhole: shortWholePieces != nil)
    }

    @inline(never)
    private mutating func encodeLongPiece(_ p: UnsafePointer<UInt8>, _ n: Int, readableTo end: UnsafePointer<UInt8>) {
        guard n <= PieceCache.maxCachedLength else {
            mergePiece(p, n)
            return
        }
        encodeThroughCache(p, n, key: PieceCache.key(p, n, readableTo: end))
    }

    /// The cache's full lookup, then BPE and an insert on a miss. `knownNotWhole`: the
    /// whole-piece table has already said the piece is not one token.
    @inline(never)
    private mutating func encodeThroughCache(_ p: UnsafePointer<UInt8>, _ n: Int, key: PieceCache.Key, knownNotWhole: Bool = false) {
        if cache.append(p, n, key: key, to: &output) { return }
        let before = output.count
        mergePiece(p, n, knownNotWhole: knownNotWhole)
        cache.insert(key, key: p, length: n, ids: output.base + before, count: output.count - before)
    }

    // MARK: BPE

    /// Byte-level BPE of one piece: initial symbols are the byte tokens, then the pair with the
    /// lowest merge rank (leftmost on ties) is merged until no pair has a merge.
    private mutating func mergePiece(_ p: UnsafePointer<UInt8>, _ n: Int, knownNotWhole: Bool = false) {
        if !knownNotWhole, let whole = model.wholePieces {
            let id = whole.lookup(p, n)
            if id >= 0 {
                output.append(id)
                return
            }
        }
        symbols.count = 0
        symbols.reserve(n)
        let byteIDs = model.byteTokenIDs
        var previousWasUnknown = false
        var everyByteHasToken = true
        for k in 0..<n {
            let id = byteIDs[Int(p[k])]
            if id >= 0 {
                symbols.append(id)
                previousWasUnknown = false
                continue
            }
            everyByteHasToken = false
            if let unk = model.unknownID {
                // HF BPE: a character missing from the vocabulary becomes unk (fused if asked).
                if !(model.fuseUnknown && previousWasUnknown) { symbols.append(unk) }
                previousWasUnknown = true
            }
            // Otherwise HF BPE without unk drops the character.
        }
        let count = symbols.count
        if count <= Self.maxLinearSymbols {
            // Every byte has its token: the first ranks come from the byte-pair table.
            mergeLinear(count, bytes: everyByteHasToken ? p : nil)
        } else {
            mergeWithHeap(count)
        }
    }

    /// `bytes`: the piece, when `symbols` are its bytes' tokens one for one.
    private mutating func mergeLinear(_ initialCount: Int, bytes: UnsafePointer<UInt8>?) {
        var n = initialCount
        let sym = symbols.base
        if n >= 2 {
            ranks.count = 0
            ranks.reserve(n)
            let rk = ranks.base
            let table = model.merges
            if let bytes {
                let pairs = model.bytePairMerges
                for k in 0..<(n - 1) { rk[k] = pairs[Int(bytes[k]) << 8 | Int(bytes[k + 1])] }
            } else {
                for k in 0..<(n - 1) { rk[k] = table.lookup(sym[k], sym[k + 1]) }
            }
            rk[n - 1] = MergeTable.none   // read (never used) by the last shift below
            while n >= 2 {
                var best = MergeTable.none
                var bestK = -1
                for k in 0..<(n - 1) where rk[k] < best {
                    best = rk[k]
                    bestK = k
                }
                if bestK < 0 { break }
                sym[bestK] = Int32(truncatingIfNeeded: best & 0xFFFF_FFFF)
                // Drop symbol bestK+1 and the rank of pair bestK+1 (a few elements: plain loops,
                // not memmove calls).
                var k = bestK + 1
                while k < n - 1 {
                    sym[k] = sym[k + 1]
                    rk[k] = rk[k + 1]   // rk[n - 2] is stale after this and no longer read
                    k += 1
                }
                n -= 1
                if bestK > 0 { rk[bestK - 1] = table.lookup(sym[bestK - 1], sym[bestK]) }
                if bestK + 1 < n { rk[bestK] = table.lookup(sym[bestK], sym[bestK + 1]) }
            }
        }
        output.append(from: sym, count: n)
    }

    private mutating func mergeWithHeap(_ n: Int) {
        let table = model.merges
        prev.count = 0; prev.reserve(n)
        next.count = 0; next.reserve(n)
        heap.reset(capacity: n)
        let sym = symbols.base, pv = prev.base, nx = next.base
        for k in 0..<n {
            pv[k] = Int32(k - 1)
            nx[k] = Int32(k + 1)
        }
        for k in 0..<(n - 1) {
            let r = table.lookup(sym[k], sym[k + 1])
            if r != MergeTable.none { heap.appendUnordered((r >> 32) << 32 | UInt64(k)) }
        }
        heap.heapify()
        while !heap.isEmpty {
            let top = heap.popMin()
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
                if lr != MergeTable.none { heap.push((lr >> 32) << 32 | UInt64(before)) }
            }
            if after < n {
                let rr = table.lookup(sym[pos], sym[after])
                if rr != MergeTable.none { heap.push((rr >> 32) << 32 | UInt64(pos)) }
            }
        }
        var i = 0
        while i < n {
            output.append(sym[i])
            i = Int(nx[i])
        }
    }
}
