import AxonClient
import Foundation
import Tokenizer
import TokenTranslation
import Validator
import Wire

/// `axon score --space network --compare-model-space`: how much the translation between token
/// spaces costs in loss (issue 12, "Translation quality, measured"). At each window's end:
/// - network space: the axon's healed TEXT_CAUSAL_LM_NEXT, scored by `loss_val` against the next
///   standard token (Bittensor's phrase cross-entropy);
/// - model space: the model's own next-token loss, −log p of the true next model token, from the
///   axon's raw logits for the same text in model tokens (with its bos when it adds one);
/// - naive: the same model-space distribution translated the way v3 miners did, each candidate's
///   text tokenized on its own, no healing (`TokenSpaceTranslator.nextPhrases` without `healed`).
/// The three are compared where the window's model tokens are a prefix of the model tokens of the
/// text going on after it (so the true next model token is defined); healed and naive are also
/// compared over every window (where the window ends inside what the model reads as one token,
/// healing is what differs).
struct TranslationQuality {
    let scorer: Scorer
    let standard: any TextTokenizer
    let model: any TextTokenizer
    let remote: InfoResponse
    /// Standard tokens of text after a window that decide how the model tokenizes across its end.
    static let lookahead = 32

    struct Comparison {
        var windows = 0, compared = 0
        var seq = 0, topk = 0
        /// Means over the compared windows (nats).
        var modelLoss = 0.0, networkLoss = 0.0, naiveLoss = 0.0
        /// Mean loss_val over every window: network space (healed), and the naive translation.
        var networkLossAll = 0.0, naiveLossAll = 0.0

        var ratio: Double { networkLoss / modelLoss }
        var naiveRatio: Double { naiveLoss / modelLoss }

        var json: String {
            String(format: "{\"windows\":%d,\"compared\":%d,\"seq\":%d,\"topk\":%d,\"model_loss\":%.6f,\"network_loss\":%.6f,\"naive_loss\":%.6f,\"ratio\":%.4f,\"naive_ratio\":%.4f,\"network_loss_all\":%.6f,\"naive_loss_all\":%.6f}",
                   windows, compared, seq, topk, modelLoss, networkLoss, naiveLoss, ratio, naiveRatio, networkLossAll, naiveLossAll)
        }

        func report(endpoint: String, text: String) -> String {
            """
            translation quality of \(endpoint) on \(text): \(windows) windows of \(seq) standard tokens, top-k \(topk); \
            \(compared) where the window's model tokens are a prefix of the text's
              model space, the model's own next-token loss    \(String(format: "%.4f", modelLoss)) nats
              network space (healed), mean loss_val          \(String(format: "%.4f", networkLoss)) nats = \(String(format: "%.3f", ratio))x \
            (bar 1.10x, moonshot 1.03x)
              naive translation (no healing), mean loss_val  \(String(format: "%.4f", naiveLoss)) nats = \(String(format: "%.3f", naiveRatio))x
              over all \(windows) windows: network space (healed) \(String(format: "%.4f", networkLossAll)) nats, naive \
            \(String(format: "%.4f", naiveLossAll)) nats
            """
        }
    }

    func measure(tokens: [Int32], windows: [ScoreWindow], client: AxonClient, quiet: Bool) throws -> Comparison {
        let translator = TokenSpaceTranslator(network: TextTokenizerBytes(standard), model: TextTokenizerBytes(model),
                                              modelBOS: model.addsBOS ? model.bosID : nil, modelEOS: model.eosID,
                                              networkEOS: NetworkStandardTokenizer.endOfText)
        let modelBytes = TextTokenizerBytes(model)
        let progress = Progress("translation quality", total: 2 * windows.count, unit: "answers", quiet: quiet)

        // Network space, as a validator asks.
        var networkLoss: [Double] = []
        let planned = try scorer.requests(tokens: tokens, windows: windows)
        try Scorer.inFlight(planned.map(\.request), client: client, timeoutMs: scorer.timeoutMs) { index, response in
            networkLoss += try scorer.losses(windows: planned[index].windows, response: response).map(\.lossVal)
            progress.set(networkLoss.count)
        }

        // The same texts in model space; the true next model token where it is defined.
        struct Case { let window: ScoreWindow; let row: RowAlignment; let nextModelToken: Int32?; let networkLoss: Double }
        var cases: [Case] = []
        for (window, loss) in zip(windows, networkLoss) {
            let ids = Array(tokens[window.start..<(window.start + scorer.seq)])
            let whole = try standard.decodeBytes(Array(tokens[window.start..<min(tokens.count, window.start + scorer.seq + Self.lookahead)]))
            let row = try translator.align(networkIDs: ids)
            let prefix = row.modelIDs[row.firstTextPosition...]
            let all = modelBytes.encode(bytes: whole)
            let comparable = all.count > prefix.count && all.starts(with: prefix)
            cases.append(Case(window: window, row: row, nextModelToken: comparable ? all[prefix.count] : nil, networkLoss: loss))
        }
        var comparison = Comparison(windows: windows.count, compared: cases.filter { $0.nextModelToken != nil }.count,
                                    seq: scorer.seq, topk: scorer.topk)
        comparison.networkLossAll = networkLoss.reduce(0, +) / Double(max(1, networkLoss.count))
        let vocab = Int(remote.vocabSize)
        let chunks = stride(from: 0, to: cases.count, by: scorer.rowsPerRequest).map { Array(cases[$0..<min(cases.count, $0 + scorer.rowsPerRequest)]) }
        let requests = chunks.map { chunk -> ForwardRequest in
            let rows = chunk.map(\.row.modelIDs)
            let width = rows.map(\.count).max() ?? 0
            let padded = rows.map { [Int32](repeating: Int32(remote.padID), count: width - $0.count) + $0 }
            return ForwardRequest(tokens: Tensor(int32Rows: padded), lengths: rows.map { UInt32($0.count) },
                                  synapses: [Synapse(type: .textCausalLMNext, topk: 0)])
        }
        var probabilities = [Float](repeating: 0, count: vocab)
        try Scorer.inFlight(requests, client: client, timeoutMs: scorer.timeoutMs) { index, response in
            let chunk = chunks[index]
            let logits = try response.checkedResult(.textCausalLMNext).checkedDense(rows: chunk.count, positions: nil, width: vocab)
            for (r, item) in chunk.enumerated() {
                let row = logits.vector(row: r)
                let top = Double(row.max() ?? 0)
                let total = row.reduce(0.0) { $0 + exp(Double($1) - top) }
                for (u, value) in row.enumerated() { probabilities[u] = Float(exp(Double(value) - top) / total) }
                let naive = probabilities.withUnsafeBufferPointer { translator.nextPhrases(item.row, healed: nil, full: $0, k: scorer.topk) }
                let naiveLoss = PhraseCrossEntropy.loss(probabilities: naive.probabilities, phrases: naive.phrases, floor: naive.floor,
                                                        target: item.window.following).lossVal
                comparison.naiveLossAll += naiveLoss
                guard let next = item.nextModelToken else { continue }
                // −log softmax in Double: the model's own loss of the true next model token.
                comparison.modelLoss += top + log(total) - Double(row[row.startIndex + Int(next)])
                comparison.naiveLoss += naiveLoss
                comparison.networkLoss += item.networkLoss
            }
            progress.set(windows.count + (index + 1) * scorer.rowsPerRequest)
        }
        comparison.naiveLossAll /= Double(max(1, cases.count))
        progress.finish()
        let n = Double(max(1, comparison.compared))
        comparison.modelLoss /= n
        comparison.networkLoss /= n
        comparison.naiveLoss /= n
        return comparison
    }
}
