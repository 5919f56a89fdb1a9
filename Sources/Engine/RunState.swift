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
    let gathered: UnsafeMutablePointer<Float> // (maxRows, hidden) last-position hidden rows for the LM head
    let logits: UnsafeMutablePointer<Float>   // (maxLogitRows, vocab)
    let attentionArena: UnsafeMutablePointer<Float> // per worker: queries (group·queryBlock, hd), scores (group·queryBlock, maxSeq), output (group·queryBlock, hd)
    let ropeCos: UnsafeMutablePointer<Float>  // (maxSeq, hd) cos θ duplicated per pair
    let ropeSin: UnsafeMutablePointer<Float>  // (maxSeq, hd) (−sin θ, +sin θ) per pair
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
        gathered = alloc(o.maxRows * c.hiddenSize)
        logits = alloc(o.maxLogitRows * c.vocabSize)
        groupRows = c.headCount / c.kvHeadCount * Self.queryBlock
        headDim = c.headDim
        attentionStride = (groupRows * (2 * c.headDim + o.maxSeq) + 15) & ~15
        attentionArena = alloc(o.threads * attentionStride)
        ropeCos = alloc(o.maxSeq * c.headDim)
        ropeSin = alloc(o.maxSeq * c.headDim)
        itemCapacity = (o.maxBatchTokens / Self.queryBlock + o.maxRows) * c.kvHeadCount
        items = alloc(itemCapacity, AttentionItem.self)
        allocations = [x, normed, qkv, attn, ffn, gathered, logits, attentionArena, ropeCos, ropeSin].map { UnsafeMutableRawPointer($0) }
        allocations.append(UnsafeMutableRawPointer(items))

        // θ_i = pos · base^(−2i/hd), in double precision, for the adjacent pair (2i, 2i+1).
        let hd = c.headDim
        for pos in 0..<o.maxSeq {
            for i in 0..<hd / 2 {
                let theta = Double(pos) * pow(c.ropeFreqBase, -Double(2 * i) / Double(hd))
                let cosv = Float(cos(theta)), sinv = Float(sin(theta))
                ropeCos[pos * hd + 2 * i] = cosv
                ropeCos[pos * hd + 2 * i + 1] = cosv
                ropeSin[pos * hd + 2 * i] = -sinv
                ropeSin[pos * hd + 2 * i + 1] = sinv
            }
        }
    }

    func attentionScratch(worker: Int) -> AttentionScratch {
        let base = attentionArena + worker * attentionStride
        return AttentionScratch(queries: base, output: base + groupRows * headDim, scores: base + 2 * groupRows * headDim)
    }

    deinit { for p in allocations { p.deallocate() } }
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
