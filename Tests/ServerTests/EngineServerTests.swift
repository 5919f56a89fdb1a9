import AxonClient
import GGUF
import Server
import TestSupport
import Tokenizer
import Wire
import XCTest

/// The real engine (default model) behind the server: outputs over TCP equal the engine's own
/// outputs for the same ragged batch, bit for bit (the same batch gives OpenBLAS the same shapes,
/// hence the same summation order, on any kernel core).
final class EngineServerTests: XCTestCase {
    private func engineBackend() throws -> EngineBackend {
        try EngineBackends.shared(maxRows: 4, maxSeq: 32, maxBatchTokens: 64)
    }

    func testEverySynapseOverTCPMatchesTheEngineBitwise() throws {
        let backend = try engineBackend()
        let rows: [[Int32]] = [[504, 3458, 314, 4649, 314, 216], [2, 2, 19556, 28, 30, 1510]]
        let lengths: [UInt32] = [6, 4]
        let valid = zip(rows, lengths).map { Array($0.suffix(Int($1))) }
        let harness = try startServer(backend: backend) { $0.networkDim = 1024 }
        let client = try harness.client()
        let tokens = Tensor(int32Rows: rows)
        // Every-position request (the batch computes logits at every position)...
        let all = try client.forward(ForwardRequest(tokens: tokens, lengths: lengths, synapses: [
            Synapse(type: .textCausalLM), Synapse(type: .textLastHiddenState), Synapse(type: .textCausalLM, topk: 3)]))
        // ...and a last-position request (the batch computes only each row's last logits).
        let next = try client.forward(ForwardRequest(tokens: tokens, lengths: lengths, synapses: [
            Synapse(type: .textCausalLMNext), Synapse(type: .textCausalLMNext, topk: 5, dtype: .float16)]))
        harness.stop()  // the worker is done with the engine; the test may call it now
        XCTAssertEqual(all.code, .success, all.message)
        XCTAssertEqual(next.code, .success, next.message)
        let (v, h) = (backend.modelInfo.vocabSize, backend.modelInfo.hiddenSize)
        XCTAssertEqual(v, 49152)
        XCTAssertEqual(h, 576)

        var expectedLogits: [[[UInt32]]] = [], expectedHidden: [[[UInt32]]] = []
        try backend.forward(rows: valid, hidden: true, logits: .all) { output in
            guard let hidden = output.hidden, let logits = output.logits else { throw MissingOutput() }
            var offset = 0
            for row in valid {
                expectedHidden.append((0..<row.count).map { t in hidden[((offset + t) * h)..<((offset + t + 1) * h)].map(\.bitPattern) })
                expectedLogits.append((0..<row.count).map { t in logits[((offset + t) * v)..<((offset + t + 1) * v)].map(\.bitPattern) })
                offset += row.count
            }
        }
        let causal = floats(try XCTUnwrap(all.forward?.results[0].tensors.first)).map(\.bitPattern)
        let hiddenOut = floats(try XCTUnwrap(all.forward?.results[1].tensors.first)).map(\.bitPattern)
        for row in 0..<2 {
            let pad = 6 - Int(lengths[row])
            for position in 0..<6 {
                let logitSlice = Array(causal[((row * 6 + position) * v)..<((row * 6 + position + 1) * v)])
                let hiddenSlice = Array(hiddenOut[((row * 6 + position) * 1024)..<((row * 6 + position + 1) * 1024)])
                if position < pad {
                    XCTAssertTrue(logitSlice.allSatisfy { $0 == 0 } && hiddenSlice.allSatisfy { $0 == 0 }, "padding \(row),\(position)")
                } else {
                    XCTAssertEqual(logitSlice, expectedLogits[row][position - pad], "logits \(row),\(position)")
                    XCTAssertEqual(hiddenSlice, [UInt32](repeating: 0, count: 224) + expectedHidden[row][position - pad]
                                   + [UInt32](repeating: 0, count: 224), "hidden \(row),\(position)")
                }
            }
        }
        let top3 = try XCTUnwrap(all.forward?.results[2].tensors)
        let lastTop3 = referenceTopK(expectedLogits[0][5].map(Float.init(bitPattern:)), k: 3)
        XCTAssertEqual(Array(int32s(top3[1])[15..<18]), lastTop3.ids)

        try backend.forward(rows: valid, hidden: false, logits: .last) { output in
            guard let logits = output.logits else { throw MissingOutput() }
            let nextOut = floats(try XCTUnwrap(next.forward?.results[0].tensors.first)).map(\.bitPattern)
            XCTAssertEqual(nextOut, logits.map(\.bitPattern))
            let top5 = try XCTUnwrap(next.forward?.results[1].tensors)
            for row in 0..<2 {
                let reference = referenceTopK(Array(logits[(row * v)..<((row + 1) * v)]), k: 5)
                XCTAssertEqual(Array(int32s(top5[1])[(row * 5)..<((row + 1) * 5)]), reference.ids)
                for j in 0..<5 {
                    // Both sides round to float16, from the engine's fp32 softmax and from this Double one,
                    // which differ by 26u relative (vexp and the rescaled total: EngineTests/Tolerance.swift),
                    // far below a float16 ulp: the roundings land at most one float16 ulp apart.
                    let p = Float(Float16(Float(reference.probs[j])))
                    XCTAssertEqual(floats(top5[0])[row * 5 + j], p, accuracy: Float(Float16(p).ulp))
                }
            }
        }
    }
}
