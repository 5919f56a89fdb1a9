import CBLAS
import Foundation
import GGUF

/// A model of any supported family (`ModelFamily.all`) in f32, ready to run ragged batches.
///
/// Not thread-safe: one caller at a time. The engine owns everything it uses, so it may be created
/// on one thread and handed to a worker thread that then calls `forward` exclusively.
/// OpenBLAS's thread count is process-wide; the engine sets it to `options.threads`.
public final class InferenceEngine: @unchecked Sendable {
    public let config: ModelConfig
    public let options: EngineOptions
    /// Per-phase wall time summed over forward passes, when `options.collectTimings` is set.
    public var timings = ForwardTimings()

    let weights: ModelWeights
    let state: RunState
    /// Keys and values of live sequences, for `forward(_:sequences:logits:)` (KVCache.swift).
    let cache: KVCache
    let cachedScratch: CachedAttentionScratch
    /// The reduced-precision weights of decode steps (`options.decodePrecision`), nil at f32.
    public let decodeWeights: ProjectionWeights?
    /// The int8 prefill projections (`options.precision == .int8`), reading `decodeWeights`' s8 rows.
    let int8Projections: Int8Projections?
    /// The int8 path's smoothing factors (nil: f32, or int8 without calibration tokens).
    public private(set) var smoothing: SmoothingFactors?
    /// Wall time of the smoothing calibration at load (its pass and the re-rounding).
    public private(set) var calibrationSeconds: Double?
    /// The instruction set of decode attention's C kernels (`axon_attend_scores`/`values`): the
    /// decode weights' path, else the CPU's best.
    let attentionPath: Int32
    /// The persistent threads decode attention runs on: the decode weights' pool, or (f32) its own.
    let attentionPool: WorkerPool
    /// The decode weights the current pass's LM head reads (set by `runLayers`; nil off decode steps).
    private var decodeHead: ProjectionWeights?
    /// At int8, the decode weights whose head is the GGUF's own Q8_0 values (int8Block32 holds them
    /// exactly, so its logits are the f32 head's up to summation order): the head a prefill of a few
    /// rows reads, 1.125 bytes a weight instead of 4 (Gemma 3: 189 MB rather than 671 per pass).
    private let exactReducedHead: ProjectionWeights?
    /// The library of the f32 products: projections, attention, the LM head.
    public let f32GEMM: F32GEMM
    /// The format of the LM head a prefill of at most `decodeRowLimit` rows reads: nil for the f32 head.
    public var prefillHeadFormat: QuantizedMatrix.Format? { exactReducedHead?.headFormat }
    private let itemLock = NSLock()
    private var nextItem = 0

    /// Maps the GGUF file at `path` and loads it; the mapping is released after load.
    /// - Throws: `GGUFError` for an unreadable or malformed file, else as `init(source:options:)`.
    public convenience init(path: String, options: EngineOptions = EngineOptions()) throws {
        try self.init(file: GGUFFile(path: path), options: options)
    }

    /// Loads a parsed GGUF file (the engine keeps no reference to it).
    /// - Throws: as `init(source:options:)`.
    public convenience init(file: GGUFFile, options: EngineOptions = EngineOptions()) throws {
        try self.init(source: file, options: options)
    }

    /// Loads and dequantizes every weight (in parallel) and sizes the scratch once.
    /// - Throws: `EngineError` for missing or inconsistent hyperparameters, tensor shapes,
    ///   undecodable tensors, or options out of range.
    public init(source: ModelSource, options: EngineOptions = EngineOptions()) throws {
        let config = try ModelConfig(source: source)
        try options.validate(for: config)
        let int8 = options.precision == .int8
        let calibration = int8 ? options.calibrationTokens : []
        // The calibration pass is one row of `calibration`: the scratch holds it whatever the limits.
        var sizing = options
        sizing.maxBatchTokens = max(options.maxBatchTokens, calibration.count)
        sizing.maxSeq = max(options.maxSeq, calibration.count)
        try sizing.validate(for: config)
        self.config = config
        self.options = options
        f32GEMM = options.f32GEMM ?? .preferred
        weights = try ModelWeights(config: config, source: source, projections: !int8)
        state = RunState(config: config, options: sizing)
        cache = try KVCache(config: config, options: options)
        cachedScratch = CachedAttentionScratch(config: config, options: options)
        // At int8 the one copy of the projections is per-row s8, read by both paths.
        let projectionFormat = int8 ? .int8 : options.decodePrecision.format
        let decodeWeights = projectionFormat == nil ? nil
            : try ProjectionWeights(weights: weights, config: config, format: projectionFormat,
                                    headFormat: options.decodePrecision.headFormat(sharedWithPrefill: int8), threads: options.threads, source: source)
        self.decodeWeights = decodeWeights
        attentionPath = (decodeWeights?.path ?? DecodeKernelPath.best).rawValue
        attentionPool = decodeWeights?.pool ?? WorkerPool(threads: options.threads)
        exactReducedHead = int8 && decodeWeights?.headFormat == .int8Block32 && source.tensorType(config.headTensor) == .q8_0
            ? decodeWeights : nil
        int8Projections = int8 ? decodeWeights.map {
            Int8Projections(weights: $0, maxTokens: sizing.maxBatchTokens, threads: options.threads)
        } : nil
        BLASThreads.set(options.threads)
        if let int8Projections, let decodeWeights, !calibration.isEmpty {
            let start = DispatchTime.now().uptimeNanoseconds
            let factors = try Int8Calibration.factors(self, tokens: calibration)
            let smoothed = SmoothedSource(source, factors: factors, config: config)
            try weights.reload(from: smoothed, where: smoothed.folds)
            try decodeWeights.requantizeProjections(config: config, from: smoothed)
            int8Projections.refreshRowSums()
            smoothing = factors
            calibrationSeconds = Double(DispatchTime.now().uptimeNanoseconds - start) * 1e-9
            timings = ForwardTimings()
        }
    }

    // MARK: Forward

    /// Runs the batch through the model.
    ///
    /// - Parameters:
    ///   - batch: token rows; positions restart at 0 in each row and attention is causal within it.
    ///   - logits: which positions get LM-head logits (`.all` needs `tokenCount ≤ options.maxLogitRows`,
    ///     `.positions` at most that many indices).
    /// - Returns: views of the hidden states after the final norm and of the selected logits, valid
    ///   until the next call on this engine.
    /// - Throws: `EngineError` for an empty batch or row, out-of-vocabulary ids, sizes over the options,
    ///   or a selected position outside the batch.
    public func forward(_ batch: RaggedBatch, logits selection: LogitsSelection) throws -> ForwardResult {
        try validate(batch, logits: selection)
        runLayers(batch)
        return selectLogits(batch, selection)
    }

    /// The LM head over the positions `selection` picks, after `runLayers`.
    func selectLogits(_ batch: RaggedBatch, _ selection: LogitsSelection) -> ForwardResult {
        let start = now()
        switch selection {
        case .none:
            break
        case .last:
            let h = config.hiddenSize
            for r in 0..<batch.rowCount {
                (state.gathered + r * h).update(from: state.normed + (batch.rowOffsets[r + 1] - 1) * h, count: h)
            }
            lmHead(state.gathered, rows: batch.rowCount)
        case .all:
            lmHead(state.normed, rows: batch.tokenCount)
        case .positions(let indices):
            let h = config.hiddenSize
            for (i, t) in indices.enumerated() { (state.gathered + i * h).update(from: state.normed + t * h, count: h) }
            lmHead(state.gathered, rows: indices.count)
        }
        record(\.lmHead, since: start)
        return ForwardResult(batch: batch, selection: selection, config: config,
                             hidden: UnsafePointer(state.normed), logits: UnsafePointer(state.logits))
    }

    /// Runs the batch and streams the logits of every position, in order, to `body`, computing
    /// the LM head in chunks of `options.maxLogitRows` positions so memory stays bounded.
    ///
    /// - Parameter body: called with the row, the position in the row and that position's logits
    ///   (valid only during the call).
    /// - Returns: the hidden states as in `forward(_:logits:)`; the result carries no logits.
    /// - Throws: `EngineError` as `forward(_:logits:)`, or what `body` throws.
    public func forward(_ batch: RaggedBatch,
                        eachLogits body: (_ row: Int, _ position: Int, _ logits: UnsafeBufferPointer<Float>) throws -> Void) throws -> ForwardResult {
        try validate(batch)
        runLayers(batch)
        let v = config.vocabSize, h = config.hiddenSize
        var row = 0
        var chunkStart = 0
        while chunkStart < batch.tokenCount {
            let count = min(options.maxLogitRows, batch.tokenCount - chunkStart)
            let start = now()
            lmHead(state.normed + chunkStart * h, rows: count)
            record(\.lmHead, since: start)
            for i in 0..<count {
                let t = chunkStart + i
                while t >= batch.rowOffsets[row + 1] { row += 1 }
                try body(row, t - batch.rowOffsets[row], UnsafeBufferPointer(start: state.logits + i * v, count: v))
            }
            chunkStart += count
        }
        return ForwardResult(batch: batch, selection: .none, config: config,
                             hidden: UnsafePointer(state.normed), logits: UnsafePointer(state.logits))
    }

    func validate(_ batch: RaggedBatch) throws {
        guard batch.rowCount > 0 else { throw EngineError.emptyBatch }
        guard batch.rowCount <= options.maxRows else { throw EngineError.tooManyRows(count: batch.rowCount, max: options.maxRows) }
        guard batch.tokenCount <= options.maxBatchTokens else {
            throw EngineError.tooManyTokens(count: batch.tokenCount, max: options.maxBatchTokens)
        }
        let vocab = config.vocabSize
        for r in 0..<batch.rowCount {
            let length = batch.length(ofRow: r)
            guard length > 0 else { throw EngineError.emptyRow(row: r) }
            guard length <= options.maxSeq else { throw EngineError.rowTooLong(row: r, length: length, max: options.maxSeq) }
            let start = batch.rowOffsets[r]
            for t in batch.range(ofRow: r) {
                let id = batch.tokens[t]
                guard id >= 0, Int(id) < vocab else {
                    throw EngineError.tokenOutOfRange(row: r, position: t - start, id: id, vocabSize: vocab)
                }
            }
        }
    }

    /// Embeddings, every layer, and the final norm into `state.normed` (tokens × hidden).
    /// What varies by family is read from `config.family` and `config.layers`.
    /// Without a step, positions restart at 0 in every row and attention stays within the row; with
    /// one (begun by `KVCache.begin`), row r continues its sequence: its positions start at the
    /// sequence's cached length and it attends over the cache too (CachedAttention.swift).
    func runLayers(_ batch: RaggedBatch, step: CacheStep? = nil) {
        let c = config, family = c.family, s = state, w = weights
        let n = batch.tokenCount, h = c.hiddenSize, qkvW = c.qkvWidth, f = c.ffnSize, attnW = c.attentionWidth
        let eps = Float(c.rmsEps)
        // A decode step (a cached pass of few tokens) reads the reduced-precision copies, if any.
        let reduced = step != nil && n <= options.decodeRowLimit ? decodeWeights : nil
        decodeHead = reduced

        var start = now()
        let embeddingScale = family.scalesEmbedding ? Float(h).squareRoot() : 1
        batch.tokens.withUnsafeBufferPointer { ids in
            for t in 0..<n {
                let row = s.x + t * h
                row.update(from: w.tokenEmbedding + Int(ids[t]) * h, count: h)
                if family.scalesEmbedding { scale(row, by: embeddingScale, n: h) }
            }
        }
        record(\.other, since: start)

        for (l, layer) in w.layers.enumerated() {
            // Attention block: x += [PostNorm] Wo · Attn(RoPE([QKNorm] Wq·n + bq), RoPE([QKNorm] Wk·n + bk), Wv·n + bv),
            // n = RMSNorm(x)·attn_norm.
            start = now()
            forEachToken(n) { t in rmsNorm(s.x + t * h, weight: layer.attnNorm, out: s.normed + t * h, n: h, eps: eps) }
            record(\.norms, since: start)

            start = now()
            multiply(.qkv, layer: l, reduced, m: n, n: qkvW, k: h, a: s.normed, lda: h, b: layer.qkv, c: s.qkv, ldc: qkvW)
            record(.qkv, since: start)

            start = now()
            prepareQK(batch, layer: layer, rope: s.ropeTables[s.layerRope[l]], rowStarts: step?.starts)
            record(\.rope, since: start)

            start = now()
            if let step {
                cachedAttention(batch, layer: l, step: step)
            } else {
                attention(batch, window: c.layers[l].window)
            }
            record(\.attention, since: start)

            start = now()
            project(.attentionOutput, layer: l, reduced, m: n, n: h, k: attnW, a: s.attn, lda: attnW, b: layer.attnOutput,
                    intoResidualWithNorm: layer.postAttnNorm)
            record(.attentionOutput, since: start)

            // Feed-forward block: x += [PostNorm] Wdown · (act(Wgate·m) ⊙ Wup·m), m = RMSNorm(x)·ffn_norm.
            start = now()
            forEachToken(n) { t in rmsNorm(s.x + t * h, weight: layer.ffnNorm, out: s.normed + t * h, n: h, eps: eps) }
            record(\.norms, since: start)

            start = now()
            multiply(.gateUp, layer: l, reduced, m: n, n: 2 * f, k: h, a: s.normed, lda: h, b: layer.gateUp, c: s.ffn, ldc: 2 * f)
            record(.gateUp, since: start)

            start = now()
            forEachToken(n) { t in gatedActivation(family.activation, gate: s.ffn + t * 2 * f, up: s.ffn + t * 2 * f + f, n: f) }
            record(\.activation, since: start)

            start = now()
            project(.down, layer: l, reduced, m: n, n: h, k: f, a: s.ffn, lda: 2 * f, b: layer.down,
                    intoResidualWithNorm: layer.postFfnNorm)
            record(.down, since: start)
        }

        start = now()
        forEachToken(n) { t in rmsNorm(s.x + t * h, weight: w.outputNorm, out: s.normed + t * h, n: h, eps: eps) }
        record(\.norms, since: start)
        if options.collectTimings { timings.forwardCount += 1; timings.tokens += n }
    }

    /// c = a·bᵀ (c += with `accumulate`) for projection `p` of layer `l`: through the decode step's
    /// reduced-precision copy when there is one, else the int8 GEMM at `precision` int8, else f32
    /// sgemm on `b` (nil only at int8, which keeps no f32 projections).
    @inline(__always)
    private func multiply(_ p: ProjectionWeights.Projection, layer l: Int, _ reduced: ProjectionWeights?,
                          m: Int, n: Int, k: Int, a: UnsafePointer<Float>, lda: Int, b: UnsafePointer<Float>?,
                          c: UnsafeMutablePointer<Float>, ldc: Int, accumulate: Bool = false) {
        if let reduced {
            reduced.project(p, layer: l, a, stride: lda, rows: m, into: c, stride: ldc, accumulate: accumulate)
        } else if let int8 = int8Projections {
            int8.project(p, layer: l, a, stride: lda, rows: m, into: c, stride: ldc, accumulate: accumulate)
        } else if let b {
            f32GEMM.multiply(m: m, n: n, k: k, a: a, lda: lda, b: b, ldb: k, transposeB: true, beta: accumulate ? 1 : 0,
                             c: c, ldc: ldc, threads: options.threads)
        } else {
            preconditionFailure("projection \(p) of layer \(l) has neither f32 nor int8 weights")
        }
    }

    /// x += a·bᵀ, or x += RMSNorm(a·bᵀ)·postNorm for families that norm a block's output.
    private func project(_ p: ProjectionWeights.Projection, layer l: Int, _ reduced: ProjectionWeights?,
                         m: Int, n: Int, k: Int, a: UnsafePointer<Float>, lda: Int, b: UnsafePointer<Float>?,
                         intoResidualWithNorm postNorm: UnsafeMutablePointer<Float>?) {
        let s = state
        guard let postNorm else {
            multiply(p, layer: l, reduced, m: m, n: n, k: k, a: a, lda: lda, b: b, c: s.x, ldc: n, accumulate: true)
            return
        }
        multiply(p, layer: l, reduced, m: m, n: n, k: k, a: a, lda: lda, b: b, c: s.blockOut, ldc: n)
        let eps = Float(config.rmsEps)
        forEachToken(m) { t in
            rmsNorm(s.blockOut + t * n, weight: postNorm, out: s.blockOut + t * n, n: n, eps: eps)
            add(s.blockOut + t * n, into: s.x + t * n, n: n)
        }
    }

    /// Per token, at its position (its index in its row, plus `rowStarts[row]` when given): add the
    /// q/k/v biases, RMSNorm each q and k head, and rotate q and k by RoPE (whichever of these the
    /// family uses).
    private func prepareQK(_ batch: RaggedBatch, layer: ModelWeights.Layer, rope table: RopeTable,
                           rowStarts: UnsafePointer<Int32>?) {
        let c = config, s = state, hd = c.headDim, qkvW = c.qkvWidth, style = c.family.rope
        let eps = Float(c.rmsEps)
        batch.rowOffsets.withUnsafeBufferPointer { offsets in
            let offsets = UnsafeBufferPointer(rebasing: offsets[...])
            forEachToken(batch.tokenCount) { t in
                // Row of token t: the last offset ≤ t (rows are few; a binary search keeps it O(log rows)).
                var lo = 0, hi = offsets.count - 1
                while hi - lo > 1 { let mid = (lo + hi) / 2; if offsets[mid] <= t { lo = mid } else { hi = mid } }
                let pos = t - offsets[lo] + (rowStarts.map { Int($0[lo]) } ?? 0)
                let row = s.qkv + t * qkvW
                if let bias = layer.qkvBias { add(bias, into: row, n: qkvW) }
                if let qNorm = layer.qNorm, let kNorm = layer.kNorm {
                    for head in 0..<c.headCount { rmsNorm(row + head * hd, weight: qNorm, out: row + head * hd, n: hd, eps: eps) }
                    for head in c.headCount..<(c.headCount + c.kvHeadCount) {
                        rmsNorm(row + head * hd, weight: kNorm, out: row + head * hd, n: hd, eps: eps)
                    }
                }
                // Q heads and K heads are adjacent in the fused row: rotate them in one sweep.
                rope(style, row, heads: c.headCount + c.kvHeadCount, headDim: hd,
                     cos: table.cos + pos * hd, sin: table.sin + pos * hd)
            }
        }
    }

    /// Runs `body` for tokens 0..<count, split in contiguous ranges over the engine's threads.
    /// Small batches stay on the calling thread.
    @inline(__always)
    private func forEachToken(_ count: Int, _ body: (Int) -> Void) {
        forEachTokenRange(count, threads: options.threads) { t0, t1 in
            for t in t0..<t1 { body(t) }
        }
    }

    /// Causal grouped-query attention within each row. A work item is one row, one KV head and one
    /// block of queries; the query heads sharing that KV head are stacked so each product is one
    /// larger sgemm. Items are spread over the engine's own workers with OpenBLAS pinned to one
    /// thread, because each product is too small for OpenBLAS to split well.
    private func attention(_ batch: RaggedBatch, window: Int?) {
        let s = state, block = RunState.queryBlock
        var count = 0
        for r in 0..<batch.rowCount {
            let length = batch.length(ofRow: r)
            // Longest blocks first so the workers finish together.
            var qs = ((length - 1) / block) * block
            while qs >= 0 {
                for kvHead in 0..<config.kvHeadCount {
                    s.items[count] = AttentionItem(rowStart: Int32(batch.rowOffsets[r]), queryStart: Int32(qs),
                                                   queryCount: Int32(min(block, length - qs)), kvHead: Int32(kvHead))
                    count += 1
                }
                qs -= block
            }
        }
        runItems(count, workers: min(options.threads, count)) { i, worker in
            attend(s.items[i], window: window, scratch: s.attentionScratch(worker: worker))
        }
    }

    /// Runs `body(item, worker)` for items 0..<count on `workers` of the engine's threads (inline
    /// when one), each claiming the next item from a shared counter, with OpenBLAS pinned to one thread.
    /// (A decode step's single-query attention runs in C on `attentionPool` instead: `cachedAttention`.)
    func runItems(_ count: Int, workers: Int, _ body: (_ item: Int, _ worker: Int) -> Void) {
        if workers <= 1 {
            for i in 0..<count { body(i, 0) }
            return
        }
        BLASThreads.set(1)
        nextItem = 0
        withoutActuallyEscaping(body) { body in
            DispatchQueue.concurrentPerform(iterations: workers) { worker in
                while let i = claimItem(limit: count) { body(i, worker) }
            }
        }
        BLASThreads.set(options.threads)
    }

    private func claimItem(limit: Int) -> Int? {
        itemLock.lock()
        defer { itemLock.unlock() }
        guard nextItem < limit else { return nil }
        nextItem += 1
        return nextItem - 1
    }

    /// One query block against one KV head: the `group` query heads are gathered into
    /// Q (group·nq × hd); S = scale·Q·Kᵀ over the keys the block can see (from the window's start for
    /// its first query to its last query); masked softmax; O = S·V; O is scattered back to each head's
    /// slot of `state.attn`. Query p sees keys p − window < k ≤ p (all k ≤ p without a window).
    private func attend(_ item: AttentionItem, window: Int?, scratch: AttentionScratch) {
        let c = config, hd = c.headDim
        let rowStart = Int(item.rowStart), qs = Int(item.queryStart), nq = Int(item.queryCount), kvHead = Int(item.kvHead)
        let firstKey = window.map { max(0, qs - $0 + 1) } ?? 0
        let k = state.qkv + (rowStart + firstKey) * c.qkvWidth + c.headCount * hd + kvHead * hd
        attendBlock(firstToken: rowStart + qs, count: nq, kvHead: kvHead, firstPosition: qs, firstKey: firstKey,
                    keys: k, values: k + c.kvWidth, ld: c.qkvWidth, window: window, scratch: scratch)
    }

    /// The products of `attend` for `count` queries from flat token `firstToken` (at positions from
    /// `firstPosition`) against the keys and values of positions `firstKey` through the last query's,
    /// rows `ld` floats apart.
    func attendBlock(firstToken: Int, count nq: Int, kvHead: Int, firstPosition qs: Int, firstKey: Int,
                     keys k: UnsafePointer<Float>, values v: UnsafePointer<Float>, ld: Int,
                     window: Int?, scratch: AttentionScratch) {
        let c = config, s = state, hd = c.headDim, qkvW = c.qkvWidth, attnW = c.attentionWidth
        let group = c.headCount / c.kvHeadCount
        let keys = qs + nq - firstKey, m = group * nq
        for j in 0..<group {
            let head = kvHead * group + j
            for i in 0..<nq {
                (scratch.queries + (j * nq + i) * hd).update(from: s.qkv + (firstToken + i) * qkvW + head * hd, count: hd)
            }
        }
        // One thread: the items themselves are spread over the engine's workers.
        f32GEMM.multiply(m: m, n: keys, k: hd, alpha: Float(c.attentionScale), a: scratch.queries, lda: hd, b: k, ldb: ld,
                         transposeB: true, c: scratch.scores, ldc: keys, threads: 1)
        for r in 0..<m {
            let p = qs + r % nq   // this query's position; its keys are indexed from firstKey
            let first = window.map { max(0, p - $0 + 1) - firstKey } ?? 0
            softmaxRange(scratch.scores + r * keys, first: first, valid: p + 1 - firstKey, total: keys)
        }
        f32GEMM.multiply(m: m, n: hd, k: keys, a: scratch.scores, lda: keys, b: v, ldb: ld, transposeB: false,
                         c: scratch.output, ldc: hd, threads: 1)
        for j in 0..<group {
            let head = kvHead * group + j
            for i in 0..<nq {
                (s.attn + (firstToken + i) * attnW + head * hd).update(from: scratch.output + (j * nq + i) * hd, count: hd)
            }
        }
    }

    /// logits (rows × vocab) = hidden (rows × hidden) · outputᵀ, into `state.logits`, soft-capped
    /// when the model sets a cap.
    private func lmHead(_ hidden: UnsafePointer<Float>, rows: Int) {
        let v = config.vocabSize, h = config.hiddenSize
        // A few rows are matrix-vector products: sgemm would pack the whole head for each call.
        if let reduced = decodeHead ?? exactReducedHead, rows <= options.decodeRowLimit {
            reduced.head(hidden, rows: rows, into: state.logits)
        } else if rows <= Self.gemvRowLimit {
            for r in 0..<rows {
                sgemv(rows: v, columns: h, matrix: weights.output, vector: hidden + r * h, result: state.logits + r * v)
            }
        } else {
            f32GEMM.multiply(m: rows, n: v, k: h, a: hidden, lda: h, b: weights.output, ldb: h, transposeB: true,
                             c: state.logits, ldc: v, threads: options.threads)
        }
        if let cap = config.logitSoftcap {
            let logits = state.logits
            forEachToken(rows) { r in softcap(logits + r * v, cap: Float(cap), n: v) }
        }
    }

    /// Above one row, sgemm beats repeated sgemv (measured: 2 rows are even, 4 rows 1.5× faster).
    static let gemvRowLimit = 1

    // MARK: Timing

    @inline(__always) private func now() -> UInt64 {
        options.collectTimings ? DispatchTime.now().uptimeNanoseconds : 0
    }

    @inline(__always) private func record(_ phase: WritableKeyPath<ForwardTimings, Double>, since start: UInt64) {
        guard options.collectTimings else { return }
        timings[keyPath: phase] += Double(DispatchTime.now().uptimeNanoseconds - start) * 1e-9
    }

    /// Records a projection's time under `projections` and under its own entry of `byProjection`.
    @inline(__always) private func record(_ p: ProjectionWeights.Projection, since start: UInt64) {
        guard options.collectTimings else { return }
        let seconds = Double(DispatchTime.now().uptimeNanoseconds - start) * 1e-9
        timings.projections += seconds
        timings.byProjection[p.rawValue] += seconds
    }
}

/// Wall time per phase of the forward pass, in seconds, summed over calls.
public struct ForwardTimings: Sendable {
    /// sgemm (or the decode kernels) of Q|K|V, attention output, gate|up and down.
    public var projections = 0.0
    /// `projections` split by `ProjectionWeights.Projection` (indexed by its raw value).
    public var byProjection = [Double](repeating: 0, count: ProjectionWeights.Projection.allCases.count)
    /// Attention products (sgemm) and softmax, on the engine's workers.
    public var attention = 0.0
    /// LM head sgemm (and gathering its input rows).
    public var lmHead = 0.0
    public var norms = 0.0
    public var rope = 0.0
    /// act(gate)·up (SiLU or GELU, by family).
    public var activation = 0.0
    /// Embedding lookup.
    public var other = 0.0
    public var forwardCount = 0
    public var tokens = 0

    public init() {}
    public var total: Double { projections + attention + lmHead + norms + rope + activation + other }
}

/// Views into the engine's buffers after a forward pass, valid until its next call.
public struct ForwardResult {
    public let batch: RaggedBatch
    public let selection: LogitsSelection
    public let hiddenSize: Int
    public let vocabSize: Int
    private let hiddenBase: UnsafePointer<Float>
    private let logitsBase: UnsafePointer<Float>

    init(batch: RaggedBatch, selection: LogitsSelection, config: ModelConfig,
         hidden: UnsafePointer<Float>, logits: UnsafePointer<Float>) {
        self.batch = batch
        self.selection = selection
        hiddenSize = config.hiddenSize
        vocabSize = config.vocabSize
        hiddenBase = hidden
        logitsBase = logits
    }

    /// Hidden states after the final norm for every position of `row`: (length × hiddenSize), row-major.
    public func hidden(row: Int) -> UnsafeBufferPointer<Float> {
        UnsafeBufferPointer(start: hiddenBase + batch.rowOffsets[row] * hiddenSize, count: batch.length(ofRow: row) * hiddenSize)
    }

    /// Hidden state after the final norm at one position of one row.
    public func hidden(row: Int, position: Int) -> UnsafeBufferPointer<Float> {
        precondition(position >= 0 && position < batch.length(ofRow: row), "position \(position) outside row \(row)")
        return UnsafeBufferPointer(start: hiddenBase + (batch.rowOffsets[row] + position) * hiddenSize, count: hiddenSize)
    }

    /// Logits at one position, or nil when that position was not selected.
    public func logits(row: Int, position: Int) -> UnsafeBufferPointer<Float>? {
        let length = batch.length(ofRow: row)
        precondition(position >= 0 && position < length, "position \(position) outside row \(row)")
        switch selection {
        case .none: return nil
        case .last: return position == length - 1 ? lastLogits(row: row) : nil
        case .all: return UnsafeBufferPointer(start: logitsBase + (batch.rowOffsets[row] + position) * vocabSize, count: vocabSize)
        case .positions(let indices):
            return indices.firstIndex(of: batch.rowOffsets[row] + position).flatMap(selectedLogits)
        }
    }

    /// Logits of the `i`-th entry of a `.positions` selection, or nil for another selection or an
    /// `i` outside it.
    public func selectedLogits(_ i: Int) -> UnsafeBufferPointer<Float>? {
        guard case .positions(let indices) = selection, indices.indices.contains(i) else { return nil }
        return UnsafeBufferPointer(start: logitsBase + i * vocabSize, count: vocabSize)
    }

    /// Logits at the last position of `row`, or nil when no logits were selected.
    public func lastLogits(row: Int) -> UnsafeBufferPointer<Float>? {
        switch selection {
        case .none: return nil
        case .last: return UnsafeBufferPointer(start: logitsBase + row * vocabSize, count: vocabSize)
        case .all, .positions: return logits(row: row, position: batch.length(ofRow: row) - 1)
        }
    }
}

/// Runs `body(start, end)` over 0..<count split in contiguous ranges of at least 16 tokens, on up
/// to `threads` threads (DispatchQueue.concurrentPerform); fewer tokens stay on the calling thread.
@inline(__always)
func forEachTokenRange(_ count: Int, threads: Int, _ body: (_ start: Int, _ end: Int) -> Void) {
    let workers = min(threads, count / 16)
    guard workers > 1 else {
        body(0, count)
        return
    }
    withoutActuallyEscaping(body) { body in
        DispatchQueue.concurrentPerform(iterations: workers) { w in body(count * w / workers, count * (w + 1) / workers) }
    }
}
