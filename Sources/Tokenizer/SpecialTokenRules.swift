/// llama.cpp's token attributes (`llama_token_attr`), the bits that steer tokenization and
/// decoding, and the load-time fix-ups `llama_vocab::impl::load` applies by token text.
/// The fix-ups are data, copied from llama.cpp (as vendored in llama-cpp-python 0.3.36).
enum TokenAttribute {
    static let unknown: UInt32 = 1 << 0
    static let normal: UInt32 = 1 << 2
    static let control: UInt32 = 1 << 3
    static let userDefined: UInt32 = 1 << 4
    static let byte: UInt32 = 1 << 5

    /// GGUF `token_type` → attribute, as llama.cpp maps it (unused and undefined types get no
    /// bit here: they are neither matched in text nor rendered).
    static func fromTokenType(_ type: Int32) -> UInt32 {
        switch type {
        case BPEVocabulary.TokenType.normal: return normal
        case BPEVocabulary.TokenType.unknown: return unknown
        case BPEVocabulary.TokenType.control: return control
        case BPEVocabulary.TokenType.userDefined: return userDefined
        case BPEVocabulary.TokenType.byte: return byte
        default: return 0
        }
    }
}

enum SpecialTokenRules {
    /// Texts llama.cpp treats as end-of-generation whatever their type: it adds the control
    /// attribute to each (its `special_eog_ids` loop).
    static let endOfGeneration: Set<String> = [
        "<|eot_id|>", "<|im_end|>", "<|end|>", "<|return|>", "<|call|>", "<|flush|>", "<|calls|>",
        "<end_of_turn>", "<|endoftext|>", "</s>", "<|eom_id|>", "<EOT>", "_<EOT>", "[EOT]", "[EOS]",
        "<|end_of_text|>", "<end_of_utterance>", "<eos>", "<turn|>", "<|tool_response>",
        "<｜end▁of▁sentence｜>", "[e~[",
    ]

    /// Fill-in-the-middle look-alikes: llama.cpp marks them control when the file gives the role
    /// no id. (llama.cpp marks only the first it meets in hash order; vocabularies with two
    /// look-alikes of one role are not known to exist.)
    static let fillInTheMiddle: [(role: String, texts: Set<String>)] = [
        ("fim_pre", ["<|fim_prefix|>", "<fim-prefix>", "<fim_prefix>", "<｜fim▁begin｜>", "<PRE>", "▁<PRE>", "<|code_prefix|>", "<|prefix|>"]),
        ("fim_suf", ["<|fim_suffix|>", "<fim-suffix>", "<fim_suffix>", "<｜fim▁hole｜>", "<SUF>", "▁<SUF>", "<|code_suffix|>", "<|suffix|>"]),
        ("fim_mid", ["<|fim_middle|>", "<fim-middle>", "<fim_middle>", "<｜fim▁end｜>", "<MID>", "▁<MID>", "<|code_middle|>", "<|middle|>"]),
        ("fim_pad", ["<|fim_pad|>", "<fim-pad>", "<fim_pad>", "<PAD>", "[PAD]"]),
        ("fim_rep", ["<|fim_repo|>", "<|repo_name|>", "<fim-repo>", "<REPO>", "<reponame>"]),
        ("fim_sep", ["<|file_sep|>"]),
    ]

    /// The GGUF key that names each role's id.
    static let roleKeys: [(role: String, key: String)] = [
        ("fim_pre", "tokenizer.ggml.fim_pre_token_id"), ("fim_suf", "tokenizer.ggml.fim_suf_token_id"),
        ("fim_mid", "tokenizer.ggml.fim_mid_token_id"), ("fim_pad", "tokenizer.ggml.fim_pad_token_id"),
        ("fim_rep", "tokenizer.ggml.fim_rep_token_id"), ("fim_sep", "tokenizer.ggml.fim_sep_token_id"),
    ]

    /// gpt-oss: always rendered, so llama.cpp makes these exactly user-defined.
    static let forcedUserDefined: Set<String> = ["<|channel|>", "<|message|>", "<|start|>", "<|constrain|>"]

    /// The effective attribute of each token.
    static func attributes(tokens: [String], types: [Int32], namedRoles: Set<String>) -> [UInt32] {
        var attrs = types.map(TokenAttribute.fromTokenType)
        let fim = fillInTheMiddle.filter { !namedRoles.contains($0.role) }.reduce(into: Set<String>()) { $0.formUnion($1.texts) }
        for (i, t) in tokens.enumerated() {
            if endOfGeneration.contains(t) || fim.contains(t) { attrs[i] |= TokenAttribute.control }
            if forcedUserDefined.contains(t) { attrs[i] = TokenAttribute.userDefined }
        }
        return attrs
    }
}
