import GGUF

/// A SentencePiece-style vocabulary (`tokenizer.ggml.model = "llama"`) in format-neutral form:
/// tokens with scores and types, before validation. `SentencePieceTokenizer(vocabulary:)`
/// validates and compiles it.
public struct SentencePieceVocabulary: Sendable, Equatable {
    /// Token texts in id order; a space is spelled "▁" (U+2581), bytes `<0xNN>`.
    public var tokens: [String]
    /// Merge priority: of two candidate merges the higher score goes first.
    public var scores: [Float]
    /// One `BPEVocabulary.TokenType` value per token (empty means all normal).
    public var tokenTypes: [Int32]
    public var bosID: Int32?
    public var eosID: Int32?
    public var unkID: Int32?
    public var padID: Int32?
    public var addBOS: Bool
    public var addEOS: Bool
    /// Prepend a space to text that starts the input or follows a special token.
    public var addSpacePrefix: Bool
    /// Ids the file names for fill-in-the-middle roles (llama.cpp marks look-alikes control
    /// only when the role has no id); keys are the role names of `SpecialTokenRules`.
    public var namedRoles: Set<String>

    public init(tokens: [String], scores: [Float], tokenTypes: [Int32] = [], bosID: Int32? = nil, eosID: Int32? = nil,
                unkID: Int32? = nil, padID: Int32? = nil, addBOS: Bool = true, addEOS: Bool = false,
                addSpacePrefix: Bool = true, namedRoles: Set<String> = []) {
        self.tokens = tokens
        self.scores = scores
        self.tokenTypes = tokenTypes
        self.bosID = bosID
        self.eosID = eosID
        self.unkID = unkID
        self.padID = padID
        self.addBOS = addBOS
        self.addEOS = addEOS
        self.addSpacePrefix = addSpacePrefix
        self.namedRoles = namedRoles
    }

    /// Reads the vocabulary from GGUF metadata: `tokenizer.ggml.model` must be "llama". Uses
    /// `tokens`, `scores` (0 when absent, as llama.cpp), `token_type`, the special ids (llama.cpp's
    /// SPM defaults bos 1, eos 2, unk 0 when absent) and `add_bos_token` (default true),
    /// `add_eos_token` (false), `add_space_prefix` (true).
    /// - Throws: `TokenizerError.unsupportedModel` for another model, `.missingField` /
    ///   `.invalidField` for absent or mistyped keys.
    public init(gguf file: GGUFFile) throws {
        let keys = GGUFTokenizerKeys(file: file)
        let model = try keys.requiredString("tokenizer.ggml.model")
        guard model == "llama" else {
            throw TokenizerError.unsupportedModel("'\(model)' (tokenizer.ggml.model): the SentencePiece reader takes only 'llama'")
        }
        let tokens = try keys.requiredStringArray("tokenizer.ggml.tokens")
        var scores = [Float](repeating: 0, count: tokens.count)
        if let raw = file.array("tokenizer.ggml.scores") {
            guard raw.count >= tokens.count else {
                throw TokenizerError.invalidField("tokenizer.ggml.scores", reason: "\(raw.count) scores for \(tokens.count) tokens")
            }
            for i in 0..<tokens.count {
                switch raw[i] {
                case .float32(let f): scores[i] = f
                case .float64(let d): scores[i] = Float(d)
                case let v:
                    guard let n = v.int else {
                        throw TokenizerError.invalidField("tokenizer.ggml.scores", reason: "element \(i) is \(v.typeName), expected a number")
                    }
                    scores[i] = Float(n)
                }
            }
        } else if file.metadata["tokenizer.ggml.scores"] != nil {
            throw keys.absentOrMistyped("tokenizer.ggml.scores", expected: "array of f32")
        }
        var types = try keys.tokenTypes()
        if !types.isEmpty {
            guard types.count >= tokens.count else {
                throw TokenizerError.invalidField("tokenizer.ggml.token_type", reason: "\(types.count) types for \(tokens.count) tokens")
            }
            types = Array(types.prefix(tokens.count))
        }
        var roles: Set<String> = []
        for (role, key) in SpecialTokenRules.roleKeys where file.metadata[key] != nil { roles.insert(role) }
        func id(_ key: String, default fallback: Int32?) throws -> Int32? {
            guard file.metadata[key] != nil else {
                if let fallback, Int(fallback) < tokens.count { return fallback }
                return nil
            }
            return try keys.id(key)
        }
        self.init(tokens: tokens, scores: scores, tokenTypes: types,
                  bosID: try id("tokenizer.ggml.bos_token_id", default: 1),
                  eosID: try id("tokenizer.ggml.eos_token_id", default: 2),
                  unkID: try id("tokenizer.ggml.unknown_token_id", default: 0),
                  padID: try id("tokenizer.ggml.padding_token_id", default: nil),
                  addBOS: try keys.flag("tokenizer.ggml.add_bos_token", default: true),
                  addEOS: try keys.flag("tokenizer.ggml.add_eos_token", default: false),
                  addSpacePrefix: try keys.flag("tokenizer.ggml.add_space_prefix", default: true),
                  namedRoles: roles)
    }
}

/// Typed readers for the `tokenizer.ggml.*` keys both GGUF vocabulary readers use.
struct GGUFTokenizerKeys {
    let file: GGUFFile

    func absentOrMistyped(_ key: String, expected: String) -> TokenizerError {
        guard let value = file.metadata[key] else { return .missingField(key) }
        return .invalidField(key, reason: "is \(value.typeName), expected \(expected)")
    }

    func requiredString(_ key: String) throws -> String {
        guard let s = file.string(key) else { throw absentOrMistyped(key, expected: "string") }
        return s
    }

    func requiredStringArray(_ key: String) throws -> [String] {
        guard let a = file.stringArray(key) else { throw absentOrMistyped(key, expected: "array of strings") }
        return a
    }

    /// `tokenizer.ggml.token_type` as Int32 values, or empty when absent.
    func tokenTypes() throws -> [Int32] {
        let key = "tokenizer.ggml.token_type"
        var types: [Int32] = []
        if let raw = file.array(key) {
            types.reserveCapacity(raw.count)
            for (i, v) in raw.enumerated() {
                guard let t = v.int, let t32 = Int32(exactly: t) else {
                    throw TokenizerError.invalidField(key, reason: "element \(i) is \(v.typeName), expected an integer")
                }
                types.append(t32)
            }
        } else if file.metadata[key] != nil {
            throw absentOrMistyped(key, expected: "array of integers")
        }
        return types
    }

    func id(_ key: String) throws -> Int32? {
        guard let value = file.metadata[key] else { return nil }
        guard let i = value.int, let i32 = Int32(exactly: i) else {
            throw TokenizerError.invalidField(key, reason: "\(value.typeName) value is not a token id")
        }
        return i32
    }

    func flag(_ key: String, default fallback: Bool) throws -> Bool {
        guard let value = file.metadata[key] else { return fallback }
        guard let b = value.bool else { throw TokenizerError.invalidField(key, reason: "is \(value.typeName), expected bool") }
        return b
    }
}
