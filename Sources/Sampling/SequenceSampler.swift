/// Why a sequence stopped.
public enum FinishReason: Hashable, Sendable {
    /// It produced this stop token (which is the last generated token).
    case stopToken(Int32)
    /// It produced `maxNewTokens` tokens.
    case maxNewTokens
}

/// The draw shared by every sampler: weights w_i = e^(x_i − max) of the processed scores, Z = Σ w (Double),
/// target = u·Z; the token is the first id whose running sum (Double, id order) exceeds the target.
/// scripts/reference/sampling_reference.py's `draw` is the same rule.
public enum TokenDraw {
    /// - Returns: the chosen id, or nil when every score is −∞.
    public static func draw(_ scores: UnsafeBufferPointer<Float>, uniform u: Double, scratch: SamplingScratch) -> Int? {
        precondition(scores.count <= scratch.vocabSize, "a row of \(scores.count) scores for a scratch of \(scratch.vocabSize)")
        let m = RowMath.max(scores)
        guard m > -.infinity else { return nil }
        let w = scratch.weights
        let total = RowMath.exponentials(scores, max: m, into: w)
        let target = u * total
        var acc: Double = 0
        var lastPositive = -1
        for i in 0..<scores.count where w[i] > 0 {
            acc += Double(w[i])
            if acc > target { return i }
            lastPositive = i
        }
        // Only when u·Z rounds up to the running total: the last token with any weight.
        return lastPositive >= 0 ? lastPositive : RowMath.argmax(scores)
    }

    /// The greedy choice: the first id with the largest score (nil when every score is −∞).
    public static func argmax(_ scores: UnsafeBufferPointer<Float>) -> Int? { RowMath.argmax(scores) }

    /// `draw` over the support a filter left in `scratch` for this very row (the same rule: the support is
    /// in id order and every other weight is 0), reusing top-p's weights when it ran last.
    static func drawFromSupport(_ scores: UnsafeBufferPointer<Float>, uniform u: Double, scratch s: SamplingScratch) -> Int? {
        let ids = s.support
        let count = s.supportCount
        if !s.supportWeighted {
            guard LogitsProcessor.weigh(scores, members: UnsafePointer(ids), count: count, scratch: s) else { return nil }
            var total: Double = 0
            for j in 0..<count { total += Double(s.weights[Int(ids[j])]) }
            s.supportTotal = total
            s.supportWeighted = true
        }
        let target = u * s.supportTotal
        var acc: Double = 0
        var lastPositive = -1
        for j in 0..<count {
            let id = Int(ids[j])
            let w = s.weights[id]
            guard w > 0 else { continue }
            acc += Double(w)
            if acc > target { return id }
            lastPositive = id
        }
        return lastPositive >= 0 ? lastPositive : nil
    }
}

/// One sequence's state for greedy decoding or sampling: its tokens (for the repetition penalty and the
/// n-gram ban), its own random stream, its stop tokens and length budget. The engine keeps one per active
/// sequence and calls `next` with that sequence's logits row each decode step; rows of other sequences,
/// and their order in the batch, never touch this state, so a seeded request gives the same tokens in any
/// batch. A copy continues the same random stream.
public struct SequenceSampler: Sendable {
    public let parameters: SamplingParameters
    public let vocabSize: Int
    /// The seed in use: the request's, or the random one drawn for it (log it to reproduce a run).
    public let seed: UInt64
    /// Which of the seed's streams this sequence draws from (the row of the request).
    public let stream: Int
    public let stopTokens: [Int32]
    public let promptCount: Int
    /// Prompt then generated tokens.
    public private(set) var tokens: [Int32]
    public private(set) var finishReason: FinishReason?
    private let stages: [LogitsStage]
    private var rng: Xoshiro256StarStar

    /// - Parameters:
    ///   - parameters: a request's parameters (validated here); beam search is `BeamSearch`'s.
    ///   - prompt: the sequence's prompt ids (the penalty and the n-gram ban read them too).
    ///   - vocabSize: the length of every logits row.
    ///   - modelEOS: the stop tokens when the request gives none.
    ///   - stream: the request's row; row k of a seeded request draws from stream k of its seed.
    ///   - limits: the server's caps.
    /// - Throws: `SamplingError` for parameters out of range, a prompt id outside the vocabulary, or
    ///   `numBeams` > 1.
    public init(parameters: SamplingParameters, prompt: [Int32], vocabSize: Int, modelEOS: [Int32],
                stream: Int = 0, limits: SamplingLimits = SamplingLimits()) throws {
        try parameters.validate(vocabSize: vocabSize, limits: limits)
        guard !parameters.isBeamSearch else { throw SamplingError.unsupported("num_beams > 1 runs BeamSearch, not SequenceSampler") }
        if let outside = prompt.first(where: { $0 < 0 || Int($0) >= vocabSize }) {
            throw SamplingError.invalidParameter(name: "prompt", value: "\(outside)", expected: "ids in [0, \(vocabSize))")
        }
        self.parameters = parameters
        self.vocabSize = vocabSize
        self.seed = parameters.seed ?? UInt64.random(in: .min ... .max)
        self.stream = max(0, stream)
        self.stopTokens = parameters.resolvedStopTokens(modelEOS: modelEOS)
        self.promptCount = prompt.count
        var tokens = prompt
        tokens.reserveCapacity(prompt.count + parameters.maxNewTokens)
        self.tokens = tokens
        self.stages = parameters.stages
        self.rng = Xoshiro256StarStar(seed: seed, stream: self.stream)
    }

    public var generated: ArraySlice<Int32> { tokens[promptCount...] }
    public var isFinished: Bool { finishReason != nil }

    /// Chooses the next token from this sequence's logits row and appends it.
    /// - Parameters:
    ///   - logits: `vocabSize` floats, overwritten with the processed scores.
    ///   - scratch: the thread's scratch for this vocabulary.
    /// - Returns: the token; `finishReason` is set when it is a stop token or the budget is spent.
    /// - Throws: `.finished`, `.logitsShape`, or `.noTokenLeft` when the processors remove every token.
    public mutating func next(logits: UnsafeMutableBufferPointer<Float>, scratch: SamplingScratch) throws -> Int32 {
        guard finishReason == nil else { throw SamplingError.finished }
        guard logits.count == vocabSize, scratch.vocabSize == vocabSize else {
            throw SamplingError.logitsShape(count: logits.count, expected: vocabSize)
        }
        RowMath.sanitize(logits)
        // The history's slice must be gone before `tokens.append`, or the append copies the whole sequence.
        do {
            let history = TokenHistory(prompt: tokens[...])
            LogitsProcessor.apply(stages, to: logits, history: history, scratch: scratch)
        }
        let row = UnsafeBufferPointer(logits)
        let choice: Int?
        if !parameters.doSample {
            choice = TokenDraw.argmax(row)
        } else if scratch.hasSupport {
            choice = TokenDraw.drawFromSupport(row, uniform: rng.uniform(), scratch: scratch)
        } else {
            choice = TokenDraw.draw(row, uniform: rng.uniform(), scratch: scratch)
        }
        guard let id = choice else { throw SamplingError.noTokenLeft(step: generated.count) }
        let token = Int32(id)
        tokens.append(token)
        if stopTokens.contains(token) {
            finishReason = .stopToken(token)
        } else if generated.count >= parameters.maxNewTokens {
            finishReason = .maxNewTokens
        }
        return token
    }
}
