// The little a translation between token spaces needs of a tokenizer: bytes in, ids out, and the
// bytes each id stands for. Both the network's standard tokenizer and the model's conform.

/// A tokenizer seen as a map between byte strings and id sequences.
///
/// `encode` must be total on bytes (text may end inside a UTF-8 character), and the text bytes
/// of its output, concatenated, must equal its input: translation relies on byte offsets.
public protocol ByteTokenizer: Sendable {
    /// Valid ids are `0..<vocabSize`.
    var vocabSize: Int { get }
    /// Ids of `bytes`, no special tokens added or recognized.
    func encode(bytes: [UInt8]) -> [Int32]
    /// The text bytes `id` stands for; nil for an out-of-range id or a token without text (a
    /// control token such as bos or eos).
    func textBytes(of id: Int32) -> [UInt8]?
    /// An encoder for one thread's many short calls, keeping its scratch and caches warm (token
    /// healing tokenizes thousands of candidate continuations per row). Results equal `encode`.
    func makeByteEncoder() -> any ByteEncoder
}

/// Per-thread encode scratch from `ByteTokenizer.makeByteEncoder()`. Not thread-safe.
public protocol ByteEncoder: AnyObject {
    func encode(bytes: [UInt8]) -> [Int32]
}

extension ByteTokenizer {
    /// Without scratch of its own, a tokenizer's encoder is `encode` itself.
    public func makeByteEncoder() -> any ByteEncoder { StatelessByteEncoder(tokenizer: self) }
}

private final class StatelessByteEncoder: ByteEncoder {
    let tokenizer: any ByteTokenizer
    init(tokenizer: any ByteTokenizer) { self.tokenizer = tokenizer }
    func encode(bytes: [UInt8]) -> [Int32] { tokenizer.encode(bytes: bytes) }
}
