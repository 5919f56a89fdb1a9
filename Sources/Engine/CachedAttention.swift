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
                work += keys * nq * c.headCount * c.headDim
                chunks = chunks || nq > 1
                qs -= block
            }
        }
        // Decode rows alone are small work: threads pay off only past `parallelDecodeWork`.
        let workers = chunks || work >= Self.parallelDecodeWork ? min(options.threads, count) : 1
        if !chunks {
            // Single queries only: one C call runs them all on the persistent threads (no Swift per item).
            for i in 0..<count { sc.decodeItems[i] = decodeItem(sc.items[i], layer: l, window: window, step: step, batch: batch) }
            var job = decodeJob(scratch: s.attentionScratch(worker: 0).scores)
            axon_attend_decode(attentionPool.pool, min(workers, attentionPool.threads), &job, sc.decodeItems, count)
            return
        }
        runItems(count, workers: workers) { i, worker in
            let item = sc.items[i]
            if item.queryCount == 1 {
                attendOne(item, layer: l, window: window, step: step, batch: batch, scratch: s.attentionScratch(worker: worker))
            } else {
                attendChunk(item, layer: l, window: window, step: step, batch: batch, worker: worker)
            }
        }
    }

    /// Multiply-adds per score pass (key positions × queries × query heads × head dimension) of a
    /// step's single-query items above which they are spread over the engine's threads. Measured on
    /// SmolLM2 (2 threads, machine shared): one decode row at 129 keys (74K) takes 1.1 ms of attention
    /// per step on one thread, 2.3 ms on two; at 1,025 keys (590K) and from 16 rows on the two are
    /// even or two win. Counted in work, not in items: Gemma 3's query heads are 4 × 256 wide per KV
    /// head against SmolLM2's 3 × 64, and counting KV heads kept its 16-row steps on one thread.
    static let parallelDecodeWork = 4096 * 3 * 64

    /// One query (position start + queryStart) for the query heads of one KV head, straight from the
    /// cache's blocks, in C (`axon_attend_decode`): the scores of the cached keys (16 at a time,
    /// broadcast FMAs over the transposed block, the next block fetched ahead) and of the row's new
    /// keys, softmax, then the values summed in registers, on the decode kernels' instruction set.
    private func attendOne(_ item: CachedAttentionItem, layer l: Int, window: Int?, step: CacheStep, batch: RaggedBatch,
                           scratch: AttentionScratch) {
        var one = decodeItem(item, layer: l, window: window, step: step, batch: batch)
        var job = decodeJob(scratch: scratch.scores)
        axon_attend_decode(nil, 1, &job, &one, 1)
    }

    /// The C kernels' description of one single-query item.
    @inline(__always)
    private func decodeItem(_ item: CachedAttentionItem, layer l: Int, window: Int?, step: CacheStep,
                            batch: RaggedBatch) -> axon_decode_attention_item {
        let hd = headDim, group = groupSize, qkvW = qkvWidth
        let r = Int(item.row), kvHead = Int(item.kvHead), slot = Int(step.slots[r]), start = Int(step.starts[r])
        let rowStart = batch.rowOffsets[r], token = rowStart + Int(item.queryStart), p = start + Int(item.queryStart)
        let first = window.map { max(0, p - $0 + 1) } ?? 0
        let cached = max(0, min(p + 1, start) - first)
        // The row's own keys and values, from position `newFrom` (its first new one the query sees).
        let newFrom = max(first, start)
        let view = cache.blockView(slot: slot, layer: l, kvHead: kvHead)
        return axon_decode_attention_item(
            q: state.qkv + token * qkvW + kvHead * group * hd, out: state.attn + token * attentionWidth + kvHead * group * hd,
            keys: view.keys, table: view.table,
            new_keys: state.qkv + (rowStart + newFrom - start) * qkvW + keyOffset + kvHead * hd,
            first: first, cached: cached, new_count: p + 1 - newFrom)
    }

    /// What every single-query item of a pass shares; part p's scores at `scratch` + p · the
    /// engine's per-worker attention stride.
    @inline(__always)
    private func decodeJob(scratch: UnsafeMutablePointer<Float>) -> axon_decode_attention_job {
        axon_decode_attention_job(isa: attentionPath, half: cacheHalf, group: groupSize, head_dim: headDim, scale: attentionScale,
                                  block_elements: cache.blockElements, value_offset: cache.valueOffset, new_stride: qkvWidth,
                                  new_value_offset: kvWidth, scratch: scratch, scratch_stride: state.attentionStride)
    }

    /// A block of queries of one row: when every key it sees is new, the keys are read in place
    /// (exactly the cache-less path); otherwise the cached ones and then the new ones are gathered
    /// into contiguous (keys, hd) scratch.
    private func attendChunk(_ item: CachedAttentionItem, layer l: Int, window: Int?, step: CacheStep, batch: RaggedBatch,
                             worker: Int) {
        let c = config, kv = cache, hd = c.headDim
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
            kv.read(slot: slot, layer: l, position: pos, kvHead: kvHead,
                    key: gathered.keys + (pos - firstKey) * hd, value: gathered.values + (pos - firstKey) * hd)
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
    /// 1 when the cache holds f16 elements (the C kernels' `half`).
    @inline(__always) var cacheHalf: Int32 { cache.precision == .f16 ? 1 : 0 }
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
    /// The C kernels' form of a pass's items when all are single queries (same capacity).
    let decodeItems: UnsafeMutablePointer<axon_decode_attention_item>
    private let arena: UnsafeMutablePointer<Float>        // per worker: keys (maxSeq, hd), values (maxSeq, hd)
    private let stride: Int
    private let maxSeq: Int
    private let headDim: Int

    init(config c: ModelConfig, options o: EngineOptions) {
        let capacity = (o.maxBatchTokens / RunState.queryBlock + o.maxRows) * c.kvHeadCount
        items = UnsafeMutableRawPointer.allocate(byteCount: capacity * MemoryLayout<CachedAttentionItem>.stride, alignment: 64)
            .bindMemory(to: CachedAttentionItem.self, capacity: capacity)
        decodeItems = .allocate(capacity: capacity)
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

    deinit { items.deallocate(); decodeItems.deallocate(); arena.deallocate() }
}

