import Engine
import Foundation
import GGUF
import Sampling
import Validator   // SplitMix64

/// `axon bench --decode --profile`: where one decode step's time goes. The engine alone (no server)
/// holds `rows` sequences after `prompt`-token prompts (prefilled one at a time, untimed) and runs
/// `generate − 1` steps of one token per sequence, each followed by the greedy choice of every row's
/// next token; the engine's per-phase timings (`ForwardTimings`, `collectTimings`) give the phases,
/// the clock around the argmax the sampling, and the rest of the step's wall time (batch building,
/// the cache's begin/end, logit selection) is the bookkeeping. The wire and the server's DecodeLoop
/// are the difference between this step and the server's (`serverStepMs`, from the wire run).
struct DecodeStepProfile {
    let rows: Int
    let steps: Int
    /// Per step, in milliseconds.
    let phases: [(name: String, ms: Double)]
    let engineMs: Double
    let samplingMs: Double
    let stepMs: Double

    static func measure(file: GGUFFile, threads: Int, rows: Int, prompt: Int, generate: Int, kvCacheBytes: Int,
                        decodePrecision: DecodePrecision, precision: EnginePrecision,
                        kvCachePrecision: KVCachePrecision) throws -> DecodeStepProfile {
        let options = EngineOptions(threads: threads, maxBatchTokens: max(prompt + generate, rows), maxRows: rows,
                                    maxSeq: prompt + generate, maxLogitRows: max(rows, 1), collectTimings: true,
                                    kvCacheBytes: kvCacheBytes, maxSequences: rows, decodePrecision: decodePrecision,
                                    precision: precision, kvCachePrecision: kvCachePrecision)
        let engine = try InferenceEngine(file: file, options: options)
        var generator = Validator.SplitMix64(seed: 0xDEC0DE)
        let vocab = UInt64(engine.config.vocabSize)
        var sequences: [SequenceID] = []
        var next: [Int32] = []
        for _ in 0..<rows {
            let ids = (0..<prompt).map { _ in Int32(truncatingIfNeeded: generator.next() % vocab) }
            let sequence = try engine.newSequence()
            let result = try engine.forward(RaggedBatch(rows: [ids]), sequences: [sequence], logits: .last)
            next.append(Int32(result.lastLogits(row: 0).flatMap(TokenDraw.argmax) ?? 0))
            sequences.append(sequence)
        }
        engine.timings = ForwardTimings()
        var batch = RaggedBatch()
        var sampling: UInt64 = 0
        let steps = generate - 1
        let start = DispatchTime.now().uptimeNanoseconds
        for _ in 0..<steps {
            batch.removeAll()
            for token in next { batch.append(row: CollectionOfOne(token)) }
            let result = try engine.forward(batch, sequences: sequences, logits: .last)
            let sampleStart = DispatchTime.now().uptimeNanoseconds
            for r in 0..<rows {
                next[r] = Int32(result.lastLogits(row: r).flatMap(TokenDraw.argmax) ?? 0)
            }
            sampling += DispatchTime.now().uptimeNanoseconds - sampleStart
        }
        let wall = Double(DispatchTime.now().uptimeNanoseconds - start) * 1e-6 / Double(steps)
        let t = engine.timings, per = 1e3 / Double(steps)
        let names = ["Q|K|V", "attention output", "gate|up", "down"]
        var phases = zip(names, t.byProjection).map { ($0, $1 * per) }
        phases += [("attention", t.attention * per), ("LM head", t.lmHead * per), ("norms", t.norms * per),
                   ("RoPE", t.rope * per), ("activation", t.activation * per), ("embedding", t.other * per)]
        return DecodeStepProfile(rows: rows, steps: steps, phases: phases, engineMs: t.total * per,
                                 samplingMs: Double(sampling) * 1e-6 / Double(steps), stepMs: wall)
    }

    /// One line per phase, then the step's total and, given the server's step time, the wire's and loop's share.
    func text(serverStepMs: Double?) -> String {
        var lines = ["decode step profile, \(rows) rows, mean of \(steps) steps (engine alone):"]
        func line(_ name: String, _ ms: Double) -> String {
            "  " + name.padding(toLength: 18, withPad: " ", startingAt: 0) + String(format: "%7.2f ms", ms)
        }
        lines += phases.map { line($0.name, $0.ms) }
        lines.append(line("sampling (argmax)", samplingMs))
        lines.append(line("bookkeeping", max(0, stepMs - engineMs - samplingMs)))
        lines.append(line("step", stepMs))
        if let serverStepMs {
            lines.append(String(format: "  server step %.2f ms over the wire: %.2f ms of wire, DecodeLoop and sampler beyond the engine's step",
                                serverStepMs, serverStepMs - stepMs))
        }
        return lines.joined(separator: "\n")
    }
}
