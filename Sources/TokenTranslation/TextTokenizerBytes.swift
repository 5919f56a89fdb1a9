// The project's tokenizers (byte-level BPE, SentencePiece, the network's GPT-2) as `ByteTokenizer`s.
import Tokenizer

/// A `TextTokenizer` that takes bytes: a network-space row may end inside a UTF-8 character (GPT-2
/// splits some characters over tokens), which no `String` can hold.
public final class TextTokenizerBytes: ByteTokenizer, @unchecked Sendable {
    public let tokenizer: any TextTokenizer
    /// The token whose text is exactly byte b, where the vocabulary has one.
    private let byteTokens: [Int32?]

    public init(_ tokenizer: any TextTokenizer) {
        self.tokenizer = tokenizer
        var byteTokens = [Int32?](repeating: nil, count: 256)
        for id in 0..<Int32(tokenizer.vocabSize) where Self.hasText(tokenizer.tokenType(for: id)) {
            if let bytes = try? tokenizer.decodeBytes([id]), bytes.count == 1, byteTokens[Int(bytes[0])] == nil {
                byteTokens[Int(bytes[0])] = id
            }
        }
        self.byteTokens = byteTokens
    }

    public var vocabSize: Int { tokenizer.vocabSize }

    /// Valid UTF-8 runs go through the tokenizer (no special tokens); each byte of an invalid
    /// sequence becomes the token spelling that byte, or nothing when the vocabulary has none (then
    /// the ids do not spell the input, which `TokenSpaceTranslator.align` reports).
    public func encode(bytes: [UInt8]) -> [Int32] {
        encode(bytes) { tokenizer.encode($0, addSpecial: false, parseSpecial: false) }
    }

    /// Encodes through one session of the tokenizer (its piece cache stays warm across calls).
    public func makeByteEncoder() -> any ByteEncoder { SessionByteEncoder(self) }

    private final class SessionByteEncoder: ByteEncoder {
        let owner: TextTokenizerBytes
        let session: any EncodingSession
        init(_ owner: TextTokenizerBytes) { self.owner = owner; session = owner.tokenizer.makeSession() }
        func encode(bytes: [UInt8]) -> [Int32] {
            owner.encode(bytes) { session.encode($0, addSpecial: false, parseSpecial: false) }
        }
    }

    /// `encode(bytes:)` with valid UTF-8 runs tokenized by `encodeText`.
    private func encode(_ bytes: [UInt8], _ encodeText: (String) -> [Int32]) -> [Int32] {
        var out: [Int32] = []
        var runStart = 0, i = 0
        func flush(_ end: Int) {
            guard end > runStart else { return }
            out += encodeText(String(decoding: bytes[runStart..<end], as: UTF8.self))
        }
        var parser = Unicode.UTF8.ForwardParser()
        var iterator = bytes.makeIterator()
        while true {
            switch parser.parseScalar(from: &iterator) {
            case .valid(let scalar):
                i += scalar.count
            case .error(let length):
                flush(i)
                for b in bytes[i..<(i + length)] { if let id = byteTokens[Int(b)] { out.append(id) } }
                i += length
                runStart = i
            case .emptyInput:
                flush(i)
                return out
            }
        }
    }

    public func textBytes(of id: Int32) -> [UInt8]? {
        guard id >= 0, Int(id) < vocabSize, Self.hasText(tokenizer.tokenType(for: id)) else { return nil }
        return try? tokenizer.decodeBytes([id])
    }

    /// Control and unknown tokens stand for no text (GGUF token types 3 and 2).
    private static func hasText(_ type: Int32?) -> Bool { type != nil && type != 2 && type != 3 }
}
