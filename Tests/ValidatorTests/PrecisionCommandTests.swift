import Engine
import XCTest

/// `--precision f32|int8` on the commands that load an engine (issue 14): the value is parsed, the
/// start-up line says what runs and why, and an unknown value is a usage error.
final class PrecisionCommandTests: XCTestCase {
    func testRunTakesPrecisionAndLogsTheChoice() throws {
        try AxonCommand.requireBuilt()
        for precision in EnginePrecision.allCases where precision == .f32 || EnginePrecision.int8Available {
            let run = try AxonCommand.run(["run", "--precision", precision.rawValue, "--threads", "2", "--top", "3", "--ids", "1,504,3575,282,4649,314"])
            XCTAssertEqual(run.status, 0, run.stderr)
            XCTAssertTrue(run.stderr.contains("precision \(precision): as requested"), run.stderr)
            XCTAssertTrue(run.stdout.contains("next-token candidates"), run.stdout)
        }
        let chosen = try AxonCommand.run(["run", "--threads", "2", "--top", "1", "--ids", "1,504"])
        XCTAssertEqual(chosen.status, 0, chosen.stderr)
        XCTAssertTrue(chosen.stderr.contains("precision \(EnginePrecision.preferred): chosen for this CPU"), chosen.stderr)
        let bad = try AxonCommand.run(["run", "--precision", "f16", "--ids", "1"])
        XCTAssertEqual(bad.status, 64, "an unknown precision is a usage error")
        XCTAssertTrue(bad.stderr.contains("--precision"), bad.stderr)
    }

    func testBenchReportsThePrecisionItRan() throws {
        try AxonCommand.requireBuilt()
        let bench = try AxonCommand.run(["bench", "--precision", "f32", "--threads", "2", "--shapes", "1x8", "--repeats", "1", "--json"])
        XCTAssertEqual(bench.status, 0, bench.stderr)
        let report = try JSONSerialization.jsonObject(with: Data(bench.stdout.utf8)) as? [String: Any]
        XCTAssertEqual(report?["precision"] as? String, "f32")
    }

    /// The default never runs int8 where oneDNN has no VNNI: there its u8·s8 products go through
    /// saturating int16 pair sums at 7-bit activations (docs/ENGINE.md).
    func testTheDefaultIsInt8OnlyWithVNNI() {
        if EnginePrecision.preferred == .int8 {
            XCTAssertTrue(EnginePrecision.int8Available && Int8Gemm.isa.hasVNNI)
        }
        XCTAssertTrue(EnginePrecision.startupLine(.f32, requested: nil).hasPrefix("precision f32: chosen for this CPU"))
    }
}
