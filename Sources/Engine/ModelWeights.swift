import Foundation

/// Every weight of the model as f32, dequantized once at load into one 64-byte-aligned arena.
/// Q|K|V and gate|up are dequantized side by side so that each is a single matrix [out][in]
/// and one sgemm per projection group; a tied LM head points at the token embeddings (no copy).
/// Tensors a family does not use are nil, and so are the projections (q|k|v, attention output,
/// gate|up, down) of an engine that reads them in int8 only (`EngineOptions.precision`): they are
/// then never dequantized here (`ProjectionWeights` rounds them from the source one at a time).
final class ModelWeights {
    struct Layer {
        var attnNorm: UnsafeMutablePointer<Float>   // (hidden)
        var qkv: UnsafeMutablePointer<Float>?       // (heads·hd + 2·kvHeads·hd, hidden): rows Q, then K, then V
        var qkvBias: UnsafeMutablePointer<Float>?   // (heads·hd + 2·kvHeads·hd): Q, K, V biases
        var qNorm: UnsafeMutablePointer<Float>?     // (hd) per-head RMSNorm weight of q
        var kNorm: UnsafeMutablePointer<Float>?     // (hd) per-head RMSNorm weight of k
        var attnOutput: UnsafeMutablePointer<Float>? // (hidden, heads·hd)
        var postAttnNorm: UnsafeMutablePointer<Float>? // (hidden)
        var ffnNorm: UnsafeMutablePointer<Float>    // (hidden)
        var gateUp: UnsafeMutablePointer<Float>?    // (2·ffn, hidden): rows gate, then up
        var down: UnsafeMutablePointer<Float>?      // (hidden, ffn)
        var postFfnNorm: UnsafeMutablePointer<Float>?  // (hidden)
    }

    /// Owns the memory; freed only by its deinit, so a load that throws frees it exactly once.
    private let arena: AlignedFloats
    var byteCount: Int { arena.count * MemoryLayout<Float>.stride }
    let tokenEmbedding: UnsafeMutablePointer<Float>  // (vocab, hidden)
    let outputNorm: UnsafeMutablePointer<Float>      // (hidden)
    let output: UnsafeMutablePointer<Float>          // (vocab, hidden); == tokenEmbedding when tied
    let layers: [Layer]
    /// Where each tensor's rows go in the arena: a job of the parallel load.
    private struct Load { let name: String, offset: Int, rowLength: Int, rows: Range<Int> }
    private let loads: [Load]

    /// Reserves the arena, then dequantizes all tensors in parallel into their slots.
    /// `config` has already checked that every tensor exists with its shape and a dequantizable type.
    /// Without `projections`, the projection matrices are left out (nil).
    /// - Throws: `EngineError.tensorLoadFailed` naming the first tensor that failed.
    init(config c: ModelConfig, source: ModelSource, projections: Bool = true) throws {
        // A job dequantizes a range of rows of one tensor; big tensors are split so the parallel
        // loop stays balanced (the token embeddings alone are a fifth of the model).
        var jobs: [Load] = []
        let rowsPerJob = 1 << 21
        var cursor = 0  // in floats
        let dims = Dictionary(c.expectedTensors().map { ($0.name, $0.dims) }, uniquingKeysWith: { a, _ in a })
        // Places the named tensors back to back from the cursor; returns their start.
        func reserve(_ names: String...) -> Int { reserveAll(names) }
        func reserveAll(_ names: [String]) -> Int {
            let start = cursor
            var at = start
            for name in names {
                let shape = dims[name] ?? []
                let rowLength = shape.first ?? 1, rows = shape.dropFirst().reduce(1, *)
                let step = max(1, rowsPerJob / rowLength)
                for first in stride(from: 0, to: rows, by: step) {
                    jobs.append(Load(name: name, offset: at + first * rowLength, rowLength: rowLength, rows: first..<min(rows, first + step)))
                }
                at += rowLength * rows
            }
            cursor = start + ((at - start + 15) & ~15)   // keep every slot 64-byte aligned
            return start
        }
        func reserveIf(_ present: Bool, _ names: String...) -> Int? {
            present ? reserveAll(names) : nil
        }
        /// Projection `p` of layer `l`, its tensors side by side, unless the engine reads it in int8 only.
        func reserveProjection(_ p: ProjectionWeights.Projection, layer l: Int) -> Int? {
            projections ? reserveAll(p.weightNames(layer: l)) : nil
        }
        struct Offsets { var attnNorm: Int, qkv, qkvBias, qNorm, kNorm, wo, postAttn: Int?, ffnNorm: Int, gateUp, down, postFfn: Int? }
        let embOffset = reserve("token_embd.weight")
        let normOffset = reserve("output_norm.weight")
        let outOffset = c.tiedOutput ? embOffset : reserve("output.weight")
        var layerOffsets: [Offsets] = []
        for l in 0..<c.layerCount {
            let p = "blk.\(l)."
            layerOffsets.append(Offsets(
                attnNorm: reserve(p + "attn_norm.weight"),
                qkv: reserveProjection(.qkv, layer: l),
                // Q, K and V biases adjacent, like the fused rows they are added to.
                qkvBias: c.hasQKVBias ? reserve(p + "attn_q.bias", p + "attn_k.bias", p + "attn_v.bias") : nil,
                qNorm: reserveIf(c.family.perHeadQKNorm, p + "attn_q_norm.weight"),
                kNorm: reserveIf(c.family.perHeadQKNorm, p + "attn_k_norm.weight"),
                wo: reserveProjection(.attentionOutput, layer: l),
                postAttn: reserveIf(c.family.postBlockNorms, p + "post_attention_norm.weight"),
                ffnNorm: reserve(p + "ffn_norm.weight"),
                gateUp: reserveProjection(.gateUp, layer: l),
                down: reserveProjection(.down, layer: l),
                postFfn: reserveIf(c.family.postBlockNorms, p + "post_ffw_norm.weight")))
        }
        arena = AlignedFloats(count: cursor)
        let base = arena.base
        tokenEmbedding = base + embOffset
        outputNorm = base + normOffset
        output = base + outOffset
        layers = layerOffsets.map { o in
            Layer(attnNorm: base + o.attnNorm, qkv: o.qkv.map { base + $0 }, qkvBias: o.qkvBias.map { base + $0 },
                  qNorm: o.qNorm.map { base + $0 }, kNorm: o.kNorm.map { base + $0 }, attnOutput: o.wo.map { base + $0 },
                  postAttnNorm: o.postAttn.map { base + $0 }, ffnNorm: base + o.ffnNorm, gateUp: o.gateUp.map { base + $0 },
                  down: o.down.map { base + $0 }, postFfnNorm: o.postFfn.map { base + $0 })
        }

        // Largest first, so the parallel loop ends evenly.
        jobs.sort { $0.rows.count * $0.rowLength > $1.rows.count * $1.rowLength }
        loads = jobs
        // The arena is released by its own deinit when this throws: never here.
        try run(loads, from: source)
    }

    /// Dequantizes the tensors `reloaded` picks again, from `source`, into the same slots. The int8
    /// path's smoothing (`SmoothedSource`) replaces the norms and biases it folds this way once the
    /// calibration pass has run on this engine.
    /// - Throws: `EngineError.tensorLoadFailed` naming the first tensor that failed.
    func reload(from source: ModelSource, where reloaded: (String) -> Bool) throws {
        try run(loads.filter { reloaded($0.name) }, from: source)
    }

    /// Runs `jobs` in parallel into the arena.
    private func run(_ jobs: [Load], from source: ModelSource) throws {
        let failures = FirstFailure()
        let sendableBase = UncheckedPointer(arena.base)
        DispatchQueue.concurrentPerform(iterations: jobs.count) { i in
            let job = jobs[i]
            do {
                let destination = UnsafeMutableBufferPointer(start: sendableBase.pointer + job.offset, count: job.rows.count * job.rowLength)
                try source.dequantizeRows(job.name, rows: job.rows, into: destination)
                source.releaseRows(job.name, rows: job.rows)
            } catch {
                failures.record(EngineError.tensorLoadFailed(name: job.name, reason: "\(error)"))
            }
        }
        if let failure = failures.first { throw failure }
    }
}

/// A 64-byte-aligned block of floats, freed once, when its owner lets go of it. A block of a MiB or
/// more is its own anonymous mapping, so freeing it gives the pages back at once: the load's
/// per-matrix scratch would otherwise stay in the allocator's heap and in the resident set.
final class AlignedFloats {
    let base: UnsafeMutablePointer<Float>
    let count: Int
    private let mappedBytes: Int?
    private static let mappedFrom = 1 << 20

    init(count: Int) {
        self.count = count
        let bytes = max(1, count) * MemoryLayout<Float>.stride
        if bytes >= Self.mappedFrom, let mapped = mmap(nil, bytes, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0),
           mapped != MAP_FAILED {
            mappedBytes = bytes
            base = mapped.bindMemory(to: Float.self, capacity: max(1, count))
        } else {
            mappedBytes = nil
            base = UnsafeMutableRawPointer.allocate(byteCount: bytes, alignment: 64).bindMemory(to: Float.self, capacity: max(1, count))
        }
    }

    deinit {
        if let mappedBytes { munmap(base, mappedBytes) } else { base.deallocate() }
    }
}

/// A pointer handed to concurrent workers that write disjoint ranges.
struct UncheckedPointer: @unchecked Sendable {
    let pointer: UnsafeMutablePointer<Float>
    init(_ pointer: UnsafeMutablePointer<Float>) { self.pointer = pointer }
}

/// Keeps the first error thrown by any of several concurrent workers.
final class FirstFailure: @unchecked Sendable {
    private let lock = NSLock()
    private var error: EngineError?
    func record(_ e: EngineError) { lock.lock(); if error == nil { error = e }; lock.unlock() }
    var first: EngineError? { lock.lock(); defer { lock.unlock() }; return error }
}
