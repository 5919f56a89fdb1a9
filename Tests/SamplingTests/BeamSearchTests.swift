import Foundation
import Sampling
import XCTest

/// Beam search over the fake model against the reference's statement of Hugging Face's `_beam_search`,
/// `BeamSearchScorer` and `BeamHypotheses` (beam_search.json, float64 there, f32 running scores here):
/// the same hypotheses in the same order, scores within `Tolerance.beamScore`.
final class BeamSearchTests: XCTestCase {
    struct Hypothesis: Decodable {
        let tokens: [Int32]
        let score: Double
        let sum_logprobs: Double
        let generated_len: Int
        let stop_token: Int32?
    }
    struct Case: Decodable {
        let name: String
        let vocab: Int
        let salt: UInt64
        let prompt: [Int32]
        let stop: [Int32]
        let num_beams: Int
        let max_new: Int
        let length_penalty: Float
        let early_stopping: String
        let repetition_penalty: Float
        let no_repeat_ngram_size: Int
        let steps: Int
        let hypotheses: [Hypothesis]
    }
    struct File: Decodable { let cases: [Case] }

    private func parameters(_ c: Case) -> SamplingParameters {
        let early: EarlyStopping = c.early_stopping == "true" ? .early : c.early_stopping == "never" ? .never : .heuristic
        return SamplingParameters(maxNewTokens: c.max_new, repetitionPenalty: c.repetition_penalty,
                                  noRepeatNgramSize: c.no_repeat_ngram_size, numBeams: c.num_beams,
                                  lengthPenalty: c.length_penalty, earlyStopping: early, stopTokens: c.stop)
    }

    /// Runs a search to the end, checking on the way that `parents`/`tokens` rebuild every beam (what the
    /// engine does with its KV sequences). Returns the hypotheses and the number of steps.
    private func run(_ c: Case) throws -> ([BeamHypothesis], Int) {
        var search = try BeamSearch(parameters: parameters(c), prompt: c.prompt, vocabSize: c.vocab, modelEOS: [])
        let scratch = SamplingScratch(vocabSize: c.vocab)
        var mirror: [[Int32]] = [[]]   // the beams as the engine would hold them
        var steps = 0
        while true {
            var logits = [Float](repeating: 0, count: search.liveCount * c.vocab)
            logits.withUnsafeMutableBufferPointer { all in
                for (b, beam) in mirror.enumerated() {
                    let row = UnsafeMutableBufferPointer(rebasing: all[(b * c.vocab)..<((b + 1) * c.vocab)])
                    FakeModel.logits(TokenHistory(prompt: c.prompt[...], generated: beam[...]), vocab: c.vocab,
                                     salt: c.salt, stop: c.stop, into: row)
                }
            }
            let previous = mirror.count
            let step = try logits.withUnsafeMutableBufferPointer { try search.step(logits: $0, scratch: scratch) }
            steps += 1
            XCTAssertEqual(step.released(previousCount: previous).count + Set(step.parents).count, previous, c.name)
            XCTAssertEqual(step.isFirstChild.filter { $0 }.count, Set(step.parents).count, c.name)
            mirror = zip(step.parents, step.tokens).map { mirror[$0] + [$1] }
            for (b, beam) in mirror.enumerated() { XCTAssertEqual(Array(search.tokens(ofBeam: b)), beam, c.name) }
            if step.isDone { break }
        }
        XCTAssertThrowsError(try [Float](repeating: 0, count: c.num_beams * c.vocab).withRow {
            try search.step(logits: $0, scratch: scratch)
        }, c.name)
        return (search.finish(), steps)
    }

    func testHypothesesMatchHuggingFacesBeamSearch() throws {
        for c in try Fixture.load("beam_search.json", as: File.self).cases {
            let (hypotheses, steps) = try run(c)
            XCTAssertEqual(steps, c.steps, c.name)
            XCTAssertEqual(hypotheses.map(\.tokens), c.hypotheses.map(\.tokens), c.name)
            XCTAssertEqual(hypotheses.map(\.stopToken), c.hypotheses.map(\.stop_token), c.name)
            XCTAssertEqual(hypotheses.map(\.generatedLength), c.hypotheses.map(\.generated_len), c.name)
            for (got, want) in zip(hypotheses, c.hypotheses) {
                let sumTol = Tolerance.beamScore(sumLogProbs: want.sum_logprobs, length: want.generated_len,
                                                 lengthPenalty: 0, penalty: Double(c.repetition_penalty))
                let tol = Tolerance.beamScore(sumLogProbs: want.sum_logprobs, length: want.generated_len,
                                              lengthPenalty: Double(c.length_penalty), penalty: Double(c.repetition_penalty))
                XCTAssertEqual(Double(got.sumLogProbs), want.sum_logprobs, accuracy: sumTol, c.name)
                XCTAssertEqual(got.score, want.score, accuracy: tol, c.name)
            }
        }
    }

    /// `finish()` before the search is done (a deadline, a cancelled request) returns what HF's finalize
    /// would at that point: the finished hypotheses and the live beams, best first.
    func testFinishEarlyReturnsLiveBeams() throws {
        let c = try XCTUnwrap(try Fixture.load("beam_search.json", as: File.self).cases.first)
        var search = try BeamSearch(parameters: parameters(c), prompt: c.prompt, vocabSize: c.vocab, modelEOS: [])
        let scratch = SamplingScratch(vocabSize: c.vocab)
        var logits = [Float](repeating: 0, count: c.vocab)
        logits.withUnsafeMutableBufferPointer {
            FakeModel.logits(TokenHistory(prompt: c.prompt[...]), vocab: c.vocab, salt: c.salt, stop: c.stop, into: $0)
        }
        _ = try logits.withUnsafeMutableBufferPointer { try search.step(logits: $0, scratch: scratch) }
        let result = search.finish()
        XCTAssertGreaterThanOrEqual(result.count, 1)
        XCTAssertLessThanOrEqual(result.count, c.num_beams)
        XCTAssertEqual(result.map(\.score), result.map(\.score).sorted(by: >))
        XCTAssertTrue(result.allSatisfy { $0.generatedLength == 1 })
    }

    /// A logits buffer of the wrong size is a typed error.
    func testWrongRowCountIsAnError() throws {
        var search = try BeamSearch(parameters: SamplingParameters(numBeams: 2), prompt: [1], vocabSize: 8, modelEOS: [0])
        let scratch = SamplingScratch(vocabSize: 8)
        XCTAssertThrowsError(try [Float](repeating: 0, count: 16).withRow { try search.step(logits: $0, scratch: scratch) }) {
            XCTAssertEqual($0 as? SamplingError, .logitsShape(count: 16, expected: 8))
        }
    }
}
