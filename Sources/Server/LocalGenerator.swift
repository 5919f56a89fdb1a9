// One generation in this process, through the server's decode loop and checks but no socket:
// `axon generate --model` streams its tokens as they come.
import Foundation
import Wire

/// Generates from one prompt on a `GenerationBackend`, with the parameters and checks a
/// TEXT_SEQ_2_SEQ request gets (GenerationValidation.swift), stepping the decode loop itself.
public final class LocalGenerator {
    public let backend: GenerationBackend
    private let service: GenerationService

    /// - Throws: `GenerationConfigurationError` for limits the backend cannot meet.
    public init(backend: GenerationBackend, stepTokens: Int = 256, maxNewTokens: Int = 4096) throws {
        self.backend = backend
        var configuration = ServerConfiguration()
        configuration.stepTokens = min(stepTokens, backend.maxStepTokens)
        configuration.maxSequences = min(backend.maxSequences, backend.maxStepRows, configuration.stepTokens - 1)
        configuration.maxNewTokens = maxNewTokens
        configuration.maxResponse = Int.max
        service = try GenerationService(backend: backend, configuration: configuration)
    }

    /// Generates after `prompt` (model-space ids, already checked against the vocabulary).
    /// `onToken` gets each token as it is chosen when the decoding streams (greedy and sampling;
    /// beam search only knows its tokens at the end).
    /// - Returns: the generated ids (ending with the stop token when one ended them).
    /// - Throws: `GenerationRefusal` for parameters or a prompt this generator cannot serve, or
    ///   when the backend fails.
    public func generate(prompt: [Int32], generation: Generation?, onToken: (Int32) -> Void = { _ in }) throws -> [Int32] {
        guard !prompt.isEmpty else { throw GenerationRefusal(code: .emptyRequest, message: "the prompt has no tokens") }
        let forward = ValidatedForward(batch: 1, seq: prompt.count, rows: [prompt], network: nil,
                                       synapses: [Synapse(type: .textSeq2Seq, generation: generation)], synapseFailures: [:],
                                       tokenCount: prompt.count, wantsHidden: false, logits: .none, responseBytes: 0)
        let validated: ValidatedGeneration
        do {
            validated = try service.validator.validate(forward, randomSeed: { UInt64.random(in: .min ... .max) })
        } catch let refusal as Refusal {
            throw GenerationRefusal(code: refusal.code, message: refusal.message)
        }
        if case .failure(let refusal) = validated.plans[0] { throw refusal }
        let now = monotonicNanoseconds()
        let job = GenerationJob(jobID: 1, connectionID: 0, requestID: 1, arrival: now, deadline: .max, waitUntil: .max,
                                priority: .unregistered, generation: validated, cancellation: CancellationFlag())
        let loop = service.loop
        let running: ActiveGeneration
        do { running = try loop.admit(job, now: now) } catch {
            throw GenerationRefusal(code: .unknownException, message: "the engine could not start the generation: \(error)")
        }
        defer { loop.removeAll() }
        return try withoutActuallyEscaping(onToken) { onToken in
            running.onToken = { _, token in onToken(token) }
            defer { running.onToken = nil }
            while true {
                let report = loop.step(now: monotonicNanoseconds())
                if let (_, message) = report.failed.first { throw GenerationRefusal(code: .unknownException, message: message) }
                if !report.finished.isEmpty { return running.outputs(synapse: 0)[0] }
                guard report.entries > 0 else {
                    throw GenerationRefusal(code: .unknownException, message: "the decode loop stalled with nothing to step")
                }
            }
        }
    }
}
