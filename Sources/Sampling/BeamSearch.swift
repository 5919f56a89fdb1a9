import Foundation

/// A finished beam.
public struct BeamHypothesis: Hashable, Sendable {
    /// Generated tokens, without the stop token.
    public var tokens: [Int32]
    /// The stop token that finished it; nil when it was still running at the end (length or `finish()`).
    public var stopToken: Int32?
    /// Its running score: processed log-probabilities summed in f32, as Hugging Face accumulates them.
    public var sumLogProbs: Float
    /// Hugging Face's generated_len: the tokens plus the stop token when there is one.
    public var generatedLength: Int
    /// sumLogProbs / generatedLength ^ lengthPenalty (Double).
    public var score: Double
}

/// What one beam-search step decided. New beam j continues beam `parents[j]` of the previous step (its KV
/// sequence: the first child of a parent may take it over, each other child forks it, and a parent with
/// no child is released) and appends `tokens[j]`.
public struct BeamStep: Hashable, Sendable {
    public var parents: [Int]
    public var tokens: [Int32]
    /// Hypotheses finished at this step (a stop token among the best `numBeams` candidates).
    public var finished: Int
    /// True when the search is over (Hugging Face's `is_done`, or `maxNewTokens` reached): call `finish()`.
    public var isDone: Bool

    /// For each new beam, whether it is its parent's first child (reuse the parent's sequence, not a fork).
    public var isFirstChild: [Bool] {
        var seen = Set<Int>()
        return parents.map { seen.insert($0).inserted }
    }

    /// Previous beams (0..<previousCount) that no new beam continues.
    public func released(previousCount: Int) -> [Int] {
        let used = Set(parents)
        return (0..<previousCount).filter { !used.contains($0) }
    }
}

/// Beam search as a state machine, following Hugging Face's `_beam_search`, `BeamSearchScorer` and
/// `BeamHypotheses` (transformers v4.36–v4.47, `generation/utils.py` and `generation/beam_search.py`).
///
/// Each step takes one logits row per live beam (one row, the prompt's, at the first step; `numBeams`
/// after). Each row becomes log_softmax, then the repetition penalty and the n-gram ban (on log-probs, as
/// HF applies its processors there), plus the beam's running score. The best max(2, 1 + stops)·numBeams
/// candidates over all rows are visited best first (ties: the lower beam·vocab + token index). A stop
/// token among the first `numBeams` finishes a hypothesis (generated_len counting the stop token); the
/// first `numBeams` others become the next beams. HF starts from `numBeams` copies of the prompt scored
/// [0, −10⁹, …]; one row scored 0 gives the same candidates whenever the vocabulary holds them all,
/// which `SamplingParameters.validate` requires.
public struct BeamSearch: Sendable {
    public let parameters: SamplingParameters
    public let vocabSize: Int
    public let numBeams: Int
    public let stopTokens: [Int32]
    public let prompt: [Int32]
    /// Rows the next `step` expects: 1 before the first step, `numBeams` after.
    public private(set) var liveCount = 1
    /// Tokens generated so far by every live beam.
    public private(set) var length = 0
    public private(set) var isDone = false
    private var isFinished = false
    private let stages: [LogitsStage]
    private let candidateCount: Int
    // (numBeams × maxNewTokens) each beam's generated tokens, and the buffer the next step writes.
    private var generated: [Int32]
    private var spare: [Int32]
    private var scores: [Float]
    private var hypotheses: [BeamHypothesis] = []
    private var worstScore: Double = 1e9
    private var heap: CandidateHeap

    /// - Parameters:
    ///   - parameters: validated here; `numBeams` > 1, no sampling.
    ///   - prompt: the prompt ids (penalty and n-gram ban read them).
    ///   - vocabSize: the length of every logits row.
    ///   - modelEOS: the stop tokens when the request gives none (Hugging Face's eos_token_id list).
    /// - Throws: `SamplingError` for parameters out of range or a prompt id outside the vocabulary.
    public init(parameters: SamplingParameters, prompt: [Int32], vocabSize: Int, modelEOS: [Int32],
                limits: SamplingLimits = SamplingLimits()) throws {
        try parameters.validate(vocabSize: vocabSize, limits: limits)
        guard parameters.isBeamSearch else { throw SamplingError.unsupported("num_beams 1 runs SequenceSampler, not BeamSearch") }
        if let outside = prompt.first(where: { $0 < 0 || Int($0) >= vocabSize }) {
            throw SamplingError.invalidParameter(name: "prompt", value: "\(outside)", expected: "ids in [0, \(vocabSize))")
        }
        self.parameters = parameters
        self.vocabSize = vocabSize
        self.numBeams = parameters.numBeams
        self.stopTokens = parameters.resolvedStopTokens(modelEOS: modelEOS)
        self.prompt = prompt
        self.stages = parameters.stages
        candidateCount = Swift.max(2, 1 + stopTokens.count) * numBeams
        generated = [Int32](repeating: 0, count: numBeams * parameters.maxNewTokens)
        spare = generated
        scores = [Float](repeating: 0, count: numBeams)
        heap = CandidateHeap(capacity: candidateCount)
    }

    /// The tokens live beam `beam` has generated.
    public func tokens(ofBeam beam: Int) -> ArraySlice<Int32> {
        let start = beam * parameters.maxNewTokens
        return generated[start..<(start + length)]
    }

    /// Live beam `beam`'s running score.
    public func score(ofBeam beam: Int) -> Float { scores[beam] }

    /// One step.
    /// - Parameters:
    ///   - logits: `liveCount × vocabSize` floats, row b for live beam b; overwritten.
    ///   - scratch: the thread's scratch for this vocabulary.
    /// - Returns: the parents and tokens of the new beams, and whether the search is done.
    /// - Throws: `.finished` after the search is over, `.logitsShape`, `.noTokenLeft` when fewer than
    ///   `numBeams` candidates have a finite score.
    public mutating func step(logits: UnsafeMutableBufferPointer<Float>, scratch: SamplingScratch) throws -> BeamStep {
        guard !isDone, !isFinished, length < parameters.maxNewTokens else { throw SamplingError.finished }
        let v = vocabSize
        guard logits.count == liveCount * v, scratch.vocabSize == v, let base = logits.baseAddress else {
            throw SamplingError.logitsShape(count: logits.count, expected: liveCount * v)
        }
        heap.removeAll()
        for beam in 0..<liveCount {
            let row = UnsafeMutableBufferPointer(start: base + beam * v, count: v)
            RowMath.sanitize(row)
            guard LogitsProcessor.logSoftmax(row, scratch: scratch) else { continue }
            LogitsProcessor.apply(stages, to: row, history: TokenHistory(prompt: prompt[...], generated: tokens(ofBeam: beam)),
                                  scratch: scratch)
            heap.offer(row: UnsafeBufferPointer(row), adding: scores[beam], firstIndex: beam * v)
        }
        let ranked = heap.sortedDescending()
        var parents: [Int] = [], newTokens: [Int32] = [], newScores: [Float] = []
        parents.reserveCapacity(numBeams); newTokens.reserveCapacity(numBeams); newScores.reserveCapacity(numBeams)
        var finished = 0
        for (rank, candidate) in ranked.enumerated() {
            let beam = candidate.index / v
            let token = Int32(candidate.index % v)
            if stopTokens.contains(token) {
                if rank >= numBeams { continue }
                add(BeamHypothesis(tokens: Array(tokens(ofBeam: beam)), stopToken: token, sumLogProbs: candidate.score,
                                   generatedLength: length + 1, score: 0))
                finished += 1
            } else {
                parents.append(beam); newTokens.append(token); newScores.append(candidate.score)
            }
            if parents.count == numBeams { break }
        }
        guard parents.count == numBeams, let best = ranked.first else { throw SamplingError.noTokenLeft(step: length) }
        isDone = isDone || finishedEnough(bestRunning: best.score, generatedLength: length + 1)

        let stride = parameters.maxNewTokens
        for (j, parent) in parents.enumerated() {
            for t in 0..<length { spare[j * stride + t] = generated[parent * stride + t] }
            spare[j * stride + length] = newTokens[j]
        }
        swap(&generated, &spare)
        scores = newScores
        length += 1
        liveCount = numBeams
        return BeamStep(parents: parents, tokens: newTokens, finished: finished,
                        isDone: isDone || length >= parameters.maxNewTokens)
    }

    /// Ends the search (Hugging Face's `finalize`): unless `is_done` ended it, the live beams join the
    /// hypotheses with generated_len = their length. Returns every kept hypothesis best first; among
    /// equal scores the later-added first, as HF pops the last of a stable ascending sort. Empty before
    /// the first step.
    public mutating func finish() -> [BeamHypothesis] {
        if !isFinished, !isDone, length > 0 {
            for beam in 0..<liveCount {
                add(BeamHypothesis(tokens: Array(tokens(ofBeam: beam)), stopToken: nil, sumLogProbs: scores[beam],
                                   generatedLength: length, score: 0))
            }
        }
        isFinished = true
        return hypotheses.enumerated()
            .sorted { ($0.element.score, $0.offset) < ($1.element.score, $1.offset) }
            .reversed()
            .map(\.element)
    }

    private func normalised(_ sum: Float, length: Int) -> Double {
        Double(sum) / pow(Double(length), Double(parameters.lengthPenalty))
    }

    /// `BeamHypotheses.add`.
    private mutating func add(_ candidate: BeamHypothesis) {
        var h = candidate
        h.score = normalised(h.sumLogProbs, length: h.generatedLength)
        guard hypotheses.count < numBeams || h.score > worstScore else { return }
        hypotheses.append(h)
        if hypotheses.count > numBeams {
            // Remove the lowest (the earliest among equals, as Python's sorted((score, index)) orders them);
            // the worst is then the next lowest.
            let ranked = hypotheses.indices.sorted { (hypotheses[$0].score, $0) < (hypotheses[$1].score, $1) }
            let nextWorst = hypotheses[ranked[1]].score
            hypotheses.remove(at: ranked[0])
            worstScore = nextWorst
        } else {
            worstScore = Swift.min(h.score, worstScore)
        }
    }

    /// `BeamHypotheses.is_done(best_sum_logprobs, cur_len)`, with cur_len − prompt_len = `generatedLength`.
    private func finishedEnough(bestRunning: Float, generatedLength: Int) -> Bool {
        guard hypotheses.count >= numBeams else { return false }
        let lp = Double(parameters.lengthPenalty)
        switch parameters.earlyStopping {
        case .early:
            return true
        case .heuristic:
            return worstScore >= Double(bestRunning) / pow(Double(generatedLength), lp)
        case .never:
            let reach = lp > 0 ? parameters.maxNewTokens : generatedLength
            return worstScore >= Double(bestRunning) / pow(Double(reach), lp)
        }
    }
}

/// The best `capacity` (score, index) pairs: a min-heap whose root is the worst kept, "better" meaning a
/// higher score, then a lower index.
struct CandidateHeap: Sendable {
    struct Entry: Sendable { var score: Float; var index: Int }
    private var entries: [Entry]
    let capacity: Int

    init(capacity: Int) {
        self.capacity = capacity
        entries = []
        entries.reserveCapacity(capacity)
    }

    mutating func removeAll() { entries.removeAll(keepingCapacity: true) }

    @inline(__always) private static func worse(_ a: Entry, _ b: Entry) -> Bool {
        a.score < b.score || (a.score == b.score && a.index > b.index)
    }

    @inline(__always) mutating func offer(_ score: Float, index: Int) {
        let e = Entry(score: score, index: index)
        if entries.count < capacity {
            entries.append(e)
            var i = entries.count - 1
            while i > 0 {
                let parent = (i - 1) / 2
                guard Self.worse(entries[i], entries[parent]) else { break }
                entries.swapAt(i, parent)
                i = parent
            }
        } else if let root = entries.first, Self.worse(root, e) {
            entries[0] = e
            var i = 0
            while true {
                let l = 2 * i + 1, r = l + 1
                var m = i
                if l < entries.count, Self.worse(entries[l], entries[m]) { m = l }
                if r < entries.count, Self.worse(entries[r], entries[m]) { m = r }
                if m == i { break }
                entries.swapAt(i, m)
                i = m
            }
        }
    }

    /// Offers row[i] + add at index firstIndex + i for every finite sum; a block of 8 is looked at lane by
    /// lane only while the heap has room or one of its sums beats the worst kept (indices only grow
    /// during a step, so an equal sum never displaces an entry).
    mutating func offer(row: UnsafeBufferPointer<Float>, adding add: Float, firstIndex: Int) {
        guard let base = row.baseAddress else { return }
        let n = row.count
        let addv = FVec(repeating: add)
        var i = 0
        while i + lanes <= n {
            let sums = load(base + i) + addv
            if entries.count < capacity || any(sums .> FVec(repeating: entries[0].score)) {
                for j in 0..<lanes where sums[j] > -.infinity { offer(sums[j], index: firstIndex + i + j) }
            }
            i += lanes
        }
        while i < n {
            let sum = base[i] + add
            if sum > -.infinity { offer(sum, index: firstIndex + i) }
            i += 1
        }
    }

    func sortedDescending() -> [Entry] {
        entries.sorted { Self.worse($1, $0) }
    }
}
