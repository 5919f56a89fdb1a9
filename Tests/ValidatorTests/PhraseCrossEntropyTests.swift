import Foundation
import Validator
import XCTest

/// Phrase cross-entropy against Bittensor v3.6.3's definition, re-stated in numpy by
/// scripts/reference/phrase_loss_fixtures.py over 81 seeded answers (matches, sub-target matches,
/// no match, clamped out-of-range values, and an all-zero answer whose NaN counts as 20).
final class PhraseCrossEntropyTests: XCTestCase {
    func testLossesEqualBittensorsDefinition() throws {
        let url = try XCTUnwrap(Bundle.module.url(forResource: "phrase_loss", withExtension: "json", subdirectory: "Fixtures"))
        let fixture = try XCTUnwrap(JSONSerialization.jsonObject(with: Data(contentsOf: url)) as? [String: Any])
        let vocab = try XCTUnwrap(fixture["vocab_size"] as? Int)
        let padding = Int32(try XCTUnwrap(fixture["padding"] as? Int))
        let cases = try XCTUnwrap(fixture["cases"] as? [[String: Any]])
        XCTAssertEqual(cases.count, 81)
        for (n, c) in cases.enumerated() {
            let probabilities = try XCTUnwrap(c["probabilities"] as? [Double]).map { Float($0) }
            let phrases = try XCTUnwrap(c["phrases"] as? [[Int]]).map { $0.map { Int32($0) } }
            let floor = Float(try XCTUnwrap(c["floor"] as? Double))
            let target = try XCTUnwrap(c["target"] as? [Int]).map { Int32($0) }
            let got = PhraseCrossEntropy.loss(probabilities: probabilities, phrases: phrases, floor: floor, target: target,
                                              padding: padding, vocabSize: vocab)
            // Both sides work in float64 from the same float32 inputs and differ only in summation
            // order: at most ~40 additions and one division, a relative error under 64·2⁻⁵³ in each
            // probability, so under 1e-14 in each −log. 1e-12 is that with room, not a fit.
            XCTAssertEqual(got.lossVal, try XCTUnwrap(c["loss_val"] as? Double), accuracy: 1e-12, "case \(n) loss_val")
            XCTAssertEqual(got.loss, try XCTUnwrap(c["loss"] as? Double), accuracy: 1e-12, "case \(n) loss")
        }
    }
}
