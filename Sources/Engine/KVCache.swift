import CKernels
import Foundation

/// A handle to one sequence in an engine's KV cache (from `InferenceEngine.newSequence()` or
/// `fork(_:)`). A released handle stays invalid: its slot may be reused, but under a new generation.
public struct SequenceID: Hashable, Sendable, CustomStringConvertible {
    let slot: Int32
    let generation: UInt32

    public var description: String { "sequence \(slot).\(generation)" }
}

/// How full an engine's KV cache is. Memory is counted in blocks of `blockTokens` positions of one
/// layer's keys and values.
public struct KVCacheUsage: Sendable, Equatable {
    /// Positions per block.
    public let blockTokens: Int
    /// Blocks in the pool (`EngineOptions.kvCacheBytes / bytesPerBlock`).
    public let totalBlocks: Int
    public let freeBlocks: Int
    /// One layer's keys and values for `blockTokens` positions, f32.
    public let bytesPerBlock: Int
    /// Live sequences (forks included).
    public let sequences: Int

    public var usedBlocks: Int { totalBlocks - freeBlocks }
    public var usedBytes: Int { usedBlocks * bytesPerBlock }
    public var totalBytes: Int { totalBlocks * bytesPerBlock }
}

/// Paged keys and values of every live sequence, in one pool allocated at load.
///
/// A block holds `blockTokens` consecutive positions of one layer: K transposed, (kvHeads, headDim,
/// blockTokens), so one dimension of a head's 16 keys is two SIMD vectors (a decode query's scores
/// are broadcast FMAs, no horizontal sums), then V as (kvHeads, blockTokens, headDim). Each sequence has,
/// per layer, a table from logical block (position / blockTokens) to a physical block, or −1.
/// Blocks are reference-counted: `fork` shares every block, and a shared block that is still being
/// filled is copied before it is written (copy-on-write). Full blocks are never written again.
///
/// A layer with a window w keeps only the blocks that hold a position a later query can see
/// (position ≥ length − w + 1); the others are released after each step. Between steps, such a
/// layer holds at most ⌊(w − 2)/blockTokens⌋ + 2 blocks per sequence.
///
/// Nothing here allocates after init: sequence slots, tables and the per-step row arrays are
/// sized from `EngineOptions`.
final class KVCache {
    /// AXON_KV_BLOCK: the C attention kernels (decode_attention.c) index blocks by it.
    static let blockTokens = Int(AXON_KV_BLOCK)

    let layerCount: Int
    let kvHeads: Int
    let headDim: Int
    /// Per layer: the attention window, nil for full causal attention.
    let windows: [Int?]
    /// Elements per block: 2 · kvHeads · blockTokens · headDim.
    let blockElements: Int
    /// The elements' format (`EngineOptions.kvCachePrecision`).
    let precision: KVCachePrecision
    let totalBlocks: Int
    let maxSequences: Int
    /// Table entries per (sequence, layer): ⌈maxSeq / blockTokens⌉.
    let maxBlocksPerSequence: Int
    let maxSeq: Int

    private let pool: UnsafeMutableRawPointer            // (totalBlocks, K: (kvHeads, headDim, blockTokens), V: (kvHeads, blockTokens, headDim)) elements, mmap'ed
    private let poolBytes: Int
    private let refCounts: UnsafeMutablePointer<Int32>   // (totalBlocks) holders of each block; 0 = free
    private let freeList: UnsafeMutablePointer<Int32>    // (totalBlocks) stack of free blocks, lowest id on top
    private(set) var freeCount: Int
    private let tables: UnsafeMutablePointer<Int32>      // (maxSequences, layers, maxBlocksPerSequence) block or −1
    private var lengths: [Int]                           // (maxSequences) cached positions
    private var generations: [UInt32]                    // (maxSequences) bumped on release
    private var live: [Bool]                             // (maxSequences)
    private var freeSlots: [Int32]                       // stack of unused slots
    private var stamps: [UInt64]                         // (maxSequences) last step that used the slot
    private var stepCounter: UInt64 = 0

    /// The rows of the step in progress (`begin` to `end`): slot and cached length before the step.
    let stepSlots: UnsafeMutablePointer<Int32>           // (maxRows)
    let stepStarts: UnsafeMutablePointer<Int32>          // (maxRows)

    /// - Throws: `EngineError.invalidOptions` when the pool cannot be reserved.
    init(config c: ModelConfig, options o: EngineOptions) throws {
        layerCount = c.layerCount
        kvHeads = c.kvHeadCount
        headDim = c.headDim
        windows = c.layers.map(\.window)
        blockElements = 2 * c.kvHeadCount * Self.blockTokens * c.headDim
        precision = o.kvCachePrecision
        totalBlocks = o.kvCacheBytes / Self.bytesPerBlock(c, o.kvCachePrecision)
        maxSequences = o.maxSequences
        maxSeq = o.maxSeq
        maxBlocksPerSequence = (o.maxSeq + Self.blockTokens - 1) / Self.blockTokens
        func alloc<T>(_ count: Int, _ type: T.Type) -> UnsafeMutablePointer<T> {
            UnsafeMutableRawPointer.allocate(byteCount: max(1, count) * MemoryLayout<T>.stride, alignment: 64)
                .bindMemory(to: T.self, capacity: max(1, count))
        }
        // Reserved, not committed: pages are touched only as blocks are first used (lowest ids first).
        poolBytes = max(1, totalBlocks * blockElements * o.kvCachePrecision.bytesPerElement)
        let mapped = mmap(nil, poolBytes, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0)
        guard let mapped, mapped != MAP_FAILED else {
            throw EngineError.invalidOptions("kvCacheBytes is \(o.kvCacheBytes): could not reserve the pool (errno \(errno))")
        }
        // 2 MiB pages where the kernel allows (THP "madvise"): a decode step reads each sequence's
        // blocks of every layer, a few KiB each and scattered, so with 4 KiB pages nearly every block
        // read costs a TLB walk and restarts the prefetchers. Advice only: failure changes nothing.
        _ = madvise(mapped, poolBytes, MADV_HUGEPAGE)
        pool = mapped
        refCounts = alloc(totalBlocks, Int32.self)
        refCounts.initialize(repeating: 0, count: totalBlocks)
        freeList = alloc(totalBlocks, Int32.self)
        for i in 0..<totalBlocks { freeList[i] = Int32(totalBlocks - 1 - i) }
        freeCount = totalBlocks
        tables = alloc(maxSequences * layerCount * maxBlocksPerSequence, Int32.self)
        lengths = Array(repeating: 0, count: maxSequences)
        generations = Array(repeating: 0, count: maxSequences)
        live = Array(repeating: false, count: maxSequences)
        stamps = Array(repeating: 0, count: maxSequences)
        freeSlots = (0..<Int32(maxSequences)).reversed()
        stepSlots = alloc(o.maxRows, Int32.self)
        stepStarts = alloc(o.maxRows, Int32.self)
    }

    deinit {
        munmap(pool, poolBytes)
        refCounts.deallocate(); freeList.deallocate(); tables.deallocate()
        stepSlots.deallocate(); stepStarts.deallocate()
    }

    /// One layer's keys and values for one block of positions.
    static func bytesPerBlock(_ c: ModelConfig, _ precision: KVCachePrecision) -> Int {
        2 * c.kvHeadCount * blockTokens * c.headDim * precision.bytesPerElement
    }

    var usage: KVCacheUsage {
        KVCacheUsage(blockTokens: Self.blockTokens, totalBlocks: totalBlocks, freeBlocks: freeCount,
                     bytesPerBlock: blockElements * precision.bytesPerElement, sequences: maxSequences - freeSlots.count)
    }

    // MARK: Sequences

    /// The slot of a live handle, or nil.
    func slot(of id: SequenceID) -> Int? {
        let s = Int(id.slot)
        guard s >= 0, s < maxSequences, live[s], generations[s] == id.generation else { return nil }
        return s
    }

    private func checkedSlot(_ id: SequenceID) throws -> Int {
        guard let s = slot(of: id) else { throw EngineError.unknownSequence(id) }
        return s
    }

    func newSequence() throws -> SequenceID {
        guard let s = freeSlots.popLast() else { throw EngineError.tooManySequences(max: maxSequences) }
        let slot = Int(s)
        live[slot] = true
        lengths[slot] = 0
        (tables + slot * layerCount * maxBlocksPerSequence).update(repeating: -1, count: layerCount * maxBlocksPerSequence)
        return SequenceID(slot: s, generation: generations[slot])
    }

    /// A new sequence holding the same positions, sharing every block.
    func fork(_ id: SequenceID) throws -> SequenceID {
        let source = try checkedSlot(id)
        guard let s = freeSlots.popLast() else { throw EngineError.tooManySequences(max: maxSequences) }
        let slot = Int(s)
        live[slot] = true
        lengths[slot] = lengths[source]
        let n = layerCount * maxBlocksPerSequence
        let from = tables + source * n, to = tables + slot * n
        to.update(from: from, count: n)
        for i in 0..<n where to[i] >= 0 { refCounts[Int(to[i])] += 1 }
        return SequenceID(slot: s, generation: generations[slot])
    }

    /// Frees the sequence's blocks (those it alone holds return to the pool) and its slot.
    /// - Returns: false when the handle was not live (already released, or never issued).
    @discardableResult
    func release(_ id: SequenceID) -> Bool {
        guard let slot = slot(of: id) else { return false }
        let length = lengths[slot]
        for l in 0..<layerCount {
            let table = self.table(slot, l)
            for j in (keepFrom(length, layer: l) / Self.blockTokens)..<blocks(covering: length) where table[j] >= 0 {
                unref(table[j])
                table[j] = -1
            }
        }
        live[slot] = false
        generations[slot] &+= 1
        freeSlots.append(Int32(slot))
        return true
    }

    func length(of id: SequenceID) throws -> Int { lengths[try checkedSlot(id)] }

    // MARK: Blocks

    @inline(__always) private func table(_ slot: Int, _ layer: Int) -> UnsafeMutablePointer<Int32> {
        tables + (slot * layerCount + layer) * maxBlocksPerSequence
    }

    @inline(__always) private func blocks(covering length: Int) -> Int { (length + Self.blockTokens - 1) / Self.blockTokens }

    /// The first position a query at `length` or later can see in layer `layer`.
    @inline(__always) func keepFrom(_ length: Int, layer: Int) -> Int {
        guard let w = windows[layer] else { return 0 }
        return max(0, length - w + 1)
    }

    /// The positions of a step from `length` to `length + count` that are stored: those a later
    /// query can see. The others (inside a long chunk, already out of the window) are read from the
    /// step's own scratch only.
    @inline(__always) func storedRange(_ length: Int, count: Int, layer: Int) -> Range<Int> {
        max(length, keepFrom(length + count, layer: layer))..<(length + count)
    }

    /// Blocks a step appending `count` positions to `slot` takes from the pool: a fresh block for
    /// every block of stored positions the sequence lacks, and a copy of a shared one it must write.
    func blocksNeeded(slot: Int, appending count: Int) -> Int {
        let length = lengths[slot]
        var needed = 0
        for l in 0..<layerCount {
            let stored = storedRange(length, count: count, layer: l)
            guard !stored.isEmpty else { continue }
            let table = self.table(slot, l)
            let first = stored.lowerBound / Self.blockTokens
            needed += blocks(covering: stored.upperBound) - first
            // Only the first block of the range can be held already (the sequence's partial last block).
            if table[first] >= 0, refCounts[Int(table[first])] == 1 { needed -= 1 }
        }
        return needed
    }

    /// Most positions that can be appended to `slot` in one step with the blocks free now.
    func appendableTokens(slot: Int) -> Int {
        var lo = 0, hi = maxSeq - lengths[slot]   // blocksNeeded is nondecreasing in the count
        while lo < hi {
            let mid = (lo + hi + 1) / 2
            if blocksNeeded(slot: slot, appending: mid) <= freeCount { lo = mid } else { hi = mid - 1 }
        }
        return lo
    }

    /// Most blocks one unshared sequence holds at any time while it grows to `length` positions in
    /// steps of at most `chunk` positions: ⌈length/B⌉ per full-attention layer; per windowed layer,
    /// the blocks spanning its kept positions plus a step's (at most w − 1 + chunk positions, which
    /// touch at most ⌊(w + chunk − 2)/B⌋ + 2 blocks).
    func blockBound(length: Int, chunk: Int) -> Int {
        let full = blocks(covering: length)
        let chunk = max(1, min(chunk, length))
        return windows.reduce(0) { sum, w in
            guard let w else { return sum + full }
            return sum + min(full, (w + chunk - 2) / Self.blockTokens + 2)
        }
    }

    private func takeBlock() -> Int32 {
        freeCount -= 1
        let b = freeList[freeCount]
        refCounts[Int(b)] = 1
        return b
    }

    private func unref(_ block: Int32) {
        refCounts[Int(block)] -= 1
        if refCounts[Int(block)] == 0 {
            freeList[freeCount] = block
            freeCount += 1
        }
    }

    /// Element index in the pool of one KV head's keys, (headDim, blockTokens), in the block that
    /// holds `position` of layer `layer`: dimension d of the key at `position` is `d · blockTokens +
    /// position % blockTokens` further; the head's values, (blockTokens, headDim), start
    /// `valueOffset` elements after its keys (the value at `position` is row `position % blockTokens`).
    @inline(__always) private func keyIndex(slot: Int, layer: Int, position: Int, kvHead: Int) -> Int {
        let b = Int(table(slot, layer)[position / Self.blockTokens])
        return b * blockElements + kvHead * Self.blockTokens * headDim
    }

    /// What the C attention kernels (axon_attend_scores/values) read one KV head of one layer of a
    /// sequence through: the pool at that head's keys (a block's keys are `table[b] · blockElements`
    /// elements further, its values `valueOffset` more) and the block table.
    @inline(__always) func blockView(slot: Int, layer: Int, kvHead: Int) -> (keys: UnsafeRawPointer, table: UnsafePointer<Int32>) {
        (UnsafeRawPointer(pool + kvHead * Self.blockTokens * headDim * precision.bytesPerElement), UnsafePointer(table(slot, layer)))
    }

    /// Elements from a block's keys of one KV head to its values of the same head.
    var valueOffset: Int { kvHeads * Self.blockTokens * headDim }

    /// The cached key and value of `position` (one KV head) as f32 rows of headDim.
    @inline(__always) func read(slot: Int, layer: Int, position: Int, kvHead: Int,
                                key: UnsafeMutablePointer<Float>, value: UnsafeMutablePointer<Float>) {
        let hd = headDim, bt = Self.blockTokens
        let k = keyIndex(slot: slot, layer: layer, position: position, kvHead: kvHead) + position % bt
        let v = keyIndex(slot: slot, layer: layer, position: position, kvHead: kvHead) + valueOffset + (position % bt) * hd
        switch precision {
        case .f32:
            let e = pool.assumingMemoryBound(to: Float.self)
            for d in 0..<hd { key[d] = e[k + d * bt] }
            value.update(from: e + v, count: hd)
        case .f16:
            let e = pool.assumingMemoryBound(to: UInt16.self)
            for d in 0..<hd { key[d] = axon_f16_to_f32(e[k + d * bt]) }
            for d in 0..<hd { value[d] = axon_f16_to_f32(e[v + d]) }
        }
    }

    // MARK: Steps

    /// Checks a step (every row's sequence live, no sequence twice, lengths within `maxSeq`, blocks
    /// enough) and only then takes its blocks and records its rows in `stepSlots`/`stepStarts`.
    /// - Throws: `EngineError` before changing anything.
    func begin(_ batch: RaggedBatch, sequences: [SequenceID]) throws {
        guard sequences.count == batch.rowCount else {
            throw EngineError.sequenceCountMismatch(rows: batch.rowCount, sequences: sequences.count)
        }
        stepCounter += 1
        var needed = 0
        for (r, id) in sequences.enumerated() {
            let slot = try checkedSlot(id)
            guard stamps[slot] != stepCounter else { throw EngineError.duplicateSequence(row: r, id) }
            stamps[slot] = stepCounter
            let count = batch.length(ofRow: r)
            guard lengths[slot] + count <= maxSeq else {
                throw EngineError.sequenceTooLong(row: r, length: lengths[slot] + count, max: maxSeq)
            }
            needed += blocksNeeded(slot: slot, appending: count)
        }
        guard needed <= freeCount else {
            throw EngineError.kvCacheFull(neededBlocks: needed, freeBlocks: freeCount, blockTokens: Self.blockTokens)
        }
        for (r, id) in sequences.enumerated() {
            let slot = Int(id.slot), length = lengths[slot]
            stepSlots[r] = Int32(slot)
            stepStarts[r] = Int32(length)
            for l in 0..<layerCount {
                let stored = storedRange(length, count: batch.length(ofRow: r), layer: l)
                guard !stored.isEmpty else { continue }
                let table = self.table(slot, l)
                for j in (stored.lowerBound / Self.blockTokens)..<blocks(covering: stored.upperBound) {
                    let held = table[j]
                    if held < 0 {
                        table[j] = takeBlock()
                    } else if refCounts[Int(held)] > 1 {
                        // Copy-on-write of a shared, partly filled block.
                        let copy = takeBlock()
                        let bytes = blockElements * precision.bytesPerElement
                        (pool + Int(copy) * bytes).copyMemory(from: pool + Int(held) * bytes, byteCount: bytes)
                        unref(held)
                        table[j] = copy
                    }
                }
            }
        }
    }

    /// Ends a step begun by `begin`: each row's sequence grows by its row's length, and windowed
    /// layers release the blocks no later query can see.
    func end(_ batch: RaggedBatch) {
        for r in 0..<batch.rowCount {
            let slot = Int(stepSlots[r]), old = lengths[slot], new = old + batch.length(ofRow: r)
            lengths[slot] = new
            for l in 0..<layerCount where windows[l] != nil {
                let table = self.table(slot, l)
                for j in (keepFrom(old, layer: l) / Self.blockTokens)..<(keepFrom(new, layer: l) / Self.blockTokens) where table[j] >= 0 {
                    unref(table[j])
                    table[j] = -1
                }
            }
        }
    }

    /// Copies one token's keys and values (`k`, then `v`, each kvHeads·headDim floats) into the
    /// block of `position`, rounded to nearest even at f16.
    @inline(__always) func store(slot: Int, layer: Int, position: Int, k: UnsafePointer<Float>, v: UnsafePointer<Float>) {
        let hd = headDim, bt = Self.blockTokens, i = position % bt
        for g in 0..<kvHeads {
            let keys = keyIndex(slot: slot, layer: layer, position: position, kvHead: g) + i
            let values = keys - i + valueOffset + i * hd
            switch precision {
            case .f32:
                let e = pool.assumingMemoryBound(to: Float.self)
                for d in 0..<hd { e[keys + d * bt] = k[g * hd + d] }
                (e + values).update(from: v + g * hd, count: hd)
            case .f16:
                let e = pool.assumingMemoryBound(to: UInt16.self)
                for d in 0..<hd { e[keys + d * bt] = Float16(k[g * hd + d]).bitPattern }
                for d in 0..<hd { e[values + d] = Float16(v[g * hd + d]).bitPattern }
            }
        }
    }
}

// MARK: The engine's sequence API

extension InferenceEngine {
    /// A new, empty sequence for `forward(_:sequences:logits:)`.
    /// - Throws: `EngineError.tooManySequences` when every slot is in use.
    public func newSequence() throws -> SequenceID { try cache.newSequence() }

    /// A new sequence with the same cached positions as `sequence`, sharing its blocks (a beam of
    /// the same prompt). Takes no block now; each side copies a shared partly filled block when it
    /// first writes to it.
    /// - Throws: `EngineError.unknownSequence`, `EngineError.tooManySequences`.
    public func fork(_ sequence: SequenceID) throws -> SequenceID { try cache.fork(sequence) }

    /// Frees a finished or cancelled sequence at once: blocks no other sequence shares return to the pool.
    /// - Returns: false when the handle was not live (releasing twice is harmless).
    @discardableResult
    public func release(_ sequence: SequenceID) -> Bool { cache.release(sequence) }

    /// Positions of `sequence` that later tokens attend to (appended so far).
    /// - Throws: `EngineError.unknownSequence`.
    public func cachedLength(of sequence: SequenceID) throws -> Int { try cache.length(of: sequence) }

    /// Blocks, sequences and bytes of the KV cache now.
    public var kvCacheUsage: KVCacheUsage { cache.usage }

    /// Blocks a forward pass appending `count` tokens to `sequence` would take from the pool (it
    /// fails with `kvCacheFull` when the rows' sum exceeds `kvCacheUsage.freeBlocks`).
    /// - Throws: `EngineError.unknownSequence`.
    public func cacheBlocksNeeded(appending count: Int, to sequence: SequenceID) throws -> Int {
        guard let slot = cache.slot(of: sequence) else { throw EngineError.unknownSequence(sequence) }
        return cache.blocksNeeded(slot: slot, appending: max(0, count))
    }

    /// A number of tokens that can be appended to `sequence` in one forward pass with the blocks free
    /// now and within `maxSeq`: the largest such number for full-attention models; with windowed
    /// layers (whose need can dip as a long chunk leaves the window) at least the largest up to which
    /// every count fits.
    /// - Throws: `EngineError.unknownSequence`.
    public func appendableTokens(to sequence: SequenceID) throws -> Int {
        guard let slot = cache.slot(of: sequence) else { throw EngineError.unknownSequence(sequence) }
        return cache.appendableTokens(slot: slot)
    }

    /// At most how many blocks one unshared sequence holds at any moment while it grows to
    /// `sequenceLength` tokens in forward passes of at most `largestChunk` tokens each: what a
    /// scheduler reserves to admit a request that can never meet `kvCacheFull` later.
    public func cacheBlockBound(sequenceLength: Int, largestChunk: Int) -> Int {
        cache.blockBound(length: max(0, sequenceLength), chunk: largestChunk)
    }
}

/// The elements the KV cache holds (`EngineOptions.kvCachePrecision`, `--kv-cache-precision`).
/// Decode attention reads every cached key and value of every sequence once per step, so at 16 rows
/// and a few hundred positions the cache's bytes rival the weights' (docs/ENGINE.md, "Decode step
/// profile"); f16 halves them.
public enum KVCachePrecision: String, CaseIterable, Sendable, CustomStringConvertible {
    /// The keys and values as the projections compute them: the exact reference.
    case f32
    /// IEEE binary16, rounded to nearest even (relative error ≤ 2⁻¹¹ for |x| ≥ 2⁻¹⁴, absolute ≤ 2⁻²⁵
    /// below); attention converts back to f32 exactly and computes in f32.
    case f16

    public var bytesPerElement: Int { self == .f32 ? 4 : 2 }
    public var description: String { rawValue }

    /// The cache a server holds when none is asked for: f32 beside the f32 decode path (the exact
    /// reference, whose cached logits stay within 1e-4 of a full prefill), f16 beside reduced
    /// decode weights. There its rounding (2⁻¹¹ relative) is an eighth of an int8 weight's
    /// (block scale / 2, 2⁻⁸ of the block's largest), it halves the bytes a 16-row step's attention
    /// reads and doubles the sequences a `--kv-cache-mb` holds (docs/ENGINE.md, "KV cache precision").
    public static func preferred(decoding: DecodePrecision) -> KVCachePrecision { decoding == .f32 ? .f32 : .f16 }
}
