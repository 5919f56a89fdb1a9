import AxonClient
import Engine
import Foundation
import Server
import Tokenizer
import TokenTranslation
import Wire
import XCTest

/// Network space over the real engine (default model): where a standard boundary is a model
/// boundary, the answers are the model-space answers bit for bit (the "aligned equality"),
/// and the next phrases are the translation of the engine's own distributions.
final class NetworkSpaceEngineTests: XCTestCase {
    private let endOfText = NetworkStandardTokenizer.endOfText
    /// Digits (split one by one by the model), a word GPT-2 and the model cut differently, accents.
    private let texts = ["The quick brown fox jumps over the lazy dog.", "Unbelievably, 1,234 people said naïve café."]

    private func engineBackend() throws -> EngineBackend {
        try EngineBackends.shared(maxRows: 4, maxSeq: 32, maxBatchTokens: 64)
    }

    /// Byte offset where each token ends, from the tokenizer's own token bytes (not the translator's).
    private func ends(_ ids: [Int32], _ tokenizer: any TextTokenizer) throws -> [Int] {
        var end = 0
        return try ids.map { end += try tokenizer.decodeBytes([$0]).count; return end }
    }

    func testWhereBoundariesCoincideHiddenStatesAndNextTokenProbabilitiesEqualModelSpaceBitForBit() throws {
        let backend = try engineBackend()
        let model = try NetworkSpaces.defaultModel().tokenizer
        let standard = try NetworkSpaces.standard().tokenizer
        XCTAssertFalse(model.addsBOS, "the default model runs a row's text tokens alone")
        let networkRows = texts.map { standard.encode($0, addSpecial: false, parseSpecial: false) }
        let modelRows = texts.map { model.encode($0, addSpecial: false, parseSpecial: false) }
        let harness = try startServer(backend: backend) { config in
            config.networkDim = 1024
            config.networkSpace = try? NetworkSpaces.overDefaultModel()
        }
        let client = try harness.client()
        let k = 16
        let synapses = [Synapse(type: .textLastHiddenState), Synapse(type: .textCausalLM, topk: UInt32(k))]
        let (networkTokens, networkLengths) = leftPadded(networkRows, pad: endOfText)
        let network = try client.forward(ForwardRequest(tokens: networkTokens, lengths: networkLengths, synapses: synapses, space: .network))
        // The same texts in model space: the engine runs the same rows in the same batch.
        let (modelTokens, modelLengths) = leftPadded(modelRows, pad: 2)
        let modelSpace = try client.forward(ForwardRequest(tokens: modelTokens, lengths: modelLengths, synapses: synapses))
        harness.stop()
        XCTAssertEqual(network.code, .success, network.message)
        XCTAssertEqual(modelSpace.code, .success, modelSpace.message)
        let (networkSeq, modelSeq) = (networkRows.map(\.count).max() ?? 0, modelRows.map(\.count).max() ?? 0)

        let networkHidden = floats(try XCTUnwrap(network.forward?.results[0].tensors.first)).map(\.bitPattern)
        let modelHidden = floats(try XCTUnwrap(modelSpace.forward?.results[0].tensors.first)).map(\.bitPattern)
        let networkTop = try XCTUnwrap(network.forward?.results[1].tensors)
        let modelTop = try XCTUnwrap(modelSpace.forward?.results[1].tensors)
        let (networkP, networkIDs) = (floats(networkTop[0]), int32s(networkTop[1]))
        let (modelP, modelIDs) = (floats(modelTop[0]), int32s(modelTop[1]))

        // How many model tokens count toward each first standard token (an independent table: GPT-2
        // of each model token's bytes).
        var sharing: [Int32: Int] = [:]
        var firstStandard = [Int32?](repeating: nil, count: model.vocabSize)
        for u in 0..<Int32(model.vocabSize) where ![2, 3].contains(model.tokenType(for: u) ?? 2) {
            let bytes = try model.decodeBytes([u])
            guard let text = String(bytes: bytes, encoding: .utf8), let first = standard.encode(text, addSpecial: false, parseSpecial: false).first
            else { continue }
            firstStandard[Int(u)] = first
            sharing[first, default: 0] += 1
        }

        var alignedPositions = 0, comparedProbabilities = 0, insidePositions = 0
        for r in 0..<texts.count {
            let networkEnds = try ends(networkRows[r], standard), modelEnds = try ends(modelRows[r], model)
            let (networkPad, modelPad) = (networkSeq - networkRows[r].count, modelSeq - modelRows[r].count)
            for (j, end) in networkEnds.enumerated() {
                // The rule: the last model token ending at or before this standard token (else the first).
                let source = modelEnds.lastIndex { $0 <= end } ?? 0
                let n = (r * networkSeq + networkPad + j), m = (r * modelSeq + modelPad + source)
                XCTAssertEqual(Array(networkHidden[(n * 1024)..<((n + 1) * 1024)]), Array(modelHidden[(m * 1024)..<((m + 1) * 1024)]),
                               "hidden, row \(r) position \(j)")
                guard modelEnds[source] == end else { insidePositions += 1; continue }
                alignedPositions += 1
                // A model token whose first standard token no other model token shares carries its
                // model-space probability into the network answer unchanged.
                for c in 0..<k {
                    let u = modelIDs[m * k + c]
                    guard let first = firstStandard[Int(u)], sharing[first] == 1,
                          let listed = networkIDs[(n * k)..<((n + 1) * k)].firstIndex(of: first) else { continue }
                    XCTAssertEqual(networkP[listed].bitPattern, modelP[m * k + c].bitPattern,
                                   "row \(r) position \(j): model token \(u) → standard \(first)")
                    comparedProbabilities += 1
                }
            }
        }
        print("aligned positions \(alignedPositions), inside a model token \(insidePositions), probabilities compared \(comparedProbabilities)")
        XCTAssertGreaterThan(insidePositions, 0, "the texts have standard boundaries inside model tokens")
        XCTAssertGreaterThan(alignedPositions, 10)
        XCTAssertGreaterThan(comparedProbabilities, 20)
    }

    func testNextPhrasesAreTheTranslationOfTheEnginesOwnLastTwoDistributions() throws {
        let backend = try engineBackend()
        let space = try NetworkSpaces.overDefaultModel()
        let standard = try NetworkSpaces.standard().tokenizer
        let networkRows = ["The capital of France is", "Hello, my name is Jo"].map { standard.encode($0, addSpecial: false, parseSpecial: false) }
        let harness = try startServer(backend: backend) { $0.networkSpace = space }
        let (tokens, lengths) = leftPadded(networkRows, pad: endOfText)
        let k = 32
        let response = try harness.client().forward(ForwardRequest(tokens: tokens, lengths: lengths,
                                                                   synapses: [Synapse(type: .textCausalLMNext, topk: UInt32(k))], space: .network))
        harness.stop()  // the worker is done with the engine; the test may call it now
        XCTAssertEqual(response.code, .success, response.message)
        let tensors = try XCTUnwrap(response.forward?.results.first?.tensors)
        let width = Int(try XCTUnwrap(tensors[1].shape.last))
        let (probabilities, phrases, floors) = (floats(tensors[0]), int32s(tensors[1]), floats(tensors[2]))

        let rows = try networkRows.map { try space.translator.align(networkIDs: $0) }
        let v = backend.modelInfo.vocabSize
        try backend.forward(rows: rows.map(\.modelIDs), hidden: false, logits: .lastTwo) { output in
            let logits = try XCTUnwrap(output.logits)
            var offset = 0
            for (r, row) in rows.enumerated() {
                // Each row's last two logit rows: before its last model token, then after it.
                var healed = [Float](repeating: 0, count: v), full = [Float](repeating: 0, count: v)
                healed.withUnsafeMutableBufferPointer { softmax(UnsafeBufferPointer(rebasing: logits[(offset * v)..<((offset + 1) * v)]), into: $0) }
                full.withUnsafeMutableBufferPointer { softmax(UnsafeBufferPointer(rebasing: logits[((offset + 1) * v)..<((offset + 2) * v)]), into: $0) }
                offset += 2
                let expected = healed.withUnsafeBufferPointer { h in
                    full.withUnsafeBufferPointer { f in space.translator.nextPhrases(row, healed: h, full: f, k: k) }
                }
                XCTAssertEqual(Array(probabilities[(r * k)..<(r * k + expected.probabilities.count)]).map(\.bitPattern),
                               expected.probabilities.map(\.bitPattern), "row \(r)")
                for (c, phrase) in expected.phrases.enumerated() {
                    XCTAssertEqual(Array(phrases[((r * k + c) * width)..<((r * k + c) * width + phrase.count)]), phrase, "row \(r) phrase \(c)")
                }
                XCTAssertEqual(floors[r], expected.floor)
            }
        }
        // A sanity check against the model's knowledge: " Paris" (GPT-2 6342) leads after the first text.
        XCTAssertEqual(Array(phrases[0..<width].prefix { $0 != -1 }), [6342])
    }
}
