import GGUF

/// A SentencePiece-style tokenizer (GGUF `tokenizer.ggml.model = "llama"`: Llama 1/2, Gemma,
/// Mistral v1), token-for-token identical to llama.cpp's `llm_tokenizer_spm` as vendored in
/// llama-cpp-python 0.3.36.
///
/// `encode(text, addSpecial:, parseSpecial:)` is llama.cpp's `llama_tokenize(text, add_special,
/// parse_special)`:
///  1. special tokens are split out of the text first (`SpecialTokenPartition`): user-defined
///     ones always (Gemma's "\n", space and tab runs, HTML tags), control and unknown ones only
///     with `parseSpecial`;
///  2. each remaining piece gets a leading space if `addSpacePrefix` and it starts the text or
///     follows a special token, spaces become "▁" (U+2581), and it is split into characters;
///  3. adjacent symbols whose concatenation is a token merge, highest token score first
///     (leftmost on ties), until no pair is a token;
///  4. a symbol that is not a token becomes its bytes' `<0xNN>` tokens.
/// bos/eos are added as `add_bos_token` / `add_eos_token` say.
///
/// Speed comes from two facts, not from changing the algorithm: merges never cross a "▁" whose
/// preceding character never precedes "▁" inside any token (checked per vocabulary at load), so
/// the text splits there into independent chunks; and equal chunks give equal ids, so chunks
/// are cached per call (or per `EncodingSession`).
///
/// `decodeBytes` is llama.cpp's `llama_detokenize(remove_special: false, unparse_special: true)`:
/// "▁" becomes a space, byte tokens their byte, control and user-defined tokens their text, and
/// with `addSpacePrefix` the first token loses one leading space.
public final class SentencePieceTokenizer: TextTokenizer {
    public let vocabSize: Int
    public let bosID: Int32?
    public let eosID: Int32?
    public let unkID: Int32?
    public let padID: Int32?
    public let addsBOS: Bool
    public let addsEOS: Bool
    public let addsSpacePrefix: Bool
    public var family: String { "llama" }

    /// Hex SHA-256 of the bytes below (integers little-endian; strings as a u32 byte length and
    /// their UTF-8 bytes):
    ///  1. the string "axon-tokenizer-v1", then "llama";
    ///  2. u32 token count, then per token in id order: its text, its u32 effective attribute
    ///     (llama.cpp `llama_token_attr` bits unknown 1, normal 4, control 8, user-defined 16,
    ///     byte 32, after llama.cpp's load-time fix-ups) and its f32 score's bits;
    ///  3. i32 id prepended by `addSpecial` (or -1), i32 id appended (or -1), i32 id used for
    ///     a byte without a `<0xNN>` token (unk, or -1: dropped), one byte add_space_prefix.
    /// scripts/reference/tokenizer_spm_fixtures.py computes it from llama.cpp's attributes.
    public let sha256: String

    private let tokens: [String]
    private let tokenTypes: [Int32]
    let model: SentencePieceModel
    /// Decoded bytes of every token; token i is `pieceBytes[pieceOffsets[i]..<pieceOffsets[i+1]]`.
    private let pieceBytes: [UInt8]
    private let pieceOffsets: [Int]

    /// Validates and compiles a vocabulary.
    /// - Throws: `TokenizerError.malformedVocabulary` for an empty vocabulary, mismatched score
    ///   or type counts, or an out-of-range special id.
    public init(vocabulary v: SentencePieceVocabulary) throws {
        let n = v.tokens.count
        guard n > 0 else { throw TokenizerError.malformedVocabulary("the token list is empty") }
        guard n < Int(Int32.max) else { throw TokenizerError.malformedVocabulary("\(n) tokens exceed the Int32 id range") }
        guard v.scores.count == n else { throw TokenizerError.malformedVocabulary("\(v.scores.count) scores for \(n) tokens") }
        let types = v.tokenTypes.isEmpty ? [Int32](repeating: BPEVocabulary.TokenType.normal, count: n) : v.tokenTypes
        guard types.count == n else { throw TokenizerError.malformedVocabulary("\(types.count) token types for \(n) tokens") }
        for (name, id) in [("bos", v.bosID), ("eos", v.eosID), ("unk", v.unkID), ("pad", v.padID)] {
            if let id, id < 0 || Int(id) >= n {
                throw TokenizerError.malformedVocabulary("\(name) id \(id) is outside 0..<\(n)")
            }
        }
        if v.addBOS && v.bosID == nil { throw TokenizerError.malformedVocabulary("add_bos is set but there is no bos id") }
        if v.addEOS && v.eosID == nil { throw TokenizerError.malformedVocabulary("add_eos is set but there is no eos id") }

        // llama.cpp renames empty tokens so every text is a distinct non-empty key.
        let texts = v.tokens.enumerated().map { $0.element.isEmpty ? "[EMPTY_\($0.offset)]" : $0.element }
        let attrs = SpecialTokenRules.attributes(tokens: texts, types: types, namedRoles: v.namedRoles)
        let textBytes = texts.map { Array($0.utf8) }

        var specials: [(text: [UInt8], id: Int32, always: Bool)] = []
        var bytes: [UInt8] = []
        var offsets: [Int] = [0]
        offsets.reserveCapacity(n + 1)
        for i in 0..<n {
            let a = attrs[i]
            if a & (TokenAttribute.control | TokenAttribute.userDefined | TokenAttribute.unknown) != 0 {
                specials.append((textBytes[i], Int32(i), a & (TokenAttribute.control | TokenAttribute.unknown) == 0))
                bytes.append(contentsOf: textBytes[i])
            } else if a & TokenAttribute.normal != 0 {
                bytes.append(contentsOf: Self.unescapingMarker(textBytes[i]))
            } else if a & TokenAttribute.byte != 0 {
                bytes.append(Self.byteValue(textBytes[i]))
            }
            offsets.append(bytes.count)
        }

        vocabSize = n
        bosID = v.bosID
        eosID = v.eosID
        unkID = v.unkID
        padID = v.padID
        addsBOS = v.addBOS
        addsEOS = v.addEOS
        addsSpacePrefix = v.addSpacePrefix
        tokens = v.tokens
        tokenTypes = types
        pieceBytes = bytes
        pieceOffsets = offsets
        model = SentencePieceModel(tokens: textBytes, scores: v.scores, unknownID: v.unkID,
                                   partition: SpecialTokenPartition(specials), addSpacePrefix: v.addSpacePrefix)

        var h = SHA256()
        func u32(_ x: UInt32) { h.update([UInt8(x & 0xFF), UInt8(x >> 8 & 0xFF), UInt8(x >> 16 & 0xFF), UInt8(x >> 24)]) }
        func str(_ s: [UInt8]) { u32(UInt32(s.count)); h.update(s) }
        str(Array("axon-tokenizer-v1".utf8))
        str(Array("llama".utf8))
        u32(UInt32(n))
        for i in 0..<n {
            str(textBytes[i])
            u32(attrs[i])
            u32(v.scores[i].bitPattern)
        }
        u32(UInt32(bitPattern: v.addBOS ? (v.bosID ?? -1) : -1))
        u32(UInt32(bitPattern: v.addEOS ? (v.eosID ?? -1) : -1))
        u32(UInt32(bitPattern: v.unkID ?? -1))
        h.update([v.addSpacePrefix ? 1 : 0])
        sha256 = h.finalize()
    }

    /// The tokenizer described by a GGUF file's metadata (see `SentencePieceVocabulary.init(gguf:)`).
    /// - Throws: `TokenizerError` naming the offending key or id.
    public convenience init(gguf file: GGUFFile) throws {
        try self.init(vocabulary: SentencePieceVocabulary(gguf: file))
    }

    static let marker: [UInt8] = [0xE2, 0x96, 0x81]   // "▁"

    private static func unescapingMarker(_ t: [UInt8]) -> [UInt8] {
        var out: [UInt8] = []
        out.reserveCapacity(t.count)
        var i = 0
        while i < t.count {
            if i + 2 < t.count && t[i] == 0xE2 && t[i + 1] == 0x96 && t[i + 2] == 0x81 {
                out.append(0x20)
                i += 3
            } else {
                out.append(t[i])
                i += 1
            }
        }
        return out
    }

    /// The byte of a `<0xNN>` token: `strtol` of characters 3 and 4 in base 16, as llama.cpp.
    private static func byteValue(_ t: [UInt8]) -> UInt8 {
        var value = 0
        for c in t.dropFirst(3).prefix(2) {
            guard let d = Int(String(UnicodeScalar(c)), radix: 16) else { break }
            value = value * 16 + d
        }
        return UInt8(truncatingIfNeeded: value)
    }

    // MARK: Encoding

    /// Token ids of `text`, as llama.cpp's `llama_tokenize(text, add_special: addSpecial,
    /// parse_special: parseSpecial)`. Each call starts from an empty chunk cache; a thread
    /// encoding many texts should keep a session (`makeSession()`).
    public func encode(_ text: String, addSpecial: Bool = false, parseSpecial: Bool = false) -> [Int32] {
        var session = SentencePieceSession(model: model, expectedBytes: text.utf8.count)
        defer { session.free() }
        return encode(text, addSpecial: addSpecial, parseSpecial: parseSpecial, into: &session)
    }

    func encode(_ text: String, addSpecial: Bool, parseSpecial: Bool, into session: inout SentencePieceSession) -> [Int32] {
        var text = text
        return text.withUTF8 { utf8 in
            session.encode(utf8, bos: addSpecial && addsBOS ? bosID : nil, eos: addSpecial && addsEOS ? eosID : nil,
                           parseSpecial: parseSpecial)
        }
    }

    public func makeSession() -> any EncodingSession { SentencePieceTokenizerSession(tokenizer: self) }

    // MARK: Decoding

    /// The exact bytes `ids` stand for (see the type's documentation).
    /// - Throws: `TokenizerError.idOutOfRange` naming the first bad id and its position.
    public func decodeBytes(_ ids: [Int32]) throws -> [UInt8] {
        var out: [UInt8] = []
        out.reserveCapacity(ids.count * 4)
        for (position, id) in ids.enumerated() {
            guard id >= 0, Int(id) < vocabSize else {
                throw TokenizerError.idOutOfRange(id: id, position: position, vocabSize: vocabSize)
            }
            var range = pieceOffsets[Int(id)]..<pieceOffsets[Int(id) + 1]
            if position == 0 && addsSpacePrefix && !range.isEmpty && pieceBytes[range.lowerBound] == 0x20 {
                range = range.dropFirst()
            }
            out.append(contentsOf: pieceBytes[range])
        }
        return out
    }

    // MARK: Lookup

    public func piece(for id: Int32) -> String? {
        guard id >= 0, Int(id) < vocabSize else { return nil }
        return tokens[Int(id)]
    }

    public func id(for piece: String) -> Int32? {
        var piece = piece
        let id = piece.withUTF8 { b -> Int32 in
            guard let base = b.baseAddress else { return -1 }
            return model.index.lookup(base, b.count)
        }
        return id >= 0 ? id : nil
    }

    public func tokenType(for id: Int32) -> Int32? {
        guard id >= 0, Int(id) < vocabSize else { return nil }
        return tokenTypes[Int(id)]
    }
}

/// Encode scratch one thread keeps across calls (warm chunk cache). Not thread-safe.
public final class SentencePieceTokenizerSession: EncodingSession {
    public let tokenizer: SentencePieceTokenizer
    private var state: SentencePieceSession

    public init(tokenizer: SentencePieceTokenizer) {
        self.tokenizer = tokenizer
        state = SentencePieceSession(model: tokenizer.model, expectedBytes: 4096)
    }

    deinit { state.free() }

    public func encode(_ text: String, addSpecial: Bool = false, parseSpecial: Bool = false) -> [Int32] {
        var local = state
        defer { state = local }
        return tokenizer.encode(text, addSpecial: addSpecial, parseSpecial: parseSpecial, into: &local)
    }
}
