// The validator's scoring: slide over a tokenized corpus, ask an axon for the next-token
// distribution after each window (TEXT_CAUSAL_LM_NEXT, top-k), and average the true token's loss.
import AxonClient
import Foundation
import Wire

public enum ScoreError: Error, CustomStringConvertible, Equatable {
    case corpusTooShort(tokens: Int, seq: Int)
    case invalidParameter(name: String, value: Int)

    public var description: String {
        switch self {
        case let .corpusTooShort(tokens, seq):
            return "the corpus has \(tokens) tokens; scoring needs more than --seq \(seq) (a window plus the token after it)"
        case let .invalidParameter(name, value): return "\(name) must be at least 1, got \(value)"
        }
    }
}

/// Scores an axon on a corpus: in model space the true next token by `NextTokenLoss`, in network
/// space the next standard tokens by `PhraseCrossEntropy` (as Bittensor v3 validators scored).
public struct Scorer: Sendable {
    /// Standard tokens a network-space window's phrase loss is scored against (v3 validators held out 8).
    public static let phraseTargetLength = 8

    public var seq: Int
    public var topk: Int
    /// Tokens between window starts (default: `seq`, windows side by side).
    public var stride: Int
    /// Windows sent together as the rows of one request.
    public var rowsPerRequest: Int
    public var timeoutMs: UInt32
    /// The axon's vocabulary size (INFO), which every returned id must be below; nil skips that check.
    /// In network space, the network vocabulary (INFO's `network_vocab_size`).
    public var vocab: Int?
    /// The space of the corpus's ids: the model's (`tokenizer_sha256`) or the network's standard one.
    public var space: TokenSpace
    /// Bytes of text each id of the space stands for, for bits per byte; nil leaves it out.
    public var tokenBytes: [Int]?

    public init(seq: Int = 256, topk: Int = 4096, stride: Int? = nil, rowsPerRequest: Int = 8, timeoutMs: UInt32 = 0,
                vocab: Int? = nil, space: TokenSpace = .model, tokenBytes: [Int]? = nil) {
        self.seq = seq; self.topk = topk; self.stride = stride ?? seq
        self.rowsPerRequest = rowsPerRequest; self.timeoutMs = timeoutMs; self.vocab = vocab
        self.space = space; self.tokenBytes = tokenBytes
    }

    /// The windows side by side (`stride` apart), with the targets their space scores.
    public func windows(tokens: [Int32]) -> [ScoreWindow] {
        ScoreWindows.make(tokens: tokens, seq: seq, stride: stride, following: space == .network ? Self.phraseTargetLength : 1)
    }

    /// The windows, and for each request of up to `rowsPerRequest` of them, the body to send.
    /// - Throws: `ScoreError` for bad parameters or a corpus shorter than one window plus one token.
    public func requests(tokens: [Int32]) throws -> [(windows: ArraySlice<ScoreWindow>, request: ForwardRequest)] {
        try requests(tokens: tokens, windows: windows(tokens: tokens))
    }

    /// Requests for the given windows of `tokens` (e.g. `ScoreWindows.sample`).
    /// - Throws: `ScoreError` for bad parameters or no windows.
    public func requests(tokens: [Int32], windows: [ScoreWindow]) throws -> [(windows: ArraySlice<ScoreWindow>, request: ForwardRequest)] {
        for (name, value) in [("--seq", seq), ("--topk", topk), ("--stride", stride), ("rows per request", rowsPerRequest)]
        where value < 1 {
            throw ScoreError.invalidParameter(name: name, value: value)
        }
        guard !windows.isEmpty else { throw ScoreError.corpusTooShort(tokens: tokens.count, seq: seq) }
        return Swift.stride(from: 0, to: windows.count, by: rowsPerRequest).map { first in
            let chunk = windows[first..<min(windows.count, first + rowsPerRequest)]
            let rows = chunk.map { Array(tokens[$0.start..<($0.start + seq)]) }
            return (chunk, ForwardRequest(tokens: Tensor(int32Rows: rows),
                                          synapses: [Synapse(type: .textCausalLMNext, topk: UInt32(topk))], space: space))
        }
    }

    /// Each window's loss from one answer: model space `NextTokenLoss` (`lossVal` = `loss`), network
    /// space `PhraseCrossEntropy` against the window's following standard tokens.
    /// - Throws: `AnswerError` when the axon refused or the answer is not of its space's form.
    public func losses(windows: ArraySlice<ScoreWindow>, response: Response) throws -> [PhraseCrossEntropy.Loss] {
        let result = try response.checkedResult(.textCausalLMNext)
        if space == .network {
            let answer = try result.checkedPhrases(rows: windows.count, k: topk, vocab: vocab ?? PhraseCrossEntropy.networkVocabSize)
            return Self.phraseLosses(answer, targets: windows.map(\.following), vocabSize: vocab ?? PhraseCrossEntropy.networkVocabSize)
        }
        let answer = try result.checkedTopK(rows: windows.count, positions: nil, k: topk, vocab: vocab)
        return windows.enumerated().map { row, window in
            let span = answer.span(row: row)
            let loss = NextTokenLoss.loss(of: window.target, probabilities: answer.probabilities[span], ids: answer.ids[span],
                                          floor: answer.floor(row: row))
            return PhraseCrossEntropy.Loss(lossVal: loss, loss: loss)
        }
    }

    /// Each row's `PhraseCrossEntropy` of a checked phrase answer against `targets[row]`.
    public static func phraseLosses(_ answer: PhraseAnswer, targets: [[Int32]],
                                    vocabSize: Int = PhraseCrossEntropy.networkVocabSize) -> [PhraseCrossEntropy.Loss] {
        targets.enumerated().map { row, target in
            PhraseCrossEntropy.loss(probabilities: Array(answer.probabilities[answer.span(row: row)]), phrases: answer.phrases(row: row),
                                    floor: answer.floor(row: row), target: target, vocabSize: vocabSize)
        }
    }

    /// The sums over `windows` from one answer (see `losses`).
    /// - Throws: `AnswerError` when the axon refused or the answer is not of its space's form.
    public func totals(windows: ArraySlice<ScoreWindow>, response: Response) throws -> ScoreTotals {
        totals(windows: windows, losses: try losses(windows: windows, response: response))
    }

    private func totals(windows: ArraySlice<ScoreWindow>, losses: [PhraseCrossEntropy.Loss]) -> ScoreTotals {
        var totals = ScoreTotals()
        for (window, loss) in zip(windows, losses) {
            totals.loss += loss.lossVal
            totals.phraseLoss += loss.loss
            totals.positions += 1
            if let tokenBytes, tokenBytes.indices.contains(Int(window.target)) { totals.bytes += tokenBytes[Int(window.target)] }
        }
        return totals
    }

    /// Scores `tokens` against the axon behind `client`. Two requests are kept in flight, so the
    /// axon never idles between chunks and no request waits in its queue past its deadline.
    /// `progress` is called after each answer with (windows scored, windows in all).
    /// - Throws: `ScoreError`, `AnswerError` for a refused or malformed answer, or `ClientError`
    ///   when the connection fails.
    public func score(tokens: [Int32], client: AxonClient,
                      progress: ((_ done: Int, _ total: Int) -> Void)? = nil) throws -> ScoreResult {
        try score(tokens: tokens, windows: windows(tokens: tokens), client: client, progress: progress)
    }

    /// `score` over the given windows of `tokens`. `each`, when given, sees every window's loss
    /// with the response it came in (its `timing` is the axon's own account of the request).
    public func score(tokens: [Int32], windows: [ScoreWindow], client: AxonClient,
                      progress: ((_ done: Int, _ total: Int) -> Void)? = nil,
                      each: ((_ window: ScoreWindow, _ loss: PhraseCrossEntropy.Loss, _ response: Response) -> Void)? = nil) throws -> ScoreResult {
        let planned = try requests(tokens: tokens, windows: windows)
        var totals = ScoreTotals()
        try Self.inFlight(planned.map(\.request), client: client, timeoutMs: timeoutMs) { index, response in
            let chunk = planned[index].windows
            let losses = try self.losses(windows: chunk, response: response)
            totals.add(self.totals(windows: chunk, losses: losses))
            if let each { for (window, loss) in zip(chunk, losses) { each(window, loss, response) } }
            progress?(totals.positions, windows.count)
        }
        return ScoreResult(totals, space: space, bytesKnown: tokenBytes != nil)
    }

    /// Sends `requests` keeping two in flight and hands each answer, in order, to `body`.
    /// - Throws: `ClientError` when the connection fails, or what `body` throws.
    public static func inFlight(_ requests: [ForwardRequest], client: AxonClient, timeoutMs: UInt32,
                                body: (_ index: Int, _ response: Response) throws -> Void) throws {
        let wait = Double(timeoutMs == 0 ? 12_000 : timeoutMs) / 1000 * 2 + 2
        var ids: [UInt64] = []
        func send(_ index: Int) throws {
            let id = client.makeID()
            try client.send(Request(id: id, method: .forward, timeoutMs: timeoutMs, body: requests[index].serializedBytes()))
            ids.append(id)
        }
        for index in 0..<min(2, requests.count) { try send(index) }
        for index in requests.indices {
            let response = try client.response(id: ids[index], timeout: wait)
            if index + 2 < requests.count { try send(index + 2) }
            try body(index, response)
        }
    }
}

/// Sums of a score: losses in nats over `positions` windows, and the bytes of their target tokens.
public struct ScoreTotals: Equatable, Sendable {
    /// Σ −log p of the next token (network space: Σ `lossVal`).
    public var loss = 0.0
    /// Σ phrase loss (network space; model space repeats `loss`).
    public var phraseLoss = 0.0
    public var positions = 0
    /// Σ bytes of the scored next tokens (their text, for bits per byte).
    public var bytes = 0

    public init() {}

    public mutating func add(_ other: ScoreTotals) {
        loss += other.loss; phraseLoss += other.phraseLoss; positions += other.positions; bytes += other.bytes
    }
}
