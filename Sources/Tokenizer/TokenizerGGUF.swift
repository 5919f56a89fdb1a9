import GGUF

extension BPEVocabulary {
    /// Reads the tokenizer from GGUF metadata: `tokenizer.ggml.model` must be "gpt2" (byte-level
    /// BPE) and `tokenizer.ggml.pre` one of `PreTokenizerKind` ("gpt2", "smollm"). Uses
    /// `tokens`, `token_type`, `merges`, `bos/eos/unknown/padding_token_id` and
    /// `add_bos_token` / `add_eos_token` (false when absent). Bytes whose byte-level token is
    /// missing are dropped, as HF BPE does without an `unk_token`.
    /// - Throws: `TokenizerError.unsupportedModel` / `.unsupportedPreTokenizer` for another
    ///   model or split rule (never a silent fallback), `.missingField` / `.invalidField` for
    ///   absent or mistyped keys, `.malformedMerge` for a merge that is not "left right".
    public init(gguf file: GGUFFile) throws {
        let keys = GGUFTokenizerKeys(file: file)
        let model = try keys.requiredString("tokenizer.ggml.model")
        guard model == "gpt2" else { throw TokenizerError.unsupportedModel("'\(model)' (tokenizer.ggml.model): byte-level BPE reads only 'gpt2' ('BPE' in tokenizer.json); TokenizerLoader.load(gguf:) picks the family") }
        let pre = try keys.requiredString("tokenizer.ggml.pre")
        guard let kind = PreTokenizerKind(rawValue: pre) else {
            throw TokenizerError.unsupportedPreTokenizer("'\(pre)' (tokenizer.ggml.pre)")
        }
        let tokens = try keys.requiredStringArray("tokenizer.ggml.tokens")
        let types = try keys.tokenTypes()
        let mergeTexts = try keys.requiredStringArray("tokenizer.ggml.merges")
        var merges: [Merge] = []
        merges.reserveCapacity(mergeTexts.count)
        for (i, m) in mergeTexts.enumerated() { merges.append(try Self.parseMerge(m, index: i)) }
        self.init(tokens: tokens, tokenTypes: types, merges: merges, preTokenizer: kind,
                  bosID: try keys.id("tokenizer.ggml.bos_token_id"), eosID: try keys.id("tokenizer.ggml.eos_token_id"),
                  unkID: try keys.id("tokenizer.ggml.unknown_token_id"), padID: try keys.id("tokenizer.ggml.padding_token_id"),
                  addBOS: try keys.flag("tokenizer.ggml.add_bos_token", default: false),
                  addEOS: try keys.flag("tokenizer.ggml.add_eos_token", default: false))
    }
}

extension Tokenizer {
    /// The tokenizer described by a GGUF file's metadata (see `BPEVocabulary.init(gguf:)`).
    /// - Throws: `TokenizerError` naming the offending key, merge or id.
    public convenience init(gguf file: GGUFFile) throws {
        try self.init(vocabulary: BPEVocabulary(gguf: file))
    }
}
