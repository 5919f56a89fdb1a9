import ArgumentParser
import Engine
import GGUF
import Server
import Tokenizer

/// What `axon generate` (locally) and `axon bench --decode` generate with: the engine over its KV
/// cache, or a fake of the model's shape.
enum GenerationBackendLoader {
    /// - Parameters:
    ///   - maxSeq: positions one sequence holds (nil: min(2048, the model's context length)).
    ///   - maxSequences: sequences held at once, and rows per step.
    ///   - stepTokens: tokens one step (engine pass) holds at most.
    static func load(file: GGUFFile, tokenizer: any TextTokenizer, threads: Int?, kvCacheBytes: Int, maxSeq: Int?,
                     maxSequences: Int, stepTokens: Int, decodePrecision: DecodePrecision,
                     precision: EnginePrecision = .f32, kvCachePrecision: KVCachePrecision? = nil,
                     fake: Bool) throws -> InferenceBackend & GenerationBackend {
        let info = ModelInfo(gguf: file, tokenizer: tokenizer)
        let limit = RowLimit(requested: maxSeq, gguf: file)
        if fake {
            return FakeGenerationBackend(modelInfo: info, kvCapacityBytes: kvCacheBytes, maxSequences: maxSequences,
                                         maxStepRows: maxSequences, maxSequenceLength: limit.maxSeq)
        }
        let engine = try EngineBackend(file: file, modelInfo: info, threads: threads, maxRows: maxSequences, maxSeq: limit.maxSeq,
                                       maxBatchTokens: max(stepTokens, maxSequences, limit.maxSeq), kvCacheBytes: kvCacheBytes,
                                       maxSequences: maxSequences, decodePrecision: decodePrecision, precision: precision,
                                       kvCachePrecision: kvCachePrecision ?? .preferred(decoding: decodePrecision))
        return EngineGenerationBackend(engine)
    }
}

/// `serve`'s generation flags (docs/PROTOCOL.md, "TEXT_SEQ_2_SEQ" and "Server model").
struct GenerationServeOptions: ParsableArguments {
    @Option(help: "Most tokens one TEXT_SEQ_2_SEQ row may ask for (num_to_generate).") var maxNewTokens = 512
    @Option(help: "Tokens one generation step runs at most: each running sequence's next token, then chunks of new prompts.")
    var stepTokens = 256
    @Option(help: "Sequences (rows × beams of running generations) held at once.") var maxSequences = 64
    @Option(help: "KV cache for running generations, in MiB; a generation that finds it full waits --generation-wait-ms, then gets Backoff.")
    var kvCacheMb = 512
    @Option(help: "How long a generation may wait for KV cache space or sequence slots before Backoff.") var generationWaitMs: UInt32 = 1_000
    @Option(help: "Deadline for TEXT_SEQ_2_SEQ requests with timeout_ms = 0 (Bittensor's TextSeq2Seq: 36 s).")
    var generationTimeoutDefaultMs: UInt32 = 36_000
    @Option(help: "Weights decode steps read: int8 (per block of 32), f16, or f32 (the exact reference path); prefill stays f32 (docs/ENGINE.md).")
    var decodePrecision: DecodePrecision = .int8
    @Option(help: "Elements of the KV cache: f32 (exact) or f16 (half the bytes decode attention reads; docs/ENGINE.md). Default: f16 with --decode-precision int8 or f16, f32 with f32.")
    var kvCachePrecision: KVCachePrecision?

    /// The KV cache's elements: as asked, else the decode precision's companion.
    var resolvedKVCachePrecision: KVCachePrecision { kvCachePrecision ?? .preferred(decoding: decodePrecision) }

    func validate() throws {
        for (name, value) in [("--max-new-tokens", maxNewTokens), ("--step-tokens", stepTokens), ("--max-sequences", maxSequences),
                              ("--kv-cache-mb", kvCacheMb)] where value < 1 {
            throw ValidationError("\(name) must be at least 1, got \(value)")
        }
    }

    func configure(_ config: inout ServerConfiguration) {
        config.maxNewTokens = maxNewTokens
        config.stepTokens = stepTokens
        config.maxSequences = maxSequences
        config.generationWaitMs = generationWaitMs
        config.defaultGenerationTimeoutMs = generationTimeoutDefaultMs
    }
}

extension DecodePrecision: ExpressibleByArgument {}
extension KVCachePrecision: ExpressibleByArgument {}
