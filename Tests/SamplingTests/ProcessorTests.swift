import Foundation
import Sampling
import XCTest

/// Each logits processor, and Hugging Face's chain of them, on fixed logits against
/// scripts/reference/sampling_reference.py's numpy statement of HF's definitions (processors.json).
final class ProcessorTests: XCTestCase {
    struct Stage: Decodable { let scores: [Float]; let kept: [Int] }
    struct Chain: Decodable {
        let scores: [Float]
        let kept: [Int]
        /// Of the kept ids, in order.
        let probabilities: [Double]
        let argmax: Int
    }
    struct Case: Decodable {
        let name: String
        let logits: [Float]
        let input_ids: [Int32]
        let params: Fixture.Params
        let stage_order: [String]
        let stages: [String: Stage]
        let chain: Chain
    }
    struct LargeCase: Decodable {
        let name: String
        let vocab: Int
        let salt: UInt64
        let scale: Float
        let prefix: [Int32]
        let params: Fixture.Params
        let kept_count: Int
        let kept_id_sum: Int
        let min_kept_logit: Float
        let argmax: Int
    }
    struct File: Decodable { let cases: [Case]; let large_vocab: [LargeCase] }

    static let file: File? = try? Fixture.load("processors.json", as: File.self)

    private func cases() throws -> File {
        guard let file = Self.file else { return try Fixture.load("processors.json", as: File.self) }
        return file
    }

    private static func name(_ stage: LogitsStage) -> String {
        switch stage {
        case .repetitionPenalty: return "repetition_penalty"
        case .noRepeatNgram: return "no_repeat_ngram"
        case .temperature: return "temperature"
        case .topK: return "top_k"
        case .topP: return "top_p"
        }
    }

    private static func kept(_ row: [Float]) -> [Int] { row.indices.filter { row[$0] > -.infinity } }

    /// The order of the stages is Hugging Face's (`_get_logits_processor`, then the warpers).
    func testStagesAreHuggingFacesInHuggingFacesOrder() throws {
        for c in try cases().cases {
            XCTAssertEqual(c.params.sampling().stages.map(Self.name), c.stage_order, c.name)
        }
    }

    /// Each stage alone on the raw logits. The elementwise ones (penalty, temperature) are one correctly
    /// rounded f32 operation per score in both numpy and Swift, and the filters only write −∞, so the rows
    /// are equal bit for bit; the kept sets are equal exactly.
    func testEachStageMatchesTheReference() throws {
        for c in try cases().cases {
            let history = TokenHistory(prompt: c.input_ids[...])
            for stage in c.params.sampling().stages {
                // A case with one stage stores it once, as the chain.
                let single = c.stage_order.count == 1 ? Stage(scores: c.chain.scores, kept: c.chain.kept) : nil
                guard let expected = c.stages[Self.name(stage)] ?? single else { XCTFail("\(c.name): no \(Self.name(stage))"); continue }
                let s = SamplingScratch(vocabSize: c.logits.count)
                let (_, row) = c.logits.withRow { LogitsProcessor.apply(stage, to: $0, history: history, scratch: s) }
                XCTAssertEqual(row, expected.scores, "\(c.name) \(stage)")
                XCTAssertEqual(Self.kept(row), expected.kept, "\(c.name) \(stage)")
            }
        }
    }

    /// The whole chain: scores bit for bit, the kept set exactly, the arg-max, and the probabilities
    /// within `Tolerance.probability` (each relative to its own value).
    func testChainMatchesTheReference() throws {
        for c in try cases().cases {
            let scratch = SamplingScratch(vocabSize: c.logits.count)
            let params = c.params.sampling()
            let (_, row) = c.logits.withRow {
                LogitsProcessor.apply(params.stages, to: $0, history: TokenHistory(prompt: c.input_ids[...]), scratch: scratch)
            }
            XCTAssertEqual(row, c.chain.scores, c.name)
            XCTAssertEqual(Self.kept(row), c.chain.kept, c.name)
            XCTAssertEqual(row.withUnsafeBufferPointer { TokenDraw.argmax($0) }, c.chain.argmax, c.name)

            var probs = [Float](repeating: 0, count: row.count)
            let ok = row.withUnsafeBufferPointer { r in probs.withUnsafeMutableBufferPointer { SamplingMath.softmax(r, into: $0) } }
            XCTAssertTrue(ok, c.name)
            let finite = row.filter { $0 > -.infinity }
            guard let m = finite.max(), let low = finite.min() else { XCTFail(c.name); continue }
            let expectedProbabilities = Dictionary(uniqueKeysWithValues: zip(c.chain.kept, c.chain.probabilities))
            for i in row.indices {
                guard let expected = expectedProbabilities[i] else { XCTAssertEqual(probs[i], 0, "\(c.name) id \(i)"); continue }
                let tol = Tolerance.probability(expected, offset: Double(m - row[i]), range: Double(m - low))
                XCTAssertEqual(Double(probs[i]), expected, accuracy: tol, "\(c.name) id \(i)")
            }
        }
    }

    /// 262,144 tokens (Gemma 3's vocabulary) from the fake model: the radix top-k and top-p keep the same
    /// set as numpy's full sort (count, sum of ids and the smallest kept value, all exact).
    func testLargeVocabularyKeepsTheReferenceSet() throws {
        for c in try cases().large_vocab {
            let scratch = SamplingScratch(vocabSize: c.vocab)
            var row = [Float](repeating: 0, count: c.vocab)
            let history = TokenHistory(prompt: c.prefix[...])
            row.withUnsafeMutableBufferPointer {
                FakeModel.logits(history, vocab: c.vocab, salt: c.salt, scale: c.scale, into: $0)
                LogitsProcessor.apply(c.params.sampling().stages, to: $0, history: history, scratch: scratch)
            }
            let kept = Self.kept(row)
            XCTAssertEqual(kept.count, c.kept_count, c.name)
            XCTAssertEqual(kept.reduce(0, +), c.kept_id_sum, c.name)
            XCTAssertEqual(kept.map { row[$0] }.min(), c.min_kept_logit, c.name)
            XCTAssertEqual(row.withUnsafeBufferPointer { TokenDraw.argmax($0) }, c.argmax, c.name)
        }
    }

    /// `SamplingMath.exp` is within `Tolerance.exp` of e^x (computed in Double) over [−87, 0], is exactly
    /// 1 at 0 and exactly 0 at −∞ and below the normal range.
    func testExpIsWithinItsBound() {
        var worst = 0.0
        var x: Float = -87
        while x <= 0 {
            let got = Double(SamplingMath.exp(x))
            let want = Foundation.exp(Double(x))
            worst = max(worst, abs(got - want) / want)
            x = x.nextUp + 0.000_731   // ~119,000 points, not aligned with any power of two
        }
        XCTAssertLessThanOrEqual(worst, Tolerance.exp)
        XCTAssertEqual(SamplingMath.exp(0), 1)
        XCTAssertEqual(SamplingMath.exp(-.infinity), 0)
        XCTAssertEqual(SamplingMath.exp(-88), 0)
    }

    /// NaN and +∞ from a broken model never crash or poison the row: NaN is never chosen, +∞ always is.
    func testNaNAndInfinityAreSanitised() throws {
        var sampler = try SequenceSampler(parameters: SamplingParameters(doSample: true, seed: 1), prompt: [0],
                                          vocabSize: 4, modelEOS: [3])
        let scratch = SamplingScratch(vocabSize: 4)
        var row: [Float] = [.nan, 1, .infinity, .nan]
        let token = try row.withUnsafeMutableBufferPointer { try sampler.next(logits: $0, scratch: scratch) }
        XCTAssertEqual(token, 2)
    }

    /// When the n-gram ban removes every token there is a typed error, not a crash or a token of −∞.
    func testEveryTokenBannedIsAnError() throws {
        var sampler = try SequenceSampler(parameters: SamplingParameters(noRepeatNgramSize: 1), prompt: [0, 1],
                                          vocabSize: 2, modelEOS: [1])
        let scratch = SamplingScratch(vocabSize: 2)
        var row: [Float] = [0.5, 0.25]
        XCTAssertThrowsError(try row.withUnsafeMutableBufferPointer { try sampler.next(logits: $0, scratch: scratch) }) {
            XCTAssertEqual($0 as? SamplingError, .noTokenLeft(step: 0))
        }
    }
}
