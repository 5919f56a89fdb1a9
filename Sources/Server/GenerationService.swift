// What an AxonServer needs to serve TEXT_SEQ_2_SEQ: the validator of generation requests and the
// decode loop its worker steps, built from the backend and the configuration.

/// Why a server cannot serve generation with its configuration.
public enum GenerationConfigurationError: Error, CustomStringConvertible, Equatable {
    case invalidLimit(name: String, value: Int, expected: String)

    public var description: String {
        switch self {
        case let .invalidLimit(name, value, expected): return "\(name) is \(value), expected \(expected)"
        }
    }
}

struct GenerationService {
    let validator: GenerationValidator
    let loop: DecodeLoop
    /// Sequences held at once: the configuration's, within what the backend holds and steps.
    let maxSequences: Int

    /// - Throws: `GenerationConfigurationError` for limits the backend cannot meet.
    init(backend: GenerationBackend, configuration c: ServerConfiguration) throws {
        let maxSequences = min(c.maxSequences, backend.maxSequences, backend.maxStepRows)
        let checks: [(String, Int, ClosedRange<Int>, String)] = [
            ("--max-new-tokens", c.maxNewTokens, 1...Int(Int32.max), "at least 1"),
            ("--max-sequences", c.maxSequences, 1...Int.max, "at least 1"),
            ("--step-tokens", c.stepTokens, (maxSequences + 1)...max(maxSequences + 1, backend.maxStepTokens),
             "above --max-sequences (\(maxSequences): every sequence's token and at least one prompt token fit a step) and at most the engine's \(backend.maxStepTokens) tokens per pass"),
        ]
        for (name, value, range, expected) in checks where !range.contains(value) {
            throw GenerationConfigurationError.invalidLimit(name: name, value: value, expected: expected)
        }
        self.maxSequences = maxSequences
        let limits = GenerationLimits(maxNewTokens: c.maxNewTokens, maxBeams: maxSequences, vocabSize: backend.modelInfo.vocabSize)
        validator = GenerationValidator(limits: limits, maxSequences: maxSequences,
                                        maxSequenceLength: backend.maxSequenceLength, maxResponse: c.maxResponse,
                                        kvCapacityBytes: backend.kvCapacityBytes, stepTokens: c.stepTokens,
                                        eosID: Int32(truncatingIfNeeded: backend.modelInfo.eosID),
                                        kvReservation: { [unowned backend] in backend.kvReservation(prompt: $0, generate: $1, beams: $2, chunk: $3) },
                                        network: c.networkSpace)
        loop = DecodeLoop(backend: backend, stepTokens: c.stepTokens, maxSequences: maxSequences)
    }
}
