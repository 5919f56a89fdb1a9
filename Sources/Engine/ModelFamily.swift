/// How one model family arranges the shared blocks of the forward pass (`rmsNorm`, `rope`,
/// `attend(window:)`, `ffn`). The forward pass reads these fields and never the family's name, so
/// a new family is a new entry in `ModelFamily.all`.
///
/// Every field was checked against llama.cpp's source as vendored in llama-cpp-python 0.3.36:
/// `src/models/{llama,qwen2,qwen3,gemma3}.cpp`, `llama_model_rope_type` in `src/llama-model.cpp`,
/// and `set_swa_pattern` in `src/llama-hparams.cpp` (docs/ENGINE.md has the details).
public struct ModelFamily: Sendable, Equatable {
    /// The gated feed-forward activation: `act(gate) ⊙ up`.
    public enum Activation: Sendable, Equatable {
        /// x·σ(x) (llama, qwen).
        case silu
        /// 0.5·x·(1 + tanh(√(2/π)·(x + 0.044715·x³))) (gemma).
        case geluTanh
    }

    /// Which elements of a head RoPE rotates together.
    public enum RopeStyle: Sendable, Equatable {
        /// llama.cpp's NORM: adjacent pairs (x[2i], x[2i+1]).
        case adjacentPairs
        /// llama.cpp's NEOX: rotate-half, x[i] pairs with x[i + headDim/2].
        case rotateHalf
    }

    /// Whether a family's tensor or key may, must or must not be there.
    public enum Presence: Sendable, Equatable { case absent, optional, required }

    /// Sliding-window attention on "local" layers, full attention on every `pattern`-th.
    public struct SlidingWindow: Sendable, Equatable {
        /// Layer il is local when il % pattern < pattern − 1 (llama.cpp `set_swa_pattern`),
        /// unless `attention.sliding_window_pattern` says otherwise.
        public var defaultPattern: Int
        /// Local layers' RoPE base: this key (after the architecture prefix), else the default.
        public var localRopeBaseKey: String
        public var localRopeBaseDefault: Double
    }

    /// `general.architecture` values this description covers.
    public var architectures: [String]
    public var activation: Activation
    public var rope: RopeStyle
    /// `blk.N.attn_{q,k,v}.bias`. llama.cpp loads them whenever present (`create_tensor_qkv`).
    public var qkvBias: Presence
    /// RMSNorm over each head of q and of k before RoPE (`attn_q_norm`, `attn_k_norm`).
    public var perHeadQKNorm: Bool
    /// RMSNorm of each block's output before it joins the residual (`post_attention_norm`, `post_ffw_norm`).
    public var postBlockNorms: Bool
    /// Token embeddings are multiplied by √hidden.
    public var scalesEmbedding: Bool
    /// `attention.key_length` (the head dimension; hidden/heads when absent and allowed to be).
    public var keyLength: Presence
    public var slidingWindow: SlidingWindow?
    /// Key (after the architecture prefix) of the final-logit soft cap c: logits ← c·tanh(logits/c).
    public var logitSoftcapKey: String?
    /// Block count at which the attention scale is 1/√(hidden/heads) instead of 1/√headDim
    /// (gemma3 27B, following gemma_pytorch, in `llama_model_gemma3::load_arch_hparams`).
    public var hiddenPerHeadScaleAtLayerCount: Int?

    public static let llama = ModelFamily(
        architectures: ["llama", "mistral"], activation: .silu, rope: .adjacentPairs, qkvBias: .optional,
        perHeadQKNorm: false, postBlockNorms: false, scalesEmbedding: false, keyLength: .optional,
        slidingWindow: nil, logitSoftcapKey: nil, hiddenPerHeadScaleAtLayerCount: nil)

    public static let qwen2 = ModelFamily(
        architectures: ["qwen2"], activation: .silu, rope: .rotateHalf, qkvBias: .required,
        perHeadQKNorm: false, postBlockNorms: false, scalesEmbedding: false, keyLength: .optional,
        slidingWindow: nil, logitSoftcapKey: nil, hiddenPerHeadScaleAtLayerCount: nil)

    public static let qwen3 = ModelFamily(
        architectures: ["qwen3"], activation: .silu, rope: .rotateHalf, qkvBias: .optional,
        perHeadQKNorm: true, postBlockNorms: false, scalesEmbedding: false, keyLength: .optional,
        slidingWindow: nil, logitSoftcapKey: nil, hiddenPerHeadScaleAtLayerCount: nil)

    public static let gemma3 = ModelFamily(
        architectures: ["gemma3"], activation: .geluTanh, rope: .rotateHalf, qkvBias: .optional,
        perHeadQKNorm: true, postBlockNorms: true, scalesEmbedding: true, keyLength: .required,
        slidingWindow: SlidingWindow(defaultPattern: 6, localRopeBaseKey: "rope.freq_base_swa", localRopeBaseDefault: 10_000),
        logitSoftcapKey: "final_logit_softcapping", hiddenPerHeadScaleAtLayerCount: 62)

    /// Every family the engine runs, in the order error messages list them.
    public static let all: [ModelFamily] = [.llama, .qwen2, .qwen3, .gemma3]

    /// Every supported `general.architecture` value.
    public static var supportedArchitectures: [String] { all.flatMap(\.architectures) }

    /// The family for a `general.architecture` value, or nil.
    public static func named(_ architecture: String) -> ModelFamily? {
        all.first { $0.architectures.contains(architecture) }
    }
}

/// What one layer's attention looks like once the family is applied to the file's metadata.
public struct LayerAttention: Sendable, Equatable {
    /// Keys further back than this many positions are masked (pos_q − pos_k ≥ window); nil is full causal.
    public var window: Int?
    /// RoPE frequency base of this layer.
    public var ropeBase: Double
}

extension ModelConfig {
    /// One line saying how the engine will run this model, e.g. for `axon inspect`.
    public var summary: String {
        var parts = ["\(family.activation == .silu ? "SiLU" : "GELU (tanh)") gated FFN",
                     family.rope == .adjacentPairs ? "RoPE on adjacent pairs" : "rotate-half RoPE"]
        if hasQKVBias { parts.append("q/k/v biases") }
        if family.perHeadQKNorm { parts.append("per-head q/k RMSNorm") }
        if family.postBlockNorms { parts.append("post-attention and post-FFN norms") }
        if family.scalesEmbedding { parts.append("embeddings × √\(hiddenSize)") }
        parts.append("head_dim \(headDim), \(headCount) heads / \(kvHeadCount) KV")
        let local = layers.filter { $0.window != nil }
        if let first = local.first, let window = first.window {
            parts.append("\(local.count) local layers (window \(window), RoPE base \(first.ropeBase.formatted())) and \(layerCount - local.count) global (base \(ropeFreqBase.formatted()))")
        } else {
            parts.append("\(layerCount) layers, RoPE base \(ropeFreqBase.formatted())")
        }
        if let logitSoftcap { parts.append("logits soft-capped at \(logitSoftcap.formatted())") }
        parts.append(tiedOutput ? "tied head" : "separate head")
        return "\(architecture) family: " + parts.joined(separator: ", ")
    }
}
