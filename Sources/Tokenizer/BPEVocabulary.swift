/// A byte-level BPE vocabulary in a format-neutral form: what a GGUF file or a Hugging Face
/// tokenizer.json says, before validation. `Tokenizer(vocabulary:)` validates and compiles it.
public struct BPEVocabulary: Sendable, Equatable {
    /// Token types, numbered as in GGUF `tokenizer.ggml.token_type` (llama.cpp).
    public enum TokenType {
        public static let normal: Int32 = 1
        public static let unknown: Int32 = 2
        /// Special tokens such as `<|im_start|>`: matched in text only with `parseSpecial`.
        public static let control: Int32 = 3
        /// Added tokens that are always matched in text (HF added tokens with `special: false`).
        public static let userDefined: Int32 = 4
        public static let unused: Int32 = 5
        public static let byte: Int32 = 6
    }

    /// One merge rule: the pair of token texts whose concatenation is also a token.
    public struct Merge: Sendable, Equatable {
        public var left: String
        public var right: String
        public init(left: String, right: String) {
            self.left = left
            self.right = right
        }
    }

    /// Token texts in id order, in byte-level spelling ("Ġthe" for " the").
    public var tokens: [String]
    /// One `TokenType` value per token (empty means all normal).
    public var tokenTypes: [Int32]
    /// Merge rules; the array index is the rank (lower merges first).
    public var merges: [Merge]
    public var preTokenizer: PreTokenizerKind
    public var bosID: Int32?
    public var eosID: Int32?
    public var unkID: Int32?
    public var padID: Int32?
    /// Whether `encode(addSpecial: true)` prepends `bosID` / appends `eosID`.
    public var addBOS: Bool
    public var addEOS: Bool
    /// The id the BPE model emits for a byte whose byte-level token is missing from the
    /// vocabulary (HF `BPE.unk_token`); nil drops such bytes, as HF does without `unk_token`.
    public var unknownByteID: Int32?
    /// Consecutive unknown bytes give one `unknownByteID` (HF `fuse_unk`).
    public var fuseUnknown: Bool

    public init(tokens: [String], tokenTypes: [Int32] = [], merges: [Merge], preTokenizer: PreTokenizerKind,
                bosID: Int32? = nil, eosID: Int32? = nil, unkID: Int32? = nil, padID: Int32? = nil,
                addBOS: Bool = false, addEOS: Bool = false, unknownByteID: Int32? = nil, fuseUnknown: Bool = false) {
        self.tokens = tokens
        self.tokenTypes = tokenTypes
        self.merges = merges
        self.preTokenizer = preTokenizer
        self.bosID = bosID
        self.eosID = eosID
        self.unkID = unkID
        self.padID = padID
        self.addBOS = addBOS
        self.addEOS = addEOS
        self.unknownByteID = unknownByteID
        self.fuseUnknown = fuseUnknown
    }

    /// Parses a merge written as "left right" (GGUF `tokenizer.ggml.merges`, old tokenizer.json).
    /// - Throws: `TokenizerError.malformedMerge` unless the text is two non-empty parts
    ///   separated by exactly one space.
    public static func parseMerge(_ text: String, index: Int) throws -> Merge {
        let parts = text.split(separator: " ", omittingEmptySubsequences: false)
        guard parts.count == 2, !parts[0].isEmpty, !parts[1].isEmpty else {
            throw TokenizerError.malformedMerge(index: index, merge: text,
                                                reason: "expected two tokens separated by one space, found \(parts.count) part(s)")
        }
        return Merge(left: String(parts[0]), right: String(parts[1]))
    }
}

/// The compiled, immutable BPE tables shared by every encode call.
final class BPEModel: @unchecked Sendable {
    let merges: MergeTable
    /// Token id of each byte's byte-level character, or -1 when the vocabulary lacks it.
    let byteTokenIDs: UnsafeMutablePointer<Int32>
    let unknownID: Int32?
    let fuseUnknown: Bool
    /// tiktoken's rule: a piece whose bytes are a token is that token, without merging (nil
    /// for HF BPE, which always merges).
    let wholePieces: TokenTextIndex?
    /// The same rule for pieces of at most 16 bytes, answered in one probe before the cache.
    let shortWholePieces: ShortTokenTable?
    /// `merges.lookup` of the byte tokens of (b0, b1) at b0 << 8 | b1: a merge of a piece the
    /// cache has not seen starts with one lookup per byte pair, and most of its lookups are these.
    let bytePairMerges: UnsafeMutablePointer<UInt64>

    init(merges: MergeTable, byteTokenIDs: [Int32], unknownID: Int32?, fuseUnknown: Bool,
         wholePieces: [[UInt8]]? = nil) {
        self.merges = merges
        self.wholePieces = wholePieces.map { TokenTextIndex($0) }
        shortWholePieces = wholePieces.map { ShortTokenTable($0) }
        self.byteTokenIDs = .allocate(capacity: 256)
        self.byteTokenIDs.initialize(from: byteTokenIDs, count: 256)
        self.unknownID = unknownID
        self.fuseUnknown = fuseUnknown
        bytePairMerges = .allocate(capacity: 1 << 16)
        for b0 in 0..<256 {
            for b1 in 0..<256 {
                let l = byteTokenIDs[b0], r = byteTokenIDs[b1]
                bytePairMerges[b0 << 8 | b1] = l >= 0 && r >= 0 ? merges.lookup(l, r) : MergeTable.none
            }
        }
    }

    deinit {
        bytePairMerges.deallocate()
        byteTokenIDs.deallocate()
        shortWholePieces?.free()
    }
}
