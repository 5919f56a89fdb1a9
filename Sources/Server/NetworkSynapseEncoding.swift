// Network-space answers (docs/PROTOCOL.md, "Token spaces"): the model ran each row's model tokens;
// its outputs are translated back to the row's standard positions, next standard tokens and
// phrases by the TokenTranslation module. Runs on the worker, after the batch's forward pass.
import Engine
import Foundation
import TokenTranslation
import Wire

/// One model-vocabulary distribution, computed from a logit row into storage that stays put while
/// the translator reads it.
private final class ProbabilityRow {
    let values: UnsafeMutableBufferPointer<Float>   // (vocab)
    /// Which logit row `values` holds, so a position read twice is computed once.
    var source: Int?

    init(vocab: Int) {
        values = .allocate(capacity: vocab)
        values.initialize(repeating: 0)
    }

    deinit { values.deallocate() }

    /// softmax(`logits`), bit for bit the probabilities a model-space top-k answer gives.
    func fill(_ logits: UnsafeBufferPointer<Float>?, source: Int) -> UnsafeBufferPointer<Float> {
        if self.source != source {
            if let logits { Engine.softmax(logits, into: values) } else { values.update(repeating: 0) }
            self.source = source
        }
        return UnsafeBufferPointer(values)
    }
}

extension SynapseEncoder {
    /// Every synapse of a network-space request. Validation let only hidden states, per-position
    /// next tokens and next phrases through (the others are in `synapseFailures`).
    func encodeNetwork(_ request: ValidatedForward, rows: [RowAlignment], space: NetworkTokenSpace,
                       placements: [RowPlacement], output: BackendOutput) -> [SynapseResult] {
        request.synapses.enumerated().map { index, synapse in
            if let (code, message) = request.synapseFailures[index] {
                return SynapseResult(type: synapse.type, code: code, message: message)
            }
            let dtype: DataType = synapse.dtype == .float16 ? .float16 : .float32
            let k = Int(synapse.topk)
            let tensors: [Tensor]
            switch synapse.type {
            case .textLastHiddenState:
                tensors = [networkHidden(request, rows, placements, output, dtype)]
            case .textCausalLM:
                tensors = networkNextTokens(request, rows, space, placements, output, dtype, k: k)
            default:
                tensors = networkPhrases(request, rows, space, placements, output, dtype, k: k)
            }
            return SynapseResult(type: synapse.type, code: .success, tensors: tensors)
        }
    }

    /// `[batch, seq, networkDim]`: for each standard position, the model's final hidden state at
    /// the last model token ending at or before it (`RowAlignment.hiddenSources`), centred as in
    /// model space.
    private func networkHidden(_ request: ValidatedForward, _ rows: [RowAlignment], _ placements: [RowPlacement],
                               _ output: BackendOutput, _ dtype: DataType) -> Tensor {
        let (batch, seq) = (request.batch, request.seq)
        var writer = FloatTensorWriter(count: batch * seq * networkDim, dtype: dtype)
        let leftPad = (networkDim - hiddenSize) / 2
        if let hidden = output.hidden {
            for (r, (row, placement)) in zip(rows, placements).enumerated() {
                let firstColumn = seq - row.networkIDs.count
                for (j, source) in row.hiddenSources.enumerated() {
                    let vector = UnsafeBufferPointer(rebasing: hidden[((placement.tokenOffset + source) * hiddenSize)...].prefix(hiddenSize))
                    writer.write(vector, at: (r * seq + firstColumn + j) * networkDim + leftPad)
                }
            }
        }
        return writer.tensor(shape: [batch, seq, networkDim])
    }

    /// TEXT_CAUSAL_LM: for every standard position the next standard token's distribution, top-k
    /// (probabilities `[batch, seq, k]`, ids `[batch, seq, k]`, floor `[batch, seq]`) or, for k = 0,
    /// natural-log probabilities of all of them `[batch, seq, network vocab]` (−∞ where 0).
    private func networkNextTokens(_ request: ValidatedForward, _ rows: [RowAlignment], _ space: NetworkTokenSpace,
                                   _ placements: [RowPlacement], _ output: BackendOutput, _ dtype: DataType,
                                   k: Int) -> [Tensor] {
        let (batch, seq, vocab) = (request.batch, request.seq, space.vocabSize)
        let scratch = ProbabilityRow(vocab: vocabSize)
        var full = FloatTensorWriter(count: k == 0 ? batch * seq * vocab : 0, dtype: dtype)
        var probabilities = FloatTensorWriter(count: batch * seq * k, dtype: dtype)
        var ids = [UInt8](repeating: 0, count: batch * seq * k * 4)
        var floors = FloatTensorWriter(count: k == 0 ? 0 : batch * seq, dtype: dtype)
        var logs = [Float](repeating: 0, count: k == 0 ? vocab : 0)
        for (r, (row, placement)) in zip(rows, placements).enumerated() {
            let firstColumn = seq - row.networkIDs.count
            scratch.source = nil
            space.translator.forEachNextToken(row, k: k, probabilitiesAt: { i in
                scratch.fill(logitRow(output, placement, token: i), source: i)
            }) { j, answer in
                let position = r * seq + firstColumn + j
                if k == 0 {
                    for (id, p) in answer.probabilities.enumerated() { logs[id] = Foundation.log(p) }
                    logs.withUnsafeBufferPointer { full.write($0, at: position * vocab) }
                    return
                }
                answer.probabilities.withUnsafeBufferPointer { probabilities.write($0, at: position * k) }
                ids.withUnsafeMutableBytes { raw in
                    for (index, id) in answer.ids.enumerated() {
                        raw.storeBytes(of: id.littleEndian, toByteOffset: (position * k + index) * 4, as: Int32.self)
                    }
                }
                floors.write(answer.floor, at: position)
            }
        }
        if k == 0 { return [full.tensor(shape: [batch, seq, vocab])] }
        return [probabilities.tensor(shape: [batch, seq, k]),
                Tensor(buffer: ids, shape: [batch, seq, k].map(Int64.init), dtype: .int32),
                floors.tensor(shape: [batch, seq])]
    }

    /// TEXT_CAUSAL_LM_NEXT: the distribution over phrases of standard tokens after each row, healed
    /// (`TokenSpaceTranslator.nextPhrases`): probabilities `[batch, k]` descending, phrases INT32
    /// `[batch, k, L]` padded with −1 (L the longest phrase of this answer; a slot beyond the
    /// phrases that exist has probability 0 and no ids), floor `[batch]` = (1 − Σ)/(vocab − k).
    private func networkPhrases(_ request: ValidatedForward, _ rows: [RowAlignment], _ space: NetworkTokenSpace,
                                _ placements: [RowPlacement], _ output: BackendOutput, _ dtype: DataType,
                                k: Int) -> [Tensor] {
        let batch = request.batch
        // Rows are translated on every core (the engine is idle while a batch is encoded), each
        // worker with its own two distributions.
        var answers = [PhraseDistribution?](repeating: nil, count: rows.count)
        let workers = max(1, min(rows.count, ProcessInfo.processInfo.activeProcessorCount))
        answers.withUnsafeMutableBufferPointer { out in
            let out = out
            DispatchQueue.concurrentPerform(iterations: workers) { worker in
                let full = ProbabilityRow(vocab: vocabSize), healed = ProbabilityRow(vocab: vocabSize)
                for r in stride(from: worker, to: rows.count, by: workers) {
                    let (row, placement) = (rows[r], placements[r])
                    let (healedPosition, fullPosition) = space.translator.nextPositions(row)
                    guard let last = logitRow(output, placement, token: fullPosition) else { continue }
                    full.source = nil
                    healed.source = nil
                    let after = full.fill(last, source: fullPosition)
                    let before = healedPosition.flatMap { position in
                        logitRow(output, placement, token: position).map { healed.fill($0, source: position) }
                    }
                    out[r] = space.translator.nextPhrases(row, healed: before, full: after, k: k)
                }
            }
        }
        let width = max(1, answers.compactMap { $0?.phrases.map(\.count).max() }.max() ?? 1)
        var probabilities = FloatTensorWriter(count: batch * k, dtype: dtype)
        // INT32 little-endian, −1 (all bits set) wherever no id is written.
        var phraseBytes = [UInt8](repeating: 0xFF, count: batch * k * width * 4)
        var floors = FloatTensorWriter(count: batch, dtype: dtype)
        phraseBytes.withUnsafeMutableBytes { raw in
            for (r, answer) in answers.enumerated() {
                guard let answer else { continue }
                answer.probabilities.withUnsafeBufferPointer { probabilities.write($0, at: r * k) }
                for (c, phrase) in answer.phrases.enumerated() {
                    for (i, id) in phrase.enumerated() {
                        raw.storeBytes(of: id.littleEndian, toByteOffset: ((r * k + c) * width + i) * 4, as: Int32.self)
                    }
                }
                floors.write(answer.floor, at: r)
            }
        }
        return [probabilities.tensor(shape: [batch, k]),
                Tensor(buffer: phraseBytes, shape: [batch, k, width].map(Int64.init), dtype: .int32),
                floors.tensor(shape: [batch])]
    }
}
