import Identity
import TokenTranslation
import Wire

/// A FORWARD request that passed every check, in the form the worker needs.
struct ValidatedForward {
    let batch: Int
    /// The request's width: model positions in model space, network positions in network space.
    let seq: Int
    /// What the model runs for each row: in model space its valid tokens (its last `lengths[i]`
    /// positions; may be empty), in network space its text's model tokens (never empty).
    let rows: [[Int32]]
    /// In network space, each row's valid network ids laid over its model tokens (`rows[i]` is
    /// `network[i].modelIDs`); nil in model space.
    let network: [RowAlignment]?
    let synapses: [Synapse]
    /// Synapses answered without computing (NotImplemented, bad dtype, top-k too large), by index.
    let synapseFailures: [Int: (ReturnCode, String)]
    /// Model tokens the rows hold: what the engine runs, and what the work is priced by.
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

/// The checks of the issue's bad-input table, in order, for one FORWARD body.
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
    /// The network's standard token space, when this axon serves it.
    let network: NetworkTokenSpace?

    func validate(body: [UInt8]) throws -> ValidatedForward {
        let request = try decode(body: body)
        // Reading ids of a space this axon does not serve as model ids would answer garbage.
        let space: NetworkTokenSpace?
        switch request.space {
        case .model: space = nil
        case .network:
            guard let network else {
                throw Refusal(code: .notImplemented,
                              message: "token space NETWORK is not served by this axon (it was started without the network tokenizer); send model-space ids (space MODEL, tokenizer_sha256 in INFO)")
            }
            space = network
        default:
            throw Refusal(code: .notImplemented,
                          message: "\(request.space) is not served by this axon; send model-space ids (space MODEL, tokenizer_sha256 in INFO) or network-space ids (space NETWORK, network_tokenizer_sha256)")
        }
        let grid = try readGrid(request, vocabSize: space?.vocabSize ?? vocabSize,
                                vocabulary: space == nil ? "vocabulary" : "network vocabulary")
        let (batch, seq, sent, sentCount) = (grid.batch, grid.seq, grid.rows, grid.tokenCount)
        let rows: [[Int32]], alignments: [RowAlignment]?, tokenCount: Int
        if let space {
            let aligned = try align(sent, in: space)
            alignments = aligned
            rows = aligned.map(\.modelIDs)
            tokenCount = rows.reduce(0) { $0 + $1.count }
            guard tokenCount <= maxBatchTokens else {
                throw Refusal(code: .requestShapeException,
                              message: "the rows are \(tokenCount) model tokens once translated (from \(sentCount) network tokens), over --max-batch-tokens \(maxBatchTokens); send fewer or shorter rows")
            }
        } else {
            (rows, alignments, tokenCount) = (sent, nil, sentCount)
        }

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
            let outputVocab = space?.vocabSize ?? vocabSize
            switch synapse.type {
            case .textLastHiddenState:
                wantsHidden = true
                responseBytes += positions * networkDim * floatWidth
            case .textCausalLM, .textCausalLMNext:
                guard k <= outputVocab else {
                    failures[index] = (.requestShapeException, "synapse \(index) asks for topk \(k), more than the \(space == nil ? "vocabulary" : "network vocabulary") (\(outputVocab))")
                    continue
                }
                if let space, synapse.type == .textCausalLMNext {
                    // Phrases: probabilities [batch, k], phrases INT32 [batch, k, L], floor [batch].
                    guard k > 0 else {
                        failures[index] = (.requestShapeException, "synapse \(index): TEXT_CAUSAL_LM_NEXT in network space answers phrases and needs topk 1...\(outputVocab), got 0")
                        continue
                    }
                    responseBytes += batch * (k * (floatWidth + 4 * space.maxPhraseLength) + floatWidth)
                    // Token healing reads the distribution before each row's last model token too.
                    logits = max(logits, .lastTwo)
                    continue
                }
                let outputPositions = synapse.type == .textCausalLM ? positions : batch
                responseBytes += k == 0 ? outputPositions * outputVocab * floatWidth
                                        : outputPositions * (k * (floatWidth + 4) + floatWidth)
                logits = max(logits, synapse.type == .textCausalLM ? .all : .last)
            case .textSeq2Seq where space != nil:
                failures[index] = (.notImplemented, "TEXT_SEQ_2_SEQ is not implemented by this miner (in network space it belongs to generation)")
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
        return ValidatedForward(batch: batch, seq: seq, rows: rows, network: alignments, synapses: request.synapses,
                                synapseFailures: failures, tokenCount: tokenCount, wantsHidden: wantsHidden,
                                logits: logits, responseBytes: responseBytes)
    }

    /// A FORWARD for a relay (the mixture axon): network space only, ids below `networkVocabSize`,
    /// within the same limits as a model's. What each synapse asks is the relay's to check.
    func validateRelayed(body: [UInt8], networkVocabSize: Int, deadline: UInt64, priority: AdmissionPriority) throws -> RelayedForward {
        let request = try decode(body: body)
        guard request.space == .network else {
            throw Refusal(code: .notImplemented,
                          message: "\(request.space) is not served by this axon: it relays to other axons and serves network space only; send network-space ids (space NETWORK, network_tokenizer_sha256 in INFO)")
        }
        let grid = try readGrid(request, vocabSize: networkVocabSize, vocabulary: "network vocabulary")
        return RelayedForward(request: request, batch: grid.batch, seq: grid.seq, rows: grid.rows, deadline: deadline, priority: priority)
    }

    /// The body as a FORWARD with at least one synapse and at most `maxSynapses`.
    private func decode(body: [UInt8]) throws -> ForwardRequest {
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
        return request
    }

    /// The request's token grid: its shape, dtype and lengths checked against the limits, and each
    /// row's valid ids checked against `vocabSize`.
    private func readGrid(_ request: ForwardRequest, vocabSize: Int, vocabulary: String) throws
        -> (batch: Int, seq: Int, rows: [[Int32]], tokenCount: Int) {
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
        let sentCount = lengths.reduce(0, +)
        guard sentCount > 0 else { throw Refusal(code: .emptyRequest, message: "every row has length 0") }
        guard sentCount <= maxBatchTokens else {
            throw Refusal(code: .requestShapeException,
                          message: "\(sentCount) tokens exceed --max-batch-tokens \(maxBatchTokens)")
        }
        let rows = try readRows(tokens.buffer, width: width, batch: batch, seq: seq, lengths: lengths,
                                vocabSize: vocabSize, vocabulary: vocabulary)
        return (batch, seq, rows, sentCount)
    }

    /// The valid tokens of each row, checking each id against the vocabulary of the request's space.
    private func readRows(_ buffer: [UInt8], width: Int, batch: Int, seq: Int, lengths: [Int], vocabSize: Int,
                          vocabulary: String) throws -> [[Int32]] {
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
                                      message: "token id \(id) at row \(row), position \(column) is outside the \(vocabulary) [0, \(vocabSize))")
                    }
                    tokens.append(Int32(id))
                }
                rows.append(tokens)
            }
            return rows
        }
    }

    /// Each network row laid over its text's model tokens, refusing rows without text and rows
    /// whose model tokens exceed `--max-seq` (saying how much to cut).
    private func align(_ rows: [[Int32]], in space: NetworkTokenSpace) throws -> [RowAlignment] {
        try rows.enumerated().map { index, ids in
            let row: RowAlignment
            do {
                row = try space.translator.align(networkIDs: ids)
            } catch TokenSpaceError.noText {
                let what = ids.isEmpty ? "its length is 0" : "its \(ids.count) valid tokens are only <|endoftext|> (padding)"
                throw Refusal(code: .emptyRequest,
                              message: "row \(index) has no text after padding (\(what)); every network-space row needs text to translate")
            } catch {
                throw Refusal(code: .unknownException, message: "row \(index) cannot be translated to the model's tokens: \(error)")
            }
            guard row.modelIDs.count <= maxSeq else {
                throw Refusal(code: .requestShapeException, message: Self.tooLong(row, index: index, maxSeq: maxSeq))
            }
            return row
        }
    }

    /// What to shorten a network row to so its model tokens fit `maxSeq`: drop network tokens from
    /// its start until the model tokens ending after the cut (plus a bos) fit. Re-tokenizing the
    /// kept text can move a token at the cut, hence "about".
    static func tooLong(_ row: RowAlignment, index: Int, maxSeq: Int) -> String {
        let prefix = row.firstTextPosition
        var drop = 0, firstKept = prefix   // firstKept: the first model text token ending after the cut
        while drop < row.networkEnds.count {
            let start = drop == 0 ? 0 : row.networkEnds[drop - 1]
            while firstKept < row.modelEnds.count, row.modelEnds[firstKept] <= start { firstKept += 1 }
            if row.modelEnds.count - firstKept + prefix <= maxSeq { break }
            drop += 1
        }
        let keep = row.networkIDs.count - drop
        return "row \(index) is \(row.modelIDs.count) model tokens once translated (from \(row.networkIDs.count) network tokens), "
            + "over --max-seq \(maxSeq): shorten the row by about \(drop) network tokens from its start (keep at most its last \(keep))"
    }
}
