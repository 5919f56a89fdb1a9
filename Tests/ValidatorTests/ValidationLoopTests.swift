import AxonClient
import Foundation
import GGUF
import Identity
import Server
import TestSupport
import Tokenizer
import Validator
import Wire
import XCTest

/// The validator's loop: grading, EMA and weights against scripts/reference/validator_fixtures.py
/// (numpy), the atomic weights file, and a loopback run against fake-backend axons with one killed
/// and one stalled.
final class ValidationLoopTests: XCTestCase {
    private struct Fixture: Decodable {
        struct Grade: Decodable {
            let probabilities: [[Float]], phrases: [[[Int32]]], floors: [Float], targets: [[Int32]]
            let expected: String, loss: Double
        }
        struct EMA: Decodable { let alpha: Double, losses: [Double], emas: [Double] }
        struct Weights: Decodable {
            let ema_losses: [Double?], exclude_quantile: Double, max_weight: Double, weights: [Double]
        }
        let worst_loss: Double
        let grades: [Grade]
        let ema: EMA
        let weights: [Weights]
    }

    private static func fixture() throws -> Fixture {
        let url = try XCTUnwrap(Bundle.module.url(forResource: "validator_loop", withExtension: "json", subdirectory: "Fixtures"))
        return try JSONDecoder().decode(Fixture.self, from: Data(contentsOf: url))
    }

    /// A Success answer holding one network-space phrase result (phrases padded to one width with −1).
    private static func answer(probabilities: [[Float]], phrases: [[[Int32]]], floors: [Float]) -> Response {
        let rows = probabilities.count, k = probabilities[0].count
        let width = phrases.flatMap { $0 }.map(\.count).max() ?? 1
        let ids = phrases.flatMap { $0.flatMap { $0 + [Int32](repeating: -1, count: width - $0.count) } }
        let tensors = [Tensor(buffer: RawBytes.float32(probabilities.flatMap { $0 }), shape: [Int64(rows), Int64(k)], dtype: .float32),
                       Tensor(buffer: RawBytes.int32(ids), shape: [Int64(rows), Int64(k), Int64(width)], dtype: .int32),
                       Tensor(buffer: RawBytes.float32(floors), shape: [Int64(rows)], dtype: .float32)]
        return Response(id: 1, code: .success, forward: ForwardResponse(results: [SynapseResult(type: .textCausalLMNext, code: .success, tensors: tensors)]))
    }

    func testGradesMatchTheReference() throws {
        let fixture = try Self.fixture()
        XCTAssertEqual(PhraseCrossEntropy.worstLoss, fixture.worst_loss, accuracy: 1e-12)
        for (index, grade) in fixture.grades.enumerated() {
            let response = Self.answer(probabilities: grade.probabilities, phrases: grade.phrases, floors: grade.floors)
            let got = AnswerGrade.grade(response, targets: grade.targets, k: grade.probabilities[0].count)
            XCTAssertEqual(got.failure?.key ?? "ok", grade.expected, "case \(index): \(got)")
            // Both sides sum the same float32 inputs in float64 (in other orders): ~1e-15 relative.
            XCTAssertEqual(got.loss, grade.loss, accuracy: 1e-12 * max(1, grade.loss), "case \(index)")
        }
    }

    func testTransportAndCodeFailuresAreRecordedUnderTheirCodes() {
        let targets: [[Int32]] = [[1, 2, 3, 4, 5, 6, 7, 8]]
        let cases: [(FanOutOutcome, String)] = [
            (.timedOut(stage: "waiting"), "Timeout"), (.unreachable("refused"), "Unavailable"), (.failed("closed"), "ResponseDeserializationException"),
            (.answered(Response(id: 1, code: .backoff, message: "full")), "Backoff"),
            (.answered(Response(id: 1, code: .success, forward: ForwardResponse(results: [SynapseResult(type: .textCausalLMNext, code: .notImplemented)]))), "NotImplemented"),
            (.answered(Self.answer(probabilities: [[0.5, 0.2]], phrases: [[[1], [2]]], floors: [0])), "ResponseShapeException"),   // k 2, asked 3
        ]
        for (outcome, key) in cases {
            let grade = AnswerGrade.grade(outcome, targets: targets, k: 3)
            XCTAssertEqual(grade.failure?.key, key, "\(outcome)")
            XCTAssertEqual(grade.loss, PhraseCrossEntropy.worstLoss)
        }
    }

    func testTheEMAMatchesTheReference() throws {
        let fixture = try Self.fixture()
        var ledger = Ledger(alpha: fixture.ema.alpha, neurons: [(uid: 3, hotkey: "h")])
        for (loss, expected) in zip(fixture.ema.losses, fixture.ema.emas) {
            ledger.add(loss == fixture.worst_loss ? .failed(.timeout, detail: "") : .scored(loss: loss), uid: 3)
            XCTAssertEqual(try XCTUnwrap(ledger.record(uid: 3)?.emaLoss), expected, accuracy: 1e-12)
        }
        XCTAssertEqual(ledger.record(uid: 3)?.responses, fixture.ema.losses.count - 1)
        XCTAssertEqual(ledger.record(uid: 3)?.failures, ["Timeout": 1])
    }

    func testTheWeightFunctionMatchesTheReference() throws {
        for (index, reference) in try Self.fixture().weights.enumerated() {
            let got = WeightFunction.weights(emaLosses: reference.ema_losses, excludeQuantile: reference.exclude_quantile,
                                             maxWeight: reference.max_weight)
            XCTAssertEqual(got.count, reference.weights.count)
            for (a, b) in zip(got, reference.weights) { XCTAssertEqual(a, b, accuracy: 1e-12, "case \(index): \(got) vs \(reference.weights)") }
            XCTAssertLessThanOrEqual(got.max() ?? 0, max(reference.max_weight, 1 / Double(max(1, got.filter { $0 > 0 }.count))) + 1e-12)
        }
    }

    func testTheWeightsFileIsReplacedWholeAndParses() throws {
        let directory = FileManager.default.temporaryDirectory.appendingPathComponent("weights-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: directory, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(at: directory) }
        let path = directory.appendingPathComponent("weights.json").path
        var record = UIDRecord(uid: 7, hotkey: "5\"quoted")
        record.emaLoss = 3.25; record.responses = 4; record.failures = ["Timeout": 2, "Backoff": 1]
        let unscored = UIDRecord(uid: 9, hotkey: "x")
        for step in 1...3 {
            try WeightsFile.writeAtomically(WeightsFile.json(netuid: 3, block: 100, step: step,
                                                             entries: [WeightEntry(record: record, weight: 0.75), WeightEntry(record: unscored, weight: 0)]),
                                            to: path)
            let object = try XCTUnwrap(JSONSerialization.jsonObject(with: Data(contentsOf: URL(fileURLWithPath: path))) as? [String: Any])
            XCTAssertEqual(object["step"] as? Int, step)
            XCTAssertEqual(object["netuid"] as? Int, 3)
            XCTAssertEqual(object["block"] as? Int, 100)
            let weights = try XCTUnwrap(object["weights"] as? [[String: Any]])
            XCTAssertEqual(weights[0]["hotkey"] as? String, "5\"quoted")
            XCTAssertEqual(weights[0]["weight"] as? Double, 0.75)
            XCTAssertEqual(weights[0]["ema_loss"] as? Double, 3.25)
            XCTAssertEqual(weights[0]["responses"] as? Int, 4)
            XCTAssertEqual(weights[0]["failures"] as? [String: Int], ["Timeout": 2, "Backoff": 1])
            XCTAssertTrue(weights[1]["ema_loss"] is NSNull)
        }
        XCTAssertEqual(try FileManager.default.contentsOfDirectory(atPath: directory.path), ["weights.json"], "no temporary file is left")
        XCTAssertThrowsError(try WeightsFile.writeAtomically("{}", to: directory.appendingPathComponent("missing/weights.json").path))
    }

    func testTheRotationVisitsEveryUIDOncePerPass() {
        var rotation = UIDRotation(uids: Array(0..<10), seed: 5)
        var seen: [Int] = []
        for _ in 0..<5 {
            let step = rotation.next(4)
            XCTAssertEqual(Set(step).count, 4)
            seen += step
        }
        XCTAssertEqual(Set(seen.prefix(10)), Set(0..<10), "the first pass covers every UID")
        XCTAssertEqual(Set(seen.dropFirst(10).prefix(10)), Set(0..<10), "so does the second")
    }

    /// Three fake-backend axons in network space, one killed after step 2, and a listener that
    /// accepts but never answers: both are recorded, every step runs, their weights fall.
    func testALoopbackRunRecordsAKilledAndAStalledAxonAndKeepsGoing() throws {
        let standard = try Tokenizer.networkStandard(ranksPath: TestPaths.repositoryRoot.appendingPathComponent("Models/gpt2.tiktoken").path)
        let file = try GGUFFile(path: TestPaths.defaultModel())
        let modelTokenizer = try TokenizerLoader.load(gguf: file)
        let space = NetworkTokenSpace(standard: standard, model: modelTokenizer)
        let info = ModelInfo(gguf: file, tokenizer: modelTokenizer)
        var axons = try (0..<3).map { index in
            try LocalAxon(backend: FakeBackend(modelInfo: info), seed: UInt8(40 + index)) { $0.networkSpace = space }
        }
        let stalled = try SilentListener()
        let stalledKey = try Hotkey(seed: [UInt8](repeating: 49, count: 32))
        var neurons = axons.enumerated().map { Endpoint(uid: $0, hotkey: $1.key.ss58, host: "127.0.0.1", port: $1.server.port) }
        neurons.append(Endpoint(uid: 3, hotkey: stalledKey.ss58, host: "127.0.0.1", port: stalled.port))
        let text = try String(contentsOf: TestPaths.repositoryRoot.appendingPathComponent("Tests/ValidatorTests/Fixtures/score.txt"), encoding: .utf8)
        var settings = ValidationSettings()
        settings.batch = 2; settings.seq = 24; settings.uidsPerStep = 4; settings.topk = 64; settings.deadline = 2
        settings.ema = 0.5
        let validator = try Hotkey(seed: [UInt8](repeating: 7, count: 32))
        let loop = try ValidationLoop(settings: settings, netuid: 1, block: 10, neurons: neurons,
                                      tokens: standard.tokenizer.encode(text, addSpecial: false, parseSpecial: false),
                                      transport: FanOutTransport(hotkey: validator))
        var reports: [StepReport] = []
        for step in 1...4 {
            if step == 3 { axons[2].stop() }
            reports.append(loop.runStep())
        }
        withExtendedLifetime(stalled) {}
        XCTAssertEqual(reports.count, 4)
        for report in reports {
            XCTAssertEqual(report.answers.count, 4)
            for answer in report.answers where answer.uid < 2 || (answer.uid == 2 && report.step <= 2) {
                guard case .scored(let loss) = answer.grade else { return XCTFail("step \(report.step) uid \(answer.uid): \(answer.grade)") }
                XCTAssertLessThan(loss, PhraseCrossEntropy.worstLoss)
            }
        }
        let killed = try XCTUnwrap(loop.ledger.record(uid: 2)), stalledRecord = try XCTUnwrap(loop.ledger.record(uid: 3))
        XCTAssertEqual(killed.responses, 2)
        XCTAssertEqual(killed.failures.values.reduce(0, +), 2, "\(killed.failures)")
        XCTAssertEqual(stalledRecord.failures, ["Timeout": 4])
        let weights = Dictionary(uniqueKeysWithValues: loop.weights().map { ($0.record.uid, $0.weight) })
        let healthy = min(weights[0] ?? 0, weights[1] ?? 0)
        XCTAssertGreaterThan(healthy, 0)
        XCTAssertLessThan(weights[2] ?? 1, healthy * 1e-6, "the killed axon's weight fell: \(weights)")
        XCTAssertLessThan(weights[3] ?? 1, healthy * 1e-6, "the stalled axon's weight fell: \(weights)")
        // The stalled listener costs each step its deadline, not more.
        for report in reports { XCTAssertLessThan(report.seconds, settings.deadline + 1.5) }
        axons.removeAll()
    }
}

/// `axon validate` on the command line: its help states Bittensor v3's figures, and a corpus too
/// short for one window is a failure that says what to do.
final class ValidateCommandTests: XCTestCase {
    func testHelpStatesBittensorV3Figures() throws {
        try AxonCommand.requireBuilt()
        let help = try AxonCommand.run(["validate", "--help"], withModel: false)
        let text = help.stdout.replacingOccurrences(of: "\n", with: " ").split(separator: " ", omittingEmptySubsequences: true).joined(separator: " ")
        for figure in ["batch 32", "sequence 256", "20 UIDs a step", "12 s deadline", "--exclude-quantile", "--max-weight", "--log-csv"] {
            XCTAssertTrue(text.contains(figure), "help lacks '\(figure)': \(help.stdout)")
        }
    }

    /// The loop keys its endpoints and ledger by UID: a repeated UID is a typed error, not a trap.
    func testARepeatedUIDIsATypedError() {
        let neurons = [Endpoint(uid: 5, hotkey: "a", host: "127.0.0.1", port: 1), Endpoint(uid: 5, hotkey: "b", host: "127.0.0.1", port: 2)]
        var settings = ValidationSettings()
        settings.seq = 4
        XCTAssertThrowsError(try ValidationLoop(settings: settings, netuid: 1, block: 1, neurons: neurons,
                                                tokens: [Int32](repeating: 1, count: 64),
                                                transport: FanOutTransport(hotkey: nil))) { error in
            XCTAssertEqual(error as? ValidationLoopError, .duplicateUID(5))
        }
    }

    func testACorpusShorterThanAWindowSaysWhatToDo() throws {
        try AxonCommand.requireBuilt()
        let directory = FileManager.default.temporaryDirectory.appendingPathComponent("validate-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: directory, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(at: directory) }
        let key = try Hotkey(seed: [UInt8](repeating: 3, count: 32))
        let files = (subnet: directory.appendingPathComponent("subnet.json").path, axons: directory.appendingPathComponent("axons.json").path,
                     corpus: directory.appendingPathComponent("tiny.jsonl").path)
        try #"{"netuid": 2, "block": 5, "neurons": [{"uid": 0, "hotkey": "\#(key.ss58)", "stake": 1, "validator_permit": false}]}"#
            .write(toFile: files.subnet, atomically: true, encoding: .utf8)
        try #"[{"uid": 0, "hotkey": "\#(key.ss58)", "host": "127.0.0.1", "port": 1}]"#.write(toFile: files.axons, atomically: true, encoding: .utf8)
        try #"{"text": "Too short."}"#.write(toFile: files.corpus, atomically: true, encoding: .utf8)
        let run = try AxonCommand.run(["validate", "--metagraph", files.subnet, "--endpoints", files.axons, "--corpus", files.corpus,
                                       "--steps", "1", "--weights-out", directory.appendingPathComponent("w.json").path, "--unsigned"],
                                      home: directory.path, withModel: false)
        XCTAssertEqual(run.status, 1, run.stderr)
        XCTAssertTrue(run.stderr.contains("a window needs 136"), run.stderr)
    }
}
