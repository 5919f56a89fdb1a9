/// Everything that can go wrong building a tokenizer or decoding ids. Each message names the
/// offending key, token or position and what was expected.
public enum TokenizerError: Error, CustomStringConvertible, Equatable {
    /// `tokenizer.ggml.model` (or the tokenizer.json model type) is not one the reader handles.
    case unsupportedModel(String)
    /// The pre-tokenizer is not one whose split rule this module implements exactly.
    case unsupportedPreTokenizer(String)
    /// A required metadata key or JSON field is absent.
    case missingField(String)
    /// A field has the wrong type or an impossible value.
    case invalidField(String, reason: String)
    /// Merge number `index` is not two tokens separated by one space, or names unknown tokens.
    case malformedMerge(index: Int, merge: String, reason: String)
    /// The vocabulary itself is inconsistent (duplicate token, bad special id, ...).
    case malformedVocabulary(String)
    /// `decode` was given an id outside `0..<vocabSize`.
    case idOutOfRange(id: Int32, position: Int, vocabSize: Int)
    /// The tokenizer.json text is not valid JSON.
    case invalidJSON(String)

    public var description: String {
        switch self {
        case .unsupportedModel(let m):
            return "unsupported tokenizer model \(m)"
        case .unsupportedPreTokenizer(let p):
            return "unsupported pre-tokenizer \(p): implemented are 'gpt2' (GPT-2 split regex) and 'smollm' (individual digits, then the GPT-2 split regex)"
        case .missingField(let key):
            return "tokenizer field '\(key)' is missing"
        case .invalidField(let key, let reason):
            return "tokenizer field '\(key)' is invalid: \(reason)"
        case .malformedMerge(let index, let merge, let reason):
            return "merge \(index) '\(merge)' is malformed: \(reason)"
        case .malformedVocabulary(let reason):
            return "malformed vocabulary: \(reason)"
        case .idOutOfRange(let id, let position, let vocabSize):
            return "token id \(id) at position \(position) is out of range: the vocabulary has ids 0..<\(vocabSize)"
        case .invalidJSON(let reason):
            return "tokenizer.json is not valid JSON: \(reason)"
        }
    }
}
