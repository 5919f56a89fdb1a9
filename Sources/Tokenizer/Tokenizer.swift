import CTokenizerKernels

/// A byte-level BPE tokenizer (the GPT-2 family), token-for-token identical to Hugging Face
/// `tokenizers` configured with the same vocabulary, merges and pre-tokenizer.
///
/// Immutable and shared: the vocabulary, merge table, byte table and split rule are built once.
/// Each `encode` call uses its own scratch (symbol buffers, merge heap, a bounded piece cache),
/// so one instance can serve any number of threads.
///
/// Build it with `Tokenizer(vocabulary:)`, `Tokenizer(gguf:)` or `Tokenizer(tokenizerJSON:)`.
public final class Tokenizer: Sendable {
    /// Number of token ids: valid ids are `0..<vocabSize`.
    public let vocabSize: Int
    public let bosID: Int32?
    public let eosID: Int32?
    public let unkID: Int32?
    public let padID: Int32?
    /// Whether `encode(addSpecial: true)` prepends `bosID` / appends `eosID`.
    public let addsBOS: Bool
    public let addsEOS: Bool
    public let preTokenizer: PreTokenizerKind

    /// Hex SHA-256 identifying everything that determines `encode` and `decode` output, so two
    /// parties can check that they tokenize identically. It is the digest of these bytes, with
    /// integers little-endian and strings as a u32 byte length followed by their UTF-8 bytes:
    ///  1. the string "axon-tokenizer-v1", then the pre-tokenizer name ("gpt2" or "smollm");
    ///  2. u32 token count, then per token in id order: its text (byte-level spelling) and its
    ///     i32 token type (GGUF numbering: 1 normal, 2 unknown, 3 control, 4 user-defined, ...);
    ///  3. u32 merge count, then per merge in rank order: i32 left id, i32 right id;
    ///  4. i32 id prepended by `addSpecial` (bos, or -1 when none is added), i32 id appended
    ///     (eos, or -1), i32 id for bytes missing from the vocabulary (-1: dropped), and one
    ///     byte, 1 if consecutive missing bytes fuse into one id, else 0;
    ///  5. for a tokenizer built from tiktoken ranks only, one byte 1: a piece whose bytes are a
    ///     token is that token (tiktoken's rule), before any merging.
    /// Pad, and bos/eos ids that `addSpecial` does not add, are not part of it: they do not
    /// change tokenization. scripts/reference/tokenizer_fixtures.py computes the same digest.
    public let sha256: String

    private let tokens: [String]
    private let tokenTypes: [Int32]
    private let idsByToken: [String: Int32]
    private let model: BPEModel
    /// Decoded bytes of every token, concatenated; token i is `tokenBytes[offsets[i]..<offsets[i+1]]`.
    private let tokenBytes: [UInt8]
    private let tokenByteOffsets: [Int]
    private let specials: SpecialTokenMatcher
    private let alwaysMatched: SpecialTokenMatcher

    /// Validates and compiles a vocabulary.
    /// - Throws: `TokenizerError.malformedVocabulary` for an empty vocabulary, mismatched
    ///   token-type count or out-of-range special id; `TokenizerError.malformedMerge` for a
    ///   merge naming a token (or a concatenation) that is not in the vocabulary.
    public convenience init(vocabulary v: BPEVocabulary) throws {
        try self.init(vocabulary: v, rankedMerges: nil)
    }

    /// One merge with an explicit rank: several pairs may share a rank (tiktoken's rule,
    /// where any two tokens that concatenate to a token merge at that token's rank).
    struct RankedMerge {
        let left: Int32
        let right: Int32
        let merged: Int32
        let rank: Int
    }

    /// `rankedMerges` replaces `v.merges` (which must then be empty) when given; with
    /// `wholePieceFirst` a piece whose bytes are a token encodes as that token (tiktoken).
    init(vocabulary v: BPEVocabulary, rankedMerges: [RankedMerge]?, wholePieceFirst: Bool = false) throws {
        guard !v.tokens.isEmpty else { throw TokenizerError.malformedVocabulary("the token list is empty") }
        guard v.tokens.count < Int(Int32.max) else {
            throw TokenizerError.malformedVocabulary("\(v.tokens.count) tokens exceed the Int32 id range")
        }
        let types = v.tokenTypes.isEmpty ? [Int32](repeating: BPEVocabulary.TokenType.normal, count: v.tokens.count) : v.tokenTypes
        guard types.count == v.tokens.count else {
            throw TokenizerError.malformedVocabulary("\(types.count) token types for \(v.tokens.count) tokens")
        }
        let n = v.tokens.count
        for (name, id) in [("bos", v.bosID), ("eos", v.eosID), ("unk", v.unkID), ("pad", v.padID), ("unknown byte", v.unknownByteID)] {
            if let id, id < 0 || Int(id) >= n {
                throw TokenizerError.malformedVocabulary("\(name) id \(id) is outside 0..<\(n)")
            }
        }
        if v.addBOS && v.bosID == nil { throw TokenizerError.malformedVocabulary("add_bos is set but there is no bos id") }
        if v.addEOS && v.eosID == nil { throw TokenizerError.malformedVocabulary("add_eos is set but there is no eos id") }

        // Later duplicates win, as in a Python dict built from the token list.
        var idsByToken = [String: Int32](minimumCapacity: n)
        for (i, t) in v.tokens.enumerated() { idsByToken[t] = Int32(i) }

        var compiled: [(left: Int32, right: Int32, merged: Int32)] = []
        compiled.reserveCapacity(v.merges.count + (rankedMerges?.count ?? 0))
        for m in rankedMerges ?? [] { compiled.append((m.left, m.right, m.merged)) }
        for (rank, m) in v.merges.enumerated() {
            guard let l = idsByToken[m.left] else {
                throw TokenizerError.malformedMerge(index: rank, merge: m.left + " " + m.right, reason: "'\(m.left)' is not in the vocabulary")
            }
            guard let r = idsByToken[m.right] else {
                throw TokenizerError.malformedMerge(index: rank, merge: m.left + " " + m.right, reason: "'\(m.right)' is not in the vocabulary")
            }
            guard let merged = idsByToken[m.left + m.right] else {
                throw TokenizerError.malformedMerge(index: rank, merge: m.left + " " + m.right, reason: "the merged token '\(m.left + m.right)' is not in the vocabulary")
            }
            compiled.append((l, r, merged))
        }

        var byteIDs = [Int32](repeating: -1, count: 256)
        for b in 0..<256 {
            if let u = Unicode.Scalar(ByteLevel.scalarForByte[b]), let id = idsByToken[String(Character(u))] {
                byteIDs[b] = id
            }
        }

        var bytes: [UInt8] = []
        var offsets: [Int] = [0]
        offsets.reserveCapacity(n + 1)
        var specialList: [(text: [UInt8], id: Int32)] = []
        var alwaysList: [(text: [UInt8], id: Int32)] = []
        for (i, t) in v.tokens.enumerated() {
            switch types[i] {
            case BPEVocabulary.TokenType.control, BPEVocabulary.TokenType.unknown:
                // Special tokens are literal text, not byte-level spelled.
                bytes.append(contentsOf: t.utf8)
                if !t.isEmpty { specialList.append((Array(t.utf8), Int32(i))) }
            case BPEVocabulary.TokenType.userDefined:
                bytes.append(contentsOf: t.utf8)
                if !t.isEmpty { alwaysList.append((Array(t.utf8), Int32(i))) }
            default:
                bytes.append(contentsOf: ByteLevel.decode(t))
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
        preTokenizer = v.preTokenizer
        tokens = v.tokens
        tokenTypes = types
        self.idsByToken = idsByToken
        let table = rankedMerges.map { MergeTable(rankedMerges: $0) } ?? MergeTable(merges: compiled)
        // Only normal tokens: special ones are matched (or not) before the split rule runs.
        let whole = wholePieceFirst ? (0..<n).map {
            types[$0] == BPEVocabulary.TokenType.normal ? Array(bytes[offsets[$0]..<offsets[$0 + 1]]) : []
        } : nil
        model = BPEModel(merges: table, byteTokenIDs: byteIDs,
                         unknownID: v.unknownByteID, fuseUnknown: v.fuseUnknown, wholePieces: whole)
        tokenBytes = bytes
        tokenByteOffsets = offsets
        // parseSpecial matches control and user-defined tokens; without it only user-defined.
        specials = SpecialTokenMatcher(specialList + alwaysList)
        alwaysMatched = SpecialTokenMatcher(alwaysList)
        sha256 = Self.digest(v, types: types, merges: compiled, wholePieceFirst: wholePieceFirst)
    }

    private static func digest(_ v: BPEVocabulary, types: [Int32], merges: [(left: Int32, right: Int32, merged: Int32)],
                               wholePieceFirst: Bool) -> String {
        var h = SHA256()
        func u32(_ x: UInt32) { h.update([UInt8(x & 0xFF), UInt8(x >> 8 & 0xFF), UInt8(x >> 16 & 0xFF), UInt8(x >> 24)]) }
        func i32(_ x: Int32) { u32(UInt32(bitPattern: x)) }
        func str(_ s: String) { u32(UInt32(s.utf8.count)); h.update(s.utf8) }
        str("axon-tokenizer-v1")
        str(v.preTokenizer.rawValue)
        u32(UInt32(v.tokens.count))
        for (i, t) in v.tokens.enumerated() {
            str(t)
            i32(types[i])
        }
        u32(UInt32(merges.count))
        for m in merges {
            i32(m.left)
            i32(m.right)
        }
        i32(v.addBOS ? (v.bosID ?? -1) : -1)
        i32(v.addEOS ? (v.eosID ?? -1) : -1)
        i32(v.unknownByteID ?? -1)
        h.update([v.fuseUnknown ? 1 : 0])
        if wholePieceFirst { h.update([1]) }   // tiktoken's whole-piece rule (absent otherwise)
        return h.finalize()
    }

    // MARK: Encoding

    /// Token ids of `text`.
    ///
    /// - Parameters:
    ///   - addSpecial: prepend the bos id (and append the eos id) if the model asks for it
    ///     (`tokenizer.ggml.add_bos_token`, or a tokenizer.json post-processor template).
    ///   - parseSpecial: recognize control tokens such as `<|im_start|>` written in the text
    ///     (leftmost, longest match first). Without it they are ordinary text. User-defined
    ///     tokens (HF added tokens with `special: false`) are always recognized, as in HF.
    ///
    /// Each call starts from an empty piece cache; a thread that encodes many short texts
    /// (requests) should keep a `TokenizerSession`, whose cache stays warm across calls.
    public func encode(_ text: String, addSpecial: Bool = false, parseSpecial: Bool = false) -> [Int32] {
        var session = EncoderSession(model: model, expectedBytes: text.utf8.count)
        defer { session.free() }
        return encode(text, addSpecial: addSpecial, parseSpecial: parseSpecial, into: &session)
    }

    /// The encode pipeline over a caller's scratch: special tokens, split rule, cached BPE.
    func encode(_ text: String, addSpecial: Bool, parseSpecial: Bool, into session: inout EncoderSession) -> [Int32] {
        session.output.count = 0
        var text = text
        return text.withUTF8 { utf8 in
            if addSpecial && addsBOS, let bos = bosID { session.output.append(bos) }
            if let base = utf8.baseAddress, utf8.count > 0 {
                let matcher = parseSpecial ? specials : alwaysMatched
                if matcher.isEmpty {
                    encodeSegment(base, utf8.count, &session)
                } else {
                    var start = 0
                    matcher.forEachMatch(in: base, count: utf8.count) { matchStart, matchEnd, id in
                        if matchStart > start { encodeSegment(base + start, matchStart - start, &session) }
                        session.output.append(id)
                        start = matchEnd
                    }
                    if start < utf8.count { encodeSegment(base + start, utf8.count - start, &session) }
                }
            }
            if addSpecial && addsEOS, let eos = eosID { session.output.append(eos) }
            return session.takeOutput()
        }
    }

    func makeEncoderSession() -> EncoderSession {
        EncoderSession(model: model, expectedBytes: 4096)
    }

    /// Pre-tokenizes one segment (text between special tokens) and runs BPE on each piece.
    private func encodeSegment(_ base: UnsafePointer<UInt8>, _ count: Int, _ session: inout EncoderSession) {
        let scanner = SplitScanner(text: base, count: count, kind: preTokenizer)
        let end = base + count
        var i = 0
        // Blocks of ASCII cut by the block rule; anything else (and a block that is not all
        // ASCII, up to its end) piece by piece.
        var scalarUntil = 0
        while i < count {
            if scanner.readsBlocks && i >= scalarUntil && i + 65 <= count {
                i = encodeBlocks(scanner, from: i, &session)
                scalarUntil = i + 64
                if i >= count { break }
            }
            let e = scanner.pieceEnd(from: i)
            session.encodePiece(base + i, e - i, readableTo: end)
            i = e
        }
    }

    /// Encodes the pieces the block kernel finds (`axon_ascii_piece_starts`, 64 bytes per
    /// mask) from the boundary `i` while blocks of ASCII remain, each followed by a readable
    /// byte; returns the start of the first piece not encoded.
    private func encodeBlocks(_ scanner: SplitScanner, from i: Int, _ session: inout EncoderSession) -> Int {
        let base = scanner.text, count = scanner.count, end = base + count
        var cur = i   // the start of the piece in progress
        var w = i     // the next block
        var prev: UInt32 = 0
        return withUnsafeTemporaryAllocation(of: UInt64.self, capacity: 16) { masks -> Int in
            guard let masksBase = masks.baseAddress else { return cur }
            while true {
                let wanted = min((count - w - 1) / 64, masks.count)
                guard wanted > 0 else { return cur }
                let done = axon_ascii_piece_starts(base + w, wanted, &prev, masksBase)
                for k in 0..<done {
                    var starts = masksBase[k]
                    cur = takeContractions(scanner, at: cur, below: w &+ 64, &session)
                    starts = Self.starts(starts, block: w, after: cur)
                    while starts != 0 {
                        let p = w &+ starts.trailingZeroBitCount
                        starts &= starts &- 1
                        session.encodePiece(base + cur, p &- cur, readableTo: end)
                        cur = p
                        if base[p] == 0x27 {
                            cur = takeContractions(scanner, at: p, below: w &+ 64, &session)
                            if cur > p { starts = Self.starts(starts, block: w, after: cur) }
                        }
                    }
                    w &+= 64
                }
                if done < wanted { return cur }
            }
        }
    }

    /// The bits of a block's `starts` (the block at text offset `block`) after the piece start
    /// `cur`: starts at or before the piece in progress are not new pieces.
    @inline(__always)
    private static func starts(_ starts: UInt64, block: Int, after cur: Int) -> UInt64 {
        guard cur >= block else { return starts }
        return cur &- block >= 63 ? 0 : starts & (~0 << UInt64(truncatingIfNeeded: cur &- block &+ 1))
    }

    /// Contractions at the piece start `start` end that piece early: encodes them and returns
    /// the start of the piece after them (`start` when there is none), stopping at `limit`.
    @inline(__always)
    private func takeContractions(_ scanner: SplitScanner, at start: Int, below limit: Int, _ session: inout EncoderSession) -> Int {
        var cur = start
        while cur < limit && scanner.text[cur] == 0x27 {
            let n = scanner.contractionLength(at: cur)
            if n == 0 { break }
            session.encodePiece(scanner.text + cur, n, readableTo: scanner.text + scanner.count)
            cur &+= n
        }
        return cur
    }

    /// The pieces `text` is split into before BPE, as raw text (for `axon tokenize --pieces`
    /// and tests). Special tokens are not recognized here.
    public func preTokenize(_ text: String) -> [String] {
        var text = text
        return text.withUTF8 { utf8 in
            guard let base = utf8.baseAddress else { return [] }
            let scanner = SplitScanner(text: base, count: utf8.count, kind: preTokenizer)
            var out: [String] = []
            var i = 0
            while i < utf8.count {
                let end = scanner.pieceEnd(from: i)
                out.append(String(decoding: UnsafeBufferPointer(start: base + i, count: end - i), as: UTF8.self))
                i = end
            }
            return out
        }
    }

    // MARK: Decoding

    /// The exact bytes that `ids` stand for (byte-level tokens unmapped to raw bytes, special
    /// tokens as their literal text). Use this when streaming: a multi-byte character split
    /// across calls stays intact in the bytes.
    /// - Throws: `TokenizerError.idOutOfRange` naming the first bad id and its position.
    public func decodeBytes(_ ids: [Int32]) throws -> [UInt8] {
        var out: [UInt8] = []
        out.reserveCapacity(ids.count * 4)
        for (position, id) in ids.enumerated() {
            guard id >= 0, Int(id) < vocabSize else {
                throw TokenizerError.idOutOfRange(id: id, position: position, vocabSize: vocabSize)
            }
            out.append(contentsOf: tokenBytes[tokenByteOffsets[Int(id)]..<tokenByteOffsets[Int(id) + 1]])
        }
        return out
    }

    /// The text that `ids` stand for. `decode(encode(x)) == x` for every string whose bytes
    /// all have a byte-level token (true of all valid UTF-8 for the default model except the
    /// bytes that vocabulary lacks). Bytes that are not valid UTF-8 — for instance when the
    /// sequence ends inside a multi-byte character — become U+FFFD, one per maximal invalid
    /// subsequence, as HF's ByteLevel decoder (`from_utf8_lossy`) does; use `decodeBytes`
    /// to keep them.
    /// - Throws: `TokenizerError.idOutOfRange` naming the first bad id and its position.
    public func decode(_ ids: [Int32]) throws -> String {
        String(decoding: try decodeBytes(ids), as: UTF8.self)
    }

    // MARK: Lookup

    /// The token text of `id` in vocabulary spelling ("Ġthe"), or nil when out of range.
    public func piece(for id: Int32) -> String? {
        guard id >= 0, Int(id) < vocabSize else { return nil }
        return tokens[Int(id)]
    }

    /// The id of a token text in vocabulary spelling, or nil.
    public func id(for piece: String) -> Int32? { idsByToken[piece] }

    /// The `BPEVocabulary.TokenType` value of `id`, or nil when out of range.
    public func tokenType(for id: Int32) -> Int32? {
        guard id >= 0, Int(id) < vocabSize else { return nil }
        return tokenTypes[Int(id)]
    }
}
