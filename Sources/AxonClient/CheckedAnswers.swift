// A response is input from another machine: every client path (query, fan-out, score, loadgen)
// reads its tensors only through these checks, so a wrong dtype, a short buffer or an absurd shape
// from a misbehaving axon is a typed error with a message, never an out-of-range index.
import Wire

/// Why an axon's answer cannot be used.
public enum AnswerError: Error, CustomStringConvertible, Equatable {
    /// The whole request was answered with a code other than `Success`.
    case refused(method: Method, code: ReturnCode, message: String)
    /// The request succeeded but this synapse did not.
    case synapseRefused(type: SynapseType, code: ReturnCode, message: String)
    /// The answer does not have the contract's form (docs/PROTOCOL.md).
    case malformed(String)

    public var description: String {
        switch self {
        case let .refused(method, code, message):
            return "the axon answered \(method) with \(code)" + (message.isEmpty ? "" : ": \(message)")
        case let .synapseRefused(type, code, message):
            return "the axon answered \(type) with \(code)" + (message.isEmpty ? "" : ": \(message)")
        case let .malformed(reason):
            return "the axon's answer is malformed: \(reason)"
        }
    }
}

extension Response {
    /// INFO's answer, with the fields a client computes with checked (a vocabulary, a width).
    /// - Throws: `AnswerError.refused` for another code, `.malformed` without an info or with zero sizes.
    public func checkedInfo() throws -> InfoResponse {
        guard code == .success else { throw AnswerError.refused(method: .info, code: code, message: message) }
        guard let info else { throw AnswerError.malformed("INFO answered Success without an info message") }
        for (name, value) in [("vocab_size", info.vocabSize), ("hidden_size", info.hiddenSize), ("network_dim", info.networkDim),
                              ("max_batch", info.maxBatch), ("max_seq", info.maxSeq)] where value == 0 {
            throw AnswerError.malformed("INFO reports \(name) 0")
        }
        return info
    }

    /// The result of `synapse`, the `index`-th synapse the request asked for, if it succeeded.
    /// - Throws: `AnswerError.refused` when the request failed, `.synapseRefused` when the synapse
    ///   did, `.malformed` when that result is missing or names another synapse.
    public func checkedResult(_ synapse: SynapseType, index: Int = 0) throws -> SynapseResult {
        guard code == .success else { throw AnswerError.refused(method: .forward, code: code, message: message) }
        guard let results = forward?.results, results.indices.contains(index) else {
            throw AnswerError.malformed("FORWARD answered Success with \(forward?.results.count ?? 0) synapse results; result \(index) (\(synapse)) is missing")
        }
        let result = results[index]
        guard result.type == synapse else {
            throw AnswerError.malformed("result \(index) is \(result.type), asked for \(synapse)")
        }
        guard result.code == .success else { throw AnswerError.synapseRefused(type: synapse, code: result.code, message: result.message) }
        return result
    }
}

extension Tensor {
    /// The elements as Float after checking that the dtype is FLOAT32 or FLOAT16, the shape is
    /// exactly `expected` and the buffer holds exactly that many elements.
    /// - Throws: `AnswerError.malformed`, naming `name`.
    public func checkedFloats(_ name: String, shape expected: [Int]) throws -> [Float] {
        guard dtype == .float32 || dtype == .float16 else {
            throw AnswerError.malformed("\(name) has dtype \(dtype), expected FLOAT32 or FLOAT16")
        }
        try checkLayout(name, shape: expected)
        return floatValues() ?? []
    }

    /// The elements as Int32 after checking that the dtype is INT32, the shape is exactly
    /// `expected` and the buffer holds exactly that many elements.
    /// - Throws: `AnswerError.malformed`, naming `name`.
    public func checkedInt32s(_ name: String, shape expected: [Int]) throws -> [Int32] {
        guard dtype == .int32 else { throw AnswerError.malformed("\(name) has dtype \(dtype), expected INT32") }
        try checkLayout(name, shape: expected)
        return int32Values() ?? []
    }

    /// Shape equal to `expected` (which the client computed, so its product is small), then the
    /// buffer's byte count equal to that product times the element width.
    private func checkLayout(_ name: String, shape expected: [Int]) throws {
        guard shape.count == expected.count, zip(shape, expected).allSatisfy({ $0 == Int64($1) }) else {
            throw AnswerError.malformed("\(name) has shape \(shape), expected \(expected)")
        }
        var bytes = dtype.byteWidth ?? 0
        for dimension in expected {
            let (product, overflow) = bytes.multipliedReportingOverflow(by: dimension)
            guard !overflow else { throw AnswerError.malformed("\(name) shape \(expected) overflows") }
            bytes = product
        }
        guard buffer.count == bytes else {
            throw AnswerError.malformed("\(name) has \(buffer.count) bytes, shape \(expected) of \(dtype) needs \(bytes)")
        }
    }
}

/// A checked top-k answer: `rows × positions` distributions of `k` probabilities and ids each.
/// For `TEXT_CAUSAL_LM_NEXT`, `positions` is 1 (the last valid position of each row).
public struct TopKAnswer: Sendable {
    public let rows: Int, positions: Int, k: Int
    /// `[rows, positions, k]`, row-major.
    public let probabilities: [Float]
    /// `[rows, positions, k]`, each in `0..<vocab`.
    public let ids: [Int32]
    /// `[rows, positions]`: the probability of any token outside the top-k.
    public let floors: [Float]

    /// The flat range of one distribution in `probabilities` and `ids`.
    public func span(row: Int, position: Int = 0) -> Range<Int> {
        let start = (row * positions + position) * k
        return start..<(start + k)
    }

    public func floor(row: Int, position: Int = 0) -> Float { floors[row * positions + position] }
}

/// A checked dense answer: hidden states `[rows, positions, width]` or raw logits (`width` = vocab).
public struct DenseAnswer: Sendable {
    public let rows: Int, positions: Int, width: Int
    /// `[rows, positions, width]`, row-major.
    public let values: [Float]

    public func vector(row: Int, position: Int = 0) -> ArraySlice<Float> {
        let start = (row * positions + position) * width
        return values[start..<(start + width)]
    }
}

/// A checked network-space `TEXT_CAUSAL_LM_NEXT` answer: per row, `k` phrases of standard tokens
/// with their probabilities, and the floor.
public struct PhraseAnswer: Sendable {
    public let rows: Int, k: Int
    /// L, the answer's phrase width (its longest phrase).
    public let width: Int
    /// `[rows, k]`, row-major.
    public let probabilities: [Float]
    /// `[rows, k, width]`: each phrase's ids (each in `0..<vocab`), then −1 to the width.
    public let phrases: [Int32]
    /// `[rows]`: the probability of any phrase not listed.
    public let floors: [Float]

    /// The flat range of one row's phrases in `probabilities`.
    public func span(row: Int) -> Range<Int> { (row * k)..<((row + 1) * k) }

    /// The ids of phrase `index` of `row`, padding removed (empty for a slot beyond the phrases that exist).
    public func phrase(row: Int, index: Int) -> ArraySlice<Int32> {
        let start = (row * k + index) * width
        return phrases[start..<(start + width)].prefix { $0 != -1 }
    }

    /// Every phrase of `row`, padding removed, in order.
    public func phrases(row: Int) -> [[Int32]] { (0..<k).map { Array(phrase(row: row, index: $0)) } }

    public func floor(row: Int) -> Float { floors[row] }
}

extension SynapseResult {
    /// The network-space phrase encoding (probabilities `[rows, k]`, phrases INT32 `[rows, k, L]`,
    /// floor `[rows]`), checked against what was asked. L is the axon's to choose; the buffer must
    /// hold exactly that many ids, each phrase some ids below `vocab` and then only −1.
    /// - Throws: `AnswerError.malformed`.
    public func checkedPhrases(rows: Int, k: Int, vocab: Int) throws -> PhraseAnswer {
        guard tensors.count == 3 else {
            throw AnswerError.malformed("\(type) phrases have \(tensors.count) tensors, expected 3 (probabilities, phrases, floor)")
        }
        let probabilities = try tensors[0].checkedFloats("\(type) probabilities", shape: [rows, k])
        let shape = tensors[1].shape
        guard shape.count == 3, shape[0] == Int64(rows), shape[1] == Int64(k), shape[2] >= 1, shape[2] <= Int64(Int32.max) else {
            throw AnswerError.malformed("\(type) phrases have shape \(shape), expected [\(rows), \(k), L] with L ≥ 1")
        }
        let width = Int(shape[2])
        let phrases = try tensors[1].checkedInt32s("\(type) phrases", shape: [rows, k, width])
        let floors = try tensors[2].checkedFloats("\(type) floor", shape: [rows])
        for slot in 0..<(rows * k) {
            let phrase = phrases[(slot * width)..<((slot + 1) * width)]
            let ids = phrase.prefix { $0 != -1 }
            if let bad = ids.first(where: { $0 < 0 || Int($0) >= vocab }) {
                throw AnswerError.malformed("\(type) phrase \(slot % k) of row \(slot / k) holds \(bad), outside the network vocabulary of \(vocab)")
            }
            guard phrase.dropFirst(ids.count).allSatisfy({ $0 == -1 }) else {
                throw AnswerError.malformed("\(type) phrase \(slot % k) of row \(slot / k) has ids after its −1 padding")
            }
        }
        return PhraseAnswer(rows: rows, k: k, width: width, probabilities: probabilities, phrases: phrases, floors: floors)
    }

    /// The top-k encoding (probabilities, ids, floor), checked against what was asked: `rows`
    /// rows, `positions` per row (nil for `TEXT_CAUSAL_LM_NEXT`, whose tensors have no position
    /// axis), `k` per distribution and ids below `vocab` (when given).
    /// - Throws: `AnswerError.malformed`.
    public func checkedTopK(rows: Int, positions: Int?, k: Int, vocab: Int?) throws -> TopKAnswer {
        guard tensors.count == 3 else {
            throw AnswerError.malformed("\(type) top-k has \(tensors.count) tensors, expected 3 (probabilities, ids, floor)")
        }
        let outer = positions.map { [rows, $0] } ?? [rows]
        let probabilities = try tensors[0].checkedFloats("\(type) probabilities", shape: outer + [k])
        let ids = try tensors[1].checkedInt32s("\(type) ids", shape: outer + [k])
        let floors = try tensors[2].checkedFloats("\(type) floor", shape: outer)
        if let bad = ids.first(where: { $0 < 0 || Int($0) >= (vocab ?? Int(Int32.max)) }) {
            throw AnswerError.malformed("\(type) ids contain \(bad), outside the vocabulary of \(vocab ?? 0)")
        }
        return TopKAnswer(rows: rows, positions: positions ?? 1, k: k, probabilities: probabilities, ids: ids, floors: floors)
    }

    /// One dense tensor `[rows, positions, width]` (or `[rows, width]` when `positions` is nil),
    /// checked: hidden states (`width` = network_dim) or raw logits (`width` = vocab).
    /// - Throws: `AnswerError.malformed`.
    public func checkedDense(rows: Int, positions: Int?, width: Int) throws -> DenseAnswer {
        guard tensors.count == 1 else { throw AnswerError.malformed("\(type) has \(tensors.count) tensors, expected 1") }
        let shape = (positions.map { [rows, $0] } ?? [rows]) + [width]
        let values = try tensors[0].checkedFloats("\(type) values", shape: shape)
        return DenseAnswer(rows: rows, positions: positions ?? 1, width: width, values: values)
    }
}
