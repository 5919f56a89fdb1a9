import Foundation
import GGUF

/// Hyperparameters of a model, read from its metadata through its family's description and
/// checked at load, with every tensor's shape and type.
public struct ModelConfig: Sendable, Equatable {
    /// `general.architecture`, e.g. "llama".
    public var architecture: String
    /// How this architecture arranges the forward pass.
    public var family: ModelFamily
    public var vocabSize: Int
    /// Width of the residual stream (`embedding_length`).
    public var hiddenSize: Int
    public var layerCount: Int
    /// Query heads.
    public var headCount: Int
    /// Key/value heads (grouped-query attention when fewer than `headCount`).
    public var kvHeadCount: Int
    /// `attention.key_length` when present, else hidden/heads.
    public var headDim: Int
    /// Inner width of the gated feed-forward block.
    public var ffnSize: Int
    public var contextLength: Int
    /// `rope.freq_base`: the base of global (full-attention) layers.
    public var ropeFreqBase: Double
    public var rmsEps: Double
    /// True when there is no `output.weight` and the LM head is `token_embd`.
    public var tiedOutput: Bool
    /// The GGUF tensor the LM head reads.
    public var headTensor: String { tiedOutput ? "token_embd.weight" : "output.weight" }
    /// True when the file has q, k and v biases.
    public var hasQKVBias: Bool
    /// Per layer: its attention window and RoPE base.
    public var layers: [LayerAttention]
    /// Multiplies q·kᵀ before the softmax.
    public var attentionScale: Double
    /// Final-logit soft cap, when the file sets one.
    public var logitSoftcap: Double?

    /// Width of the fused Q|K|V projection output per token.
    var qkvWidth: Int { (headCount + 2 * kvHeadCount) * headDim }
    var kvWidth: Int { kvHeadCount * headDim }
    /// Width of the attention output (all query heads).
    var attentionWidth: Int { headCount * headDim }

    /// Reads and validates the hyperparameters and every tensor's shape and type.
    /// - Throws: `EngineError` naming the missing or inconsistent key or tensor.
    public init(source: ModelSource) throws {
        guard let arch = source.metadataString("general.architecture") else {
            throw EngineError.missingHyperparameter(key: "general.architecture")
        }
        guard let family = ModelFamily.named(arch) else { throw EngineError.unsupportedArchitecture(arch) }
        func optionalInt(_ name: String) throws -> Int? {
            let key = "\(arch).\(name)"
            guard let v = source.metadataInt(key) else { return nil }
            guard v > 0, v <= 1 << 24 else {
                throw EngineError.invalidHyperparameter(key: key, value: "\(v)", expected: "a positive count below 2^24")
            }
            return v
        }
        func int(_ name: String) throws -> Int {
            guard let v = try optionalInt(name) else { throw EngineError.missingHyperparameter(key: "\(arch).\(name)") }
            return v
        }
        func base(_ name: String, default value: Double) throws -> Double {
            let key = "\(arch).\(name)"
            let b = source.metadataDouble(key) ?? value
            guard b.isFinite, b > 1 else {
                throw EngineError.invalidHyperparameter(key: key, value: "\(b)", expected: "a finite value above 1")
            }
            return b
        }
        architecture = arch
        self.family = family
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
        let keyLengthKey = "\(arch).attention.key_length"
        if let keyLength = try optionalInt("attention.key_length") {
            headDim = keyLength
        } else if family.keyLength == .required {
            throw EngineError.missingHyperparameter(key: keyLengthKey)
        } else {
            guard hiddenSize % headCount == 0 else {
                throw EngineError.invalidHyperparameter(key: "\(arch).attention.head_count", value: "\(headCount)",
                                                        expected: "a divisor of embedding_length \(hiddenSize) (or an attention.key_length key)")
            }
            headDim = hiddenSize / headCount
        }
        let valueLengthKey = "\(arch).attention.value_length"
        if let valueLength = source.metadataInt(valueLengthKey), valueLength != headDim {
            throw EngineError.invalidHyperparameter(key: valueLengthKey, value: "\(valueLength)",
                                                    expected: "the key length \(headDim)")
        }
        guard headDim % 2 == 0 else {
            throw EngineError.invalidHyperparameter(key: keyLengthKey, value: "\(headDim)", expected: "an even head dimension")
        }
        let ropeDimKey = "\(arch).rope.dimension_count"
        if let ropeDim = source.metadataInt(ropeDimKey), ropeDim != headDim {
            throw EngineError.invalidHyperparameter(key: ropeDimKey, value: "\(ropeDim)",
                                                    expected: "the head dimension \(headDim) (partial RoPE is not supported)")
        }
        let scalingKey = "\(arch).rope.scaling.type"
        if let scaling = source.metadataString(scalingKey), scaling != "none" {
            throw EngineError.invalidHyperparameter(key: scalingKey, value: scaling, expected: "none (RoPE scaling is not supported)")
        }
        ropeFreqBase = try base("rope.freq_base", default: 10_000)
        let epsKey = "\(arch).attention.layer_norm_rms_epsilon"
        guard let eps = source.metadataDouble(epsKey) else { throw EngineError.missingHyperparameter(key: epsKey) }
        guard eps.isFinite, eps > 0, eps < 1 else {
            throw EngineError.invalidHyperparameter(key: epsKey, value: "\(eps)", expected: "a small positive value")
        }
        rmsEps = eps

        // Layer kinds: full causal attention at the global base, or a window at the local base.
        var layers = Array(repeating: LayerAttention(window: nil, ropeBase: ropeFreqBase), count: layerCount)
        if let sliding = family.slidingWindow {
            let windowKey = "\(arch).attention.sliding_window"
            guard let window = source.metadataInt(windowKey) else { throw EngineError.missingHyperparameter(key: windowKey) }
            guard window > 0, window <= 1 << 24 else {
                throw EngineError.invalidHyperparameter(key: windowKey, value: "\(window)", expected: "a positive number of positions")
            }
            let patternKey = "\(arch).attention.sliding_window_pattern"
            let pattern = source.metadataInt(patternKey) ?? sliding.defaultPattern
            guard pattern > 0, pattern <= 1 << 24 else {
                throw EngineError.invalidHyperparameter(key: patternKey, value: "\(pattern)", expected: "a positive layer period")
            }
            let localBase = try base(sliding.localRopeBaseKey, default: sliding.localRopeBaseDefault)
            for l in 0..<layerCount where l % pattern < pattern - 1 {
                layers[l] = LayerAttention(window: window, ropeBase: localBase)
            }
        }
        self.layers = layers
        attentionScale = 1 / Double(family.hiddenPerHeadScaleAtLayerCount == layerCount ? hiddenSize / headCount : headDim).squareRoot()
        if let key = family.logitSoftcapKey.map({ "\(arch).\($0)" }), let cap = source.metadataDouble(key) {
            guard cap.isFinite, cap > 0 else {
                throw EngineError.invalidHyperparameter(key: key, value: "\(cap)", expected: "a positive cap")
            }
            logitSoftcap = cap
        } else {
            logitSoftcap = nil
        }

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
        switch family.qkvBias {
        case .absent: hasQKVBias = false
        case .required: hasQKVBias = true
        case .optional: hasQKVBias = source.tensorDims("blk.0.attn_q.bias") != nil
        }
        try Self.checkTensors(self, source: source)
    }

    /// The dims every tensor must have, `ne[0]` first.
    func expectedTensors() -> [(name: String, dims: [Int])] {
        var list: [(String, [Int])] = [("token_embd.weight", [hiddenSize, vocabSize]), ("output_norm.weight", [hiddenSize])]
        if !tiedOutput { list.append(("output.weight", [hiddenSize, vocabSize])) }
        for l in 0..<layerCount {
            let p = "blk.\(l)."
            list += [
                (p + "attn_norm.weight", [hiddenSize]),
                (p + "attn_q.weight", [hiddenSize, attentionWidth]),
                (p + "attn_k.weight", [hiddenSize, kvWidth]),
                (p + "attn_v.weight", [hiddenSize, kvWidth]),
                (p + "attn_output.weight", [attentionWidth, hiddenSize]),
                (p + "ffn_norm.weight", [hiddenSize]),
                (p + "ffn_gate.weight", [hiddenSize, ffnSize]),
                (p + "ffn_up.weight", [hiddenSize, ffnSize]),
                (p + "ffn_down.weight", [ffnSize, hiddenSize]),
            ]
            if hasQKVBias {
                list += [(p + "attn_q.bias", [attentionWidth]), (p + "attn_k.bias", [kvWidth]), (p + "attn_v.bias", [kvWidth])]
            }
            if family.perHeadQKNorm { list += [(p + "attn_q_norm.weight", [headDim]), (p + "attn_k_norm.weight", [headDim])] }
            if family.postBlockNorms {
                list += [(p + "post_attention_norm.weight", [hiddenSize]), (p + "post_ffw_norm.weight", [hiddenSize])]
            }
        }
        return list
    }

    /// Every expected tensor must be present, have its dims, and have a type the GGUF reader can
    /// dequantize: checked before anything is allocated.
    private static func checkTensors(_ config: ModelConfig, source: ModelSource) throws {
        for (name, expected) in config.expectedTensors() {
            guard let dims = source.tensorDims(name) else { throw EngineError.missingTensor(name: name) }
            // Trailing 1s are allowed (some writers store a vector as {n, 1}).
            var trimmed = dims
            while trimmed.count > expected.count, trimmed.last == 1 { trimmed.removeLast() }
            guard trimmed == expected else {
                throw EngineError.tensorShapeMismatch(name: name, dims: dims, expected: expected)
            }
            if let type = source.tensorType(name), !type.isDequantizable {
                throw EngineError.tensorLoadFailed(name: name, reason: "\(GGUFError.unsupportedDequantization(type: type))")
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
    /// Most logit positions a `ForwardResult` holds (last-position logits need one per row, a
    /// `.positions` selection one per index).
    /// Streaming with `forward(_:eachLogits:)` has no such limit.
    public var maxLogitRows: Int
    /// Collect per-phase timings into `InferenceEngine.timings` (a few clock reads per layer).
    public var collectTimings: Bool
    /// Bytes of the KV cache pool for incremental decoding (reserved at load, touched as blocks are
    /// first used). 0 disables the cache: every cached forward pass is then `kvCacheFull`.
    public var kvCacheBytes: Int
    /// Most live sequences (forks included) in the KV cache, up to 4,096 (each slot reserves a block
    /// table of layers × ⌈maxSeq / 16⌉ entries).
    public var maxSequences: Int
    /// The weights a cached forward pass of at most `decodeRowLimit` tokens reads (a decode step):
    /// f32 is the exact reference path; f16 and int8 are copies made at load (ProjectionWeights).
    /// Prefill and every cache-less pass stay on the f32 weights through sgemm.
    public var decodePrecision: DecodePrecision
    /// The KV cache's elements: f32 (the default, exact) or f16 (half the bytes decode attention reads).
    public var kvCachePrecision: KVCachePrecision
    /// Most tokens in a cached forward pass that still reads the decode weights; larger passes
    /// (prefill chunks) use f32 sgemm, which wins once the weights are reused across enough rows.
    public var decodeRowLimit: Int
    /// The projections' precision on prefill (EnginePrecision). At int8 the engine keeps no f32
    /// projections: decode steps read the same per-row int8 copy (so `decodePrecision` chooses only
    /// the LM head's format, and f16 is refused).
    public var precision: EnginePrecision
    /// At int8: the token ids of the smoothing calibration pass at load (`Int8Calibration`: the
    /// caller tokenizes `Int8Calibration.text`). Empty: no smoothing (naive W8A8).
    public var calibrationTokens: [Int32]
    /// The library of the f32 path's products (`F32GEMM`); nil: `F32GEMM.preferred`.
    public var f32GEMM: F32GEMM?

    public init(threads: Int = ProcessInfo.processInfo.activeProcessorCount, maxBatchTokens: Int = 4096,
                maxRows: Int = 64, maxSeq: Int = 2048, maxLogitRows: Int = 512, collectTimings: Bool = false,
                kvCacheBytes: Int = 256 << 20, maxSequences: Int = 256, decodePrecision: DecodePrecision = .f32,
                decodeRowLimit: Int = 32, precision: EnginePrecision = .f32, calibrationTokens: [Int32] = [],
                kvCachePrecision: KVCachePrecision = .f32, f32GEMM: F32GEMM? = nil) {
        self.threads = threads
        self.maxBatchTokens = maxBatchTokens
        self.maxRows = maxRows
        self.maxSeq = maxSeq
        self.maxLogitRows = maxLogitRows
        self.collectTimings = collectTimings
        self.kvCacheBytes = kvCacheBytes
        self.maxSequences = maxSequences
        self.decodePrecision = decodePrecision
        self.kvCachePrecision = kvCachePrecision
        self.decodeRowLimit = decodeRowLimit
        self.precision = precision
        self.calibrationTokens = calibrationTokens
        self.f32GEMM = f32GEMM
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
        let blockBytes = KVCache.bytesPerBlock(config, kvCachePrecision)
        let maxCacheBytes = min(1 << 40, Int(Int32.max) * blockBytes)
        guard (0...maxCacheBytes).contains(kvCacheBytes) else {
            throw EngineError.invalidOptions("kvCacheBytes is \(kvCacheBytes), expected 0...\(maxCacheBytes)")
        }
        guard decodeRowLimit >= 0 else {
            throw EngineError.invalidOptions("decodeRowLimit is \(decodeRowLimit), expected 0 or more")
        }
        guard (1...4096).contains(maxSequences) else {
            throw EngineError.invalidOptions("maxSequences is \(maxSequences), expected 1...4096")
        }
        if precision == .int8 {
            guard EnginePrecision.int8Available else {
                throw EngineError.invalidOptions("precision int8 needs AVX2 (x86-64-v3); use precision f32")
            }
            guard calibrationTokens.count <= Int8Calibration.maxTokens else {
                throw EngineError.invalidOptions("calibrationTokens holds \(calibrationTokens.count) ids, expected at most \(Int8Calibration.maxTokens)")
            }
            guard calibrationTokens.count <= config.contextLength else {
                throw EngineError.invalidOptions("calibrationTokens holds \(calibrationTokens.count) ids, over the context length \(config.contextLength)")
            }
            guard decodePrecision != .f16 else {
                throw EngineError.invalidOptions("decodePrecision f16 with precision int8: decode reads the int8 projections; use decodePrecision f32 or int8 (the LM head's format)")
            }
        }
    }
}
