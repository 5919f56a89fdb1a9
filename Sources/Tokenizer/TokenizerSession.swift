/// Encode scratch that one thread keeps across calls, so the piece → ids cache stays warm
/// (llama.cpp's vocab/session split). Results are identical to `Tokenizer.encode`.
/// Not thread-safe: use one session per thread; the `Tokenizer` itself is shared.
public final class TokenizerSession {
    public let tokenizer: Tokenizer
    private var state: EncoderSession

    public init(tokenizer: Tokenizer) {
        self.tokenizer = tokenizer
        state = tokenizer.makeEncoderSession()
    }

    deinit { state.free() }

    /// Same as `Tokenizer.encode(_:addSpecial:parseSpecial:)`, reusing this session's cache.
    public func encode(_ text: String, addSpecial: Bool = false, parseSpecial: Bool = false) -> [Int32] {
        // Work on a local copy (a few pointers) so the hot loop has no dynamic exclusivity
        // checks on a class property; buffers that grew are stored back.
        var local = state
        defer { state = local }
        return tokenizer.encode(text, addSpecial: addSpecial, parseSpecial: parseSpecial, into: &local)
    }
}
