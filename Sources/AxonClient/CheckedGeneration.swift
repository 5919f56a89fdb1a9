// The TEXT_SEQ_2_SEQ answer read from an untrusted axon (docs/PROTOCOL.md, "TEXT_SEQ_2_SEQ"):
// checked like the other encodings in CheckedAnswers.swift before anything indexes it.
import Wire

extension SynapseResult {
    /// The generated ids of each row: `tensors[0]` INT32 `[rows, N]` right-padded with −1 and
    /// `tensors[1]` INT32 `[rows]` lengths, with every length in 0...`maxTokens`, N between the
    /// longest length and `maxTokens`, ids in `0..<vocab` (when given) and −1 after each row's length.
    /// - Throws: `AnswerError.malformed`.
    public func checkedGeneration(rows: Int, maxTokens: Int, vocab: Int?) throws -> [[Int32]] {
        guard tensors.count == 2 else {
            throw AnswerError.malformed("\(type) has \(tensors.count) tensors, expected 2 (ids, lengths)")
        }
        let lengths = try tensors[1].checkedInt32s("\(type) lengths", shape: [rows]).map(Int.init)
        if let bad = lengths.firstIndex(where: { $0 < 0 || $0 > maxTokens }) {
            throw AnswerError.malformed("\(type) lengths[\(bad)] is \(lengths[bad]), expected 0...\(maxTokens) (num_to_generate)")
        }
        let shape = tensors[0].shape
        guard shape.count == 2, shape[0] == Int64(rows), shape[1] >= Int64(lengths.max() ?? 0), shape[1] <= Int64(maxTokens) else {
            throw AnswerError.malformed("\(type) ids have shape \(shape), expected [\(rows), N] with \(lengths.max() ?? 0) ≤ N ≤ \(maxTokens)")
        }
        let width = Int(shape[1])
        let ids = try tensors[0].checkedInt32s("\(type) ids", shape: [rows, width])
        return try (0..<rows).map { row in
            let slice = ids[(row * width)..<((row + 1) * width)]
            let generated = Array(slice.prefix(lengths[row]))
            if let bad = generated.first(where: { $0 < 0 || Int($0) >= (vocab ?? Int(Int32.max)) }) {
                throw AnswerError.malformed("\(type) row \(row) holds id \(bad), outside the vocabulary of \(vocab ?? 0)")
            }
            guard slice.dropFirst(lengths[row]).allSatisfy({ $0 == -1 }) else {
                throw AnswerError.malformed("\(type) row \(row) is not padded with -1 after its \(lengths[row]) ids")
            }
            return generated
        }
    }
}
