// One row of network-space ids laid over the same text in the model's tokens. Byte offsets are the
// common ground: every token of either space ends at a byte of the row's text.

/// Why a row of network ids cannot be translated.
public enum TokenSpaceError: Error, Equatable, CustomStringConvertible {
    /// An id the network tokenizer does not have.
    case idOutOfRange(id: Int32, position: Int, vocabSize: Int)
    /// The row's ids stand for no text at all (only control tokens such as eos).
    case noText
    /// The model tokenizer's output does not spell the text it was given (its token bytes add up to
    /// `modelBytes`, the text has `textBytes`): offsets cannot be matched. A tokenizer bug, not bad input.
    case modelTokensDoNotSpellText(textBytes: Int, modelBytes: Int)

    public var description: String {
        switch self {
        case let .idOutOfRange(id, position, vocabSize):
            return "token id \(id) at position \(position) is outside the network vocabulary (0..<\(vocabSize))"
        case .noText:
            return "the row's tokens stand for no text (only control tokens such as <|endoftext|>)"
        case let .modelTokensDoNotSpellText(textBytes, modelBytes):
            return "the model's tokens spell \(modelBytes) bytes of a \(textBytes)-byte text; cannot align the token spaces"
        }
    }
}

/// A row in both spaces.
public struct RowAlignment: Equatable, Sendable {
    /// The row's text: the network tokens' bytes, concatenated.
    public let text: [UInt8]
    /// The network ids as sent (padding removed).
    public let networkIDs: [Int32]
    /// `networkEnds[j]` is the byte offset where network token j ends (a token without text ends
    /// where the one before it does).
    public let networkEnds: [Int]
    /// What the model runs: its bos first when the model adds one, then the text's model tokens.
    public let modelIDs: [Int32]
    /// `modelEnds[i]` is the byte offset where model token i ends (0 for a bos).
    public let modelEnds: [Int]
    /// Index in `modelIDs` of the first token with text (1 after a bos, else 0).
    public let firstTextPosition: Int

    /// For each network position j, the model position whose final hidden state stands for it: the
    /// last model token ending at or before network token j ends, or the first text token when none
    /// ends that early. Where the two spaces share a boundary, that is the model token ending there.
    public var hiddenSources: [Int] {
        var sources: [Int] = []
        sources.reserveCapacity(networkEnds.count)
        var i = firstTextPosition
        for end in networkEnds {
            while i + 1 < modelEnds.count, modelEnds[i + 1] <= end { i += 1 }
            sources.append(modelEnds[i] <= end ? i : firstTextPosition)
        }
        return sources
    }

    /// The model position ending exactly at byte `end`, if a text token does.
    func modelPosition(endingAt end: Int) -> Int? {
        var low = firstTextPosition, high = modelEnds.count
        while low < high {
            let mid = (low + high) / 2
            if modelEnds[mid] < end { low = mid + 1 } else { high = mid }
        }
        return low < modelEnds.count && modelEnds[low] == end ? low : nil
    }

    /// The model position whose token contains byte `end − 1` (ends after `end`), for an `end` that is
    /// not a model boundary.
    func modelPosition(containing end: Int) -> Int {
        var low = firstTextPosition, high = modelEnds.count - 1
        while low < high {
            let mid = (low + high) / 2
            if modelEnds[mid] < end { low = mid + 1 } else { high = mid }
        }
        return low
    }
}
