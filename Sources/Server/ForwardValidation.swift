import Wire

/// A FORWARD request that passed every check, in the form the worker needs.
struct ValidatedForward {
    let batch: Int
    let seq: Int
    /// Valid tokens of each row (its last `lengths[i]` positions); may be empty.
    let rows: [[Int32]]
    let synapses: [Synapse]
    /// Synapses answered without computing (NotImplemented, bad dtype, top-k too large), by index.
    let synapseFailures: [Int: (ReturnCode, String)]
    let tokenCount: Int
    let wantsHidden: Bool
    let logits: LogitsWanted
    /// Tensor bytes the response will hold (what encoding costs, and what the answer holds in memory).
    let responseBytes: Int
}

/// A request refused before compute: the top-level code and a message naming the problem.
struct Refusal: Error {
    let code: ReturnCode
    let message: String
}

/// The checks of the bad-input table, in order, for one FORWARD body.
struct ForwardValidator {
    let vocabSize: Int
    let hiddenSize: Int
    let networkDim: Int
    let maxBatch: Int
    let maxSeq: Int
    let maxBatchTokens: Int
    let maxResponse: Int
    /// Most synapses in one request: each is encoded separately from one forward pass, so without a
    /// cap one request with 10⁶ synapses held the worker (and every other client) for minutes.
    let maxSynapses: Int

    func validate(body: [UInt8]) throws -> ValidatedForward {
        let request: ForwardRequest
        do {
            request = try ForwardRequest(serializedBytes: body)
        } catch {
            throw Refusal(code: .requestDeserializationException, message: "FORWARD body: \(error)")
        }
        guard !request.synapses.isEmpty else {
            throw Refusal(code: .emptyRequest, message: "FORWARD has no synapses")
        }
        guard request.synapses.count <= maxSynapses else {
            throw Refusal(code: .requestShapeException,
                          message: "FORWARD has \(request.synapses.count) synapses, more than the \(maxSynapses) a request may hold")
        }
        // Only model-space ids are served so far; reading network ids as model ids would answer garbage.
        guard request.space == .model else {
            throw Refusal(code: .notImplemented,
                          message: "token space \(request.space) is not served by this axon; send model-space ids (space MODEL, tokenizer_sha256 in INFO)")
        }
        guard let tokens = request.tokens, !(tokens.buffer.isEmpty && tokens.shape.isEmpty) else {
            throw Refusal(code: .emptyRequest, message: "FORWARD has no tokens")
        }
        guard tokens.shape.count == 2 else {
            throw Refusal(code: .requestShapeException,
                          message: "tokens have shape \(tokens.shape), expected 2 dimensions [batch, seq]")
        }
        let (batch64, seq64) = (tokens.shape[0], tokens.shape[1])
        guard batch64 >= 0, seq64 >= 0 else {
            throw Refusal(code: .requestShapeException, message: "tokens have negative shape \(tokens.shape)")
        }
        if batch64 == 0 || seq64 == 0 {
            throw Refusal(code: .emptyRequest, message: "FORWARD has no tokens (shape \(tokens.shape))")
        }
        guard let width = tokens.dtype.byteWidth, tokens.dtype == .int32 || tokens.dtype == .int64 else {
            throw Refusal(code: .requestShapeException, message: "tokens have dtype \(tokens.dtype), expected INT32 or INT64")
        }
        guard batch64 <= Int64(maxBatch) else {
            throw Refusal(code: .requestShapeException, message: "batch \(batch64) exceeds --max-batch \(maxBatch)")
        }
        guard seq64 <= Int64(maxSeq) else {
            throw Refusal(code: .requestShapeException, message: "seq \(seq64) exceeds --max-seq \(maxSeq)")
        }
        let batch = Int(batch64), seq = Int(seq64)
        guard tokens.buffer.count == batch * seq * width else {
            throw Refusal(code: .requestShapeException,
                          message: "tokens buffer has \(tokens.buffer.count) bytes, expected \(batch * seq * width) for shape [\(batch), \(seq)] of \(tokens.dtype)")
        }
        let lengths: [Int]
        if request.lengths.isEmpty {
            lengths = Array(repeating: seq, count: batch)
        } else {
            guard request.lengths.count == batch else {
                throw Refusal(code: .requestShapeException,
                              message: "lengths has \(request.lengths.count) entries, expected one per row (\(batch))")
            }
            if let row = request.lengths.firstIndex(where: { Int($0) > seq }) {
                throw Refusal(code: .requestShapeException,
                              message: "lengths[\(row)] = \(request.lengths[row]) exceeds seq \(seq)")
            }
            lengths = request.lengths.map(Int.init)
        }
        let tokenCount = lengths.reduce(0, +)
        guard tokenCount > 0 else { throw Refusal(code: .emptyRequest, message: "every row has length 0") }
        guard tokenCount <= maxBatchTokens else {
            throw Refusal(code: .requestShapeException,
                          message: "\(tokenCount) tokens exceed --max-batch-tokens \(maxBatchTokens)")
        }
        let rows = try readRows(tokens.buffer, width: width, batch: batch, seq: seq, lengths: lengths)

        var failures: [Int: (ReturnCode, String)] = [:]
        var wantsHidden = false
        var logits = LogitsWanted.none
        var responseBytes = 0
        let positions = batch * seq
        for (index, synapse) in request.synapses.enumerated() {
            let floatWidth: Int
            switch synapse.dtype {
            case .unknown, .float32: floatWidth = 4
            case .float16: floatWidth = 2
            default:
                failures[index] = (.requestShapeException, "synapse \(index) asks for dtype \(synapse.dtype), expected FLOAT32 or FLOAT16")
                continue
            }
            let k = Int(synapse.topk)
            switch synapse.type {
            case .textLastHiddenState:
                wantsHidden = true
                responseBytes += positions * networkDim * floatWidth
            case .textCausalLM, .textCausalLMNext:
                guard k <= vocabSize else {
                    failures[index] = (.requestShapeException, "synapse \(index) asks for topk \(k), more than the vocabulary (\(vocabSize))")
                    continue
                }
                let outputPositions = synapse.type == .textCausalLM ? positions : batch
                responseBytes += k == 0 ? outputPositions * vocabSize * floatWidth
                                        : outputPositions * (k * (floatWidth + 4) + floatWidth)
                logits = max(logits, synapse.type == .textCausalLM ? .all : .last)
            case .textSeq2Seq:
                failures[index] = (.notImplemented, "TEXT_SEQ_2_SEQ is not implemented by this miner")
            default:
                failures[index] = (.notImplemented, "synapse \(index) has type \(synapse.type), which this miner does not serve")
            }
        }
        guard responseBytes <= maxResponse else {
            throw Refusal(code: .responseShapeException,
                          message: "the response would hold \(responseBytes) bytes, over --max-response \(maxResponse)")
        }
        return ValidatedForward(batch: batch, seq: seq, rows: rows, synapses: request.synapses,
                                synapseFailures: failures, tokenCount: tokenCount, wantsHidden: wantsHidden,
                                logits: logits, responseBytes: responseBytes)
    }

    /// The valid tokens of each row, checking each id against the vocabulary.
    private func readRows(_ buffer: [UInt8], width: Int, batch: Int, seq: Int, lengths: [Int]) throws -> [[Int32]] {
        try buffer.withUnsafeBytes { raw in
            var rows: [[Int32]] = []
            rows.reserveCapacity(batch)
            for row in 0..<batch {
                var tokens: [Int32] = []
                tokens.reserveCapacity(lengths[row])
                for column in (seq - lengths[row])..<seq {
                    let offset = (row * seq + column) * width
                    let id: Int64 = width == 4
                        ? Int64(Int32(littleEndian: raw.loadUnaligned(fromByteOffset: offset, as: Int32.self)))
                        : Int64(littleEndian: raw.loadUnaligned(fromByteOffset: offset, as: Int64.self))
                    guard id >= 0, id < Int64(vocabSize) else {
                        throw Refusal(code: .invalidRequest,
                                      message: "token id \(id) at row \(row), position \(column) is outside the vocabulary [0, \(vocabSize))")
                    }
                    tokens.append(Int32(id))
                }
                rows.append(tokens)
            }
            return rows
        }
    }
}
