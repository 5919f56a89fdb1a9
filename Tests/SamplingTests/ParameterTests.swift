import Sampling
import Wire
import XCTest

/// Parameter defaults and validation: every out-of-range value is a typed error naming the wire field.
final class ParameterTests: XCTestCase {
    /// An absent wire field takes the same default in Wire and in Sampling.
    func testDefaultsAreTheWires() {
        let p = SamplingParameters()
        XCTAssertEqual(p.maxNewTokens, Int(Generation.Defaults.numToGenerate))
        XCTAssertEqual(p.topK, Int(Generation.Defaults.topk))
        XCTAssertEqual(p.doSample, Generation.Defaults.doSample)
        XCTAssertEqual(p.topP, Generation.Defaults.topP)
        XCTAssertEqual(p.temperature, Generation.Defaults.temperature)
        XCTAssertEqual(p.repetitionPenalty, Generation.Defaults.repetitionPenalty)
        XCTAssertEqual(p.noRepeatNgramSize, Int(Generation.Defaults.noRepeatNgramSize))
        XCTAssertEqual(p.numBeams, Int(Generation.Defaults.numBeams))
        XCTAssertEqual(p.lengthPenalty, Generation.Defaults.lengthPenalty)
        XCTAssertEqual(p.earlyStopping == .early, Generation.Defaults.earlyStopping)
        XCTAssertNil(p.seed)
        XCTAssertEqual(p.stopTokens, [])
    }

    /// Greedy by default: only the n-gram ban (Bittensor's no_repeat_ngram_size 2) before the arg-max.
    func testDefaultStages() {
        XCTAssertEqual(SamplingParameters().stages, [.noRepeatNgram(2)])
        XCTAssertEqual(SamplingParameters(doSample: true).stages, [.noRepeatNgram(2), .topK(50), .topP(0.95)])
        XCTAssertEqual(SamplingParameters(numBeams: 4).stages, [.noRepeatNgram(2)])
        XCTAssertEqual(SamplingParameters(topK: 0, doSample: true, topP: 1, temperature: 0.5, repetitionPenalty: 1.2,
                                          noRepeatNgramSize: 0).stages, [.repetitionPenalty(1.2), .temperature(0.5)])
    }

    private func assertInvalid(_ p: SamplingParameters, _ name: String, vocab: Int = 100,
                               limits: SamplingLimits = SamplingLimits(), line: UInt = #line) {
        XCTAssertThrowsError(try p.validate(vocabSize: vocab, limits: limits), line: line) { error in
            guard case .invalidParameter(let field, _, _) = error as? SamplingError else {
                return XCTFail("\(error)", line: line)
            }
            XCTAssertEqual(field, name, line: line)
            XCTAssertTrue((error as? SamplingError)?.description.contains(name) ?? false, line: line)
        }
    }

    func testOutOfRangeValuesAreRejected() {
        assertInvalid(SamplingParameters(doSample: true, temperature: 0), "temperature")
        assertInvalid(SamplingParameters(doSample: true, temperature: -1), "temperature")
        assertInvalid(SamplingParameters(temperature: .nan), "temperature")
        assertInvalid(SamplingParameters(topP: 0), "top_p")
        assertInvalid(SamplingParameters(topP: 1.0001), "top_p")
        assertInvalid(SamplingParameters(topP: .nan), "top_p")
        assertInvalid(SamplingParameters(topP: -0.5), "top_p")
        assertInvalid(SamplingParameters(maxNewTokens: 0), "num_to_generate")
        assertInvalid(SamplingParameters(maxNewTokens: 513), "num_to_generate", limits: SamplingLimits(maxNewTokens: 512))
        assertInvalid(SamplingParameters(topK: -1), "topk")
        assertInvalid(SamplingParameters(repetitionPenalty: 0), "repetition_penalty")
        assertInvalid(SamplingParameters(repetitionPenalty: .infinity), "repetition_penalty")
        assertInvalid(SamplingParameters(noRepeatNgramSize: -2), "no_repeat_ngram_size")
        assertInvalid(SamplingParameters(numBeams: 0), "num_beams")
        assertInvalid(SamplingParameters(numBeams: 9), "num_beams", limits: SamplingLimits(maxBeams: 8))
        assertInvalid(SamplingParameters(numBeams: 5), "num_beams", vocab: 9)   // HF takes 2·5 candidates
        assertInvalid(SamplingParameters(lengthPenalty: .nan), "length_penalty")
        assertInvalid(SamplingParameters(stopTokens: [100]), "stop_tokens")
        assertInvalid(SamplingParameters(stopTokens: [-1]), "stop_tokens")
        assertInvalid(SamplingParameters(stopTokens: Array(0..<65)), "stop_tokens")
    }

    func testInRangeValuesAreAccepted() throws {
        // Temperature is ignored (not checked for > 0) when greedy, as HF ignores it.
        try SamplingParameters(temperature: 0).validate(vocabSize: 100)
        try SamplingParameters(doSample: true, topP: 1, temperature: 1e-3).validate(vocabSize: 100)
        try SamplingParameters(topK: 1_000_000, doSample: true).validate(vocabSize: 100)
        try SamplingParameters(maxNewTokens: 512, numBeams: 8, lengthPenalty: -2).validate(
            vocabSize: 100, limits: SamplingLimits(maxNewTokens: 512, maxBeams: 8))
        try SamplingParameters(stopTokens: [99, 0, 99]).validate(vocabSize: 100)
    }

    func testBeamSamplingIsUnsupported() {
        XCTAssertThrowsError(try SamplingParameters(doSample: true, numBeams: 3).validate(vocabSize: 100)) {
            guard case .unsupported = $0 as? SamplingError else { return XCTFail("\($0)") }
        }
    }

    func testStopTokensResolveToTheModelsEOS() {
        XCTAssertEqual(SamplingParameters().resolvedStopTokens(modelEOS: [2, 2]), [2])
        XCTAssertEqual(SamplingParameters(stopTokens: [7, 3, 7]).resolvedStopTokens(modelEOS: [2]), [7, 3])
    }

    func testPromptIdsOutsideTheVocabularyAreRejected() {
        XCTAssertThrowsError(try SequenceSampler(parameters: SamplingParameters(), prompt: [3, 10], vocabSize: 10, modelEOS: [0]))
        XCTAssertThrowsError(try BeamSearch(parameters: SamplingParameters(numBeams: 2), prompt: [-1], vocabSize: 10, modelEOS: [0]))
    }
}
