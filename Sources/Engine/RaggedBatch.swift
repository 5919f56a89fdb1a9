/// Token rows of different lengths, stored flat with no padding: row r is
/// `tokens[rowOffsets[r] ..< rowOffsets[r + 1]]`. Positions restart at 0 in every row and
/// attention is causal within a row only, so unrelated requests can share one forward pass.
public struct RaggedBatch: Sendable, Equatable {
    /// All rows' token ids, concatenated.
    public private(set) var tokens: [Int32]
    /// Start of each row in `tokens`, plus the total at the end (`rowCount + 1` entries).
    public private(set) var rowOffsets: [Int]

    /// An empty batch; add rows with `append(row:)`.
    public init() {
        tokens = []
        rowOffsets = [0]
    }

    /// A batch of the given rows, in order.
    public init(rows: [[Int32]]) {
        self.init()
        for row in rows { append(row: row) }
    }

    /// Adds one row after the existing ones.
    public mutating func append<C: Collection>(row: C) where C.Element == Int32 {
        tokens.append(contentsOf: row)
        rowOffsets.append(tokens.count)
    }

    /// Empties the batch but keeps its storage, so a server can reuse one batch per worker.
    public mutating func removeAll() {
        tokens.removeAll(keepingCapacity: true)
        rowOffsets.removeAll(keepingCapacity: true)
        rowOffsets.append(0)
    }

    public var rowCount: Int { rowOffsets.count - 1 }
    public var tokenCount: Int { tokens.count }

    /// The flat index range of row `row`.
    public func range(ofRow row: Int) -> Range<Int> { rowOffsets[row]..<rowOffsets[row + 1] }

    public func length(ofRow row: Int) -> Int { rowOffsets[row + 1] - rowOffsets[row] }

    /// The tokens of row `row`.
    public func row(_ row: Int) -> ArraySlice<Int32> { tokens[range(ofRow: row)] }
}

/// Which positions get LM-head logits. There is no LM-head work anywhere else.
public enum LogitsSelection: Sendable, Equatable {
    /// Hidden states only.
    case none
    /// The last position of every row (next-token prediction).
    case last
    /// Every position of every row.
    case all
    /// The given flat token indices (into `RaggedBatch.tokens`), in this order: a few chosen
    /// positions per row, such as the last two (token healing reads the one before the last).
    /// At most `EngineOptions.maxLogitRows` of them.
    case positions([Int])
}
