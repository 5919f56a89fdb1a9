import Foundation

/// Every weight of the model as f32, dequantized once at load into one 64-byte-aligned arena.
/// Q|K|V and gate|up are dequantized side by side so that each is a single matrix [out][in]
/// and one sgemm per projection group; a tied LM head points at the token embeddings (no copy).
final class ModelWeights {
    struct Layer {
        var attnNorm: UnsafeMutablePointer<Float>   // (hidden)
        var qkv: UnsafeMutablePointer<Float>        // (heads·hd + 2·kvHeads·hd, hidden): rows Q, then K, then V
        var attnOutput: UnsafeMutablePointer<Float> // (hidden, heads·hd)
        var ffnNorm: UnsafeMutablePointer<Float>    // (hidden)
        var gateUp: UnsafeMutablePointer<Float>     // (2·ffn, hidden): rows gate, then up
        var down: UnsafeMutablePointer<Float>       // (hidden, ffn)
    }

    let arena: UnsafeMutableRawPointer
    let byteCount: Int
    let tokenEmbedding: UnsafeMutablePointer<Float>  // (vocab, hidden)
    let outputNorm: UnsafeMutablePointer<Float>      // (hidden)
    let output: UnsafeMutablePointer<Float>          // (vocab, hidden); == tokenEmbedding when tied
    let layers: [Layer]

    /// Reserves the arena, then dequantizes all tensors in parallel into their slots.
    /// - Throws: `EngineError.tensorLoadFailed` naming the first tensor that failed.
    init(config c: ModelConfig, source: ModelSource) throws {
        var jobs: [(name: String, offset: Int, count: Int)] = []
        var cursor = 0  // in floats
        func reserve(_ name: String?, _ count: Int) -> Int {
            let start = cursor
            if let name { jobs.append((name, start, count)) }
            cursor += (count + 15) & ~15   // keep every slot 64-byte aligned
            return start
        }
        func reserveFused(_ parts: [(String, Int)]) -> Int {
            let start = cursor
            var at = start
            for (name, count) in parts { jobs.append((name, at, count)); at += count }
            cursor = start + ((at - start + 15) & ~15)
            return start
        }
        let h = c.hiddenSize, qRows = c.headCount * c.headDim
        let embOffset = reserve("token_embd.weight", c.vocabSize * h)
        let normOffset = reserve("output_norm.weight", h)
        let outOffset = c.tiedOutput ? embOffset : reserve("output.weight", c.vocabSize * h)
        var layerOffsets: [(Int, Int, Int, Int, Int, Int)] = []
        for l in 0..<c.layerCount {
            let p = "blk.\(l)."
            let attnNorm = reserve(p + "attn_norm.weight", h)
            let qkv = reserveFused([(p + "attn_q.weight", qRows * h), (p + "attn_k.weight", c.kvWidth * h),
                                    (p + "attn_v.weight", c.kvWidth * h)])
            let wo = reserve(p + "attn_output.weight", h * qRows)
            let ffnNorm = reserve(p + "ffn_norm.weight", h)
            let gateUp = reserveFused([(p + "ffn_gate.weight", c.ffnSize * h), (p + "ffn_up.weight", c.ffnSize * h)])
            let down = reserve(p + "ffn_down.weight", h * c.ffnSize)
            layerOffsets.append((attnNorm, qkv, wo, ffnNorm, gateUp, down))
        }
        byteCount = cursor * MemoryLayout<Float>.stride
        arena = UnsafeMutableRawPointer.allocate(byteCount: byteCount, alignment: 64)
        let base = arena.bindMemory(to: Float.self, capacity: cursor)
        tokenEmbedding = base + embOffset
        outputNorm = base + normOffset
        output = base + outOffset
        layers = layerOffsets.map { o in
            Layer(attnNorm: base + o.0, qkv: base + o.1, attnOutput: base + o.2,
                  ffnNorm: base + o.3, gateUp: base + o.4, down: base + o.5)
        }

        // Largest first, so the parallel loop ends evenly.
        jobs.sort { $0.count > $1.count }
        let failures = FirstFailure()
        let sendableBase = UncheckedPointer(base)
        DispatchQueue.concurrentPerform(iterations: jobs.count) { i in
            let job = jobs[i]
            do {
                try source.dequantizeTensor(job.name, into: UnsafeMutableBufferPointer(start: sendableBase.pointer + job.offset, count: job.count))
            } catch {
                failures.record(EngineError.tensorLoadFailed(name: job.name, reason: "\(error)"))
            }
        }
        if let failure = failures.first {
            arena.deallocate()
            throw failure
        }
    }

    deinit { arena.deallocate() }
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
