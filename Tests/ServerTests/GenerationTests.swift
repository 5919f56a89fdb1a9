import AxonClient
import Foundation
import Identity
import Sampling
import Server
import Tokenizer
import Wire
import XCTest

/// TEXT_SEQ_2_SEQ over real TCP against the fake generation backend, whose step logits are those
/// its FORWARD path computes over the whole row: the expected ids come from decoding greedily by
/// full recompute through `forward` (no cache, no scheduler), with the test's own top-1.
final class GenerationTests: XCTestCase {
    /// Plain greedy: no n-gram ban, no penalty (the defaults ban repeated bigrams).
    private func greedy(_ count: UInt32, stops: [Int32] = []) -> Generation {
        Generation(numToGenerate: count, noRepeatNgramSize: 0, stopTokens: stops)
    }

    private func request(_ rows: [[Int32]], lengths: [UInt32] = [], _ generations: [Generation?]) -> ForwardRequest {
        ForwardRequest(tokens: tokens32(rows), lengths: lengths,
                       synapses: generations.map { Synapse(type: .textSeq2Seq, generation: $0) })
    }

    /// Greedy decoding by recomputing the whole row with `forward` at every step; the top-1 is
    /// the Harness's independent reference (full sort, ties to the lower id).
    private func referenceGreedy(_ backend: FakeBackend, prompt: [Int32], count: Int, stops: Set<Int32>) throws -> [Int32] {
        var output: [Int32] = []
        while output.count < count {
            let row = prompt + output
            var next: Int32 = -1
            try backend.forward(rows: [row], hidden: false, logits: .last) { result in
                guard let logits = result.logits else { throw MissingOutput() }
                next = referenceTopK(Array(logits), k: 1).ids[0]
            }
            output.append(next)
            if stops.contains(next) { break }
        }
        return output
    }

    /// The generated ids and lengths of result `index`, checked for the encoding's form.
    private func decoded(_ response: Response, index: Int = 0, batch: Int,
                         file: StaticString = #filePath, line: UInt = #line) throws -> [[Int32]] {
        XCTAssertEqual(response.code, .success, response.message, file: file, line: line)
        let result = try XCTUnwrap(response.forward?.results[index], file: file, line: line)
        XCTAssertEqual(result.code, .success, result.message, file: file, line: line)
        XCTAssertEqual(result.tensors.count, 2, file: file, line: line)
        let (ids, lengths) = (result.tensors[0], result.tensors[1])
        XCTAssertEqual(ids.dtype, .int32, file: file, line: line)
        XCTAssertEqual(lengths.dtype, .int32, file: file, line: line)
        XCTAssertEqual(lengths.shape, [Int64(batch)], file: file, line: line)
        let counts = int32s(lengths).map(Int.init)
        let width = counts.max() ?? 0
        XCTAssertEqual(ids.shape, [Int64(batch), Int64(width)], "N is the longest row", file: file, line: line)
        let flat = int32s(ids)
        XCTAssertEqual(flat.count, batch * width, file: file, line: line)
        return (0..<batch).map { row in
            let slice = Array(flat[(row * width)..<((row + 1) * width)])
            XCTAssertEqual(Array(slice[counts[row]...]), Array(repeating: -1, count: width - counts[row]),
                           "row \(row) is right-padded with -1", file: file, line: line)
            return Array(slice[..<counts[row]])
        }
    }

    private func waitUntil(_ timeout: Double = 5, _ condition: () -> Bool) -> Bool {
        let deadline = Date().addingTimeInterval(timeout)
        while !condition() {
            if Date() > deadline { return false }
            Thread.sleep(forTimeInterval: 0.005)
        }
        return true
    }

    // MARK: - Output

    func testGreedyOverTheWireEqualsTheBackendsOwnGreedyDecode() throws {
        let backend = FakeGenerationBackend(vocabSize: 500)
        let harness = try startServer(backend: backend)
        let rows: [[Int32]] = [[5, 6, 7, 8, 9], [2, 2, 11, 12, 13], [2, 2, 2, 2, 40]]
        let lengths: [UInt32] = [5, 3, 1]
        let response = try harness.client().forward(request(rows, lengths: lengths, [greedy(24)]))
        let outputs = try decoded(response, batch: 3)
        let reference = FakeGenerationBackend(vocabSize: 500).forwardBackend
        for (index, row) in rows.enumerated() {
            let prompt = Array(row.suffix(Int(lengths[index])))
            XCTAssertEqual(outputs[index], try referenceGreedy(reference, prompt: prompt, count: 24, stops: [2]), "row \(index)")
        }
        XCTAssertEqual(backend.activeSequences, 0, "every sequence is released when its row finishes")
        XCTAssertEqual(backend.kvUsage.usedBytes, 0)
    }

    func testRowsStoppedEarlyAreRightPaddedAndEmptyRowsHaveLengthZero() throws {
        let backend = FakeGenerationBackend(vocabSize: 300)
        let reference = FakeGenerationBackend(vocabSize: 300).forwardBackend
        // Stop row 0 at its fourth token: a stop id that greedy reaches there and not before.
        let free = try referenceGreedy(reference, prompt: [7, 8, 9], count: 12, stops: [])
        let stop = try XCTUnwrap(free.indices.dropFirst(3).first { !free[..<$0].contains(free[$0]) }.map { free[$0] })
        let harness = try startServer(backend: backend)
        let rows: [[Int32]] = [[7, 8, 9], [1, 3, 4], [0, 0, 0]]
        let lengths: [UInt32] = [3, 3, 0]
        let response = try harness.client().forward(request(rows, lengths: lengths, [greedy(12, stops: [stop])]))
        let outputs = try decoded(response, batch: 3)
        XCTAssertEqual(outputs[0], try referenceGreedy(reference, prompt: [7, 8, 9], count: 12, stops: [stop]))
        XCTAssertEqual(outputs[0].last, stop, "a row that stops ends with its stop token")
        XCTAssertLessThan(outputs[0].count, 12)
        XCTAssertEqual(outputs[1], try referenceGreedy(reference, prompt: [1, 3, 4], count: 12, stops: [stop]))
        XCTAssertEqual(outputs[2], [], "an empty row generates nothing")
    }

    func testStopTokenMinusOneTurnsStoppingOffAndEachSynapseIsAnsweredInOrder() throws {
        let backend = FakeGenerationBackend(vocabSize: 300)
        let reference = FakeGenerationBackend(vocabSize: 300).forwardBackend
        let harness = try startServer(backend: backend) { $0.maxNewTokens = 40 }
        let response = try harness.client().forward(request([[4, 5]], [greedy(40, stops: [-1]), greedy(3)]))
        XCTAssertEqual(try decoded(response, index: 0, batch: 1)[0], try referenceGreedy(reference, prompt: [4, 5], count: 40, stops: []))
        XCTAssertEqual(try decoded(response, index: 1, batch: 1)[0], try referenceGreedy(reference, prompt: [4, 5], count: 3, stops: [2]))
    }

    func testAbsentNumToGenerateIsTheDefaultCappedByMaxNewTokens() throws {
        let backend = FakeGenerationBackend(vocabSize: 300)
        let reference = FakeGenerationBackend(vocabSize: 300).forwardBackend
        let harness = try startServer(backend: backend) { $0.maxNewTokens = 9 }
        let response = try harness.client().forward(request([[10, 11, 12]], [Generation(noRepeatNgramSize: 0, stopTokens: [-1])]))
        XCTAssertEqual(try decoded(response, batch: 1)[0], try referenceGreedy(reference, prompt: [10, 11, 12], count: 9, stops: []))
    }

    func testAPromptThatFillsTheContextStillGetsItsLastToken() throws {
        let backend = FakeGenerationBackend(vocabSize: 300, maxSequenceLength: 8)
        let reference = FakeGenerationBackend(vocabSize: 300).forwardBackend
        let harness = try startServer(backend: backend) { $0.maxSeq = 8 }
        let prompt: [Int32] = [3, 4, 5, 6, 7, 8]
        let response = try harness.client().forward(request([prompt], [greedy(20, stops: [-1])]))
        // Six cached prompt positions leave room for two more: three tokens, the last never fed back.
        XCTAssertEqual(try decoded(response, batch: 1)[0], try referenceGreedy(reference, prompt: prompt, count: 3, stops: []))
    }

    // MARK: - Sampling and beam search (the Sampling module, driven here over recomputed logits)

    /// The Sampling module's sampler run over the fake's FORWARD logits of the whole row at every
    /// step (no cache, no scheduler): what row `stream` of a request must generate.
    private func referenceSampled(_ backend: FakeBackend, prompt: [Int32], _ parameters: SamplingParameters, stream: Int) throws -> [Int32] {
        let vocab = backend.modelInfo.vocabSize
        var sampler = try SequenceSampler(parameters: parameters, prompt: prompt, vocabSize: vocab, modelEOS: [2], stream: stream,
                                          limits: SamplingLimits(maxNewTokens: parameters.maxNewTokens))
        let scratch = SamplingScratch(vocabSize: vocab)
        while !sampler.isFinished {
            var logits: [Float] = []
            try backend.forward(rows: [prompt + sampler.generated], hidden: false, logits: .last) { logits = Array($0.logits ?? UnsafeBufferPointer(start: nil, count: 0)) }
            _ = try logits.withUnsafeMutableBufferPointer { try sampler.next(logits: $0, scratch: scratch) }
        }
        return Array(sampler.generated)
    }

    func testSeededSamplingEqualsTheSamplerOverRecomputedLogitsAloneOrBesideOtherRequests() throws {
        let backend = FakeGenerationBackend(vocabSize: 300, stepDelay: 0.002)
        let harness = try startServer(backend: backend)
        let generation = Generation(numToGenerate: 20, topk: 40, doSample: true, topP: 0.9, temperature: 0.8, repetitionPenalty: 1.3,
                                    seed: 1234)
        let prompts: [[Int32]] = [[5, 6, 7], [9, 10, 11]]
        let body = request(prompts, [generation])
        let alone = try decoded(try harness.client().forward(body), batch: 2)
        let reference = FakeGenerationBackend(vocabSize: 300).forwardBackend
        let parameters = SamplingParameters(maxNewTokens: 20, topK: 40, doSample: true, topP: 0.9, temperature: 0.8,
                                            repetitionPenalty: 1.3, seed: 1234)
        for (row, prompt) in prompts.enumerated() {
            XCTAssertEqual(alone[row], try referenceSampled(reference, prompt: prompt, parameters, stream: row), "row \(row)")
        }
        // Again while three other generations share every step. They never stop early (no stop
        // token, fixed seeds): a randomly seeded one could sample the eos and end before the seeded
        // rows join, which made this check flaky.
        let others = try (0..<3).map { _ in try harness.client() }
        for (index, client) in others.enumerated() {
            let long = Generation(numToGenerate: 60, doSample: true, seed: UInt64(index), stopTokens: [-1])
            try client.send(Request(id: 1, method: .forward, body: request([[Int32(40 + index), 41]], [long]).serializedBytes()))
        }
        XCTAssertTrue(waitUntil { backend.activeSequences == 3 })
        XCTAssertEqual(try decoded(try harness.client().forward(body), batch: 2), alone)
        XCTAssertGreaterThanOrEqual(backend.mostStepEntries, 5, "the seeded rows shared steps with the others")
        for client in others { XCTAssertEqual(try client.response(id: 1, timeout: 10).code, .success) }
    }

    func testAbsentFieldsAreTheProtocolDefaults() throws {
        let backend = FakeGenerationBackend(vocabSize: 300)
        let harness = try startServer(backend: backend) { $0.maxNewTokens = 30 }
        let outputs = try decoded(try harness.client().forward(request([[4, 5, 6]], [nil])), batch: 1)
        // min(256, --max-new-tokens) tokens, greedy with the bigram ban of no_repeat_ngram_size 2.
        let reference = FakeGenerationBackend(vocabSize: 300).forwardBackend
        XCTAssertEqual(outputs[0], try referenceSampled(reference, prompt: [4, 5, 6], SamplingParameters(maxNewTokens: 30), stream: 0))
    }

    /// The module's beam search driven over logits recomputed for each beam's whole row: the
    /// server's forks, reuses and releases of the prompt's cache must give the same beams.
    func testBeamSearchEqualsTheBeamSearchOverRecomputedLogits() throws {
        let backend = FakeGenerationBackend(vocabSize: 300)
        let harness = try startServer(backend: backend)
        let prompts: [[Int32]] = [[5, 6, 7, 8], [12, 13]]
        let generation = Generation(numToGenerate: 12, noRepeatNgramSize: 0, numBeams: 3, lengthPenalty: 0.7)
        let body = request([prompts[0], [2, 2] + prompts[1]], lengths: [4, 2], [generation])
        let outputs = try decoded(try harness.client().forward(body), batch: 2)
        let reference = FakeGenerationBackend(vocabSize: 300).forwardBackend
        let parameters = SamplingParameters(maxNewTokens: 12, noRepeatNgramSize: 0, numBeams: 3, lengthPenalty: 0.7)
        for (row, prompt) in prompts.enumerated() {
            var search = try BeamSearch(parameters: parameters, prompt: prompt, vocabSize: 300, modelEOS: [2])
            let scratch = SamplingScratch(vocabSize: 300)
            while true {
                let beams = (0..<search.liveCount).map { prompt + search.tokens(ofBeam: $0) }
                var logits: [Float] = []
                try reference.forward(rows: beams, hidden: false, logits: .last) { logits = Array($0.logits ?? UnsafeBufferPointer(start: nil, count: 0)) }
                let step = try logits.withUnsafeMutableBufferPointer { try search.step(logits: $0, scratch: scratch) }
                if step.isDone { break }
            }
            let best = try XCTUnwrap(search.finish().first)
            XCTAssertEqual(outputs[row], best.tokens + (best.stopToken.map { [$0] } ?? []), "row \(row)")
        }
        XCTAssertEqual(backend.mostStepEntries, 6, "two rows of three beams decoded together")
        XCTAssertEqual(backend.activeSequences, 0)
    }

    // MARK: - Validation

    func testEveryInvalidGenerationFieldIsThatSynapsesInvalidRequestWithAMessage() throws {
        let harness = try startServer(backend: FakeGenerationBackend()) { $0.maxNewTokens = 64; $0.maxSequences = 8 }
        let client = try harness.client()
        let cases: [(Generation, ReturnCode, String)] = [
            (Generation(numToGenerate: 0), .invalidRequest,
             "generation parameter num_to_generate is 0, expected 1...64 (the server's --max-new-tokens)"),
            (Generation(numToGenerate: 65), .invalidRequest,
             "generation parameter num_to_generate is 65, expected 1...64 (the server's --max-new-tokens)"),
            (Generation(topP: 0), .invalidRequest, "generation parameter top_p is 0.0, expected in (0, 1]"),
            (Generation(topP: 1.5), .invalidRequest, "generation parameter top_p is 1.5, expected in (0, 1]"),
            (Generation(topP: -0.1), .invalidRequest, "generation parameter top_p is -0.1, expected in (0, 1]"),
            (Generation(topP: .nan), .invalidRequest, "generation parameter top_p is nan, expected in (0, 1]"),
            (Generation(doSample: true, temperature: 0), .invalidRequest,
             "generation parameter temperature is 0.0, expected > 0 when do_sample is true (set do_sample false for greedy)"),
            (Generation(doSample: true, temperature: -1), .invalidRequest, "generation parameter temperature is -1.0, expected > 0 when do_sample is true"),
            (Generation(temperature: .infinity), .invalidRequest, "generation parameter temperature is inf, expected a finite number"),
            (Generation(repetitionPenalty: 0), .invalidRequest, "generation parameter repetition_penalty is 0.0, expected a finite number > 0 (1 = off)"),
            (Generation(lengthPenalty: .nan), .invalidRequest, "generation parameter length_penalty is nan, expected a finite number"),
            (Generation(numBeams: 0), .invalidRequest, "generation parameter num_beams is 0, expected 1...8"),
            (Generation(numBeams: 9), .invalidRequest, "generation parameter num_beams is 9, expected 1...8"),
            (Generation(stopTokens: Array(repeating: 5, count: 65)), .invalidRequest, "stop_tokens lists 65 ids, at most 64 are allowed"),
            (Generation(doSample: true, numBeams: 2), .notImplemented,
             "unsupported generation parameters: do_sample with num_beams > 1 (beam sampling); use one or the other"),
        ]
        for (generation, code, message) in cases {
            let response = try client.forward(request([[5, 6, 7]], [generation, greedy(2)]))
            XCTAssertEqual(response.code, .success, "the request stands; the synapse fails on its own")
            let results = try XCTUnwrap(response.forward?.results)
            XCTAssertEqual(results.count, 2)
            XCTAssertEqual(results[0].type, .textSeq2Seq)
            XCTAssertEqual(results[0].code, code, message)
            XCTAssertTrue(results[0].message.contains(message), "\(results[0].message) should contain \(message)")
            XCTAssertEqual(results[0].tensors, [], "a failed synapse carries no tensors")
            XCTAssertEqual(results[1].code, .success, "the other synapse is served: \(results[1].message)")
        }
        // Temperature is not looked at without do_sample.
        XCTAssertEqual(try client.forward(request([[5]], [Generation(numToGenerate: 2, temperature: 0, noRepeatNgramSize: 0)]))
            .forward?.results.first?.code, .success)
    }

    func testRequestsAGenerationCannotBeServedAtAllAreRefusedWhole() throws {
        let backend = FakeGenerationBackend(kvCapacityBytes: 100 * 1024, kvBytesPerToken: 1024)
        let harness = try startServer(backend: backend) { $0.maxSequences = 4; $0.stepTokens = 16; $0.maxResponse = 4096 }
        let client = try harness.client()
        let mixed = ForwardRequest(tokens: tokens32([[5, 6]]), synapses: [Synapse(type: .textSeq2Seq, generation: greedy(2)),
                                                                          Synapse(type: .textCausalLMNext)])
        let cases: [(ForwardRequest, ReturnCode, String)] = [
            (mixed, .invalidRequest, "TEXT_SEQ_2_SEQ cannot share a FORWARD with TEXT_CAUSAL_LM_NEXT"),
            (request(Array(repeating: [5, 6], count: 5), [greedy(2)]), .requestShapeException,
             "runs 5 sequences at once (rows × num_beams over its synapses), more than this axon's --max-sequences 4"),
            (request([[5, 6]], [greedy(200)]), .requestShapeException, "more than this axon's --kv-cache-mb 1 holds"),
            (request([[5, 6], [7, 8], [9, 10]], [greedy(500)]), .responseShapeException, "over --max-response 4096"),
        ]
        for (body, code, message) in cases {
            let response = try client.forward(body)
            XCTAssertEqual(response.code, code, response.message)
            XCTAssertTrue(response.message.contains(message), "\(response.message) should contain \(message)")
        }
        XCTAssertEqual(backend.stepCalls, 0, "nothing was computed")
    }

    func testAServerWhoseStepCannotHoldEverySequenceIsRefusedAtStart() {
        XCTAssertThrowsError(try Harness(backend: FakeGenerationBackend()) { $0.maxSequences = 64; $0.stepTokens = 64 }) { error in
            XCTAssertEqual("\(error)", "--step-tokens is 64, expected above --max-sequences (64: every sequence's token and at least one prompt token fit a step) and at most the engine's 4096 tokens per pass")
        }
    }

    // MARK: - Scheduling

    func testALongPromptIsPrefilledInChunksWhileRunningGenerationsKeepDecoding() throws {
        let backend = FakeGenerationBackend(vocabSize: 300, stepDelay: 0.002)
        let harness = try startServer(backend: backend) { $0.stepTokens = 16; $0.maxSequences = 8; $0.maxNewTokens = 300 }
        let running = try harness.client(), arriving = try harness.client()
        try running.send(Request(id: 1, method: .forward, body: request([[3, 4]], [greedy(300, stops: [-1])]).serializedBytes()))
        XCTAssertTrue(waitUntil { backend.stepCalls >= 5 })
        let prompt = (0..<200).map { Int32(($0 * 37) % 300) }
        let long = try arriving.forward(request([prompt], [greedy(4, stops: [-1])]), timeoutMs: 30_000)
        let reference = FakeGenerationBackend(vocabSize: 300).forwardBackend
        XCTAssertEqual(try decoded(long, batch: 1)[0], try referenceGreedy(reference, prompt: prompt, count: 4, stops: []))
        // Every step stayed within the budget, and the 200-token prompt went in chunks beside a decode.
        let log = backend.stepLog
        XCTAssertTrue(log.allSatisfy { $0.reduce(0, +) <= 16 }, "\(log.filter { $0.reduce(0, +) > 16 })")
        let mixed = log.filter { $0.count == 2 && $0.contains(1) && $0.contains(15) }
        XCTAssertGreaterThanOrEqual(mixed.count, 200 / 15, "a decode token and a 15-token prefill chunk per step: \(log.suffix(20))")
        XCTAssertEqual(try running.response(id: 1, timeout: 30).code, .success)
    }

    func testAForwardIsAnsweredWhileLongGenerationsRun() throws {
        let backend = FakeGenerationBackend(vocabSize: 300, stepDelay: 0.005)
        let harness = try startServer(backend: backend) { $0.maxNewTokens = 2000 }
        let generating = try harness.client()
        for id in 1...4 {
            try generating.send(Request(id: UInt64(id), method: .forward,
                                        body: request([[Int32(id), 9]], [greedy(2000, stops: [-1])]).serializedBytes()))
        }
        XCTAssertTrue(waitUntil { backend.activeSequences == 4 })
        let forward = try harness.client().forward(ForwardRequest(tokens: tokens32([[1, 2, 3]]), synapses: [Synapse(type: .textCausalLMNext)]))
        XCTAssertEqual(forward.code, .success, forward.message)
        XCTAssertEqual(backend.activeSequences, 4, "the FORWARD was answered while all four generations still ran")
        generating.close()
        XCTAssertTrue(waitUntil { backend.activeSequences == 0 })
    }

    // MARK: - KV cache, disconnects, deadlines, shutdown

    func testAGenerationThatFindsTheKVCacheFullWaitsBoundedThenGetsBackoff() throws {
        // Room for 100 cached positions: one 10-token prompt with 60 new tokens reserves 69.
        let backend = FakeGenerationBackend(vocabSize: 300, kvCapacityBytes: 100 * 1024, kvBytesPerToken: 1024, stepDelay: 0.01)
        let harness = try startServer(backend: backend) { $0.generationWaitMs = 200; $0.stepTokens = 32; $0.maxSequences = 8 }
        let first = try harness.client(), second = try harness.client()
        let prompt = Array(Int32(20)..<Int32(30))
        try first.send(Request(id: 1, method: .forward, body: request([prompt], [greedy(60, stops: [-1])]).serializedBytes()))
        XCTAssertTrue(waitUntil { backend.activeSequences == 1 })
        let sent = Date()
        let refused = try second.forward(request([prompt], [greedy(60, stops: [-1])]))
        XCTAssertEqual(refused.code, .backoff, refused.message)
        XCTAssertTrue(refused.message.contains("the KV cache is full"), refused.message)
        XCTAssertGreaterThanOrEqual(Date().timeIntervalSince(sent), 0.2, "it waited --generation-wait-ms first")
        XCTAssertEqual(try first.response(id: 1, timeout: 10).code, .success)
        // With the cache free again the same request is served.
        XCTAssertEqual(try second.forward(request([prompt], [greedy(60, stops: [-1])])).code, .success)
    }

    func testAGenerationWaitingForTheKVCacheStartsWhenItFrees() throws {
        let backend = FakeGenerationBackend(vocabSize: 300, kvCapacityBytes: 100 * 1024, kvBytesPerToken: 1024, stepDelay: 0.005)
        let harness = try startServer(backend: backend) { $0.generationWaitMs = 20_000; $0.stepTokens = 32; $0.maxSequences = 8 }
        let first = try harness.client(), second = try harness.client()
        let prompt = Array(Int32(20)..<Int32(30))
        try first.send(Request(id: 1, method: .forward, body: request([prompt], [greedy(60, stops: [-1])]).serializedBytes()))
        XCTAssertTrue(waitUntil { backend.activeSequences == 1 })
        let waited = try second.forward(request([prompt], [greedy(60, stops: [-1])]))
        XCTAssertEqual(waited.code, .success, waited.message)
        XCTAssertEqual(try first.response(id: 1, timeout: 10).code, .success)
        XCTAssertLessThanOrEqual(backend.mostStepEntries, 1, "the second never ran beside the first")
    }

    func testADisconnectMidGenerationFreesItsSequencesAtOnce() throws {
        let backend = FakeGenerationBackend(vocabSize: 300, stepDelay: 0.005)
        let harness = try startServer(backend: backend) { $0.maxNewTokens = 2000 }
        let leaving = try harness.client()
        try leaving.send(Request(id: 1, method: .forward, body: request([[1, 2], [3, 4]], [greedy(2000, stops: [-1])]).serializedBytes()))
        XCTAssertTrue(waitUntil { backend.activeSequences == 2 && backend.stepCalls > 3 })
        XCTAssertGreaterThan(try MetricPage(text: String(decoding: harness.server.metricsPage(), as: UTF8.self))
            .value("axon_kv_cache_bytes") ?? 0, 0)
        leaving.close()
        XCTAssertTrue(waitUntil(1) { backend.activeSequences == 0 }, "still \(backend.activeSequences) sequences")
        let steps = backend.stepCalls
        Thread.sleep(forTimeInterval: 0.05)
        XCTAssertEqual(backend.stepCalls, steps, "no step runs for a client that is gone")
        let page = try MetricPage(text: String(decoding: harness.server.metricsPage(), as: UTF8.self))
        XCTAssertEqual(page.value("axon_active_sequences"), 0)
        XCTAssertEqual(page.value("axon_kv_cache_bytes"), 0)
        XCTAssertEqual(try harness.client().ping().code, .success)
    }

    func testAGenerationPastItsDeadlineIsTimeoutWithNothingPartial() throws {
        let backend = FakeGenerationBackend(vocabSize: 300, stepDelay: 0.005)
        let harness = try startServer(backend: backend) { $0.maxNewTokens = 2000 }
        let response = try harness.client().forward(request([[1, 2]], [greedy(2000, stops: [-1])]), timeoutMs: 300)
        XCTAssertEqual(response.code, .timeout, response.message)
        XCTAssertNil(response.forward, "no generated ids are returned with a Timeout")
        XCTAssertTrue(response.message.contains("nothing partial is returned"), response.message)
        XCTAssertTrue(waitUntil(1) { backend.activeSequences == 0 })
        XCTAssertEqual(harness.server.counterSnapshot().requestsByCode[.timeout], 1)
    }

    func testShutdownDrainsRunningGenerationsAndAnswersTheRestUnavailable() throws {
        let backend = FakeGenerationBackend(vocabSize: 300, stepDelay: 0.005)
        let harness = try startServer(backend: backend) { $0.maxNewTokens = 5000; $0.drainTimeout = 1 }
        let client = try harness.client()
        try client.send(Request(id: 1, method: .forward, body: request([[1, 2]], [greedy(40, stops: [-1])]).serializedBytes()))
        try client.send(Request(id: 2, method: .forward, body: request([[3, 4]], [greedy(5000, stops: [-1])]).serializedBytes()))
        XCTAssertTrue(waitUntil { backend.activeSequences == 2 })
        harness.server.shutdown()
        let short = try client.response(id: 1, timeout: 5)
        let reference = FakeGenerationBackend(vocabSize: 300).forwardBackend
        XCTAssertEqual(try decoded(short, batch: 1)[0], try referenceGreedy(reference, prompt: [1, 2], count: 40, stops: []),
                       "a generation that fits the drain window finishes")
        let long = try client.response(id: 2, timeout: 5)
        XCTAssertEqual(long.code, .unavailable, long.message)
        XCTAssertTrue(long.message.contains("shut down"), long.message)
        harness.server.waitUntilStopped()
        XCTAssertTrue(waitUntil(1) { backend.activeSequences == 0 }, "the worker releases what it held when it stops")
    }

    // MARK: - Metrics

    /// Scraped over HTTP and read by promtool and the page parser MetricsTests checks against
    /// prometheus_client: the counts equal what the answers hold.
    func testGeneratedTokensAreCountedAndTheGaugesReturnToZero() throws {
        let backend = FakeGenerationBackend(vocabSize: 300)
        let harness = try startServer(backend: backend) { $0.metricsPort = 0 }
        let client = try harness.client()
        let first = try decoded(try client.forward(request([[5, 6], [7, 8]], [greedy(10)])), batch: 2)
        let second = try decoded(try client.forward(request([[9]], [greedy(7)])), batch: 1)
        let scrape = try httpExchange(port: try XCTUnwrap(harness.server.metricsPort), Array("GET /metrics HTTP/1.1\r\n\r\n".utf8))
        XCTAssertEqual(scrape.status, 200)
        let lint = try Promtool.checkMetrics(scrape.body)
        let allowed = #"axon_total_forward counter metrics should have "_total" suffix"#
        XCTAssertTrue(lint.status == 0 || lint.status == 3, lint.output)
        XCTAssertEqual(lint.output.split(separator: "\n").map(String.init).filter { $0 != allowed }, [], lint.output)
        let page = try MetricPage(text: scrape.body)
        XCTAssertEqual(page.types["axon_generated_tokens_total"], "counter")
        XCTAssertEqual(page.types["axon_active_sequences"], "gauge")
        XCTAssertEqual(page.types["axon_kv_cache_bytes"], "gauge")
        XCTAssertEqual(page.value("axon_generated_tokens_total"), Double((first + second).map(\.count).reduce(0, +)))
        XCTAssertEqual(page.value("axon_active_sequences"), 0)
        XCTAssertEqual(page.value("axon_kv_cache_bytes"), 0)
        XCTAssertEqual(page.value("axon_forward_synapses_total", ["synapse": "TEXT_SEQ_2_SEQ"]), 2)
        XCTAssertEqual(page.value("axon_forward_codes_total", ["code": "Success"]), 2)
        XCTAssertGreaterThan(page.value("axon_engine_seconds_total", ["phase": "generate"]) ?? 0, 0)
    }
}

/// Stake priority and the starvation guard order generations too: with room in the KV cache for
/// one at a time, waiting generations start by stake, unregistered last, and one that has waited
/// half its deadline goes first.
final class GenerationPriorityTests: XCTestCase {
    private let axonKey = AdmissionServerTests.key(1)
    private let validator = AdmissionServerTests.key(2)    // stake 1000
    private let smallStake = AdmissionServerTests.key(3)   // stake 5
    private let stranger = AdmissionServerTests.key(6)     // not registered
    private let prompt = Array(Int32(20)..<Int32(30))

    private func server() throws -> Harness {
        let store = MetagraphStore(try Metagraph(netuid: 7, block: 100, neurons: [
            Neuron(uid: 0, hotkey: validator.ss58, stake: 1000, validatorPermit: true),
            Neuron(uid: 1, hotkey: smallStake.ss58, stake: 5, validatorPermit: true),
        ]))
        let admission = try Admission(receiver: axonKey.publicKey, policy: AdmissionPolicy(allowUnregistered: true), metagraph: store)
        // 40 cached positions: one 10-token prompt with 20 new tokens (29 positions) at a time,
        // each taking 21 steps of at least 30 ms.
        let backend = FakeGenerationBackend(vocabSize: 300, kvCapacityBytes: 40 * 1024, kvBytesPerToken: 1024, stepDelay: 0.03)
        return try startServer(backend: backend) { config in
            config.hotkey = self.axonKey.ss58
            config.admission = admission
            config.metagraph = store
            config.generationWaitMs = 20_000
            config.stepTokens = 32
            config.maxSequences = 8
        }
    }

    private func send(_ raw: AxonClient, _ sender: SigningSession, timeoutMs: UInt32) throws -> UInt64 {
        let generation = Generation(numToGenerate: 20, noRepeatNgramSize: 0, stopTokens: [-1])
        let bytes = ForwardRequest(tokens: tokens32([prompt]), synapses: [Synapse(type: .textSeq2Seq, generation: generation)]).serializedBytes()
        let id = raw.makeID()
        try raw.send(Request(id: id, method: .forward, timeoutMs: timeoutMs, body: bytes,
                             auth: sender.auth(receiver: axonKey.ss58, body: bytes)))
        return id
    }

    private func completionOrder(_ raw: AxonClient, count: Int) throws -> [UInt64] {
        try (0..<count).map { _ in
            let response = try raw.nextResponse(timeout: 20)
            XCTAssertEqual(response.code, .success, response.message)
            return response.id
        }
    }

    func testWaitingGenerationsStartByStakeWithUnregisteredLast() throws {
        let harness = try server()
        let raw = try AxonClient(host: "127.0.0.1", port: harness.server.port)
        let high = SigningSession(hotkey: validator), low = SigningSession(hotkey: smallStake)
        let unregistered = SigningSession(hotkey: stranger)
        let blocker = try send(raw, high, timeoutMs: 20_000)
        Thread.sleep(forTimeInterval: 0.05)   // the blocker holds the cache now
        let fromUnregistered = try send(raw, unregistered, timeoutMs: 20_000)
        let fromLow = try send(raw, low, timeoutMs: 20_000)
        let fromHigh = try send(raw, high, timeoutMs: 20_000)
        XCTAssertEqual(try completionOrder(raw, count: 4), [blocker, fromHigh, fromLow, fromUnregistered])
    }

    func testAGenerationThatWaitedHalfItsDeadlineStartsBeforeHigherStake() throws {
        let harness = try server()
        let raw = try AxonClient(host: "127.0.0.1", port: harness.server.port)
        let high = SigningSession(hotkey: validator), low = SigningSession(hotkey: smallStake)
        let blocker = try send(raw, high, timeoutMs: 20_000)
        Thread.sleep(forTimeInterval: 0.05)
        // Each generation takes T ≈ 0.65 s: the low-stake one (2.2 s deadline) has waited half of
        // it (1.1 s, within 1.5 T to 2 T) when the first high-stake one after the blocker ends, not
        // yet when the blocker does, and it still ends (3 T) before its deadline.
        let starved = try send(raw, low, timeoutMs: 2_200)
        let highs = try (0..<3).map { _ in try send(raw, high, timeoutMs: 20_000) }
        XCTAssertEqual(try completionOrder(raw, count: 5), [blocker, highs[0], starved, highs[1], highs[2]])
    }
}

/// TEXT_SEQ_2_SEQ in network space on a fake of the default model's shape: the prompt is GPT-2 ids
/// (laid over the model's tokens as every network-space FORWARD is), the answer is the generated
/// text re-tokenized by GPT-2, the model's eos becoming `<|endoftext|>`.
final class NetworkGenerationTests: XCTestCase {
    private let endOfText = NetworkStandardTokenizer.endOfText

    private func server(maxNewTokens: Int = 64) throws -> (Harness, AxonClient) {
        let model = try NetworkSpaces.defaultModel()
        let space = try NetworkSpaces.overDefaultModel()
        let harness = try startServer(backend: FakeGenerationBackend(modelInfo: model.info)) { config in
            config.networkSpace = space
            config.maxNewTokens = maxNewTokens
        }
        return (harness, try harness.client())
    }

    private func request(_ rows: [[Int32]], _ generation: Generation) -> ForwardRequest {
        let padded = leftPadded(rows, pad: endOfText)
        return ForwardRequest(tokens: padded.tokens, lengths: padded.lengths, synapses: [Synapse(type: .textSeq2Seq, generation: generation)],
                              space: .network)
    }

    /// What a row must answer: greedy by recompute over the fake's FORWARD path from the model
    /// tokens the text reads as, its text (control tokens have none) re-tokenized by GPT-2.
    private func expected(_ networkIDs: [Int32], count: Int, stops: Set<Int32>) throws -> [Int32] {
        let model = try NetworkSpaces.defaultModel()
        let prompt = try NetworkSpaces.overDefaultModel().translator.align(networkIDs: networkIDs).modelIDs
        let fake = FakeBackend(modelInfo: model.info)
        var output: [Int32] = []
        while output.count < count {
            try fake.forward(rows: [prompt + output], hidden: false, logits: .last) { result in
                output.append(referenceTopK(Array(try XCTUnwrap(result.logits)), k: 1).ids[0])
            }
            if stops.contains(output[output.count - 1]) { break }
        }
        let eos = try XCTUnwrap(model.tokenizer.eosID)
        let text = try output.filter { $0 != eos && model.tokenizer.tokenType(for: $0) != 3 }.flatMap { try model.tokenizer.decodeBytes([$0]) }
        let ids = try NetworkSpaces.standard().tokenizer.encode(String(decoding: text, as: UTF8.self), addSpecial: false, parseSpecial: false)
        return Array((ids + (output.last == eos ? [endOfText] : [])).prefix(count))
    }

    func testTheAnswerIsTheGeneratedTextInStandardTokens() throws {
        let (_, client) = try server()
        let rows = [try NetworkSpaces.ids("The capital of France is"), try NetworkSpaces.ids("Once upon a time, in a land")]
        let response = try client.forward(request(rows, Generation(numToGenerate: 20, noRepeatNgramSize: 0, stopTokens: [-1])))
        let outputs = try response.checkedResult(.textSeq2Seq).checkedGeneration(rows: 2, maxTokens: 20, vocab: 50_257)
        for (index, row) in rows.enumerated() {
            XCTAssertEqual(outputs[index], try expected(row, count: 20, stops: []), "row \(index)")
        }
        // The network's end of text stops at the model's eos and is answered as itself.
        let stopped = try client.forward(request(rows, Generation(numToGenerate: 20, noRepeatNgramSize: 0, stopTokens: [endOfText])))
        let stoppedOutputs = try stopped.checkedResult(.textSeq2Seq).checkedGeneration(rows: 2, maxTokens: 20, vocab: 50_257)
        let eos = try XCTUnwrap(NetworkSpaces.defaultModel().tokenizer.eosID)
        for (index, row) in rows.enumerated() {
            XCTAssertEqual(stoppedOutputs[index], try expected(row, count: 20, stops: [eos]), "row \(index)")
        }
    }

    func testAStopTokenOtherThanTheEndOfTextIsNotImplementedInNetworkSpace() throws {
        let (_, client) = try server()
        let period = try NetworkSpaces.ids(".")[0]
        let response = try client.forward(request([try NetworkSpaces.ids("Hello there")], Generation(numToGenerate: 4, stopTokens: [period])))
        XCTAssertEqual(response.code, .success, response.message)
        let result = try XCTUnwrap(response.forward?.results.first)
        XCTAssertEqual(result.code, .notImplemented)
        XCTAssertTrue(result.message.contains("stop_tokens may hold only the network's end of text (50256"), result.message)
    }
}
