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

/// Scores an axon on a corpus with `NextTokenLoss`.
public struct Scorer: Sendable {
    public var seq: Int
    public var topk: Int
    /// Tokens between window starts (default: `seq`, windows side by side).
    public var stride: Int
    /// Windows sent together as the rows of one request.
    public var rowsPerRequest: Int
    public var timeoutMs: UInt32
    /// The axon's vocabulary size (INFO), which every returned id must be below; nil skips that check.
    public var vocab: Int?

    public init(seq: Int = 256, topk: Int = 4096, stride: Int? = nil, rowsPerRequest: Int = 8, timeoutMs: UInt32 = 0,
                vocab: Int? = nil) {
        self.seq = seq; self.topk = topk; self.stride = stride ?? seq
        self.rowsPerRequest = rowsPerRequest; self.timeoutMs = timeoutMs; self.vocab = vocab
    }

    /// The windows, and for each request of up to `rowsPerRequest` of them, the body to send.
    /// - Throws: `ScoreError` for bad parameters or a corpus shorter than one window plus one token.
    public func requests(tokens: [Int32]) throws -> [(windows: ArraySlice<ScoreWindow>, request: ForwardRequest)] {
        for (name, value) in [("--seq", seq), ("--topk", topk), ("--stride", stride), ("rows per request", rowsPerRequest)]
        where value < 1 {
            throw ScoreError.invalidParameter(name: name, value: value)
        }
        let windows = ScoreWindows.make(tokens: tokens, seq: seq, stride: stride)
        guard !windows.isEmpty else { throw ScoreError.corpusTooShort(tokens: tokens.count, seq: seq) }
        return Swift.stride(from: 0, to: windows.count, by: rowsPerRequest).map { first in
            let chunk = windows[first..<min(windows.count, first + rowsPerRequest)]
            let rows = chunk.map { Array(tokens[$0.start..<($0.start + seq)]) }
            return (chunk, ForwardRequest(tokens: Tensor(int32Rows: rows),
                                          synapses: [Synapse(type: .textCausalLMNext, topk: UInt32(topk))]))
        }
    }

    /// Σ loss over `windows` from one answer (tensors probabilities `[rows, k]`, ids `[rows, k]`, floor `[rows]`).
    /// - Throws: `AnswerError` when the axon refused or the answer is not of that form.
    public func totalLoss(windows: ArraySlice<ScoreWindow>, response: Response) throws -> Double {
        let answer = try response.checkedResult(.textCausalLMNext)
            .checkedTopK(rows: windows.count, positions: nil, k: topk, vocab: vocab)
        var total = 0.0
        for (row, window) in windows.enumerated() {
            let span = answer.span(row: row)
            total += NextTokenLoss.loss(of: window.target, probabilities: answer.probabilities[span], ids: answer.ids[span],
                                        floor: answer.floor(row: row))
        }
        return total
    }

    /// Scores `tokens` against the axon behind `client`. Two requests are kept in flight, so the
    /// axon never idles between chunks and no request waits in its queue past its deadline.
    /// `progress` is called after each answer with (windows scored, windows in all).
    /// - Throws: `ScoreError`, `AnswerError` for a refused or malformed answer, or `ClientError`
    ///   when the connection fails.
    public func score(tokens: [Int32], client: AxonClient,
                      progress: ((_ done: Int, _ total: Int) -> Void)? = nil) throws -> ScoreResult {
        let planned = try requests(tokens: tokens)
        let windowCount = planned.reduce(0) { $0 + $1.windows.count }
        let wait = Double(timeoutMs == 0 ? 12_000 : timeoutMs) / 1000 * 2 + 2
        var ids: [UInt64] = []
        func send(_ index: Int) throws {
            let id = client.makeID()
            try client.send(Request(id: id, method: .forward, timeoutMs: timeoutMs, body: planned[index].request.serializedBytes()))
            ids.append(id)
        }
        for index in 0..<min(2, planned.count) { try send(index) }
        var total = 0.0, positions = 0
        for index in planned.indices {
            let response = try client.response(id: ids[index], timeout: wait)
            if index + 2 < planned.count { try send(index + 2) }
            total += try totalLoss(windows: planned[index].windows, response: response)
            positions += planned[index].windows.count
            progress?(positions, windowCount)
        }
        return ScoreResult(totalLoss: total, positions: positions)
    }
}
