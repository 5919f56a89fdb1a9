import Foundation
import Sampling
import XCTest

/// The seeded generator and the draw: the same outputs as the Python statement of xoshiro256** and of the
/// draw rule (rng.json, sampling.json), sequences independent of the batch around them, and draws whose
/// frequencies match the processed distribution.
final class SeededSamplingTests: XCTestCase {
    struct RNGCase: Decodable { let seed: String; let stream: Int; let next: [String]; let uniform: [Double] }
    struct RNGFile: Decodable { let cases: [RNGCase] }

    struct Sequence: Decodable {
        let name: String
        let vocab: Int
        let salt: UInt64
        let stop: [Int32]
        let prompt: [Int32]
        let max_new: Int
        let params: Fixture.Params
        let seed: String
        let stream: Int
        let tokens: [Int32]
    }
    struct ChiSquare: Decodable {
        let name: String
        let logits: [Float]
        let input_ids: [Int32]
        let params: Fixture.Params
        let seed: String
        let draws: Int
        let support: [Int]
        let probabilities: [Double]
        let degrees_of_freedom: Int
        let false_failure_probability: Double
        let threshold: Double
    }
    struct SamplingFile: Decodable { let sequences: [Sequence]; let chi_square: [ChiSquare] }

    /// xoshiro256** seeded through SplitMix64, its jump() streams and its doubles, bit for bit.
    func testGeneratorMatchesTheReference() throws {
        for c in try Fixture.load("rng.json", as: RNGFile.self).cases {
            var g = Xoshiro256StarStar(seed: Fixture.hex(c.seed), stream: c.stream)
            XCTAssertEqual((0..<c.next.count).map { _ in g.next() }, c.next.map(Fixture.hex), "seed \(c.seed) stream \(c.stream)")
            XCTAssertEqual((0..<c.uniform.count).map { _ in g.uniform() }, c.uniform, "seed \(c.seed) stream \(c.stream)")
        }
    }

    private func sampler(_ s: Sequence) throws -> SequenceSampler {
        try SequenceSampler(parameters: s.params.sampling(maxNewTokens: s.max_new, seed: Fixture.hex(s.seed), stopTokens: s.stop),
                            prompt: s.prompt, vocabSize: s.vocab, modelEOS: [], stream: s.stream)
    }

    /// One decode step of `sampler` against the fake model.
    private func step(_ sampler: inout SequenceSampler, _ s: Sequence, row: inout [Float], scratch: SamplingScratch) throws {
        let tokens = sampler.tokens
        try row.withUnsafeMutableBufferPointer { buffer in
            FakeModel.logits(TokenHistory(prompt: tokens[...]), vocab: s.vocab, salt: s.salt, stop: s.stop, into: buffer)
            _ = try sampler.next(logits: buffer, scratch: scratch)
        }
    }

    /// Greedy and seeded sequences against the fake model give the reference's tokens exactly (the
    /// reference refuses cases where f32 rounding could move a draw across a boundary).
    func testSeededSequencesMatchTheReference() throws {
        for s in try Fixture.load("sampling.json", as: SamplingFile.self).sequences {
            var sampler = try sampler(s)
            let scratch = SamplingScratch(vocabSize: s.vocab)
            var row = [Float](repeating: 0, count: s.vocab)
            while !sampler.isFinished { try step(&sampler, s, row: &row, scratch: scratch) }
            XCTAssertEqual(Array(sampler.generated), s.tokens, s.name)
            let expectedReason: FinishReason = s.stop.contains(s.tokens.last ?? -1) ? .stopToken(s.tokens.last ?? -1) : .maxNewTokens
            XCTAssertEqual(sampler.finishReason, expectedReason, s.name)
        }
    }

    /// The same seeded sequences stepped together, in a rotating order, through one shared scratch (as the
    /// engine steps a batch), give the same tokens as each alone: no state is shared between sequences.
    func testSequencesAreIndependentOfTheBatch() throws {
        let all = try Fixture.load("sampling.json", as: SamplingFile.self).sequences
        var samplers = try all.map(sampler)
        let scratch = SamplingScratch(vocabSize: all.map(\.vocab).max() ?? 1)
        var rows = all.map { [Float](repeating: 0, count: $0.vocab) }
        var round = 0
        while samplers.contains(where: { !$0.isFinished }) {
            for k in 0..<samplers.count {
                let i = (k + round) % samplers.count
                if !samplers[i].isFinished { try step(&samplers[i], all[i], row: &rows[i], scratch: scratch) }
            }
            round += 1
        }
        for (s, sampler) in zip(all, samplers) { XCTAssertEqual(Array(sampler.generated), s.tokens, s.name) }
    }

    /// Without a seed each sequence draws its own.
    func testAbsentSeedIsRandom() throws {
        let p = SamplingParameters(doSample: true)
        let a = try SequenceSampler(parameters: p, prompt: [1], vocabSize: 8, modelEOS: [0])
        let b = try SequenceSampler(parameters: p, prompt: [1], vocabSize: 8, modelEOS: [0])
        XCTAssertNotEqual(a.seed, b.seed)  // equal with probability 2^-64
    }

    /// Pearson's chi-square of `counts` against the case's probabilities, after checking that no draw fell
    /// outside the kept set.
    private func assertMatches(_ counts: [Int], _ c: ChiSquare, file: StaticString = #filePath, line: UInt = #line) {
        XCTAssertEqual(c.support.reduce(0) { $0 + counts[$1] }, c.draws, "\(c.name): draws outside the kept set", file: file, line: line)
        var chi = 0.0
        for (id, p) in zip(c.support, c.probabilities) {
            let expected = p * Double(c.draws)
            chi += (Double(counts[id]) - expected) * (Double(counts[id]) - expected) / expected
        }
        XCTAssertEqual(c.degrees_of_freedom, c.support.count - 1, file: file, line: line)
        XCTAssertLessThan(chi, c.threshold, "\(c.name): chi-square \(chi) with \(c.degrees_of_freedom) degrees of freedom",
                          file: file, line: line)
    }

    private func chiSquareCase(_ name: String) throws -> ChiSquare {
        try XCTUnwrap(try Fixture.load("sampling.json", as: SamplingFile.self).chi_square.first { $0.name == name })
    }

    /// 60,000 draws from one processed row (penalty, temperature, top-k, top-p) against its reference
    /// probabilities: none outside the kept set, and Pearson's chi-square below the threshold a correct
    /// sampler exceeds with probability 1e-6 (the reference computes it from the chi-square distribution
    /// with degrees of freedom = kept tokens − 1; every expected count is ≥ 5). The seed is fixed, so the
    /// outcome is deterministic.
    func testDrawFrequenciesMatchTheDistribution() throws {
        let c = try chiSquareCase("row")
        let scratch = SamplingScratch(vocabSize: c.logits.count)
        let (_, row) = c.logits.withRow {
            LogitsProcessor.apply(c.params.sampling().stages, to: $0, history: TokenHistory(prompt: c.input_ids[...]),
                                  scratch: scratch)
        }
        XCTAssertEqual(row.indices.filter { row[$0] > -.infinity }, c.support)
        var counts = [Int](repeating: 0, count: row.count)
        var g = Xoshiro256StarStar(seed: Fixture.hex(c.seed))
        row.withUnsafeBufferPointer { r in
            for _ in 0..<c.draws {
                if let id = TokenDraw.draw(r, uniform: g.uniform(), scratch: scratch) { counts[id] += 1 }
            }
        }
        assertMatches(counts, c)
    }

    /// The same check end to end through `SequenceSampler` (temperature, top-k, top-p, then the draw
    /// from the kept set), fed the same raw row at every step.
    func testSamplerFrequenciesMatchTheDistribution() throws {
        let c = try chiSquareCase("sampler")
        let params = c.params.sampling(maxNewTokens: c.draws, seed: Fixture.hex(c.seed))
        var sampler = try SequenceSampler(parameters: params, prompt: c.input_ids, vocabSize: c.logits.count, modelEOS: [],
                                          limits: SamplingLimits(maxNewTokens: c.draws))
        let scratch = SamplingScratch(vocabSize: c.logits.count)
        var counts = [Int](repeating: 0, count: c.logits.count)
        var row = c.logits
        while !sampler.isFinished {
            _ = row.withUnsafeMutableBufferPointer { $0.update(from: c.logits) }
            counts[Int(try row.withUnsafeMutableBufferPointer { try sampler.next(logits: $0, scratch: scratch) })] += 1
        }
        assertMatches(counts, c)
    }
}
