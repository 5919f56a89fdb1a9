import Foundation

/// The network's standard tokenizer (Bittensor v3: GPT-2, 50,257 tokens), built from tiktoken
/// ranks, with what INFO reports about it.
public struct NetworkStandardTokenizer: Sendable {
    /// The name INFO reports (`network_tokenizer`).
    public static let name = "gpt2"
    /// `<|endoftext|>`: bos, eos, unk and pad of the standard token space.
    public static let endOfText: Int32 = 50256
    public let tokenizer: Tokenizer
    /// Hex SHA-256 of the ranks file (`network_tokenizer_sha256`).
    public let ranksSHA256: String
    public var vocabSize: Int { tokenizer.vocabSize }
}

extension Tokenizer {
    /// The GPT-2 split rule and `<|endoftext|>` = 50256 over the ranks in `ranksPath`
    /// (`Models/fetch gpt2` → Models/gpt2.tiktoken). Token-for-token equal to PyPI `tiktoken`'s
    /// `Encoding("gpt2", pat_str=GPT-2, mergeable_ranks=load_tiktoken_bpe(path),
    /// special_tokens={"<|endoftext|>": 50256})`: `encode(parseSpecial: false)` is
    /// `encode_ordinary`, `parseSpecial: true` is `encode(allowed_special="all")`.
    /// - Throws: `TokenizerError.invalidField` naming the line of a malformed ranks file, or a
    ///   Foundation error when the file cannot be read.
    public static func networkStandard(ranksPath: String) throws -> NetworkStandardTokenizer {
        let data = try Data(contentsOf: URL(fileURLWithPath: ranksPath))
        let bytes = [UInt8](data)
        var h = SHA256()
        h.update(bytes)
        let tokenizer = try Tokenizer(tiktokenRanks: bytes, preTokenizer: .gpt2,
                                      specialTokens: [("<|endoftext|>", NetworkStandardTokenizer.endOfText)],
                                      source: (ranksPath as NSString).lastPathComponent)
        return NetworkStandardTokenizer(tokenizer: tokenizer, ranksSHA256: h.finalize())
    }

    /// A byte-level BPE from a tiktoken ranks file (`base64(token bytes) rank` per line, ranks
    /// 0..<n each once). tiktoken's rules: a piece whose bytes are a token is that token;
    /// otherwise any two adjacent tokens whose bytes concatenate to a token merge, lowest rank
    /// of the result first (leftmost on ties). Special
    /// tokens take the given ids, which must follow the ranks without a gap.
    /// - Throws: `TokenizerError.invalidField` naming the offending line or id.
    public convenience init(tiktokenRanks file: [UInt8], preTokenizer: PreTokenizerKind,
                            specialTokens: [(text: String, id: Int32)], source: String = "ranks") throws {
        let field = "\(source) (tiktoken ranks)"
        var byRank: [[UInt8]?] = []
        var lineNumber = 0
        for line in file.split(separator: 0x0A, omittingEmptySubsequences: false) {
            lineNumber += 1
            if line.isEmpty { continue }
            let parts = line.split(separator: 0x20, omittingEmptySubsequences: false)
            guard parts.count == 2, let token = Data(base64Encoded: Data(parts[0])), !token.isEmpty,
                  let rank = Int(String(decoding: parts[1], as: UTF8.self)), rank >= 0, rank < 1 << 24 else {
                throw TokenizerError.invalidField(field, reason: "line \(lineNumber) is not 'base64(bytes) rank'")
            }
            if rank >= byRank.count { byRank.append(contentsOf: repeatElement(nil, count: rank + 1 - byRank.count)) }
            guard byRank[rank] == nil else { throw TokenizerError.invalidField(field, reason: "line \(lineNumber) repeats rank \(rank)") }
            byRank[rank] = [UInt8](token)
        }
        if let missing = byRank.firstIndex(where: { $0 == nil }) {
            throw TokenizerError.invalidField(field, reason: "rank \(missing) is missing (ranks must be 0..<\(byRank.count))")
        }
        try self.init(ranks: byRank.compactMap { $0 }, preTokenizer: preTokenizer, specialTokens: specialTokens, field: field)
    }

    private convenience init(ranks: [[UInt8]], preTokenizer: PreTokenizerKind, specialTokens: [(text: String, id: Int32)], field: String) throws {
        var idByBytes: [[UInt8]: Int32] = [:]
        idByBytes.reserveCapacity(ranks.count)
        for (rank, t) in ranks.enumerated() {
            guard idByBytes[t] == nil else { throw TokenizerError.invalidField(field, reason: "rank \(rank) repeats the bytes of rank \(idByBytes[t] ?? -1)") }
            idByBytes[t] = Int32(rank)
        }
        for b in 0..<256 where idByBytes[[UInt8(b)]] == nil {
            throw TokenizerError.invalidField(field, reason: "byte 0x\(String(b, radix: 16)) has no rank (tiktoken needs all 256)")
        }
        var merges: [RankedMerge] = []
        merges.reserveCapacity(ranks.count * 4)
        for (rank, t) in ranks.enumerated() where t.count >= 2 {
            for k in 1..<t.count {
                if let l = idByBytes[Array(t[..<k])], let r = idByBytes[Array(t[k...])] {
                    merges.append(RankedMerge(left: l, right: r, merged: Int32(rank), rank: rank))
                }
            }
        }
        var tokens = ranks.map { ByteLevel.encode($0) }
        var types = [Int32](repeating: BPEVocabulary.TokenType.normal, count: tokens.count)
        for (text, id) in specialTokens.sorted(by: { $0.id < $1.id }) {
            guard Int(id) == tokens.count else {
                throw TokenizerError.invalidField(field, reason: "special token '\(text)' has id \(id), expected \(tokens.count) (right after the ranks)")
            }
            tokens.append(text)
            types.append(BPEVocabulary.TokenType.control)
        }
        let eot = specialTokens.first?.id
        let vocabulary = BPEVocabulary(tokens: tokens, tokenTypes: types, merges: [], preTokenizer: preTokenizer,
                                       bosID: eot, eosID: eot, unkID: eot, padID: eot)
        try self.init(vocabulary: vocabulary, rankedMerges: merges, wholePieceFirst: true)
    }
}
