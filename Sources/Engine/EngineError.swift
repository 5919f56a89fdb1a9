/// Everything that can go wrong loading a model into the engine or running a forward pass.
/// Each message names the offending key, tensor, row or position with observed and expected values.
public enum EngineError: Error, CustomStringConvertible, Equatable {
    /// `general.architecture` names a model family this engine does not implement.
    case unsupportedArchitecture(String)
    /// A required metadata key is absent (or has a non-numeric type).
    case missingHyperparameter(key: String)
    /// A metadata value is present but unusable.
    case invalidHyperparameter(key: String, value: String, expected: String)
    /// A required tensor is absent from the file.
    case missingTensor(name: String)
    /// A tensor's dims (ne[0] first) disagree with the hyperparameters.
    case tensorShapeMismatch(name: String, dims: [Int], expected: [Int])
    /// A tensor's type has no dequantization kernel, or dequantizing it into f32 failed.
    case tensorLoadFailed(name: String, reason: String)
    /// `EngineOptions` are out of range for this model.
    case invalidOptions(String)
    /// The batch has no rows, or a row has no tokens.
    case emptyBatch
    case emptyRow(row: Int)
    /// A token id is negative or not below the vocabulary size.
    case tokenOutOfRange(row: Int, position: Int, id: Int32, vocabSize: Int)
    /// The batch exceeds a limit fixed in `EngineOptions`.
    case tooManyRows(count: Int, max: Int)
    case tooManyTokens(count: Int, max: Int)
    case rowTooLong(row: Int, length: Int, max: Int)
    /// More logit positions were requested than the result buffer holds.
    case tooManyLogitPositions(count: Int, max: Int)
    /// A sequence handle that was released, or never issued by this engine.
    case unknownSequence(SequenceID)
    /// Every sequence slot is in use (`EngineOptions.maxSequences`).
    case tooManySequences(max: Int)
    /// A cached forward pass got a different number of sequences than the batch has rows.
    case sequenceCountMismatch(rows: Int, sequences: Int)
    /// Two rows of one cached forward pass name the same sequence.
    case duplicateSequence(row: Int, SequenceID)
    /// A row would make its sequence longer than `EngineOptions.maxSeq`.
    case sequenceTooLong(row: Int, length: Int, max: Int)
    /// The KV cache has too few free blocks for the batch; nothing was changed.
    case kvCacheFull(neededBlocks: Int, freeBlocks: Int, blockTokens: Int)
    /// A `.positions` selection names a token index outside the batch.
    case logitPositionOutOfRange(index: Int, tokens: Int)

    public var description: String {
        switch self {
        case .unsupportedArchitecture(let arch):
            return "unsupported model architecture '\(arch)' (supported: \(ModelFamily.supportedArchitectures.joined(separator: ", ")))"
        case .missingHyperparameter(let key):
            return "model metadata lacks the integer/float key '\(key)'"
        case .invalidHyperparameter(let key, let value, let expected):
            return "model metadata key '\(key)' is \(value), expected \(expected)"
        case .missingTensor(let name):
            return "model has no tensor '\(name)'"
        case .tensorShapeMismatch(let name, let dims, let expected):
            return "tensor '\(name)' has dims \(dims), expected \(expected) (ne[0] first)"
        case .tensorLoadFailed(let name, let reason):
            return "could not dequantize tensor '\(name)': \(reason)"
        case .invalidOptions(let message):
            return "invalid engine options: \(message)"
        case .emptyBatch:
            return "the batch has no rows"
        case .emptyRow(let row):
            return "row \(row) of the batch has no tokens"
        case .tokenOutOfRange(let row, let position, let id, let vocabSize):
            return "token id \(id) at row \(row), position \(position) is outside the vocabulary [0, \(vocabSize))"
        case .tooManyRows(let count, let max):
            return "the batch has \(count) rows, at most \(max) are allowed (EngineOptions.maxRows)"
        case .tooManyTokens(let count, let max):
            return "the batch has \(count) tokens, at most \(max) are allowed (EngineOptions.maxBatchTokens)"
        case .rowTooLong(let row, let length, let max):
            return "row \(row) has \(length) tokens, at most \(max) are allowed (EngineOptions.maxSeq)"
        case .tooManyLogitPositions(let count, let max):
            return "logits were requested at \(count) positions but the result holds at most \(max) (EngineOptions.maxLogitRows); use forward(_:eachLogits:) to stream them"
        case .unknownSequence(let id):
            return "\(id) is not live in this engine (released, or issued by another engine)"
        case .tooManySequences(let max):
            return "all \(max) sequence slots are in use (EngineOptions.maxSequences); release finished sequences first"
        case .sequenceCountMismatch(let rows, let sequences):
            return "the batch has \(rows) rows but \(sequences) sequences were given (one per row)"
        case .duplicateSequence(let row, let id):
            return "row \(row) names \(id), which an earlier row of the batch already extends"
        case .sequenceTooLong(let row, let length, let max):
            return "row \(row) would make its sequence \(length) tokens long, at most \(max) are allowed (EngineOptions.maxSeq)"
        case .kvCacheFull(let needed, let free, let blockTokens):
            return "the KV cache needs \(needed) more blocks of \(blockTokens) positions for this batch but has \(free) free (EngineOptions.kvCacheBytes); release sequences or retry later"
        case .logitPositionOutOfRange(let index, let tokens):
            return "logits were requested at token index \(index), outside the batch's \(tokens) tokens"
        }
    }
}
