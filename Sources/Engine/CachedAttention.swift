import CKernels
import Foundation

// Incremental decoding: forward passes whose rows extend sequences in the KV cache (KVCache.swift).

extension InferenceEngine {
    /// Runs the batch with row r appended to `sequences[r]`: its positions start at that sequence's
    /// cached length, and its attention sees the sequence's cached keys and values and its own new
    /// ones (causal, within each layer's window). Rows may be prefill chunks or single decode tokens
    /// in any mix; every projection is one sgemm over all rows' tokens. The sequences keep the new
    /// keys and values (windowed layers only what a later query can see).
    ///
    /// - Parameters:
    ///   - batch: the new tokens of each sequence, one row per sequence.
    ///   - sequences: live, distinct sequences (`newSequence()`, `fork(_:)`), one per row.
    ///   - selection: which new positions get logits, as in `forward(_:logits:)`; positions in the
    ///     result count from the row's first new token.
    /// - Returns: views valid until the next call on this engine, as `forward(_:logits:)`.
    /// - Throws: `EngineError` as `forward(_:logits:)`, and `unknownSequence`, `duplicateSequence`,
    ///   `sequenceCountMismatch`, `sequenceTooLong` (past `maxSeq`) or `kvCacheFull`; a pass that
    ///   throws has changed nothing.
    public func forward(_ batch: RaggedBatch, sequences: [SequenceID], logits selection: LogitsSelection) throws -> ForwardResult {
        try validate(batch, logits: selection)
        try cache.begin(batch, sequences: sequences)
        runLayers(batch, step: CacheStep(slots: cache.stepSlots, starts: cache.stepStarts))
        cache.end(batch)
        return selectLogits(batch, selection)
    }

    /// Stores layer `l`'s new keys and values, then runs each row's queries against its sequence's
    /// cache and its own new keys. A single query (a decode token) is a direct SIMD pass over the
    /// cached blocks; a block of queries gathers its cached keys and values into contiguous scratch
    /// and runs the cache-less path's two sgemms (`attendBlock`).
    func cachedAttention(_ batch: RaggedBatch, layer l: Int, step: CacheStep) {
        let c = config, s = state, kv = cache, sc = cachedScratch
        let qkvW = c.qkvWidth, kOffset = c.headCount * c.headDim, vOffset = kOffset + c.kvWidth
        let window = c.layers[l].window, block = RunState.queryBlock
        var count = 0, work = 0, chunks = false
        for r in 0..<batch.rowCount {
            let slot = Int(step.slots[r]), start = Int(step.starts[r]), rowStart = batch.rowOffsets[r]
            let length = batch.length(ofRow: r)
            for p in kv.storedRange(start, count: length, layer: l) {
                let t = s.qkv + (rowStart + p - start) * qkvW
                kv.store(slot: slot, layer: l, position: p, k: t + kOffset, v: t + vOffset)
            }
            // Longest blocks first so the workers finish together.
            var qs = ((length - 1) / block) * block
            while qs >= 0 {
                let nq = min(block, length - qs)
                let last = start + qs + nq - 1
                let keys = last + 1 - (window.map { max(0, start + qs - $0 + 1) } ?? 0)
                for kvHead in 0..<c.kvHeadCount {
                    sc.items[count] = CachedAttentionItem(row: Int32(r), queryStart: Int32(qs), queryCount: Int32(nq), kvHead: Int32(kvHead))
                    count += 1
                }
                work += keys * nq * c.kvHeadCount
                chunks = chunks || nq > 1
                qs -= block
            }
        }
        // Decode rows alone are small work: threads pay off only past `parallelDecodeWork`.
        // Single queries only run on the decode weights' persistent threads when there are some.
        let workers = chunks || work >= Self.parallelDecodeWork ? min(options.threads, count) : 1
        runItems(count, workers: workers, pool: chunks ? nil : decodeWeights?.pool) { i, worker in
            let item = sc.items[i]
            if item.queryCount == 1 {
                attendOne(item, layer: l, window: window, step: step, batch: batch, scratch: s.attentionScratch(worker: worker))
            } else {
                attendChunk(item, layer: l, window: window, step: step, batch: batch, worker: worker)
            }
        }
    }

    /// Key positions × queries × KV heads of a step's single-query items above which they are spread
    /// over the engine's threads. Measured on SmolLM2 (2 threads, machine shared): one decode row at
    /// 129 keys (387) takes 1.1 ms of attention per step on one thread, 2.3 ms on two; at 1,025 keys
    /// (3,075) and from 16 rows on the two are even or two win.
    static let parallelDecodeWork = 4096

    /// One query (position start + queryStart) for the query heads of one KV head, straight from the
    /// cache's blocks: the scores of the cached keys (16 at a time, broadcast FMAs over the transposed
    /// block) and of the row's new keys (`axon_attend_scores`), softmax, then the values summed in
    /// registers (`axon_attend_values`), on the decode kernels' instruction set.
    private func attendOne(_ item: CachedAttentionItem, layer l: Int, window: Int?, step: CacheStep, batch: RaggedBatch,
                           scratch: AttentionScratch) {
        let hd = headDim, group = groupSize, qkvW = qkvWidth
        let r = Int(item.row), kvHead = Int(item.kvHead), slot = Int(step.slots[r]), start = Int(step.starts[r])
        let rowStart = batch.rowOffsets[r], token = rowStart + Int(item.queryStart), p = start + Int(item.queryStart)
        let first = window.map { max(0, p - $0 + 1) } ?? 0
        let n = p + 1 - first, cached = max(0, min(p + 1, start) - first)
        let q = state.qkv + token * qkvW + kvHead * group * hd
        // The row's own keys and values, from position `newFrom` (its first new one the query sees).
        let newFrom = max(first, start)
        let newKeys = state.qkv + (rowStart + newFrom - start) * qkvW + keyOffset + kvHead * hd
        let view = cache.blockView(slot: slot, layer: l, kvHead: kvHead)
        let scores = scratch.scores   // (group, n): key i is position first + i
        axon_attend_scores(attentionPath, q, group, hd, attentionScale, view.keys, view.table, cache.blockFloats, first, cached,
                           newKeys, qkvW, p + 1 - newFrom, scores, n)
        for j in 0..<group { softmaxPrefix(scores + j * n, valid: n, total: n) }
        axon_attend_values(attentionPath, scores, group, n, hd, view.keys, view.table, cache.blockFloats, cache.valueOffset, first,
                           cached, newKeys + kvWidth, qkvW, p + 1 - newFrom, state.attn + token * attentionWidth + kvHead * group * hd)
    }

    /// A block of queries of one row: when every key it sees is new, the keys are read in place
    /// (exactly the cache-less path); otherwise the cached ones and then the new ones are gathered
    /// into contiguous (keys, hd) scratch.
    private func attendChunk(_ item: CachedAttentionItem, layer l: Int, window: Int?, step: CacheStep, batch: RaggedBatch,
                             worker: Int) {
        let c = config, kv = cache, hd = c.headDim, bt = KVCache.blockTokens
        let r = Int(item.row), kvHead = Int(item.kvHead), slot = Int(step.slots[r]), start = Int(step.starts[r])
        let rowStart = batch.rowOffsets[r], qs = Int(item.queryStart), nq = Int(item.queryCount)
        let firstKey = window.map { max(0, start + qs - $0 + 1) } ?? 0
        let scratch = state.attentionScratch(worker: worker)
        let k = state.qkv + (rowStart + max(0, firstKey - start)) * c.qkvWidth + c.headCount * hd + kvHead * hd
        if firstKey >= start {
            attendBlock(firstToken: rowStart + qs, count: nq, kvHead: kvHead, firstPosition: start + qs, firstKey: firstKey,
                        keys: k, values: k + c.kvWidth, ld: c.qkvWidth, window: window, scratch: scratch)
            return
        }
        let gathered = cachedScratch.gather(worker: worker)
        for pos in firstKey..<start {
            let keys = kv.keys(slot: slot, layer: l, position: pos, kvHead: kvHead) + pos % bt
            let row = gathered.keys + (pos - firstKey) * hd
            for d in 0..<hd { row[d] = keys[d * bt] }
            (gathered.values + (pos - firstKey) * hd)
                .update(from: kv.values(slot: slot, layer: l, position: pos, kvHead: kvHead) + (pos % bt) * hd, count: hd)
        }
        for i in 0..<(qs + nq) {
            (gathered.keys + (start - firstKey + i) * hd).update(from: k + i * c.qkvWidth, count: hd)
            (gathered.values + (start - firstKey + i) * hd).update(from: k + c.kvWidth + i * c.qkvWidth, count: hd)
        }
        attendBlock(firstToken: rowStart + qs, count: nq, kvHead: kvHead, firstPosition: start + qs, firstKey: firstKey,
                    keys: gathered.keys, values: gathered.values, ld: hd, window: window, scratch: scratch)
    }

    /// `forward`'s checks of the batch and of the logits it asks for.
    func validate(_ batch: RaggedBatch, logits selection: LogitsSelection) throws {
        try validate(batch)
        if selection == .all, batch.tokenCount > options.maxLogitRows {
            throw EngineError.tooManyLogitPositions(count: batch.tokenCount, max: options.maxLogitRows)
        }
        if case .positions(let indices) = selection {
            guard indices.count <= options.maxLogitRows else {
                throw EngineError.tooManyLogitPositions(count: indices.count, max: options.maxLogitRows)
            }
            if let bad = indices.first(where: { !(0..<batch.tokenCount).contains($0) }) {
                throw EngineError.logitPositionOutOfRange(index: bad, tokens: batch.tokenCount)
            }
        }
    }
}

// The shapes decode attention reads per item, as fields of `config` (a copy of the whole struct
// would retain its arrays on every item, from both threads).
extension InferenceEngine {
    @inline(__always) var headDim: Int { config.headDim }
    @inline(__always) var groupSize: Int { config.headCount / config.kvHeadCount }
    @inline(__always) var qkvWidth: Int { config.qkvWidth }
    @inline(__always) var kvWidth: Int { config.kvWidth }
    @inline(__always) var keyOffset: Int { config.headCount * config.headDim }
    @inline(__always) var attentionWidth: Int { config.attentionWidth }
    @inline(__always) var attentionScale: Float { Float(config.attentionScale) }
}

/// The rows of a cached forward pass: row r extends the sequence in cache slot `slots[r]`, whose
/// cached length before the pass is `starts[r]` (the position of the row's first token).
struct CacheStep {
    let slots: UnsafePointer<Int32>   // (rows)
    let starts: UnsafePointer<Int32>  // (rows)
}

/// One unit of cached attention: a block of queries of one row, for the query heads of one KV head.
struct CachedAttentionItem {
    var row: Int32
    var queryStart: Int32   // first query, counted from the row's first new token
    var queryCount: Int32
    var kvHead: Int32
}

/// Scratch of cached attention, allocated once: work items, and per worker the keys and values a
/// block of queries gathers from the cache.
final class CachedAttentionScratch {
    let items: UnsafeMutablePointer<CachedAttentionItem>   // ((maxBatchTokens / queryBlock + maxRows) · kvHeads)
    private let arena: UnsafeMutablePointer<Float>        // per worker: keys (maxSeq, hd), values (maxSeq, hd)
    private let stride: Int
    private let maxSeq: Int
    private let headDim: Int

    init(config c: ModelConfig, options o: EngineOptions) {
        let capacity = (o.maxBatchTokens / RunState.queryBlock + o.maxRows) * c.kvHeadCount
        items = UnsafeMutableRawPointer.allocate(byteCount: capacity * MemoryLayout<CachedAttentionItem>.stride, alignment: 64)
            .bindMemory(to: CachedAttentionItem.self, capacity: capacity)
        stride = (2 * o.maxSeq * c.headDim + 15) & ~15
        arena = UnsafeMutableRawPointer.allocate(byteCount: o.threads * stride * MemoryLayout<Float>.stride, alignment: 64)
            .bindMemory(to: Float.self, capacity: o.threads * stride)
        maxSeq = o.maxSeq
        headDim = c.headDim
    }

    func gather(worker: Int) -> (keys: UnsafeMutablePointer<Float>, values: UnsafeMutablePointer<Float>) {
        let base = arena + worker * stride
        return (base, base + maxSeq * headDim)
    }

    deinit { items.deallocate(); arena.deallocate() }
}

/// Scores of `group` queries (rows of `q`, hd apart) against one block's 16 transposed keys
/// (headDim, 16): tile[j·16 + i] = q_j · key_i, two heads at a time so each key vector is loaded once
/// per pair, with no horizontal sums.
@inline(__always)
func blockScores(_ q: UnsafePointer<Float>, group: Int, headDim hd: Int, keys: UnsafePointer<Float>,
                 into tile: UnsafeMutablePointer<Float>) {
    var j = 0
    while j + 2 <= group {
        let q0 = q + j * hd, q1 = q0 + hd
        var a00 = Vec(), a01 = Vec(), a10 = Vec(), a11 = Vec()
        for d in 0..<hd {
            let k0 = loadVec(keys + d * 2 * vecWidth), k1 = loadVec(keys + d * 2 * vecWidth + vecWidth)
            let b0 = Vec(repeating: q0[d]), b1 = Vec(repeating: q1[d])
            a00 += b0 * k0; a01 += b0 * k1
            a10 += b1 * k0; a11 += b1 * k1
        }
        storeVec(a00, tile + j * 2 * vecWidth); storeVec(a01, tile + j * 2 * vecWidth + vecWidth)
        storeVec(a10, tile + (j + 1) * 2 * vecWidth); storeVec(a11, tile + (j + 1) * 2 * vecWidth + vecWidth)
        j += 2
    }
    if j < group {
        let q0 = q + j * hd
        var a00 = Vec(), a01 = Vec()
        for d in 0..<hd {
            let b0 = Vec(repeating: q0[d])
            a00 += b0 * loadVec(keys + d * 2 * vecWidth); a01 += b0 * loadVec(keys + d * 2 * vecWidth + vecWidth)
        }
        storeVec(a00, tile + j * 2 * vecWidth); storeVec(a01, tile + j * 2 * vecWidth + vecWidth)
    }
}

/// out += Σ_i p[i]·values[i·stride ..< i·stride + hd], 32 dimensions at a time in registers.
@inline(__always)
func accumulateValues(_ p: UnsafePointer<Float>, count: Int, values: UnsafePointer<Float>, stride: Int, headDim hd: Int,
                      into out: UnsafeMutablePointer<Float>) {
    var d = 0
    while d + 4 * vecWidth <= hd {
        var a0 = loadVec(out + d), a1 = loadVec(out + d + vecWidth), a2 = loadVec(out + d + 2 * vecWidth), a3 = loadVec(out + d + 3 * vecWidth)
        for i in 0..<count {
            let w = Vec(repeating: p[i]), v = values + i * stride + d
            a0 += w * loadVec(v); a1 += w * loadVec(v + vecWidth); a2 += w * loadVec(v + 2 * vecWidth); a3 += w * loadVec(v + 3 * vecWidth)
        }
        storeVec(a0, out + d); storeVec(a1, out + d + vecWidth); storeVec(a2, out + d + 2 * vecWidth); storeVec(a3, out + d + 3 * vecWidth)
        d += 4 * vecWidth
    }
    while d + vecWidth <= hd {
        var a = loadVec(out + d)
        for i in 0..<count { a += Vec(repeating: p[i]) * loadVec(values + i * stride + d) }
        storeVec(a, out + d)
        d += vecWidth
    }
    while d < hd {
        var a = out[d]
        for i in 0..<count { a += p[i] * values[i * stride + d] }
        out[d] = a
        d += 1
    }
}

/// a·b over `n` values, with two accumulators.
@inline(__always)
func dot(_ a: UnsafePointer<Float>, _ b: UnsafePointer<Float>, n: Int) -> Float {
    var acc0 = Vec(), acc1 = Vec()
    var i = 0
    while i + 2 * vecWidth <= n {
        acc0 += loadVec(a + i) * loadVec(b + i)
        acc1 += loadVec(a + i + vecWidth) * loadVec(b + i + vecWidth)
        i += 2 * vecWidth
    }
    if i + vecWidth <= n { acc0 += loadVec(a + i) * loadVec(b + i); i += vecWidth }
    var sum = (acc0 + acc1).sum()
    while i < n { sum += a[i] * b[i]; i += 1 }
    return sum
}
