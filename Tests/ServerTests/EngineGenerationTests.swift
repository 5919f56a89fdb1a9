import AxonClient
import Engine
import Foundation
import GGUF
import Server
import TestSupport
import Tokenizer
import Wire
import XCTest

/// TEXT_SEQ_2_SEQ on the real engine (default model, SmolLM2) over its KV cache, through a socket.
final class EngineGenerationTests: XCTestCase {
    private static var loaded: [Int: EngineGenerationBackend] = [:]

    /// One engine per KV cache size for the test process.
    private func backend(kvCacheMb: Int = 64) throws -> EngineGenerationBackend {
        if let backend = Self.loaded[kvCacheMb] { return backend }
        let file = try GGUFFile(path: TestPaths.defaultModel())
        let info = ModelInfo(gguf: file, tokenizer: try Tokenizer(gguf: file))
        let engine = try EngineBackend(file: file, modelInfo: info, threads: 2, maxRows: 8, maxSeq: 256, maxBatchTokens: 256,
                                       kvCacheBytes: kvCacheMb << 20, maxSequences: 8)
        let backend = EngineGenerationBackend(engine)
        Self.loaded[kvCacheMb] = backend
        return backend
    }

    private func configure(_ config: inout ServerConfiguration) {
        config.maxBatch = 8; config.maxSeq = 256; config.maxBatchTokens = 256
        config.maxSequences = 8; config.stepTokens = 64
    }

    /// Greedy decoding by full recompute through the engine's cache-less FORWARD path, with the
    /// top-2 margin of each step's logits.
    private func recomputedGreedy(_ backend: EngineGenerationBackend, prompt: [Int32], count: Int) throws -> [(token: Int32, margin: Float)] {
        var output: [(Int32, Float)] = []
        while output.count < count {
            try backend.base.forward(rows: [prompt + output.map(\.0)], hidden: false, logits: .last) { result in
                let logits = Array(try XCTUnwrap(result.logits))
                let order = logits.indices.sorted { logits[$0] > logits[$1] || (logits[$0] == logits[$1] && $0 < $1) }
                output.append((Int32(order[0]), logits[order[0]] - logits[order[1]]))
            }
        }
        return output
    }

    /// 16 greedy tokens over the wire, with the cache and continuous batching (two rows, a
    /// 64-token step budget so the longer prompt is read in chunks), equal greedy by recompute up to
    /// the first step whose top-2 margin is under 1e-3 (a near-tie the cache's different fp32
    /// summation order may flip; docs/ENGINE.md).
    func testGreedyOverTheWireEqualsGreedyByRecomputeOnTheEngine() throws {
        let backend = try backend()
        let harness = try startServer(backend: backend, configure: configure)
        let tokenizer = try Tokenizer(gguf: GGUFFile(path: TestPaths.defaultModel()))
        let short = tokenizer.encode("The capital of France is")
        let long = tokenizer.encode(String(repeating: "Rivers flow to the sea, and the sea feeds the clouds. ", count: 5) + "In the mountains,")
        XCTAssertGreaterThan(long.count, 64, "the long prompt needs several steps")
        let padded = [Array(repeating: Int32(2), count: long.count - short.count) + short, long]
        let generation = Generation(numToGenerate: 16, noRepeatNgramSize: 0, stopTokens: [-1])
        let response = try harness.client().forward(ForwardRequest(tokens: tokens32(padded), lengths: [UInt32(short.count), UInt32(long.count)],
                                                                   synapses: [Synapse(type: .textSeq2Seq, generation: generation)]),
                                                    timeoutMs: 120_000)
        XCTAssertEqual(response.code, .success, response.message)
        let result = try XCTUnwrap(response.forward?.results.first)
        let outputs = try result.checkedGeneration(rows: 2, maxTokens: 16, vocab: tokenizer.vocabSize)
        for (row, prompt) in [short, long].enumerated() {
            let reference = try recomputedGreedy(backend, prompt: prompt, count: 16)
            let agreed = reference.firstIndex { $0.margin < 1e-3 } ?? reference.count
            XCTAssertGreaterThan(agreed, 8, "row \(row): a near-tie this early would make the comparison empty")
            XCTAssertEqual(Array(outputs[row].prefix(agreed)), reference.prefix(agreed).map(\.token), "row \(row)")
            XCTAssertEqual(outputs[row].count, 16)
        }
        XCTAssertEqual(backend.kvUsage.sequences, 0, "every sequence was released")
        XCTAssertEqual(backend.kvUsage.usedBytes, 0)
    }

    /// The reservation is the engine's own block bound: a generation that could never fit the
    /// cache is refused whole; one that fits runs, and beam search forks the prompt's sequence.
    func testTheKVBudgetIsTheEnginesAndBeamsRunOnIt() throws {
        let backend = try backend(kvCacheMb: 4)
        let harness = try startServer(backend: backend, configure: configure)
        let client = try harness.client()
        let prompt = tokens32([[504, 3575, 282, 4649, 314]])
        let tooMuch = Generation(numToGenerate: 250, noRepeatNgramSize: 0, numBeams: 8, stopTokens: [-1])
        let refused = try client.forward(ForwardRequest(tokens: prompt, synapses: [Synapse(type: .textSeq2Seq, generation: tooMuch)]))
        XCTAssertEqual(refused.code, .requestShapeException, refused.message)
        XCTAssertTrue(refused.message.contains("--kv-cache-mb 4"), refused.message)
        let beams = Generation(numToGenerate: 6, noRepeatNgramSize: 0, numBeams: 3)
        let answered = try client.forward(ForwardRequest(tokens: prompt, synapses: [Synapse(type: .textSeq2Seq, generation: beams)]),
                                          timeoutMs: 60_000)
        let output = try answered.checkedResult(.textSeq2Seq).checkedGeneration(rows: 1, maxTokens: 6, vocab: 49_152)
        XCTAssertFalse(output[0].isEmpty)
        XCTAssertEqual(answered.timing?.batchRows, 3, "three beams decoded together")
        XCTAssertEqual(backend.kvUsage.sequences, 0)
    }
}
