import AxonClient
import Server
import Wire
import XCTest

/// Every synapse and encoding over real TCP, checked against the backend's own outputs.
final class SynapseTests: XCTestCase {
    private let rows: [[Int32]] = [[5, 6, 7, 8, 9], [2, 2, 11, 12, 13]]  // row 1 left-padded: 3 valid tokens
    private let lengths: [UInt32] = [5, 3]
    private let networkDim = 20  // hidden 16: two zeros on each side

    private func run(_ synapses: [Synapse], tokens: Tensor? = nil) throws -> (ForwardResponse, [[[Float]]], [[[Float]]]) {
        let backend = FakeBackend(vocabSize: 300, hiddenSize: 16)
        let harness = try startServer(backend: backend) { $0.networkDim = self.networkDim }
        let client = try harness.client()
        let response = try client.forward(ForwardRequest(tokens: tokens ?? tokens32(rows), lengths: lengths, synapses: synapses))
        XCTAssertEqual(response.code, .success, response.message)
        let valid = zip(rows, lengths).map { Array($0.suffix(Int($1))) }
        let direct = try directOutputs(FakeBackend(vocabSize: 300, hiddenSize: 16), rows: valid)
        return (try XCTUnwrap(response.forward), direct.hidden, direct.logits)
    }

    private func checkHidden(_ tensor: Tensor, _ hidden: [[[Float]]], half: Bool) {
        XCTAssertEqual(tensor.shape, [2, 5, Int64(networkDim)])
        XCTAssertEqual(tensor.dtype, half ? .float16 : .float32)
        let values = floats(tensor)
        for row in 0..<2 {
            let valid = Int(lengths[row])
            for position in 0..<5 {
                let vector = Array(values[((row * 5 + position) * networkDim)..<((row * 5 + position + 1) * networkDim)])
                if position < 5 - valid {
                    XCTAssertEqual(vector, Array(repeating: 0, count: networkDim), "padded position \(row),\(position)")
                    continue
                }
                var expected: [Float] = [0, 0] + hidden[row][position - (5 - valid)] + [0, 0]
                if half { expected = expected.map { Float(Float16($0)) } }
                XCTAssertEqual(vector.map(\.bitPattern), expected.map(\.bitPattern), "row \(row) position \(position)")
            }
        }
    }

    func testHiddenStatesAreCentredInTheNetworkDimAndZeroOnPaddedPositions() throws {
        let (forward, hidden, _) = try run([Synapse(type: .textLastHiddenState)])
        checkHidden(try XCTUnwrap(forward.results.first?.tensors.first), hidden, half: false)
    }

    func testFloat16HiddenStatesAreTheRoundedFloat32Values() throws {
        let (forward, hidden, _) = try run([Synapse(type: .textLastHiddenState, dtype: .float16)])
        checkHidden(try XCTUnwrap(forward.results.first?.tensors.first), hidden, half: true)
    }

    func testCausalLMRawLogitsMatchTheBackendBitwise() throws {
        let (forward, _, logits) = try run([Synapse(type: .textCausalLM)])
        let tensor = try XCTUnwrap(forward.results.first?.tensors.first)
        XCTAssertEqual(tensor.shape, [2, 5, 300])
        let values = floats(tensor)
        for row in 0..<2 {
            let valid = Int(lengths[row])
            for position in 0..<5 {
                let slice = Array(values[((row * 5 + position) * 300)..<((row * 5 + position + 1) * 300)])
                let expected = position < 5 - valid ? Array(repeating: Float(0), count: 300) : logits[row][position - (5 - valid)]
                XCTAssertEqual(slice.map(\.bitPattern), expected.map(\.bitPattern), "row \(row) position \(position)")
            }
        }
    }

    func testCausalLMNextRawLogitsAreTheLastValidPositionOfEachRow() throws {
        let (forward, _, logits) = try run([Synapse(type: .textCausalLMNext), Synapse(type: .textCausalLMNext, dtype: .float16)])
        for (index, half) in [(0, false), (1, true)] {
            let tensor = try XCTUnwrap(forward.results[index].tensors.first)
            XCTAssertEqual(tensor.shape, [2, 300])
            let values = floats(tensor)
            for row in 0..<2 {
                var expected = logits[row][Int(lengths[row]) - 1]
                if half { expected = expected.map { Float(Float16($0)) } }
                XCTAssertEqual(Array(values[(row * 300)..<((row + 1) * 300)]).map(\.bitPattern), expected.map(\.bitPattern))
            }
        }
    }

    private func checkTopK(_ result: SynapseResult, logitsAt: [(Int, [Float]?)], shape: [Int64], k: Int, half: Bool) {
        XCTAssertEqual(result.tensors.count, 3)
        guard result.tensors.count == 3 else { return }
        XCTAssertEqual(result.tensors[0].shape, shape + [Int64(k)])
        XCTAssertEqual(result.tensors[1].shape, shape + [Int64(k)])
        XCTAssertEqual(result.tensors[1].dtype, .int32)
        XCTAssertEqual(result.tensors[2].shape, shape)
        let probs = floats(result.tensors[0]), ids = int32s(result.tensors[1]), floors = floats(result.tensors[2])
        // The server's fp32 softmax against this Double one: vexp (~1 ulp = 2u) on the value and on
        // each rescale of the (Double) total at a new maximum (≈ H₃₈ = 4.2 over 38 chunks: take 5),
        // and the rounding of 1/total and the product: (2 + 2·5 + 2)·u = 14u relative. Half precision
        // adds the rounding to float16, half a float16 ulp of the value.
        let u: Float = 0x1p-24
        func tolerance(_ value: Float) -> Float { 14 * u * value + (half ? Float(Float16(value).ulp) / 2 : 0) }
        for (position, logits) in logitsAt {
            guard let logits else {
                XCTAssertEqual(Array(probs[(position * k)..<((position + 1) * k)]), Array(repeating: 0, count: k))
                XCTAssertEqual(Array(ids[(position * k)..<((position + 1) * k)]), Array(repeating: 0, count: k))
                XCTAssertEqual(floors[position], 0)
                continue
            }
            let reference = referenceTopK(logits, k: k)
            XCTAssertEqual(Array(ids[(position * k)..<((position + 1) * k)]), reference.ids, "ids at \(position)")
            for j in 0..<k {
                XCTAssertEqual(probs[position * k + j], Float(reference.probs[j]), accuracy: tolerance(Float(reference.probs[j])),
                               "prob \(j) at \(position)")
            }
            // floor = (1 − Σ top-k) / (vocab − k), Σ in Double: the probabilities' shared 14u on Σ ≤ 1,
            // then the rounding to fp32 and the division (2u of the floor), and any float16 rounding.
            let floorError = 14 * u / Float(300 - k) + 2 * u * Float(reference.floor)
            XCTAssertEqual(floors[position], Float(reference.floor),
                           accuracy: floorError + (half ? Float(Float16(Float(reference.floor)).ulp) / 2 : 0))
        }
    }

    func testCausalLMTopKGivesSoftmaxProbabilitiesIdsAndFloorAtEveryValidPosition() throws {
        let (forward, _, logits) = try run([Synapse(type: .textCausalLM, topk: 7)])
        var positions: [(Int, [Float]?)] = []
        for row in 0..<2 {
            let valid = Int(lengths[row])
            for position in 0..<5 {
                positions.append((row * 5 + position, position < 5 - valid ? nil : logits[row][position - (5 - valid)]))
            }
        }
        checkTopK(forward.results[0], logitsAt: positions, shape: [2, 5], k: 7, half: false)
    }

    func testCausalLMNextTopKInFloat16() throws {
        let (forward, _, logits) = try run([Synapse(type: .textCausalLMNext, topk: 4, dtype: .float16)])
        XCTAssertEqual(forward.results[0].tensors.first?.dtype, .float16)
        checkTopK(forward.results[0], logitsAt: (0..<2).map { ($0, logits[$0][Int(lengths[$0]) - 1]) },
                  shape: [2], k: 4, half: true)
    }

    func testTopKOverTheWholeVocabularyHasAZeroFloor() throws {
        let (forward, _, logits) = try run([Synapse(type: .textCausalLMNext, topk: 300)])
        checkTopK(forward.results[0], logitsAt: (0..<2).map { ($0, logits[$0][Int(lengths[$0]) - 1]) },
                  shape: [2], k: 300, half: false)
    }

    func testInt64TokensGiveTheSameAnswerAsInt32() throws {
        let synapses = [Synapse(type: .textCausalLMNext), Synapse(type: .textLastHiddenState)]
        let (viaInt32, _, _) = try run(synapses)
        let (viaInt64, _, _) = try run(synapses, tokens: tokens64(rows.map { $0.map(Int64.init) }))
        XCTAssertEqual(viaInt32, viaInt64)
    }

    func testSeq2SeqIsNotImplementedWhileOtherSynapsesSucceed() throws {
        let (forward, _, _) = try run([Synapse(type: .textSeq2Seq), Synapse(type: .textCausalLMNext, topk: 2)])
        XCTAssertEqual(forward.results.map(\.type), [.textSeq2Seq, .textCausalLMNext])
        XCTAssertEqual(forward.results.map(\.code), [.notImplemented, .success])
        XCTAssertTrue(forward.results[0].message.contains("TEXT_SEQ_2_SEQ"))
    }

    func testPingAndInfoAnswer() throws {
        let harness = try startServer(backend: FakeBackend(vocabSize: 300, hiddenSize: 16)) { $0.networkDim = 20 }
        let client = try harness.client()
        let ping = try client.ping()
        XCTAssertEqual(ping.code, .success)
        XCTAssertNil(ping.forward)
        let info = try XCTUnwrap(try client.info().info)
        XCTAssertEqual(info.vocabSize, 300)
        XCTAssertEqual(info.hiddenSize, 16)
        XCTAssertEqual(info.networkDim, 20)
        XCTAssertEqual(info.maxBatch, 64)
        XCTAssertEqual(info.maxSeq, 2048)
        XCTAssertEqual(info.maxBatchTokens, 4096)
        XCTAssertEqual(info.eosID, 2)
    }
}
