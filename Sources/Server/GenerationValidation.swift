// TEXT_SEQ_2_SEQ requests: the `Generation` fields with their defaults applied and their values
// checked (docs/PROTOCOL.md, "TEXT_SEQ_2_SEQ"), and what a whole generation request will hold.
import Sampling
import TokenTranslation
import Wire

/// One TEXT_SEQ_2_SEQ synapse's parameters: the Sampling module's, every absent field at its
/// default, checked by `SamplingParameters.validate`, with the seed and the stop tokens resolved.
public struct GenerationParameters: Sendable, Equatable {
    /// `maxNewTokens` is the synapse's `num_to_generate` (a row may get fewer: `ValidatedGeneration.limits`);
    /// `seed` is the request's, or one drawn at random when it sent none; `stopTokens` are the request's
    /// ids within the vocabulary, or the model's eos when it sent none. An id outside the vocabulary
    /// never occurs, so `stop_tokens = [-1]` turns stopping off.
    public var sampling: SamplingParameters

    public var maxNewTokens: Int { sampling.maxNewTokens }
    public var numBeams: Int { sampling.numBeams }
    public var seed: UInt64 { sampling.seed ?? 0 }
    public var stopTokens: [Int32] { sampling.stopTokens }

    /// The parameters of one row that may generate `limit` tokens.
    func row(limit: Int) -> SamplingParameters {
        var row = sampling
        row.maxNewTokens = limit
        return row
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
    let vocabSize: Int
    /// Stop tokens one synapse may list (before duplicates are removed, so the check is bounded work).
    static let maxStopTokens = 64

    var sampling: SamplingLimits { SamplingLimits(maxNewTokens: maxNewTokens, maxBeams: maxBeams, maxStopTokens: Self.maxStopTokens) }
}

extension GenerationParameters {
    /// `generation` (nil when the synapse has none) with defaults applied (an absent
    /// `num_to_generate` asks for min(256, `--max-new-tokens`)), checked against `limits`.
    /// `randomSeed` is called only when the request sent no seed.
    /// - Throws: `GenerationRefusal`: `InvalidRequest` naming the field, its value and the range
    ///   accepted (`SamplingError.invalidParameter`), or `NotImplemented` for a combination not served.
    static func resolve(_ generation: Generation?, limits: GenerationLimits, eosID: Int32,
                        randomSeed: () -> UInt64) throws -> GenerationParameters {
        let g = generation ?? Generation()
        guard g.stopTokens.count <= GenerationLimits.maxStopTokens else {
            throw GenerationRefusal(code: .invalidRequest,
                                    message: "stop_tokens lists \(g.stopTokens.count) ids, at most \(GenerationLimits.maxStopTokens) are allowed")
        }
        let stops = g.stopTokens.isEmpty ? [eosID] : g.stopTokens.filter { $0 >= 0 && Int($0) < limits.vocabSize }
        let count = g.numToGenerate.map(Int.init) ?? min(SamplingParameters.Defaults.maxNewTokens, limits.maxNewTokens)
        let sampling = SamplingParameters(
            maxNewTokens: count, topK: g.topk.map(Int.init), doSample: g.doSample, topP: g.topP, temperature: g.temperature,
            repetitionPenalty: g.repetitionPenalty, noRepeatNgramSize: g.noRepeatNgramSize.map(Int.init),
            numBeams: g.numBeams.map(Int.init), lengthPenalty: g.lengthPenalty,
            earlyStopping: g.earlyStopping.map { $0 ? .early : .heuristic }, seed: g.seed ?? randomSeed(), stopTokens: stops)
        do {
            try sampling.validate(vocabSize: limits.vocabSize, limits: limits.sampling)
        } catch let error as SamplingError {
            if case .unsupported = error { throw GenerationRefusal(code: .notImplemented, message: error.description) }
            throw GenerationRefusal(code: .invalidRequest, message: error.description)
        }
        return GenerationParameters(sampling: sampling)
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
    /// Set for a network-space request: its prompts were network ids (`rows` are their text's model
    /// tokens), and its answer is network ids.
    let network: NetworkTokenSpace?
    let modelEOS: Int32

    /// The ids synapse `index` answers for its rows' generated model tokens: those tokens in model
    /// space; in network space the text they spell re-tokenized by the standard tokenizer (as
    /// Bittensor's miners re-tokenized their output), the model's eos as the network's end of text,
    /// at most `num_to_generate` ids.
    func answerIDs(synapse index: Int, _ outputs: [[Int32]]) -> [[Int32]] {
        guard let network, case .success(let parameters) = plans[index] else { return outputs }
        let translator = network.translator
        return outputs.map { output in
            var text: [UInt8] = []
            var ended = false
            for id in output {
                if id == modelEOS { ended = true; break }
                text += translator.model.textBytes(of: id) ?? []
            }
            let ids = translator.network.encode(bytes: text) + (ended ? [network.endOfText] : [])
            return Array(ids.prefix(parameters.maxNewTokens))
        }
    }
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
    /// The network's standard token space, when this axon serves it.
    let network: NetworkTokenSpace?

    /// Network-space stop tokens as model-space ones: the network's end of text stands for the
    /// model's eos, an id outside the network vocabulary never occurs (kept as −1); any other id
    /// would need the output re-tokenized at every step, and is not served.
    private func modelStops(_ networkIDs: [Int32], space: NetworkTokenSpace) throws -> [Int32] {
        if let other = networkIDs.first(where: { $0 >= 0 && Int($0) < space.vocabSize && $0 != space.endOfText }) {
            throw GenerationRefusal(code: .notImplemented,
                                    message: "in network space stop_tokens may hold only the network's end of text (\(space.endOfText), the model's eos) or ids that never occur (-1), got \(other)")
        }
        let stops = networkIDs.contains(space.endOfText) ? [eosID] : []
        return stops.isEmpty && !networkIDs.isEmpty ? [-1] : stops
    }

    /// - Throws: `Refusal` for the request as a whole: other synapses beside TEXT_SEQ_2_SEQ
    ///   (`InvalidRequest`), an answer over `--max-response` (`ResponseShapeException`), more
    ///   sequences or KV cache than the axon holds at once (`RequestShapeException`).
    func validate(_ forward: ValidatedForward, randomSeed: () -> UInt64) throws -> ValidatedGeneration {
        if let other = forward.synapses.first(where: { $0.type != .textSeq2Seq }) {
            throw Refusal(code: .invalidRequest,
                          message: "TEXT_SEQ_2_SEQ cannot share a FORWARD with \(other.type); send the other synapses in their own request")
        }
        let space = forward.network == nil ? nil : network
        let plans = forward.synapses.map { synapse in
            Result {
                var generation = synapse.generation
                if let space, var asked = generation {
                    asked.stopTokens = try modelStops(asked.stopTokens, space: space)
                    generation = asked
                }
                return try GenerationParameters.resolve(generation, limits: limits, eosID: eosID, randomSeed: randomSeed)
            }
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
                                   sequences: sequences, kvBytes: kvBytes, network: space, modelEOS: eosID)
    }
}

/// Bytes in MiB, rounded up, for messages.
func mebibytes(_ bytes: Int) -> Int { (bytes + (1 << 20) - 1) >> 20 }
