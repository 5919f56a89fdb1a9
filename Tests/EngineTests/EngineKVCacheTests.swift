import XCTest
import Engine
import GGUF
import TestSupport

/// Incremental decoding with the KV cache against the engine's own cache-less forward pass (a full
/// prefill of the same tokens) and against the float64 numpy reference's greedy decoding
/// (scripts/reference/engine_kv_reference.py writes kv_reference.json).
final class EngineKVCacheTests: XCTestCase {
    struct KVReference: Decodable {
        struct Greedy: Decodable {
            let prompt: [Int32]
            let tokens: [Int32]
            let runner_up: [Int32]
            let margins: [Float]
        }
        /// What reordering the fp32 sums of the residual products does to the logits, per model
        /// (FamilyModel.reorder_variance), over the greedy run's steps or the family row's prefixes.
        struct Reorder: Decodable {
            let max_sigma: Float
            let tolerance: Float
            /// Expected number of logits, over every step and the whole vocabulary, moving by more than `tolerance`.
            let expected_exceedances: Double
            let max_hidden_rms: Float
        }
        let greedy: Greedy
        let reorder: [String: Reorder]
        let family_row: [Int32]
    }

    /// The derivation of `Tolerance.cachedLogit` (Tolerance.swift) on one model: a run as long as the
    /// test's is expected to see fewer than 0.01 logits past it.
    private func assertToleranceDerivation(_ model: String, file: StaticString = #filePath, line: UInt = #line) throws -> Float {
        let reorder = try XCTUnwrap(try kvReference().reorder[model], file: file, line: line)
        XCTAssertEqual(reorder.tolerance, Tolerance.cachedLogit, file: file, line: line)
        XCTAssertLessThan(reorder.expected_exceedances, 0.01, file: file, line: line)
        return reorder.max_sigma
    }

    static let reference: KVReference? = try? JSONDecoder().decode(KVReference.self, from: ReferenceFixture.load("kv_reference.json"))
    private func kvReference() throws -> KVReference { try XCTUnwrap(Self.reference, "Fixtures/kv_reference.json") }

    private static var shared: InferenceEngine?
    private func smolLM2() throws -> InferenceEngine {
        if let e = Self.shared { return e }
        let e = try InferenceEngine(path: TestPaths.defaultModel(), options: EngineOptions(threads: 2))
        Self.shared = e
        return e
    }

    private func family(_ arch: String) throws -> InferenceEngine {
        let file = try GGUFFile(bytes: [UInt8](ReferenceFixture.load("family_\(arch).gguf.fixture")))
        return try InferenceEngine(file: file, options: EngineOptions(threads: 2, maxBatchTokens: 128, maxRows: 4, maxSeq: 128, maxLogitRows: 128))
    }

    private static func argmax(_ logits: UnsafeBufferPointer<Float>) -> Int32 {
        Int32(logits.indices.max { logits[$0] < logits[$1] || (logits[$0] == logits[$1] && $0 > $1) } ?? -1)
    }

    private static func maxGap<A: Sequence, B: Sequence>(_ a: A, _ b: B) -> Float where A.Element == Float, B.Element == Float {
        zip(a, b).reduce(0) { max($0, abs($1.0 - $1.1)) }
    }

    /// Last-position logits of a cache-less full prefill of `ids`.
    private static func fullPrefill(_ engine: InferenceEngine, _ ids: [Int32]) throws -> [Float] {
        Array(try XCTUnwrap(engine.forward(RaggedBatch(rows: [ids]), logits: .last).lastLogits(row: 0)))
    }

    // MARK: SmolLM2: each step against a full prefill, greedy against recompute and the reference

    struct GreedyRun {
        var tokens: [Int32] = []
        var gaps: [Float] = []
        /// Top-2 margin of the full prefill's logits at each step.
        var margins: [Float] = []
    }

    private static var greedyRun: GreedyRun?

    /// Greedy decoding of the reference prompt with the cache (one prefill, then one token per
    /// step), and at every step a full prefill of the same tokens without the cache: its argmax is
    /// what greedy decoding by full recompute picks, so equal argmaxes at every step make the two
    /// greedy sequences identical.
    private func greedyWithTheCache() throws -> GreedyRun {
        if let run = Self.greedyRun { return run }
        let engine = try smolLM2(), prompt = try kvReference().greedy.prompt
        let sequence = try engine.newSequence()
        defer { engine.release(sequence) }
        var run = GreedyRun()
        var ids = prompt
        var cached = Array(try XCTUnwrap(engine.forward(RaggedBatch(rows: [prompt]), sequences: [sequence], logits: .last).lastLogits(row: 0)))
        for step in 0..<64 {
            let full = try Self.fullPrefill(engine, ids)
            run.gaps.append(Self.maxGap(cached, full))
            let (withCache, recompute) = cached.withUnsafeBufferPointer { c in full.withUnsafeBufferPointer { f in (Self.argmax(c), Self.argmax(f)) } }
            let sorted = full.sorted(by: >)
            run.margins.append(sorted[0] - sorted[1])
            XCTAssertEqual(withCache, recompute, "step \(step): greedy with the cache picks \(withCache), by recompute \(recompute)")
            run.tokens.append(withCache)
            ids.append(withCache)
            XCTAssertEqual(try engine.cachedLength(of: sequence), ids.count - 1)
            cached = Array(try XCTUnwrap(engine.forward(RaggedBatch(rows: [[withCache]]), sequences: [sequence], logits: .last).lastLogits(row: 0)))
        }
        Self.greedyRun = run
        return run
    }

    func testEachDecodeStepWithTheCacheEqualsAFullPrefillOnSmolLM2() throws {
        let run = try greedyWithTheCache()
        let sigma = try assertToleranceDerivation("smollm2")
        XCTAssertEqual(run.gaps.count, 64)
        for (step, gap) in run.gaps.enumerated() {
            XCTAssertLessThanOrEqual(gap, Tolerance.cachedLogit, "step \(step)")
        }
        print("SmolLM2 with the cache vs full prefill over 64 steps: max logit Δ \(run.gaps.max() ?? 0) (tolerance \(Tolerance.cachedLogit), reorder σ \(sigma))")
    }

    func testSixtyFourGreedyTokensWithTheCacheEqualGreedyByFullRecompute() throws {
        let run = try greedyWithTheCache()   // asserts each step's argmax against the recompute's
        XCTAssertEqual(run.tokens.count, 64)
        print("greedy with the cache = greedy by recompute; smallest top-2 margin \(run.margins.min() ?? 0)")
    }

    /// The reference recomputes in float64; our logits differ from it by one fp32 pass's rounding.
    /// Two fp32 orders differ by σ ≤ the fixture's `max_sigma` (2.6e-5, Tolerance.swift) per logit,
    /// so one order against exact arithmetic moves the top-2 margin by about that σ: a margin over
    /// 1e-3 (~38σ) fixes the top-1. The reference's own tokens are fed at every step (teacher forcing), so each step
    /// compares the same context; and free-running greedy with the cache equals the reference's
    /// tokens up to its first near-tie.
    func testGreedyDecodingAgreesWithTheFloat64ReferenceWhereverItsMarginExceeds1e3() throws {
        let reference = try kvReference().greedy, nearTie: Float = 1e-3
        XCTAssertEqual(reference.tokens.count, 64)
        let engine = try smolLM2()
        let sequence = try engine.newSequence()
        defer { engine.release(sequence) }
        var row = reference.prompt, clear = 0
        for step in 0..<64 {
            let result = try engine.forward(RaggedBatch(rows: [row]), sequences: [sequence], logits: .last)
            let logits = try XCTUnwrap(result.lastLogits(row: 0))
            let ours = Self.argmax(logits)
            if reference.margins[step] > nearTie {
                clear += 1
                XCTAssertEqual(ours, reference.tokens[step], "step \(step): reference margin \(reference.margins[step])")
            } else {
                XCTAssertTrue([reference.tokens[step], reference.runner_up[step]].contains(ours), "step \(step): a near-tie, ours must be one of the two")
            }
            row = [reference.tokens[step]]
        }
        let firstTie = reference.margins.firstIndex { $0 <= nearTie } ?? 64
        let run = try greedyWithTheCache()
        XCTAssertEqual(Array(run.tokens.prefix(firstTie)), Array(reference.tokens.prefix(firstTie)))
        print("reference agreement: \(clear) clear steps of 64 agree; free-running greedy equals the reference for \(firstTie) tokens")
    }

    // MARK: Families (synthetic models; gemma3's window of 4 is shorter than the row)

    private func assertDecodeMatchesFullPrefill(_ arch: String, file: StaticString = #filePath, line: UInt = #line) throws {
        let engine = try family(arch), ids = try kvReference().family_row
        let sigma = try assertToleranceDerivation(arch, file: file, line: line)
        // One token at a time after a 9-token prefill.
        let sequence = try engine.newSequence()
        var worst: Float = 0
        var logits = Array(try XCTUnwrap(engine.forward(RaggedBatch(rows: [Array(ids[..<9])]), sequences: [sequence], logits: .last).lastLogits(row: 0)))
        for t in 9..<ids.count {
            worst = max(worst, Self.maxGap(logits, try Self.fullPrefill(engine, Array(ids[..<t]))))
            logits = Array(try XCTUnwrap(engine.forward(RaggedBatch(rows: [[ids[t]]]), sequences: [sequence], logits: .last).lastLogits(row: 0)))
        }
        worst = max(worst, Self.maxGap(logits, try Self.fullPrefill(engine, ids)))
        engine.release(sequence)
        // In chunks of every kind: a first chunk, a single token, chunks whose keys start in the cache
        // (gathered), one longer than the 64-query attention block.
        let full = try engine.forward(RaggedBatch(rows: [ids]), logits: .all)
        let expected = try (0..<ids.count).map { Array(try XCTUnwrap(full.logits(row: 0, position: $0))) }
        let chunked = try engine.newSequence()
        var start = 0
        for size in [5, 1, 3, 63] where start < ids.count {
            let chunk = Array(ids[start..<min(ids.count, start + size)])
            let result = try engine.forward(RaggedBatch(rows: [chunk]), sequences: [chunked], logits: .all)
            for i in chunk.indices { worst = max(worst, Self.maxGap(try XCTUnwrap(result.logits(row: 0, position: i)), expected[start + i])) }
            start += chunk.count
        }
        XCTAssertEqual(start, ids.count)
        XCTAssertLessThanOrEqual(worst, Tolerance.cachedLogit, file: file, line: line)
        print("\(arch): with the cache vs full prefill, max logit Δ \(worst) (reorder σ \(sigma))")
    }

    func testLlamaDecodeWithTheCacheEqualsFullPrefill() throws { try assertDecodeMatchesFullPrefill("llama") }
    func testQwen2DecodeWithTheCacheEqualsFullPrefill() throws { try assertDecodeMatchesFullPrefill("qwen2") }
    func testQwen3DecodeWithTheCacheEqualsFullPrefill() throws { try assertDecodeMatchesFullPrefill("qwen3") }

    func testGemma3DecodeWithTheCacheEqualsFullPrefillPastItsWindow() throws {
        let engine = try family("gemma3")
        XCTAssertLessThan(engine.config.layers[0].window ?? .max, 16, "the window is shorter than a block, so blocks leave it")
        try assertDecodeMatchesFullPrefill("gemma3")
    }

    /// A first chunk whose query blocks all have more than one query reads its keys in place and
    /// makes the cache-less pass's calls with the same shapes: exactly the same logits.
    func testAFirstPrefillThroughTheCacheEqualsTheCachelessPassExactly() throws {
        let engine = try smolLM2(), rows = try ReferenceFixture.reference().rows.prefix(3).map(\.ids)
        XCTAssertEqual(rows.map(\.count), [512, 90, 12])
        let batch = RaggedBatch(rows: rows)
        let cacheless = try engine.forward(batch, logits: .last)
        let expected = try rows.indices.map { (Array(cacheless.hidden(row: $0)), Array(try XCTUnwrap(cacheless.lastLogits(row: $0)))) }
        let sequences = try rows.map { _ in try engine.newSequence() }
        defer { for s in sequences { engine.release(s) } }
        let result = try engine.forward(batch, sequences: sequences, logits: .last)
        for r in rows.indices {
            XCTAssertEqual(Array(result.hidden(row: r)), expected[r].0, "row \(r) hidden")
            XCTAssertEqual(Array(try XCTUnwrap(result.lastLogits(row: r))), expected[r].1, "row \(r) logits")
        }
        XCTAssertEqual(try sequences.map { try engine.cachedLength(of: $0) }, [512, 90, 12])
    }

    // MARK: Mixed batches

    /// Prefill chunks (from an empty and from a cached sequence), decode tokens (one at a block
    /// boundary) in one call give the same logits as each row in its own call.
    private func assertMixedBatchEqualsSeparateCalls(_ engine: InferenceEngine, vocab: Int32, file: StaticString = #filePath, line: UInt = #line) throws {
        func ids(_ n: Int, _ seed: Int) -> [Int32] { (0..<n).map { Int32(($0 * 37 + seed * 11 + 5) % Int(vocab)) } }
        let prompts = [ids(30, 1), ids(17, 2), [], ids(16, 4)]
        let rows = [ids(20, 5), ids(1, 6), ids(12, 7), ids(1, 8)]
        func prepared() throws -> [SequenceID] {
            try prompts.map { prompt in
                let s = try engine.newSequence()
                if !prompt.isEmpty { _ = try engine.forward(RaggedBatch(rows: [prompt]), sequences: [s], logits: .none) }
                return s
            }
        }
        let together = try prepared(), alone = try prepared()
        let mixed = try engine.forward(RaggedBatch(rows: rows), sequences: together, logits: .all)
        var expected: [[[Float]]] = []
        for r in rows.indices {
            expected.append([])
            for i in rows[r].indices { expected[r].append(Array(try XCTUnwrap(mixed.logits(row: r, position: i)))) }
        }
        var worst: Float = 0
        for r in rows.indices {
            let result = try engine.forward(RaggedBatch(rows: [rows[r]]), sequences: [alone[r]], logits: .all)
            for i in rows[r].indices { worst = max(worst, Self.maxGap(try XCTUnwrap(result.logits(row: 0, position: i)), expected[r][i])) }
        }
        // Both sets of sequences hold the same keys and values: one more mixed step agrees too.
        let next = rows.indices.map { [Int32(($0 * 13 + 3) % Int(vocab))] }
        let a = try engine.forward(RaggedBatch(rows: next), sequences: together, logits: .last)
        let aLogits = try next.indices.map { Array(try XCTUnwrap(a.lastLogits(row: $0))) }
        let b = try engine.forward(RaggedBatch(rows: next), sequences: alone, logits: .last)
        for r in next.indices { worst = max(worst, Self.maxGap(try XCTUnwrap(b.lastLogits(row: r)), aLogits[r])) }
        for s in together + alone { XCTAssertTrue(engine.release(s)) }
        XCTAssertEqual(engine.kvCacheUsage.usedBlocks, 0, file: file, line: line)
        XCTAssertLessThanOrEqual(worst, Tolerance.cachedLogit, file: file, line: line)
        print("\(engine.config.architecture): mixed batch vs separate calls, max logit Δ \(worst)")
    }

    func testMixedPrefillAndDecodeRowsEqualSeparateCallsOnSmolLM2() throws {
        try assertMixedBatchEqualsSeparateCalls(smolLM2(), vocab: 49152)
    }

    func testMixedPrefillAndDecodeRowsEqualSeparateCallsOnGemma3() throws {
        try assertMixedBatchEqualsSeparateCalls(family("gemma3"), vocab: 64)
    }

    // MARK: Sequences, blocks and errors (tiny in-memory models)

    private func tiny(_ model: TinyModel = TinyModel(), kvCacheBlocks: Int? = nil, maxSequences: Int = 8) throws -> InferenceEngine {
        let blockBytes = 2 * model.kvHeads * 16 * (model.keyLength ?? model.hidden / model.heads) * 4
        let options = EngineOptions(threads: 2, maxBatchTokens: 256, maxRows: 4, maxSeq: 256, maxLogitRows: 256,
                                    kvCacheBytes: (kvCacheBlocks ?? 1024) * blockBytes, maxSequences: maxSequences)
        let engine = try InferenceEngine(file: model.file(), options: options)
        XCTAssertEqual(engine.kvCacheUsage.bytesPerBlock, blockBytes)
        return engine
    }

    private func step(_ engine: InferenceEngine, _ tokens: [Int32], _ sequence: SequenceID) throws -> [Float] {
        Array(try XCTUnwrap(engine.forward(RaggedBatch(rows: [tokens]), sequences: [sequence], logits: .last).lastLogits(row: 0)))
    }

    func testForkedSequencesShareTheirPromptAndCopyTheLastBlockOnWrite() throws {
        let engine = try tiny()   // 2 layers: a sequence of n positions holds 2·⌈n/16⌉ blocks
        let prompt: [Int32] = (0..<21).map { Int32($0 * 7 % 64) }
        let a = try engine.newSequence()
        _ = try step(engine, prompt, a)
        XCTAssertEqual(engine.kvCacheUsage.usedBlocks, 4)
        let b = try engine.fork(a)
        XCTAssertNotEqual(a, b)
        XCTAssertEqual(try engine.cachedLength(of: b), 21)
        XCTAssertEqual(engine.kvCacheUsage.usedBlocks, 4, "a fork takes no block")
        XCTAssertEqual(engine.kvCacheUsage.sequences, 2)
        // a writes into the shared, partly filled block: it copies it (one block per layer).
        XCTAssertEqual(try engine.cacheBlocksNeeded(appending: 1, to: a), 2)
        let aLogits = try step(engine, [9], a)
        XCTAssertEqual(engine.kvCacheUsage.usedBlocks, 6)
        // b is now the block's only holder and writes in place.
        XCTAssertEqual(try engine.cacheBlocksNeeded(appending: 1, to: b), 0)
        let bLogits = try step(engine, [40], b)
        XCTAssertEqual(engine.kvCacheUsage.usedBlocks, 6)
        XCTAssertLessThanOrEqual(Self.maxGap(aLogits, try Self.fullPrefill(engine, prompt + [9])), Tolerance.cachedLogit)
        XCTAssertLessThanOrEqual(Self.maxGap(bLogits, try Self.fullPrefill(engine, prompt + [40])), Tolerance.cachedLogit)
        // Both grow past the block boundary independently.
        let aMore: [Int32] = [1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11], bMore: [Int32] = [20, 21, 22, 23, 24, 25, 26, 27, 28, 29, 30, 31]
        let aNext = try step(engine, aMore, a), bNext = try step(engine, bMore, b)
        XCTAssertLessThanOrEqual(Self.maxGap(aNext, try Self.fullPrefill(engine, prompt + [9] + aMore)), Tolerance.cachedLogit)
        XCTAssertLessThanOrEqual(Self.maxGap(bNext, try Self.fullPrefill(engine, prompt + [40] + bMore)), Tolerance.cachedLogit)
        XCTAssertEqual(engine.kvCacheUsage.usedBlocks, 2 + 2 * 2 + 2 * 2, "the shared first block, and each its own two")
        // Releasing frees what only the released sequence holds, at once.
        XCTAssertTrue(engine.release(a))
        XCTAssertEqual(engine.kvCacheUsage.usedBlocks, 6)
        XCTAssertEqual(engine.kvCacheUsage.sequences, 1)
        XCTAssertFalse(engine.release(a), "releasing twice is harmless")
        XCTAssertThrowsError(try engine.cachedLength(of: a)) { XCTAssertEqual($0 as? EngineError, .unknownSequence(a)) }
        XCTAssertThrowsError(try engine.forward(RaggedBatch(rows: [[1]]), sequences: [a], logits: .last)) {
            XCTAssertEqual($0 as? EngineError, .unknownSequence(a))
        }
        XCTAssertThrowsError(try engine.fork(a)) { XCTAssertEqual($0 as? EngineError, .unknownSequence(a)) }
        // A new sequence may reuse a's slot; a's handle stays dead.
        let c = try engine.newSequence()
        XCTAssertEqual(try engine.cachedLength(of: c), 0)
        XCTAssertThrowsError(try engine.cachedLength(of: a))
        XCTAssertTrue(engine.release(b))
        XCTAssertTrue(engine.release(c))
        XCTAssertEqual(engine.kvCacheUsage.usedBlocks, 0)
        XCTAssertEqual(engine.kvCacheUsage.freeBlocks, engine.kvCacheUsage.totalBlocks)
    }

    func testAFullCacheIsATypedErrorThatChangesNothing() throws {
        let engine = try tiny(kvCacheBlocks: 5)
        let a = try engine.newSequence(), b = try engine.newSequence()
        _ = try step(engine, Array(repeating: 3, count: 16), a)
        XCTAssertEqual(engine.kvCacheUsage.freeBlocks, 3)
        XCTAssertEqual(try engine.cacheBlocksNeeded(appending: 33, to: b), 6)
        XCTAssertThrowsError(try engine.forward(RaggedBatch(rows: [Array(repeating: 1, count: 33)]), sequences: [b], logits: .last)) {
            XCTAssertEqual($0 as? EngineError, .kvCacheFull(neededBlocks: 6, freeBlocks: 3, blockTokens: 16))
            XCTAssertTrue("\($0)".contains("kvCacheBytes"))
        }
        // A batch fails as a whole: a's row alone would fit (2 blocks), with b's it does not.
        XCTAssertThrowsError(try engine.forward(RaggedBatch(rows: [[5], Array(repeating: 1, count: 17)]), sequences: [a, b], logits: .last)) {
            XCTAssertEqual($0 as? EngineError, .kvCacheFull(neededBlocks: 6, freeBlocks: 3, blockTokens: 16))
        }
        XCTAssertEqual(try engine.cachedLength(of: a), 16)
        XCTAssertEqual(try engine.cachedLength(of: b), 0)
        XCTAssertEqual(engine.kvCacheUsage.freeBlocks, 3)
        // What fits is known before trying.
        XCTAssertEqual(try engine.appendableTokens(to: b), 16)
        XCTAssertEqual(try engine.cacheBlocksNeeded(appending: 16, to: b), 2)
        XCTAssertEqual(try engine.cacheBlocksNeeded(appending: 17, to: b), 4)
        _ = try step(engine, Array(repeating: 1, count: 16), b)
        XCTAssertEqual(try engine.appendableTokens(to: b), 0)
        // Releasing a makes room at once.
        engine.release(a)
        XCTAssertEqual(try engine.appendableTokens(to: b), 16)
        _ = try step(engine, Array(repeating: 1, count: 16), b)
        XCTAssertEqual(try engine.cachedLength(of: b), 32)

        let none = try tiny(kvCacheBlocks: 0)
        XCTAssertEqual(none.kvCacheUsage.totalBlocks, 0)
        let s = try none.newSequence()
        XCTAssertThrowsError(try none.forward(RaggedBatch(rows: [[1]]), sequences: [s], logits: .last)) {
            XCTAssertEqual($0 as? EngineError, .kvCacheFull(neededBlocks: 2, freeBlocks: 0, blockTokens: 16))
        }
    }

    func testBadSequenceArgumentsAreTypedErrors() throws {
        let engine = try tiny(maxSequences: 2)
        let a = try engine.newSequence(), b = try engine.newSequence()
        XCTAssertThrowsError(try engine.newSequence()) { XCTAssertEqual($0 as? EngineError, .tooManySequences(max: 2)) }
        XCTAssertThrowsError(try engine.fork(a)) { XCTAssertEqual($0 as? EngineError, .tooManySequences(max: 2)) }
        XCTAssertThrowsError(try engine.forward(RaggedBatch(rows: [[1], [2]]), sequences: [a], logits: .last)) {
            XCTAssertEqual($0 as? EngineError, .sequenceCountMismatch(rows: 2, sequences: 1))
        }
        XCTAssertThrowsError(try engine.forward(RaggedBatch(rows: [[1], [2]]), sequences: [a, a], logits: .last)) {
            XCTAssertEqual($0 as? EngineError, .duplicateSequence(row: 1, a))
        }
        _ = try step(engine, Array(repeating: 2, count: 250), b)
        XCTAssertThrowsError(try engine.forward(RaggedBatch(rows: [[1], Array(repeating: 1, count: 7)]), sequences: [a, b], logits: .last)) {
            XCTAssertEqual($0 as? EngineError, .sequenceTooLong(row: 1, length: 257, max: 256))
        }
        XCTAssertEqual(try engine.appendableTokens(to: b), 6)
        XCTAssertThrowsError(try engine.forward(RaggedBatch(rows: [[64]]), sequences: [a], logits: .last)) {
            XCTAssertEqual($0 as? EngineError, .tokenOutOfRange(row: 0, position: 0, id: 64, vocabSize: 64))
        }
        XCTAssertEqual(try engine.cachedLength(of: a), 0)
        XCTAssertEqual(try engine.cachedLength(of: b), 250)
        for options in [EngineOptions(threads: 1, maxSeq: 64, kvCacheBytes: -1), EngineOptions(threads: 1, maxSeq: 64, maxSequences: 0)] {
            XCTAssertThrowsError(try InferenceEngine(file: TinyModel().file(), options: options)) {
                guard case .invalidOptions? = $0 as? EngineError else { return XCTFail("\($0)") }
            }
        }
    }

    /// Gemma-shaped: six local layers with a window of 4 and one global layer. Local layers keep only
    /// the blocks holding the last 3 positions, whatever the length, one token at a time or in a chunk.
    func testSlidingWindowLayersKeepOnlyTheirWindow() throws {
        let model = TinyModel.gemma3()
        let engine = try tiny(model)
        let local = engine.config.layers.filter { $0.window == 4 }.count, global = engine.config.layerCount - local
        XCTAssertEqual([local, global], [6, 1])
        func held(_ length: Int) -> Int {
            let blocks = (length + 15) / 16
            return global * blocks + local * (blocks - max(0, length - 3) / 16)
        }
        let sequence = try engine.newSequence()
        var peak = 0
        var ids: [Int32] = []
        for t in 0..<200 {
            ids.append(Int32(t * 29 % 64))
            _ = try step(engine, [ids[t]], sequence)
            XCTAssertEqual(engine.kvCacheUsage.usedBlocks, held(t + 1), "after \(t + 1) tokens")
            peak = max(peak, engine.kvCacheUsage.usedBlocks)
        }
        XCTAssertEqual(peak, global * 13 + local * 2)
        XCTAssertLessThanOrEqual(peak, engine.cacheBlockBound(sequenceLength: 200, largestChunk: 1))
        XCTAssertLessThanOrEqual(Self.maxGap(try step(engine, [7], sequence), try Self.fullPrefill(engine, ids + [7])), Tolerance.cachedLogit)
        engine.release(sequence)
        // One long chunk stores only the positions still in the window at its end.
        let chunked = try engine.newSequence()
        XCTAssertEqual(try engine.cacheBlocksNeeded(appending: 100, to: chunked), global * 7 + local * 1)
        let logits = try step(engine, Array(ids[..<100]), chunked)
        XCTAssertEqual(engine.kvCacheUsage.usedBlocks, held(100))
        XCTAssertLessThanOrEqual(held(100), engine.cacheBlockBound(sequenceLength: 100, largestChunk: 100))
        XCTAssertLessThanOrEqual(Self.maxGap(logits, try Self.fullPrefill(engine, Array(ids[..<100]))), Tolerance.cachedLogit)
        let next = try step(engine, Array(ids[100..<103]), chunked)
        XCTAssertLessThanOrEqual(Self.maxGap(next, try Self.fullPrefill(engine, Array(ids[..<103]))), Tolerance.cachedLogit)
    }
}
