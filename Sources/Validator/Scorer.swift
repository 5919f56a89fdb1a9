// The validator's scoring: slide over a tokenized corpus, ask an axon for the next-token
// distribution after each window (TEXT_CAUSAL_LM_NEXT, top-k), and average the true token's loss.
import AxonClient
import Foundation
import Wire

public enum ScoreError: Error, CustomStringConvertible, Equatable {
    case corpusTooShort(tokens: Int, seq: Int)
    case invalidParameter(name: String, value: Int)
    case refused(code: ReturnCode, message: String)
    case malformedAnswer(String)

    public var description: String {
        switch self {
        case let .corpusTooShort(tokens, seq):
            return "the corpus has \(tokens) tokens; scoring needs more than --seq \(seq) (a window plus the token after it)"
        case let .invalidParameter(name, value): return "\(name) must be at least 1, got \(value)"
        case let .refused(code, message): return "the axon answered \(code): \(message)"
        case let .malformedAnswer(reason): return "the axon's TEXT_CAUSAL_LM_NEXT answer is malformed: \(reason)"
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

    public init(seq: Int = 256, topk: Int = 4096, stride: Int? = nil, rowsPerRequest: Int = 8, timeoutMs: UInt32 = 0) {
        self.seq = seq; self.topk = topk; self.stride = stride ?? seq
        self.rowsPerRequest = rowsPerRequest; self.timeoutMs = timeoutMs
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
    /// - Throws: `ScoreError` when the axon refused or the tensors have the wrong shape.
    public func totalLoss(windows: ArraySlice<ScoreWindow>, response: Response) throws -> Double {
        guard response.code == .success, let result = response.forward?.results.first else {
            throw ScoreError.refused(code: response.code, message: response.message)
        }
        guard result.code == .success else { throw ScoreError.refused(code: result.code, message: result.message) }
        guard result.tensors.count == 3, let probs = result.tensors[0].floatValues(), let ids = result.tensors[1].int32Values(),
              let floors = result.tensors[2].floatValues() else {
            throw ScoreError.malformedAnswer("expected 3 tensors (probabilities, ids, floor), got \(result.tensors.count)")
        }
        let rows = windows.count
        guard rows > 0, floors.count == rows, probs.count == ids.count, probs.count % rows == 0 else {
            throw ScoreError.malformedAnswer("\(probs.count) probabilities, \(ids.count) ids and \(floors.count) floors for \(rows) rows")
        }
        let k = probs.count / rows
        var total = 0.0
        for (row, window) in windows.enumerated() {
            let span = (row * k)..<((row + 1) * k)
            total += NextTokenLoss.loss(of: window.target, probabilities: probs[span], ids: ids[span], floor: floors[row])
        }
        return total
    }

    /// Scores `tokens` against the axon behind `client`. Two requests are kept in flight, so the
    /// axon never idles between chunks and no request waits in its queue past its deadline.
    /// - Throws: `ScoreError`, or `ClientError` when the connection fails.
    public func score(tokens: [Int32], client: AxonClient) throws -> ScoreResult {
        let planned = try requests(tokens: tokens)
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
        }
        return ScoreResult(totalLoss: total, positions: positions)
    }
}
