import Foundation

/// Hyperparameters of a llama-architecture model, read from its metadata and checked at load.
public struct ModelConfig: Sendable, Equatable {
    /// `general.architecture`, e.g. "llama".
    public var architecture: String
    public var vocabSize: Int
    /// Width of the residual stream (`embedding_length`).
    public var hiddenSize: Int
    public var layerCount: Int
    /// Query heads.
    public var headCount: Int
    /// Key/value heads (grouped-query attention when fewer than `headCount`).
    public var kvHeadCount: Int
    public var headDim: Int
    /// Inner width of the SwiGLU feed-forward block.
    public var ffnSize: Int
    public var contextLength: Int
    public var ropeFreqBase: Double
    public var rmsEps: Double
    /// True when there is no `output.weight` and the LM head is `token_embd`.
    public var tiedOutput: Bool

    /// Width of the fused Q|K|V projection output per token.
    var qkvWidth: Int { (headCount + 2 * kvHeadCount) * headDim }
    var kvWidth: Int { kvHeadCount * headDim }

    static let supportedArchitectures: Set<String> = ["llama", "mistral"]

    /// Reads and validates the hyperparameters and every tensor shape.
    /// - Throws: `EngineError` naming the missing or inconsistent key or tensor.
    public init(source: ModelSource) throws {
        guard let arch = source.metadataString("general.architecture") else {
            throw EngineError.missingHyperparameter(key: "general.architecture")
        }
        guard Self.supportedArchitectures.contains(arch) else { throw EngineError.unsupportedArchitecture(arch) }
        func int(_ name: String) throws -> Int {
            let key = "\(arch).\(name)"
            guard let v = source.metadataInt(key) else { throw EngineError.missingHyperparameter(key: key) }
            guard v > 0, v <= 1 << 24 else {
                throw EngineError.invalidHyperparameter(key: key, value: "\(v)", expected: "a positive count below 2^24")
            }
            return v
        }
        architecture = arch
        hiddenSize = try int("embedding_length")
        layerCount = try int("block_count")
        headCount = try int("attention.head_count")
        ffnSize = try int("feed_forward_length")
        contextLength = try int("context_length")
        let kvKey = "\(arch).attention.head_count_kv"
        kvHeadCount = source.metadataInt(kvKey) ?? headCount
        guard kvHeadCount > 0, headCount % kvHeadCount == 0 else {
            throw EngineError.invalidHyperparameter(key: kvKey, value: "\(kvHeadCount)",
                                                    expected: "a positive divisor of head_count \(headCount)")
        }
        guard hiddenSize % headCount == 0 else {
            throw EngineError.invalidHyperparameter(key: "\(arch).attention.head_count", value: "\(headCount)",
                                                    expected: "a divisor of embedding_length \(hiddenSize)")
        }
        headDim = hiddenSize / headCount
        let keyLengthKey = "\(arch).attention.key_length"
        if let keyLength = source.metadataInt(keyLengthKey), keyLength != headDim {
            throw EngineError.invalidHyperparameter(key: keyLengthKey, value: "\(keyLength)",
                                                    expected: "embedding_length / head_count = \(headDim)")
        }
        guard headDim % 2 == 0 else {
            throw EngineError.invalidHyperparameter(key: "\(arch).attention.head_count", value: "\(headCount)",
                                                    expected: "a head dimension that is even (it is \(headDim))")
        }
        let ropeDimKey = "\(arch).rope.dimension_count"
        if let ropeDim = source.metadataInt(ropeDimKey), ropeDim != headDim {
            throw EngineError.invalidHyperparameter(key: ropeDimKey, value: "\(ropeDim)",
                                                    expected: "the head dimension \(headDim) (partial RoPE is not supported)")
        }
        let baseKey = "\(arch).rope.freq_base"
        ropeFreqBase = source.metadataDouble(baseKey) ?? 10_000
        guard ropeFreqBase.isFinite, ropeFreqBase > 1 else {
            throw EngineError.invalidHyperparameter(key: baseKey, value: "\(ropeFreqBase)", expected: "a finite value above 1")
        }
        let epsKey = "\(arch).attention.layer_norm_rms_epsilon"
        guard let eps = source.metadataDouble(epsKey) else { throw EngineError.missingHyperparameter(key: epsKey) }
        guard eps.isFinite, eps > 0, eps < 1 else {
            throw EngineError.invalidHyperparameter(key: epsKey, value: "\(eps)", expected: "a small positive value")
        }
        rmsEps = eps

        guard let embDims = source.tensorDims("token_embd.weight") else {
            throw EngineError.missingTensor(name: "token_embd.weight")
        }
        guard embDims.count == 2, embDims[0] == hiddenSize, embDims[1] > 0 else {
            throw EngineError.tensorShapeMismatch(name: "token_embd.weight", dims: embDims, expected: [hiddenSize, embDims.last ?? 0])
        }
        vocabSize = embDims[1]
        let vocabKey = "\(arch).vocab_size"
        if let declared = source.metadataInt(vocabKey), declared != vocabSize {
            throw EngineError.invalidHyperparameter(key: vocabKey, value: "\(declared)",
                                                    expected: "token_embd.weight's row count \(vocabSize)")
        }
        tiedOutput = source.tensorDims("output.weight") == nil
        try Self.checkShapes(self, source: source)
    }

    /// The dims every tensor must have, `ne[0]` first.
    func expectedTensors() -> [(name: String, dims: [Int])] {
        var list: [(String, [Int])] = [("token_embd.weight", [hiddenSize, vocabSize]), ("output_norm.weight", [hiddenSize])]
        if !tiedOutput { list.append(("output.weight", [hiddenSize, vocabSize])) }
        for l in 0..<layerCount {
            list += [
                ("blk.\(l).attn_norm.weight", [hiddenSize]),
                ("blk.\(l).attn_q.weight", [hiddenSize, headCount * headDim]),
                ("blk.\(l).attn_k.weight", [hiddenSize, kvWidth]),
                ("blk.\(l).attn_v.weight", [hiddenSize, kvWidth]),
                ("blk.\(l).attn_output.weight", [headCount * headDim, hiddenSize]),
                ("blk.\(l).ffn_norm.weight", [hiddenSize]),
                ("blk.\(l).ffn_gate.weight", [hiddenSize, ffnSize]),
                ("blk.\(l).ffn_up.weight", [hiddenSize, ffnSize]),
                ("blk.\(l).ffn_down.weight", [ffnSize, hiddenSize]),
            ]
        }
        return list
    }

    private static func checkShapes(_ config: ModelConfig, source: ModelSource) throws {
        for (name, expected) in config.expectedTensors() {
            guard let dims = source.tensorDims(name) else { throw EngineError.missingTensor(name: name) }
            // Trailing 1s are allowed (some writers store a vector as {n, 1}).
            var trimmed = dims
            while trimmed.count > expected.count, trimmed.last == 1 { trimmed.removeLast() }
            guard trimmed == expected else {
                throw EngineError.tensorShapeMismatch(name: name, dims: dims, expected: expected)
            }
        }
    }
}

/// Limits and threading for an `InferenceEngine`. Scratch buffers are sized once from these.
public struct EngineOptions: Sendable {
    /// Threads for sgemm (OpenBLAS, process-wide) and for the engine's own attention workers.
    public var threads: Int
    /// Most tokens (summed over rows) in one forward pass.
    public var maxBatchTokens: Int
    /// Most rows in one forward pass.
    public var maxRows: Int
    /// Longest row.
    public var maxSeq: Int
    /// Most logit positions a `ForwardResult` holds (last-position logits need one per row).
    /// Streaming with `forward(_:eachLogits:)` has no such limit.
    public var maxLogitRows: Int
    /// Collect per-phase timings into `InferenceEngine.timings` (a few clock reads per layer).
    public var collectTimings: Bool

    public init(threads: Int = ProcessInfo.processInfo.activeProcessorCount, maxBatchTokens: Int = 4096,
                maxRows: Int = 64, maxSeq: Int = 2048, maxLogitRows: Int = 512, collectTimings: Bool = false) {
        self.threads = threads
        self.maxBatchTokens = maxBatchTokens
        self.maxRows = maxRows
        self.maxSeq = maxSeq
        self.maxLogitRows = maxLogitRows
        self.collectTimings = collectTimings
    }

    func validate(for config: ModelConfig) throws {
        guard (1...256).contains(threads) else { throw EngineError.invalidOptions("threads is \(threads), expected 1...256") }
        guard (1...1 << 20).contains(maxBatchTokens) else {
            throw EngineError.invalidOptions("maxBatchTokens is \(maxBatchTokens), expected 1...\(1 << 20)")
        }
        guard (1...maxBatchTokens).contains(maxRows) else {
            throw EngineError.invalidOptions("maxRows is \(maxRows), expected 1...maxBatchTokens (\(maxBatchTokens))")
        }
        guard (1...min(maxBatchTokens, config.contextLength)).contains(maxSeq) else {
            throw EngineError.invalidOptions("maxSeq is \(maxSeq), expected 1...min(maxBatchTokens \(maxBatchTokens), context length \(config.contextLength))")
        }
        guard (maxRows...maxBatchTokens).contains(maxLogitRows) else {
            throw EngineError.invalidOptions("maxLogitRows is \(maxLogitRows), expected maxRows (\(maxRows))...maxBatchTokens (\(maxBatchTokens))")
        }
    }
}
