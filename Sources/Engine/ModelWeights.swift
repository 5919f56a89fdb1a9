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
        // A job dequantizes a range of rows of one tensor; big tensors are split so the parallel
        // loop stays balanced (the token embeddings alone are a fifth of the model).
        var jobs: [(name: String, offset: Int, rowLength: Int, rows: Range<Int>)] = []
        let rowsPerJob = 1 << 21
        var cursor = 0  // in floats
        // Places tensors (row length, row count) back to back from the cursor; returns their start.
        func reserve(_ parts: [(name: String, rowLength: Int, rows: Int)]) -> Int {
            let start = cursor
            var at = start
            for part in parts {
                let step = max(1, rowsPerJob / part.rowLength)
                for first in stride(from: 0, to: part.rows, by: step) {
                    jobs.append((part.name, at + first * part.rowLength, part.rowLength, first..<min(part.rows, first + step)))
                }
                at += part.rowLength * part.rows
            }
            cursor = start + ((at - start + 15) & ~15)   // keep every slot 64-byte aligned
            return start
        }
        let h = c.hiddenSize, qRows = c.headCount * c.headDim
        let embOffset = reserve([("token_embd.weight", h, c.vocabSize)])
        let normOffset = reserve([("output_norm.weight", h, 1)])
        let outOffset = c.tiedOutput ? embOffset : reserve([("output.weight", h, c.vocabSize)])
        var layerOffsets: [(Int, Int, Int, Int, Int, Int)] = []
        for l in 0..<c.layerCount {
            let p = "blk.\(l)."
            let attnNorm = reserve([(p + "attn_norm.weight", h, 1)])
            let qkv = reserve([(p + "attn_q.weight", h, qRows), (p + "attn_k.weight", h, c.kvWidth),
                               (p + "attn_v.weight", h, c.kvWidth)])
            let wo = reserve([(p + "attn_output.weight", qRows, h)])
            let ffnNorm = reserve([(p + "ffn_norm.weight", h, 1)])
            let gateUp = reserve([(p + "ffn_gate.weight", h, c.ffnSize), (p + "ffn_up.weight", h, c.ffnSize)])
            let down = reserve([(p + "ffn_down.weight", c.ffnSize, h)])
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
        jobs.sort { $0.rows.count * $0.rowLength > $1.rows.count * $1.rowLength }
        let failures = FirstFailure()
        let sendableBase = UncheckedPointer(base)
        DispatchQueue.concurrentPerform(iterations: jobs.count) { i in
            let job = jobs[i]
            do {
                let destination = UnsafeMutableBufferPointer(start: sendableBase.pointer + job.offset, count: job.rows.count * job.rowLength)
                try source.dequantizeRows(job.name, rows: job.rows, into: destination)
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
