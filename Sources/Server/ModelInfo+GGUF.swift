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
