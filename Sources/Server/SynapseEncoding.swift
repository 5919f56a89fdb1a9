// Turns one forward pass's outputs into the wire encodings of each synapse (docs/PROTOCOL.md).
import Engine
import Wire

/// Where one request's rows sit in the batch the backend ran.
struct RowPlacement {
    /// Index among the backend's rows, nil for an empty row (not sent to the backend).
    let backendRow: Int?
    /// Offset of the row's first valid token among all the batch's tokens.
    let tokenOffset: Int
    let length: Int
    /// Offset of the row's first logit row in a `.lastTwo` output (Σ min(2, length) of the rows before).
    let selectedOffset: Int
}

/// A float tensor being filled, stored as FLOAT32 or FLOAT16 little-endian bytes; unwritten
/// elements stay zero (padded positions read back as zeros).
struct FloatTensorWriter {
    private(set) var bytes: [UInt8]
    let half: Bool

    init(count: Int, dtype: DataType) {
        half = dtype == .float16
        bytes = [UInt8](repeating: 0, count: count * (half ? 2 : 4))
    }

    mutating func write(_ values: UnsafeBufferPointer<Float>, at element: Int) {
        bytes.withUnsafeMutableBytes { raw in
            if half {
                for (index, value) in values.enumerated() {
                    raw.storeBytes(of: Float16(value).bitPattern.littleEndian, toByteOffset: (element + index) * 2, as: UInt16.self)
                }
            } else if let base = values.baseAddress {
                (raw.baseAddress.unsafelyUnwrapped + element * 4).copyMemory(from: base, byteCount: values.count * 4)
            }
        }
    }

    mutating func write(_ value: Float, at element: Int) {
        withUnsafePointer(to: value) { write(UnsafeBufferPointer(start: $0, count: 1), at: element) }
    }

    func tensor(shape: [Int]) -> Tensor {
        Tensor(buffer: bytes, shape: shape.map(Int64.init), dtype: half ? .float16 : .float32)
    }
}

/// Encodes every synapse of one request from the batch's outputs.
struct SynapseEncoder {
    let vocabSize: Int
    let hiddenSize: Int
    let networkDim: Int
    /// Translates network-space answers (NetworkSynapseEncoding.swift), when this axon serves that space.
    let network: NetworkTokenSpace?

    func encode(_ request: ValidatedForward, placements: [RowPlacement], output: BackendOutput) -> [SynapseResult] {
        if let rows = request.network, let network {
            return encodeNetwork(request, rows: rows, space: network, placements: placements, output: output)
        }
        return request.synapses.enumerated().map { index, synapse in
            if let (code, message) = request.synapseFailures[index] {
                return SynapseResult(type: synapse.type, code: code, message: message)
            }
            let dtype: DataType = synapse.dtype == .float16 ? .float16 : .float32
            let tensors: [Tensor]
            switch synapse.type {
            case .textLastHiddenState:
                tensors = [hidden(request, placements, output, dtype)]
            case .textCausalLM:
                tensors = logits(request, placements, output, dtype, k: Int(synapse.topk), everyPosition: true)
            default:
                tensors = logits(request, placements, output, dtype, k: Int(synapse.topk), everyPosition: false)
            }
            return SynapseResult(type: synapse.type, code: .success, tensors: tensors)
        }
    }

    /// `[batch, seq, networkDim]`, the hidden vector centred with (networkDim − hidden)/2 zeros before it.
    private func hidden(_ request: ValidatedForward, _ placements: [RowPlacement], _ output: BackendOutput,
                        _ dtype: DataType) -> Tensor {
        let (batch, seq) = (request.batch, request.seq)
        var writer = FloatTensorWriter(count: batch * seq * networkDim, dtype: dtype)
        let leftPad = (networkDim - hiddenSize) / 2
        if let hidden = output.hidden {
            for (row, placement) in placements.enumerated() {
                let firstColumn = seq - placement.length
                for t in 0..<placement.length {
                    let source = UnsafeBufferPointer(rebasing: hidden[((placement.tokenOffset + t) * hiddenSize)...].prefix(hiddenSize))
                    writer.write(source, at: (row * seq + firstColumn + t) * networkDim + leftPad)
                }
            }
        }
        return writer.tensor(shape: [batch, seq, networkDim])
    }

    /// The logit row of a row's token `t`, from `.all`, (for the last token) `.last` or (for the last
    /// two) `.lastTwo` outputs; nil where the output has none.
    func logitRow(_ output: BackendOutput, _ placement: RowPlacement, token t: Int) -> UnsafeBufferPointer<Float>? {
        guard let logits = output.logits, (0..<placement.length).contains(t) else { return nil }
        let index: Int
        switch output.logitsWanted {
        case .all: index = placement.tokenOffset + t
        case .last:
            guard t == placement.length - 1, let row = placement.backendRow else { return nil }
            index = row
        case .lastTwo:
            let first = max(0, placement.length - 2)
            guard t >= first else { return nil }
            index = placement.selectedOffset + t - first
        case .none: return nil
        }
        return UnsafeBufferPointer(rebasing: logits[(index * vocabSize)...].prefix(vocabSize))
    }

    /// Raw logits or top-k (probabilities, ids, floor), for every position or the last valid one.
    private func logits(_ request: ValidatedForward, _ placements: [RowPlacement], _ output: BackendOutput,
                        _ dtype: DataType, k: Int, everyPosition: Bool) -> [Tensor] {
        let (batch, seq) = (request.batch, request.seq)
        let positionsShape = everyPosition ? [batch, seq] : [batch]
        let positionCount = everyPosition ? batch * seq : batch
        // (output position, row, token index) for every valid position wanted.
        var wanted: [(Int, RowPlacement, Int)] = []
        for (row, placement) in placements.enumerated() where placement.length > 0 {
            if everyPosition {
                for t in 0..<placement.length { wanted.append((row * seq + seq - placement.length + t, placement, t)) }
            } else {
                wanted.append((row, placement, placement.length - 1))
            }
        }
        if k == 0 {
            var writer = FloatTensorWriter(count: positionCount * vocabSize, dtype: dtype)
            for (position, placement, t) in wanted {
                if let source = logitRow(output, placement, token: t) { writer.write(source, at: position * vocabSize) }
            }
            return [writer.tensor(shape: positionsShape + [vocabSize])]
        }
        var probabilities = FloatTensorWriter(count: positionCount * k, dtype: dtype)
        var ids = [UInt8](repeating: 0, count: positionCount * k * 4)
        var floors = FloatTensorWriter(count: positionCount, dtype: dtype)
        for (position, placement, t) in wanted {
            guard let source = logitRow(output, placement, token: t) else { continue }
            // The engine's softmax top-k: descending, ties to the lower id, floor as the protocol defines it.
            let best = topK(source, k: k)
            best.probs.withUnsafeBufferPointer { probabilities.write($0, at: position * k) }
            ids.withUnsafeMutableBytes { raw in
                for (index, id) in best.ids.enumerated() {
                    raw.storeBytes(of: id.littleEndian, toByteOffset: (position * k + index) * 4, as: Int32.self)
                }
            }
            floors.write(best.floor, at: position)
        }
        return [probabilities.tensor(shape: positionsShape + [k]),
                Tensor(buffer: ids, shape: (positionsShape + [k]).map(Int64.init), dtype: .int32),
                floors.tensor(shape: positionsShape)]
    }
}
