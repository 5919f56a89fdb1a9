import GGUF

/// What every tokenizer family offers: text ↔ ids, the special ids, and an identity digest.
/// Conformers are immutable and shared across threads; each `encode` call has its own scratch.
/// Build one from a GGUF with `TokenizerLoader.load(gguf:)`, which picks the family.
public protocol TextTokenizer: AnyObject, Sendable {
    /// Number of token ids: valid ids are `0..<vocabSize`.
    var vocabSize: Int { get }
    var bosID: Int32? { get }
    var eosID: Int32? { get }
    var unkID: Int32? { get }
    var padID: Int32? { get }
    /// Whether `encode(addSpecial: true)` prepends `bosID` / appends `eosID`.
    var addsBOS: Bool { get }
    var addsEOS: Bool { get }
    /// The family name, as GGUF's `tokenizer.ggml.model` spells it ("gpt2", "llama").
    var family: String { get }
    /// Hex SHA-256 of everything that determines `encode` and `decode` (see each conformer).
    var sha256: String { get }

    /// Token ids of `text`. `addSpecial` adds bos/eos as the model asks; `parseSpecial`
    /// recognizes control tokens written in the text (see each conformer for the exact rule).
    func encode(_ text: String, addSpecial: Bool, parseSpecial: Bool) -> [Int32]
    /// The exact bytes `ids` stand for (special tokens as their text).
    /// - Throws: `TokenizerError.idOutOfRange` naming the first bad id and its position.
    func decodeBytes(_ ids: [Int32]) throws -> [UInt8]
    /// The token text of `id` in vocabulary spelling, or nil when out of range.
    func piece(for id: Int32) -> String?
    /// The id of a token text in vocabulary spelling, or nil.
    func id(for piece: String) -> Int32?
    /// The GGUF token type of `id` (`BPEVocabulary.TokenType`), or nil when out of range.
    func tokenType(for id: Int32) -> Int32?
    /// Scratch that one thread keeps across calls (warm caches); results equal `encode`.
    func makeSession() -> any EncodingSession
}

extension TextTokenizer {
    /// The text `ids` stand for; bytes that are not valid UTF-8 become U+FFFD.
    /// - Throws: `TokenizerError.idOutOfRange` naming the first bad id and its position.
    public func decode(_ ids: [Int32]) throws -> String {
        String(decoding: try decodeBytes(ids), as: UTF8.self)
    }
}

/// Per-thread encode scratch from `TextTokenizer.makeSession()`. Not thread-safe.
public protocol EncodingSession: AnyObject {
    func encode(_ text: String, addSpecial: Bool, parseSpecial: Bool) -> [Int32]
}

/// Builds the tokenizer a GGUF file describes, choosing the family from
/// `tokenizer.ggml.model` (llama.cpp's `llama_vocab` type switch; swift-transformers'
/// `AutoTokenizer`). The families are a table, so adding one is one entry.
public enum TokenizerLoader {
    /// `tokenizer.ggml.model` value → builder.
    public static let families: [(model: String, description: String, build: @Sendable (GGUFFile) throws -> any TextTokenizer)] = [
        ("gpt2", "byte-level BPE", { try Tokenizer(gguf: $0) }),
        ("llama", "SentencePiece-style, merges by token score", { try SentencePieceTokenizer(gguf: $0) }),
    ]

    /// The tokenizer of `file`.
    /// - Throws: `TokenizerError.unsupportedModel` naming the value and the supported ones, or
    ///   the family's own `TokenizerError` for a malformed vocabulary.
    public static func load(gguf file: GGUFFile) throws -> any TextTokenizer {
        guard let value = file.metadata["tokenizer.ggml.model"] else { throw TokenizerError.missingField("tokenizer.ggml.model") }
        guard let model = value.string else {
            throw TokenizerError.invalidField("tokenizer.ggml.model", reason: "is \(value.typeName), expected string")
        }
        guard let family = families.first(where: { $0.model == model }) else {
            let known = families.map { "'\($0.model)' (\($0.description))" }.joined(separator: ", ")
            throw TokenizerError.unsupportedModel("'\(model)' (tokenizer.ggml.model); supported: \(known)")
        }
        return try family.build(file)
    }
}

extension Tokenizer: TextTokenizer {
    public var family: String { "gpt2" }
    public func makeSession() -> any EncodingSession { TokenizerSession(tokenizer: self) }
}

extension TokenizerSession: EncodingSession {}
