// The Sampling module behind the RowDecoder seam: greedy and sampling rows (SequenceSampler, one
// sequence) and beam search (BeamSearch, beams forked from the prompt's sequence).
import Sampling
import Wire

/// The decoder of one row that may generate `limit` tokens: `BeamSearch` for `num_beams` > 1,
/// else `SequenceSampler` (greedy or sampling), drawing from stream `row` of the request's seed.
/// The stop tokens are resolved already, so the model's eos is not added again.
/// - Throws: `SamplingError` (parameters were validated at arrival, so only a prompt id outside the
///   vocabulary, which validation refuses too).
func makeRowDecoder(_ parameters: GenerationParameters, prompt: [Int32], limit: Int, row: Int,
                    scratch: SamplingScratch) throws -> any RowDecoder {
    let sampling = parameters.row(limit: limit)
    let limits = SamplingLimits(maxNewTokens: limit, maxBeams: sampling.numBeams, maxStopTokens: GenerationLimits.maxStopTokens)
    if sampling.isBeamSearch {
        return BeamDecoder(search: try BeamSearch(parameters: sampling, prompt: prompt, vocabSize: scratch.vocabSize, modelEOS: [],
                                                  limits: limits), scratch: scratch)
    }
    return SamplerDecoder(sampler: try SequenceSampler(parameters: sampling, prompt: prompt, vocabSize: scratch.vocabSize,
                                                       modelEOS: [], stream: row, limits: limits), scratch: scratch)
}

/// Greedy decoding or sampling through `SequenceSampler` (processors in Hugging Face's order).
struct SamplerDecoder: RowDecoder {
    var sampler: SequenceSampler
    let scratch: SamplingScratch
    var output: [Int32] { Array(sampler.generated) }
    var streamedToken: Int32? { sampler.generated.last }

    mutating func advance(_ logits: UnsafeMutableBufferPointer<Float>, vocab: Int) throws -> [BeamContinuation] {
        let token = try sampler.next(logits: UnsafeMutableBufferPointer(rebasing: logits[0..<vocab]), scratch: scratch)
        return sampler.isFinished ? [] : [BeamContinuation(parent: 0, token: token)]
    }
}

/// Beam search: each step says which beam each new beam continues; the best hypothesis (with
/// the stop token that finished it) is the row's output.
struct BeamDecoder: RowDecoder {
    var search: BeamSearch
    let scratch: SamplingScratch
    private(set) var output: [Int32] = []
    var streamedToken: Int32? { nil }

    mutating func advance(_ logits: UnsafeMutableBufferPointer<Float>, vocab: Int) throws -> [BeamContinuation] {
        let step = try search.step(logits: logits, scratch: scratch)
        guard step.isDone else {
            return zip(step.parents, step.tokens).map { BeamContinuation(parent: $0, token: $1) }
        }
        if let best = search.finish().first { output = best.tokens + (best.stopToken.map { [$0] } ?? []) }
        return []
    }
}
