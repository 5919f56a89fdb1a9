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

/// `axon score` over TCP on the default model equals a direct in-process computation: the engine's
/// logits for the same batches, top-k and floor recomputed independently in Double.
final class ScoreTests: XCTestCase {
    static let seq = 32, rows = 4

    private static var loaded: (EngineBackend, Tokenizer)?

    private func engine() throws -> (EngineBackend, Tokenizer) {
        if let loaded = Self.loaded { return loaded }
        let file = try GGUFFile(path: TestPaths.defaultModel())
        let tokenizer = try Tokenizer(gguf: file)
        let backend = try EngineBackend(file: file, modelInfo: ModelInfo(gguf: file, tokenizer: tokenizer), threads: 2,
                                        maxRows: Self.rows, maxSeq: Self.seq, maxBatchTokens: Self.rows * Self.seq)
        Self.loaded = (backend, tokenizer)
        return (backend, tokenizer)
    }

    private var corpusPath: String {
        Bundle.module.url(forResource: "Fixtures/score", withExtension: "txt")?.path ?? "Tests/ValidatorTests/Fixtures/score.txt"
    }

    /// Σ −log p of each window's true next token, from the engine directly, batched as the server
    /// batches them (one request = one batch: `maxBatchTokens` = rows × seq keeps requests apart).
    private func directTotalLoss(_ backend: EngineBackend, tokens: [Int32], topk: Int) throws -> (Double, Int) {
        let windows = ScoreWindows.make(tokens: tokens, seq: Self.seq, stride: Self.seq)
        let vocab = backend.modelInfo.vocabSize
        var total = 0.0
        for first in stride(from: 0, to: windows.count, by: Self.rows) {
            let chunk = Array(windows[first..<min(windows.count, first + Self.rows)])
            let batch = chunk.map { Array(tokens[$0.start..<($0.start + Self.seq)]) }
            try backend.forward(rows: batch, hidden: false, logits: .last) { output in
                guard let logits = output.logits else { throw AnswerError.malformed("no logits") }
                for (row, window) in chunk.enumerated() {
                    let row = Array(logits[(row * vocab)..<((row + 1) * vocab)])
                    total += -log(max(NextTokenLoss.minimumProbability, referenceProbability(row, of: window.target, k: topk)))
                }
            }
        }
        return (total, windows.count)
    }

    /// Full softmax in Double, top-k by (logit desc, id asc); the floor outside the top-k.
    private func referenceProbability(_ logits: [Float], of token: Int32, k: Int) -> Double {
        let maxLogit = Double(logits.max() ?? 0)
        let exps = logits.map { exp(Double($0) - maxLogit) }
        let sum = exps.reduce(0, +)
        let top = logits.indices.sorted { logits[$0] > logits[$1] || (logits[$0] == logits[$1] && $0 < $1) }.prefix(k)
        if top.contains(Int(token)) { return exps[Int(token)] / sum }
        let inside = top.reduce(0.0) { $0 + exps[$1] / sum }
        return (1 - inside) / Double(logits.count - k)
    }

    func testScoreOverTCPEqualsTheDirectComputation() throws {
        let (backend, tokenizer) = try engine()
        let tokens = tokenizer.encode(try String(contentsOfFile: corpusPath, encoding: .utf8))
        let axon = try LocalAxon(backend: backend, seed: 30) { config in
            config.maxBatch = Self.rows
            config.maxSeq = Self.seq
            config.maxBatchTokens = Self.rows * Self.seq
        }
        let validator = try Hotkey(seed: [UInt8](repeating: 7, count: 32))
        let client = try AxonClient(host: "127.0.0.1", port: axon.server.port, hotkey: validator)
        var served: [Int: ScoreResult] = [:]
        for topk in [8, 4096] {   // 8: most true tokens fall to the floor; 4096: most are inside
            served[topk] = try Scorer(seq: Self.seq, topk: topk, rowsPerRequest: Self.rows).score(tokens: tokens, client: client)
        }
        axon.stop()   // the worker is done with the engine; the test may call it now
        for (topk, result) in served {
            let (total, positions) = try directTotalLoss(backend, tokens: tokens, topk: topk)
            XCTAssertEqual(result.positions, positions)
            XCTAssertGreaterThan(positions, 8)
            // Same logits (same batches, same engine); the server's probabilities are float32 (the
            // engine's softmax), the reference's Double. A probability inside the top-k then agrees
            // to ~1e-7 relative (-log to ~1e-7 absolute); a floor is 1 − Σ top-k over up to 4096
            // float32 terms, off by up to ~1e-6 absolute, which is ~1e-4 relative on a floor near
            // 1e-2 spread over (vocab − k). Measured: 1e-5 (k = 4096) and 2e-6 (k = 8) on the mean.
            XCTAssertEqual(result.loss, total / Double(positions), accuracy: 1e-4, "top-k \(topk)")
            XCTAssertEqual(result.perplexity, exp(result.loss), accuracy: 1e-9)
            print("score top-k \(topk): served loss \(result.loss), direct \(total / Double(positions)), \(positions) positions")
        }
    }

    func testScoreCommandPrintsTheSameLossAsTheDirectComputation() throws {
        let (backend, tokenizer) = try engine()
        try AxonCommand.requireBuilt()
        let directory = FileManager.default.temporaryDirectory.appendingPathComponent("axon-score-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: directory, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(at: directory) }
        let keyPath = directory.appendingPathComponent("validator.json").path
        try KeyFile.write(Hotkey.generate(), to: keyPath)
        let axon = try LocalAxon(backend: backend, seed: 31) { config in
            config.maxBatch = Self.rows
            config.maxSeq = Self.seq
            config.maxBatchTokens = Self.rows * Self.seq
        }
        let run = try AxonCommand.run(["score", "--endpoint", "127.0.0.1:\(axon.server.port)", "--text", corpusPath, "--seq", "\(Self.seq)",
                                       "--topk", "16", "--rows", "\(Self.rows)", "--json", "--key", keyPath])
        axon.stop()
        XCTAssertEqual(run.status, 0, run.stderr)
        let result = try JSONDecoder().decode(ScoreResult.self, from: Data(run.stdout.utf8))
        let tokens = tokenizer.encode(try String(contentsOfFile: corpusPath, encoding: .utf8))
        let (total, positions) = try directTotalLoss(backend, tokens: tokens, topk: 16)
        XCTAssertEqual(result.positions, positions)
        XCTAssertEqual(result.loss, total / Double(positions), accuracy: 1e-4)   // tolerance: see the test above
        XCTAssertEqual(result.perplexity, exp(result.loss), accuracy: 1e-6 * result.perplexity)
    }

    func testTheTrueTokenScoresItsProbabilityInsideTheTopKAndTheFloorOutside() {
        let probabilities: [Float] = [0.5, 0.25, 0.125], ids: [Int32] = [9, 4, 7]
        XCTAssertEqual(NextTokenLoss.loss(of: 4, probabilities: probabilities[...], ids: ids[...], floor: 0.001), -log(0.25), accuracy: 1e-12)
        XCTAssertEqual(NextTokenLoss.loss(of: 5, probabilities: probabilities[...], ids: ids[...], floor: 0.001),
                       -log(Double(Float(0.001))), accuracy: 1e-12)
        XCTAssertEqual(NextTokenLoss.loss(of: 5, probabilities: probabilities[...], ids: ids[...], floor: 0),
                       -log(NextTokenLoss.minimumProbability), accuracy: 1e-9)
    }

    func testCorpusShorterThanOneWindowIsATypedError() throws {
        XCTAssertThrowsError(try Scorer(seq: 8).requests(tokens: [1, 2, 3])) {
            XCTAssertEqual($0 as? ScoreError, .corpusTooShort(tokens: 3, seq: 8))
        }
    }
}
