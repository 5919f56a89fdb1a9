// TEXT_SEQ_2_SEQ requests: the `Generation` fields with their defaults applied and their values
// checked (docs/PROTOCOL.md, "TEXT_SEQ_2_SEQ"), and what a whole generation request will hold.
import Wire

/// One TEXT_SEQ_2_SEQ synapse's parameters, every absent field at its default, every value checked.
public struct GenerationParameters: Sendable, Equatable {
    /// New tokens per row at most (`num_to_generate`, capped by the context: see `ValidatedGeneration`).
    public var maxNewTokens: Int
    /// 0: no top-k filter.
    public var topK: Int
    public var doSample: Bool
    public var topP: Float
    public var temperature: Float
    public var repetitionPenalty: Float
    /// 0: off.
    public var noRepeatNgramSize: Int
    public var numBeams: Int
    public var lengthPenalty: Float
    public var earlyStopping: Bool
    /// The request's seed, or one drawn at random when it sent none.
    public var seed: UInt64
    /// The ids that end a row: the request's, or the model's eos when it sent none. An id outside
    /// the vocabulary never occurs, so `[-1]` turns stopping off.
    public var stopTokens: [Int32]

    /// Plain greedy decoding: argmax at every step, no logits processor.
    public var isPlainGreedy: Bool {
        !doSample && numBeams == 1 && noRepeatNgramSize == 0 && repetitionPenalty == 1
    }
}

/// Why a generation cannot be served: the code and message of a refusal.
public struct GenerationRefusal: Error, CustomStringConvertible, Equatable {
    public let code: ReturnCode
    public let message: String
    public var description: String { "\(code): \(message)" }
}

/// The limits generation fields are checked against.
struct GenerationLimits {
    /// `serve --max-new-tokens`.
    let maxNewTokens: Int
    /// Beams one row may ask for (`--max-sequences`: they run at once).
    let maxBeams: Int
    /// Stop tokens one synapse may list.
    static let maxStopTokens = 64
    /// Whether logits processors, sampling and beam search are available (the Sampling module).
    let samplingAvailable: Bool
}

extension GenerationParameters {
    /// `generation` (nil when the synapse has none) with defaults applied, checked against `limits`.
    /// `randomSeed` is called only when the request sent no seed.
    /// - Throws: `GenerationRefusal` (`InvalidRequest`, or `NotImplemented` for a combination this
    ///   axon does not serve), naming the field and its value.
    static func resolve(_ generation: Generation?, limits: GenerationLimits, eosID: Int32,
                        randomSeed: () -> UInt64) throws -> GenerationParameters {
        let g = generation ?? Generation()
        func invalid(_ message: String) -> GenerationRefusal { GenerationRefusal(code: .invalidRequest, message: message) }
        let defaultCount = min(Int(Generation.Defaults.numToGenerate), limits.maxNewTokens)
        let count = g.numToGenerate.map(Int.init) ?? defaultCount
        guard count >= 1 else { throw invalid("num_to_generate is 0; ask for at least 1 token") }
        guard count <= limits.maxNewTokens else {
            throw invalid("num_to_generate \(count) exceeds this axon's --max-new-tokens \(limits.maxNewTokens)")
        }
        let doSample = g.doSample ?? Generation.Defaults.doSample
        let topP = g.topP ?? Generation.Defaults.topP
        guard topP > 0, topP <= 1 else { throw invalid("top_p \(topP) is outside (0, 1]") }
        let temperature = g.temperature ?? Generation.Defaults.temperature
        guard temperature.isFinite else { throw invalid("temperature \(temperature) is not a finite number") }
        if doSample, temperature <= 0 {
            throw invalid("temperature \(temperature) must be above 0 with do_sample (greedy decoding is do_sample false)")
        }
        let penalty = g.repetitionPenalty ?? Generation.Defaults.repetitionPenalty
        guard penalty.isFinite, penalty > 0 else { throw invalid("repetition_penalty \(penalty) must be a finite number above 0") }
        let lengthPenalty = g.lengthPenalty ?? Generation.Defaults.lengthPenalty
        guard lengthPenalty.isFinite else { throw invalid("length_penalty \(lengthPenalty) is not a finite number") }
        let beams = Int(g.numBeams ?? Generation.Defaults.numBeams)
        guard beams >= 1 else { throw invalid("num_beams is 0; 1 is greedy or sampling, more is beam search") }
        guard beams <= limits.maxBeams else {
            throw invalid("num_beams \(beams) exceeds the \(limits.maxBeams) sequences this axon runs at once (--max-sequences)")
        }
        guard g.stopTokens.count <= GenerationLimits.maxStopTokens else {
            throw invalid("stop_tokens lists \(g.stopTokens.count) ids, at most \(GenerationLimits.maxStopTokens) are allowed")
        }
        let parameters = GenerationParameters(
            maxNewTokens: count, topK: Int(g.topk ?? Generation.Defaults.topk), doSample: doSample, topP: topP,
            temperature: temperature, repetitionPenalty: penalty,
            noRepeatNgramSize: Int(g.noRepeatNgramSize ?? Generation.Defaults.noRepeatNgramSize), numBeams: beams,
            lengthPenalty: lengthPenalty, earlyStopping: g.earlyStopping ?? Generation.Defaults.earlyStopping,
            seed: g.seed ?? randomSeed(), stopTokens: g.stopTokens.isEmpty ? [eosID] : g.stopTokens)
        if doSample, beams > 1 {
            throw GenerationRefusal(code: .notImplemented,
                                    message: "do_sample with num_beams \(beams) (beam-search sampling) is not served; use do_sample with num_beams 1, or beam search without do_sample")
        }
        if !limits.samplingAvailable, !parameters.isPlainGreedy {
            throw GenerationRefusal(code: .notImplemented,
                                    message: "only plain greedy decoding is served so far (do_sample false, num_beams 1, no_repeat_ngram_size 0, repetition_penalty 1)")
        }
        return parameters
    }
}

/// A FORWARD of TEXT_SEQ_2_SEQ synapses that passed every check: each synapse generates for every
/// row (each row its own sequence, with `numBeams` continuations for beam search).
struct ValidatedGeneration {
    let batch: Int
    /// Each row's prompt (its valid tokens); an empty row generates nothing.
    let rows: [[Int32]]
    let synapses: [Synapse]
    /// Per synapse: its parameters, or why it fails on its own.
    let plans: [Result<GenerationParameters, GenerationRefusal>]
    /// Per synapse and row: tokens it may generate (`maxNewTokens`, or fewer where the row's
    /// prompt leaves less room in a sequence: the last token is never fed back, so a prompt of P
    /// positions leaves `maxSequenceLength − P + 1`). Zero for failed synapses and empty rows.
    let limits: [[Int]]
    let promptTokens: Int
    /// Tensor bytes of the answer.
    let responseBytes: Int
    /// Sequences it holds at once, at most.
    let sequences: Int
    /// KV cache bytes reserved for it while it runs.
    let kvBytes: Int
}

/// Checks a validated FORWARD whose synapses include TEXT_SEQ_2_SEQ.
struct GenerationValidator {
    let limits: GenerationLimits
    let maxSequences: Int
    let maxSequenceLength: Int
    let maxResponse: Int
    let kvCapacityBytes: Int
    let stepTokens: Int
    let eosID: Int32
    let kvReservation: (_ prompt: Int, _ generate: Int, _ beams: Int, _ chunk: Int) -> Int

    /// - Throws: `Refusal` for the request as a whole: other synapses beside TEXT_SEQ_2_SEQ
    ///   (`InvalidRequest`), an answer over `--max-response` (`ResponseShapeException`), more
    ///   sequences or KV cache than the axon holds at once (`RequestShapeException`).
    func validate(_ forward: ValidatedForward, randomSeed: () -> UInt64) throws -> ValidatedGeneration {
        if let other = forward.synapses.first(where: { $0.type != .textSeq2Seq }) {
            throw Refusal(code: .invalidRequest,
                          message: "TEXT_SEQ_2_SEQ cannot share a FORWARD with \(other.type); send the other synapses in their own request")
        }
        let plans = forward.synapses.map { synapse in
            Result { try GenerationParameters.resolve(synapse.generation, limits: limits, eosID: eosID, randomSeed: randomSeed) }
                .mapError { $0 as? GenerationRefusal ?? GenerationRefusal(code: .unknownException, message: "\($0)") }
        }
        var responseBytes = 0, sequences = 0, kvBytes = 0
        var rowLimits: [[Int]] = []
        for plan in plans {
            guard case .success(let parameters) = plan else {
                rowLimits.append(Array(repeating: 0, count: forward.batch))
                continue
            }
            if let long = forward.rows.firstIndex(where: { $0.count > maxSequenceLength }) {
                throw Refusal(code: .requestShapeException,
                              message: "row \(long) has \(forward.rows[long].count) tokens, more than the \(maxSequenceLength) a sequence holds")
            }
            let counts = forward.rows.map { row in
                row.isEmpty ? 0 : min(parameters.maxNewTokens, maxSequenceLength - row.count + 1)
            }
            rowLimits.append(counts)
            responseBytes += forward.batch * (parameters.maxNewTokens + 1) * 4
            for (row, count) in zip(forward.rows, counts) where count > 0 {
                sequences += parameters.numBeams
                kvBytes += kvReservation(row.count, count - 1, parameters.numBeams, stepTokens)
            }
        }
        guard responseBytes <= maxResponse else {
            throw Refusal(code: .responseShapeException,
                          message: "the generated ids would hold \(responseBytes) bytes, over --max-response \(maxResponse)")
        }
        guard sequences <= maxSequences else {
            throw Refusal(code: .requestShapeException,
                          message: "the generation runs \(sequences) sequences at once (rows × num_beams over its synapses), more than this axon's --max-sequences \(maxSequences)")
        }
        guard kvBytes <= kvCapacityBytes else {
            throw Refusal(code: .requestShapeException,
                          message: "the generation needs \(mebibytes(kvBytes)) MiB of KV cache (prompts plus num_to_generate per beam), more than this axon's --kv-cache-mb \(mebibytes(kvCapacityBytes)) holds; ask for fewer rows or tokens")
        }
        return ValidatedGeneration(batch: forward.batch, rows: forward.rows, synapses: forward.synapses, plans: plans,
                                   limits: rowLimits, promptTokens: forward.tokenCount, responseBytes: responseBytes,
                                   sequences: sequences, kvBytes: kvBytes)
    }
}

/// Bytes in MiB, rounded up, for messages.
func mebibytes(_ bytes: Int) -> Int { (bytes + (1 << 20) - 1) >> 20 }
