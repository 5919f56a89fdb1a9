import GGUF
import Tokenizer

extension ModelInfo {
    /// INFO's model fields from a GGUF file and its tokenizer (any family: `TokenizerLoader.load(gguf:)`).
    public init(gguf file: GGUFFile, tokenizer: any TextTokenizer) {
        let architecture = file.string("general.architecture") ?? "unknown"
        let hidden = file.int("\(architecture).embedding_length") ?? 0
        self.init(name: file.string("general.name") ?? "unnamed", architecture: architecture,
                  vocabSize: tokenizer.vocabSize, hiddenSize: hidden,
                  bosID: UInt32(clamping: tokenizer.bosID ?? 0), eosID: UInt32(clamping: tokenizer.eosID ?? 0),
                  padID: UInt32(clamping: tokenizer.padID ?? tokenizer.eosID ?? 0), tokenizerSHA256: tokenizer.sha256)
    }
}

/// The longest row a served model accepts: what the miner asked for, or by default the shorter of
/// `defaultMaximum` and the model's trained context (`<arch>.context_length`). Positions past the
/// trained context have no RoPE the model ever saw, so the default never exceeds it.
public struct RowLimit: Equatable, Sendable {
    public static let defaultMaximum = 2048
    public let maxSeq: Int
    /// Set when the default was lowered to the model's context length (worth a log line).
    public let clampedToContext: Int?

    public init(requested: Int?, contextLength: Int?) {
        maxSeq = requested ?? min(Self.defaultMaximum, contextLength ?? Self.defaultMaximum)
        clampedToContext = requested == nil && maxSeq < Self.defaultMaximum ? maxSeq : nil
    }

    /// As `init(requested:contextLength:)`, reading the context length from the file's metadata.
    public init(requested: Int?, gguf file: GGUFFile) {
        self.init(requested: requested,
                  contextLength: file.int("\(file.string("general.architecture") ?? "").context_length"))
    }
}
