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
        let workers = chunks || work >= Self.parallelDecodeWork ? min(options.threads, count) : 1
        runItems(count, workers: workers) { i, worker in
            let item = sc.items[i]
            if item.queryCount == 1 {
                attendOne(item, layer: l, window: window, step: step, batch: batch, scratch: s.attentionScratch(worker: worker))
            } else {
                attendChunk(item, layer: l, window: window, step: step, batch: batch, worker: worker)
            }
        }
    }

    /// Key positions × queries × KV heads of a step's single-query items above which they are spread
    /// over the engine's threads (below it, dispatching costs more than it saves).
    static let parallelDecodeWork = 4096

    /// Calls `body(first, keys, values, stride, count)` for runs of consecutive key positions
    /// `from..<to` of one KV head in order: cached positions (below the row's start) run within a
    /// block, the row's new positions from `state.qkv`. `first` is the run's index from `from`.
    @inline(__always)
    private func forEachKeyRun(from: Int, to: Int, slot: Int, start: Int, rowStart: Int, layer l: Int, kvHead: Int,
                               _ body: (_ first: Int, _ keys: UnsafePointer<Float>, _ values: UnsafePointer<Float>, _ stride: Int, _ count: Int) -> Void) {
        let kv = cache, hd = config.headDim, bt = KVCache.blockTokens
        var p = from
        while p < min(to, start) {
            let n = min(bt - p % bt, min(to, start) - p)
            let k = kv.keys(slot: slot, layer: l, position: p, kvHead: kvHead) + (p % bt) * hd
            body(p - from, k, k + kv.valueOffset, hd, n)
            p += n
        }
        if p < to {
            let c = config
            let k = state.qkv + (rowStart + p - start) * c.qkvWidth + c.headCount * hd + kvHead * hd
            body(p - from, k, k + c.kvWidth, c.qkvWidth, to - p)
        }
    }

    /// One query (position start + queryStart) for the query heads of one KV head: scores against
    /// every key it can see, softmax, then the weighted sum of the values, straight from the cache's
    /// blocks with SIMD dot and axpy loops.
    private func attendOne(_ item: CachedAttentionItem, layer l: Int, window: Int?, step: CacheStep, batch: RaggedBatch,
                           scratch: AttentionScratch) {
        let c = config, s = state, hd = c.headDim, group = c.headCount / c.kvHeadCount
        let r = Int(item.row), kvHead = Int(item.kvHead), slot = Int(step.slots[r]), start = Int(step.starts[r])
        let rowStart = batch.rowOffsets[r], token = rowStart + Int(item.queryStart), p = start + Int(item.queryStart)
        let first = window.map { max(0, p - $0 + 1) } ?? 0
        let n = p + 1 - first
        let scale = Float(c.attentionScale)
        let q = s.qkv + token * c.qkvWidth + kvHead * group * hd
        let scores = scratch.scores   // (group, n)
        forEachKeyRun(from: first, to: p + 1, slot: slot, start: start, rowStart: rowStart, layer: l, kvHead: kvHead) { i0, keys, _, stride, count in
            for i in 0..<count {
                let key = keys + i * stride
                for j in 0..<group { scores[j * n + i0 + i] = dot(q + j * hd, key, n: hd) * scale }
            }
        }
        for j in 0..<group { softmaxPrefix(scores + j * n, valid: n, total: n) }
        let out = s.attn + token * c.attentionWidth + kvHead * group * hd
        out.update(repeating: 0, count: group * hd)
        forEachKeyRun(from: first, to: p + 1, slot: slot, start: start, rowStart: rowStart, layer: l, kvHead: kvHead) { i0, _, values, stride, count in
            for i in 0..<count {
                let value = values + i * stride
                for j in 0..<group { axpy(scores[j * n + i0 + i], value, into: out + j * hd, n: hd) }
            }
        }
    }

    /// A block of queries of one row: when every key it sees is new, the keys are read in place
    /// (exactly the cache-less path); otherwise the cached ones and then the new ones are gathered
    /// into contiguous (keys, hd) scratch.
    private func attendChunk(_ item: CachedAttentionItem, layer l: Int, window: Int?, step: CacheStep, batch: RaggedBatch,
                             worker: Int) {
        let c = config, hd = c.headDim
        let r = Int(item.row), kvHead = Int(item.kvHead), slot = Int(step.slots[r]), start = Int(step.starts[r])
        let rowStart = batch.rowOffsets[r], qs = Int(item.queryStart), nq = Int(item.queryCount)
        let firstKey = window.map { max(0, start + qs - $0 + 1) } ?? 0
        let scratch = state.attentionScratch(worker: worker)
        if firstKey >= start {
            let k = state.qkv + (rowStart + firstKey - start) * c.qkvWidth + c.headCount * hd + kvHead * hd
            attendBlock(firstToken: rowStart + qs, count: nq, kvHead: kvHead, firstPosition: start + qs, firstKey: firstKey,
                        keys: k, values: k + c.kvWidth, ld: c.qkvWidth, window: window, scratch: scratch)
            return
        }
        let gathered = cachedScratch.gather(worker: worker)
        forEachKeyRun(from: firstKey, to: start + qs + nq, slot: slot, start: start, rowStart: rowStart, layer: l, kvHead: kvHead) { i0, keys, values, stride, count in
            for i in 0..<count {
                (gathered.keys + (i0 + i) * hd).update(from: keys + i * stride, count: hd)
                (gathered.values + (i0 + i) * hd).update(from: values + i * stride, count: hd)
            }
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

    private let maxSeq: Int
    private let headDim: Int

    func gather(worker: Int) -> (keys: UnsafeMutablePointer<Float>, values: UnsafeMutablePointer<Float>) {
        let base = arena + worker * stride
        return (base, base + maxSeq * headDim)
    }

    deinit { items.deallocate(); arena.deallocate() }
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

/// y ← y + a·x over `n` values.
@inline(__always)
func axpy(_ a: Float, _ x: UnsafePointer<Float>, into y: UnsafeMutablePointer<Float>, n: Int) {
    var i = 0
    while i + vecWidth <= n { storeVec(loadVec(y + i) + a * loadVec(x + i), y + i); i += vecWidth }
    while i < n { y[i] += a * x[i]; i += 1 }
}
