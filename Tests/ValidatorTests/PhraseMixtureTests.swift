import Foundation
import Validator
import XCTest

/// The mixture's math against scripts/reference/mixture_fixtures.py (numpy float64).
final class PhraseMixtureTests: XCTestCase {
    private struct Fixture: Decodable {
        struct Expert: Decodable { let weight: Double, phrases: [[Int32]], probabilities: [Float], floor: Float }
        struct Case: Decodable { let experts: [Expert], k: Int, phrases: [[Int32]], probabilities: [Double], floor: Double }
        let cases: [Case]
    }

    func testMixingMatchesTheReference() throws {
        let url = try XCTUnwrap(Bundle.module.url(forResource: "mixture", withExtension: "json", subdirectory: "Fixtures"))
        let fixture = try JSONDecoder().decode(Fixture.self, from: Data(contentsOf: url))
        for (index, reference) in fixture.cases.enumerated() {
            let experts = reference.experts.map {
                (weight: $0.weight, answer: ExpertPhrases(phrases: $0.phrases, probabilities: $0.probabilities, floor: $0.floor))
            }
            let mixed = PhraseMixture.mix(experts, k: reference.k)
            XCTAssertEqual(mixed.phrases, reference.phrases, "case \(index)")
            // float64 sums of the same float32 inputs in other orders: a few ulps of values ≤ 1.
            for (a, b) in zip(mixed.probabilities, reference.probabilities) { XCTAssertEqual(a, b, accuracy: 1e-14, "case \(index)") }
            XCTAssertEqual(mixed.floor, reference.floor, accuracy: 1e-18, "case \(index)")
        }
    }

    func testAnExpertLeftOutIsRenormalisedAway() {
        let a = ExpertPhrases(phrases: [[1], [2]], probabilities: [0.6, 0.3], floor: 0.1 / 50255)
        let alone = PhraseMixture.mix([(weight: 3, answer: a)], k: 2)
        XCTAssertEqual(alone.phrases, [[1], [2]])
        XCTAssertEqual(alone.probabilities[0], Double(Float(0.6)), accuracy: 1e-15)
        XCTAssertEqual(alone.probabilities[1], Double(Float(0.3)), accuracy: 1e-15)
    }
}
