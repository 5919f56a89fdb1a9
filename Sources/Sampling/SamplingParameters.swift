/// How beam search decides it is done (Hugging Face's `early_stopping`, `BeamHypotheses.is_done`).
public enum EarlyStopping: String, Hashable, Sendable {
    /// `False`, the default: done when `numBeams` hypotheses are finished and the best running beam,
    /// normalised by its current length, cannot beat the worst of them. A heuristic: with a positive
    /// `lengthPenalty` a longer continuation could still score better.
    case heuristic
    /// `True`: done as soon as `numBeams` hypotheses are finished.
    case early
    /// `"never"`: the canonical bound. With `lengthPenalty` > 0 the best running beam is normalised by
    /// the longest length it could reach (`maxNewTokens`), otherwise by its current length. Not reachable
    /// from the wire (a bool), offered to local callers.
    case never
}

/// The limits a server puts on generation requests (`serve --max-new-tokens` and its beam budget).
public struct SamplingLimits: Hashable, Sendable {
    /// Largest `num_to_generate` accepted.
    public var maxNewTokens: Int
    /// Largest `num_beams` accepted: each beam holds a KV-cache sequence.
    public var maxBeams: Int
    /// Largest number of distinct stop tokens accepted.
    public var maxStopTokens: Int

    public init(maxNewTokens: Int = 2048, maxBeams: Int = 8, maxStopTokens: Int = 64) {
        self.maxNewTokens = maxNewTokens; self.maxBeams = maxBeams; self.maxStopTokens = maxStopTokens
    }
}

/// What one generation request asks for: Bittensor's `TextSeq2Seq` parameters as the wire carries them
/// (`Protos/axon.proto`, `Generation`), with Hugging Face's meaning (docs/GENERATION.md).
///
/// Greedy decoding (`doSample` false, `numBeams` 1) applies the repetition penalty and the n-gram ban,
/// then takes the arg-max; sampling adds temperature, top-k and top-p and draws from the result; beam
/// search (`numBeams` > 1) applies the first two to log-probabilities. Parameters a mode does not use
/// are ignored, as in Hugging Face's `generate`, but must still be in range.
public struct SamplingParameters: Hashable, Sendable {
    /// The value an absent wire field takes (the comments in Protos/axon.proto; the Wire module's
    /// `Generation.Defaults`, which SamplingTests checks against these).
    public enum Defaults {
        public static let maxNewTokens = 256
        public static let topK = 50
        public static let doSample = false
        public static let topP: Float = 0.95
        public static let temperature: Float = 1.0
        public static let repetitionPenalty: Float = 1.0
        public static let noRepeatNgramSize = 2
        public static let numBeams = 1
        public static let lengthPenalty: Float = 1.0
        public static let earlyStopping = EarlyStopping.heuristic
    }

    /// `num_to_generate`: at most this many new tokens (the stop token, when one ends the sequence, counts).
    public var maxNewTokens: Int
    /// `topk`: keep the k highest scores (and every score tied with the k-th); 0 = no top-k filter.
    public var topK: Int
    /// `do_sample`: draw from the processed distribution; false = greedy, or beam search when `numBeams` > 1.
    public var doSample: Bool
    /// `top_p`: keep the smallest set of most likely tokens whose probability reaches `topP`, in (0, 1].
    public var topP: Float
    /// `temperature`: scores are divided by it; > 0 when sampling.
    public var temperature: Float
    /// `repetition_penalty`: scores of tokens already in the sequence (prompt included) are divided by it
    /// when positive and multiplied by it when negative; 1 = off, > 0.
    public var repetitionPenalty: Float
    /// `no_repeat_ngram_size`: no n-gram of this size occurs twice in the sequence (prompt included); 0 = off.
    public var noRepeatNgramSize: Int
    /// `num_beams`: 1 = greedy or sampling; more = beam search with that many beams.
    public var numBeams: Int
    /// `length_penalty`: a finished beam's score is sum log-probs / (generated length ^ lengthPenalty).
    public var lengthPenalty: Float
    /// `early_stopping`: when beam search is done.
    public var earlyStopping: EarlyStopping
    /// `seed`: nil = a random seed; the same seed and request give the same tokens (docs/GENERATION.md).
    public var seed: UInt64?
    /// `stop_tokens`: generation ends after any of these; empty = the model's end-of-sequence tokens.
    public var stopTokens: [Int32]

    /// Nil arguments take `Defaults`, so a wire `Generation` maps field by field.
    public init(maxNewTokens: Int? = nil, topK: Int? = nil, doSample: Bool? = nil, topP: Float? = nil,
                temperature: Float? = nil, repetitionPenalty: Float? = nil, noRepeatNgramSize: Int? = nil,
                numBeams: Int? = nil, lengthPenalty: Float? = nil, earlyStopping: EarlyStopping? = nil,
                seed: UInt64? = nil, stopTokens: [Int32] = []) {
        self.maxNewTokens = maxNewTokens ?? Defaults.maxNewTokens
        self.topK = topK ?? Defaults.topK
        self.doSample = doSample ?? Defaults.doSample
        self.topP = topP ?? Defaults.topP
        self.temperature = temperature ?? Defaults.temperature
        self.repetitionPenalty = repetitionPenalty ?? Defaults.repetitionPenalty
        self.noRepeatNgramSize = noRepeatNgramSize ?? Defaults.noRepeatNgramSize
        self.numBeams = numBeams ?? Defaults.numBeams
        self.lengthPenalty = lengthPenalty ?? Defaults.lengthPenalty
        self.earlyStopping = earlyStopping ?? Defaults.earlyStopping
        self.seed = seed
        self.stopTokens = stopTokens
    }

    /// True when this request runs beam search.
    public var isBeamSearch: Bool { numBeams > 1 }

    /// Checks every value against its range and the server's limits.
    /// - Parameters:
    ///   - vocabSize: the model's vocabulary, for stop tokens and the beam candidates it must hold.
    ///   - limits: the server's caps.
    /// - Throws: `SamplingError.invalidParameter` naming the wire field, or `.unsupported`.
    public func validate(vocabSize: Int, limits: SamplingLimits = SamplingLimits()) throws {
        func bad(_ name: String, _ value: CustomStringConvertible, _ expected: String) -> SamplingError {
            .invalidParameter(name: name, value: value.description, expected: expected)
        }
        guard (1...max(1, limits.maxNewTokens)).contains(maxNewTokens) else {
            throw bad("num_to_generate", maxNewTokens, "1...\(limits.maxNewTokens) (the server's --max-new-tokens)")
        }
        guard topK >= 0 else { throw bad("topk", topK, "0 (off) or a positive count") }
        guard temperature.isFinite else { throw bad("temperature", temperature, "a finite number") }
        if doSample, !(temperature > 0) {
            throw bad("temperature", temperature, "> 0 when do_sample is true (set do_sample false for greedy)")
        }
        guard topP > 0, topP <= 1 else { throw bad("top_p", topP, "in (0, 1]") }
        guard repetitionPenalty.isFinite, repetitionPenalty > 0 else {
            throw bad("repetition_penalty", repetitionPenalty, "a finite number > 0 (1 = off)")
        }
        guard noRepeatNgramSize >= 0 else { throw bad("no_repeat_ngram_size", noRepeatNgramSize, "0 (off) or more") }
        guard (1...max(1, limits.maxBeams)).contains(numBeams) else {
            throw bad("num_beams", numBeams, "1...\(limits.maxBeams)")
        }
        guard lengthPenalty.isFinite else { throw bad("length_penalty", lengthPenalty, "a finite number") }
        guard Set(stopTokens).count <= limits.maxStopTokens else {
            throw bad("stop_tokens", "\(Set(stopTokens).count) distinct ids", "at most \(limits.maxStopTokens)")
        }
        if let outside = stopTokens.first(where: { $0 < 0 || Int($0) >= vocabSize }) {
            throw bad("stop_tokens", outside, "ids in [0, \(vocabSize))")
        }
        if isBeamSearch {
            if doSample {
                throw SamplingError.unsupported("do_sample with num_beams > 1 (beam sampling); use one or the other")
            }
            // Hugging Face takes max(2, 1 + stops) · beams candidates from beams × vocabulary scores.
            let stops = max(Set(stopTokens).count, 1)
            let candidates = Swift.max(2, 1 + stops) * numBeams
            guard candidates <= vocabSize else {
                throw bad("num_beams", numBeams, "at most \(vocabSize / Swift.max(2, 1 + stops)) for a vocabulary of \(vocabSize) with \(stops) stop tokens")
            }
        }
    }

    /// The stop tokens this request uses: its own, or the model's end-of-sequence ids when it gives none;
    /// duplicates removed, first occurrence first.
    public func resolvedStopTokens(modelEOS: [Int32]) -> [Int32] {
        var seen = Set<Int32>()
        return (stopTokens.isEmpty ? modelEOS : stopTokens).filter { seen.insert($0).inserted }
    }

    /// The logits processors Hugging Face's `generate` builds for these parameters, in its order
    /// (`_get_logits_processor`, then the warpers when sampling): repetition penalty, no-repeat-ngram,
    /// then temperature, top-k, top-p. A stage that would change nothing is left out, as there.
    public var stages: [LogitsStage] {
        var out: [LogitsStage] = []
        if repetitionPenalty != 1 { out.append(.repetitionPenalty(repetitionPenalty)) }
        if noRepeatNgramSize > 0 { out.append(.noRepeatNgram(noRepeatNgramSize)) }
        if doSample, !isBeamSearch {
            if temperature != 1 { out.append(.temperature(temperature)) }
            if topK != 0 { out.append(.topK(topK)) }
            if topP < 1 { out.append(.topP(topP)) }
        }
        return out
    }
}
