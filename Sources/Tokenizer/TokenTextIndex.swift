/// Token text (raw bytes) → id, one flat open-addressing table over an arena of every token's
/// bytes: the SentencePiece merge loop looks up each candidate pair's concatenation by its
/// bytes (llama.cpp's `text_to_token`). Immutable after construction; owns its storage.
final class TokenTextIndex: @unchecked Sendable {
    private let arena: UnsafeMutablePointer<UInt8>
    private let offsets: UnsafeMutablePointer<Int32>   // token i is arena[offsets[i]..<offsets[i+1]]
    private let hashes: UnsafeMutablePointer<UInt64>   // per slot, 0 = empty
    private let slotIDs: UnsafeMutablePointer<Int32>
    private let mask: Int
    let count: Int

    /// Later duplicates win, as in llama.cpp's `token_to_id[word] = i`.
    init(_ tokens: [[UInt8]]) {
        count = tokens.count
        let total = tokens.reduce(0) { $0 + $1.count }
        let arena = UnsafeMutablePointer<UInt8>.allocate(capacity: Swift.max(total, 1))
        let offsets = UnsafeMutablePointer<Int32>.allocate(capacity: tokens.count + 1)
        self.arena = arena
        self.offsets = offsets
        var o = 0
        for (i, t) in tokens.enumerated() {
            offsets[i] = Int32(o)
            t.withUnsafeBufferPointer { b in
                if let base = b.baseAddress { (arena + o).initialize(from: base, count: b.count) }
            }
            o += t.count
        }
        offsets[tokens.count] = Int32(o)
        var capacity = 16
        while capacity < tokens.count * 2 { capacity <<= 1 }
        let hashes = UnsafeMutablePointer<UInt64>.allocate(capacity: capacity)
        hashes.initialize(repeating: 0, count: capacity)
        let slotIDs = UnsafeMutablePointer<Int32>.allocate(capacity: capacity)
        slotIDs.initialize(repeating: -1, count: capacity)
        self.hashes = hashes
        self.slotIDs = slotIDs
        mask = capacity - 1
        func length(of id: Int) -> Int { Int(offsets[id + 1] - offsets[id]) }
        for i in 0..<tokens.count {
            let p = arena + Int(offsets[i])
            let n = Int(offsets[i + 1] - offsets[i])
            let h = PieceCache.hash(p, n)
            var slot = Int(truncatingIfNeeded: h >> 17) & mask
            while hashes[slot] != 0 {
                let other = Int(slotIDs[slot])
                if hashes[slot] == h && length(of: other) == n && PieceCache.equal(arena + Int(offsets[other]), p, n) { break }
                slot = (slot + 1) & mask
            }
            hashes[slot] = h
            slotIDs[slot] = Int32(i)
        }
    }

    deinit {
        arena.deallocate(); offsets.deallocate(); hashes.deallocate(); slotIDs.deallocate()
    }

    @inline(__always)
    private func length(of id: Int) -> Int { Int(offsets[id + 1] - offsets[id]) }

    /// The id of the token spelled `p[0..<n]`, or -1.
    @inline(__always)
    func lookup(_ p: UnsafePointer<UInt8>, _ n: Int) -> Int32 {
        let h = PieceCache.hash(p, n)
        var slot = Int(truncatingIfNeeded: h >> 17) & mask
        while true {
            let sh = hashes[slot]
            if sh == 0 { return -1 }
            if sh == h {
                let id = Int(slotIDs[slot])
                if length(of: id) == n && PieceCache.equal(arena + Int(offsets[id]), p, n) { return Int32(id) }
            }
            slot = (slot + 1) & mask
        }
    }
}
