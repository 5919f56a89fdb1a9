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
        guard let model = file.string("tokenizer.ggml.model") else {
            throw Self.absentOrMistyped(file, "tokenizer.ggml.model", expected: "string")
        }
        guard model == "gpt2" else { throw TokenizerError.unsupportedModel("'\(model)' (tokenizer.ggml.model)") }
        guard let pre = file.string("tokenizer.ggml.pre") else {
            throw Self.absentOrMistyped(file, "tokenizer.ggml.pre", expected: "string")
        }
        guard let kind = PreTokenizerKind(rawValue: pre) else {
            throw TokenizerError.unsupportedPreTokenizer("'\(pre)' (tokenizer.ggml.pre)")
        }
        guard let tokens = file.stringArray("tokenizer.ggml.tokens") else {
            throw Self.absentOrMistyped(file, "tokenizer.ggml.tokens", expected: "array of strings")
        }
        var types: [Int32] = []
        if let raw = file.array("tokenizer.ggml.token_type") {
            types.reserveCapacity(raw.count)
            for (i, v) in raw.enumerated() {
                guard let t = v.int, let t32 = Int32(exactly: t) else {
                    throw TokenizerError.invalidField("tokenizer.ggml.token_type", reason: "element \(i) is \(v.typeName), expected an integer")
                }
                types.append(t32)
            }
        } else if file.metadata["tokenizer.ggml.token_type"] != nil {
            throw Self.absentOrMistyped(file, "tokenizer.ggml.token_type", expected: "array of integers")
        }
        guard let mergeTexts = file.stringArray("tokenizer.ggml.merges") else {
            throw Self.absentOrMistyped(file, "tokenizer.ggml.merges", expected: "array of strings")
        }
        var merges: [Merge] = []
        merges.reserveCapacity(mergeTexts.count)
        for (i, m) in mergeTexts.enumerated() { merges.append(try Self.parseMerge(m, index: i)) }

        func id(_ key: String) throws -> Int32? {
            guard let value = file.metadata[key] else { return nil }
            guard let i = value.int, let i32 = Int32(exactly: i) else {
                throw TokenizerError.invalidField(key, reason: "\(value.typeName) value is not a token id")
            }
            return i32
        }
        func flag(_ key: String) throws -> Bool {
            guard let value = file.metadata[key] else { return false }
            guard let b = value.bool else { throw TokenizerError.invalidField(key, reason: "is \(value.typeName), expected bool") }
            return b
        }
        self.init(tokens: tokens, tokenTypes: types, merges: merges, preTokenizer: kind,
                  bosID: try id("tokenizer.ggml.bos_token_id"), eosID: try id("tokenizer.ggml.eos_token_id"),
                  unkID: try id("tokenizer.ggml.unknown_token_id"), padID: try id("tokenizer.ggml.padding_token_id"),
                  addBOS: try flag("tokenizer.ggml.add_bos_token"), addEOS: try flag("tokenizer.ggml.add_eos_token"))
    }

    private static func absentOrMistyped(_ file: GGUFFile, _ key: String, expected: String) -> TokenizerError {
        guard let value = file.metadata[key] else { return .missingField(key) }
        return .invalidField(key, reason: "is \(value.typeName), expected \(expected)")
    }
}

extension Tokenizer {
    /// The tokenizer described by a GGUF file's metadata (see `BPEVocabulary.init(gguf:)`).
    /// - Throws: `TokenizerError` naming the offending key, merge or id.
    public convenience init(gguf file: GGUFFile) throws {
        try self.init(vocabulary: BPEVocabulary(gguf: file))
    }
}
