import Foundation

/// Activations and scratch of the forward pass, allocated once from `EngineOptions`.
/// Pages are touched only as far as a batch reaches, so resident memory follows the batch.
final class RunState {
    let maxTokens: Int
    let x: UnsafeMutablePointer<Float>        // (tokens, hidden) residual stream
    let normed: UnsafeMutablePointer<Float>   // (tokens, hidden) normed input of a block; after the last layer, the output hidden states
    let qkv: UnsafeMutablePointer<Float>      // (tokens, qkvWidth) Q | K | V per token, RoPE applied to Q and K in place
    let attn: UnsafeMutablePointer<Float>     // (tokens, heads·hd) attention output, heads concatenated
    let ffn: UnsafeMutablePointer<Float>      // (tokens, 2·ffn) gate | up; SiLU(gate)·up overwrites gate
    let gathered: UnsafeMutablePointer<Float> // (maxLogitRows, hidden) selected hidden rows for the LM head (last positions, or chosen ones)
    let logits: UnsafeMutablePointer<Float>   // (maxLogitRows, vocab)
    let attentionArena: UnsafeMutablePointer<Float> // per worker: queries (group·queryBlock, hd), scores (group·queryBlock, maxSeq), output (group·queryBlock, hd)
    let blockOut: UnsafeMutablePointer<Float> // (tokens, hidden) a block's output before its post-norm (families with post-block norms)
    /// One table per distinct RoPE base; `layerRope[l]` picks layer l's.
    let ropeTables: [RopeTable]
    let layerRope: [Int]
    let items: UnsafeMutablePointer<AttentionItem>
    let itemCapacity: Int
    let attentionStride: Int
    private let groupRows: Int
    private let headDim: Int
    private var allocations: [(UnsafeMutableRawPointer)] = []

    /// Queries per attention work item: the causal triangle is covered by query blocks against
    /// their key prefix, so the masked-out half is mostly never computed.
    static let queryBlock = 64

    init(config c: ModelConfig, options o: EngineOptions) {
        func alloc<T>(_ count: Int, _ type: T.Type = Float.self) -> UnsafeMutablePointer<T> {
            let raw = UnsafeMutableRawPointer.allocate(byteCount: max(1, count) * MemoryLayout<T>.stride, alignment: 64)
            return raw.bindMemory(to: T.self, capacity: count)
        }
        maxTokens = o.maxBatchTokens
        x = alloc(maxTokens * c.hiddenSize)
        normed = alloc(maxTokens * c.hiddenSize)
        qkv = alloc(maxTokens * c.qkvWidth)
        attn = alloc(maxTokens * c.headCount * c.headDim)
        ffn = alloc(maxTokens * 2 * c.ffnSize)
        blockOut = alloc(c.family.postBlockNorms ? maxTokens * c.hiddenSize : 0)
        gathered = alloc(o.maxLogitRows * c.hiddenSize)
        logits = alloc(o.maxLogitRows * c.vocabSize)
        groupRows = c.headCount / c.kvHeadCount * Self.queryBlock
        headDim = c.headDim
        attentionStride = (groupRows * (2 * c.headDim + o.maxSeq) + 15) & ~15
        attentionArena = alloc(o.threads * attentionStride)
        itemCapacity = (o.maxBatchTokens / Self.queryBlock + o.maxRows) * c.kvHeadCount
        items = alloc(itemCapacity, AttentionItem.self)
        var bases: [Double] = []
        layerRope = c.layers.map { layer in
            if let i = bases.firstIndex(of: layer.ropeBase) { return i }
            bases.append(layer.ropeBase)
            return bases.count - 1
        }
        var tables: [RopeTable] = []
        for b in bases {
            let table = RopeTable(cos: alloc(o.maxSeq * c.headDim), sin: alloc(o.maxSeq * c.headDim))
            table.fill(base: b, style: c.family.rope, headDim: c.headDim, positions: o.maxSeq)
            tables.append(table)
        }
        ropeTables = tables
        allocations = [x, normed, qkv, attn, ffn, blockOut, gathered, logits, attentionArena].map { UnsafeMutableRawPointer($0) }
        allocations += tables.flatMap { [UnsafeMutableRawPointer($0.cos), UnsafeMutableRawPointer($0.sin)] }
        allocations.append(UnsafeMutableRawPointer(items))
    }

    func attentionScratch(worker: Int) -> AttentionScratch {
        let base = attentionArena + worker * attentionStride
        return AttentionScratch(queries: base, output: base + groupRows * headDim, scores: base + 2 * groupRows * headDim)
    }

    deinit { for p in allocations { p.deallocate() } }
}

/// cos θ and signed sin θ per position, laid out so that element i of a head is rotated with
/// its partner as `x[i]·cos[i] + x[partner(i)]·sin[i]`; the partner is i ^ 1 for adjacent pairs
/// and i ± hd/2 for rotate-half. θ_j = pos · base^(−2j/hd), in double precision.
struct RopeTable {
    let cos: UnsafeMutablePointer<Float>  // (maxSeq, hd)
    let sin: UnsafeMutablePointer<Float>  // (maxSeq, hd): −sin θ on the first of a pair, +sin θ on the second

    func fill(base: Double, style: ModelFamily.RopeStyle, headDim hd: Int, positions: Int) {
        for pos in 0..<positions {
            for j in 0..<hd / 2 {
                let theta = Double(pos) * pow(base, -Double(2 * j) / Double(hd))
                let cosv = Float(Foundation.cos(theta)), sinv = Float(Foundation.sin(theta))
                let (first, second) = style == .adjacentPairs ? (2 * j, 2 * j + 1) : (j, j + hd / 2)
                cos[pos * hd + first] = cosv
                cos[pos * hd + second] = cosv
                sin[pos * hd + first] = -sinv
                sin[pos * hd + second] = sinv
            }
        }
    }
}

/// One unit of attention work: a block of queries of one row, for the query heads of one KV head,
/// against the keys of that row up to the block's last query.
struct AttentionItem {
    var rowStart: Int32     // flat index of the row's first token
    var queryStart: Int32   // first query position in the row
    var queryCount: Int32
    var kvHead: Int32
}

/// One worker's attention scratch.
struct AttentionScratch {
    let queries: UnsafeMutablePointer<Float>  // (group·nq, hd) gathered query heads
    let output: UnsafeMutablePointer<Float>   // (group·nq, hd)
    let scores: UnsafeMutablePointer<Float>   // (group·nq, keys)
}
