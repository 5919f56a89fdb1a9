/// Everything that can go wrong choosing tokens. Parameter errors name the wire field
/// (`Protos/axon.proto`, message `Generation`) with the value seen and the range accepted, so the
/// server can answer `InvalidRequest` with the description as it stands.
public enum SamplingError: Error, CustomStringConvertible, Equatable, Sendable {
    /// A parameter is outside its range; `name` is the wire field's name.
    case invalidParameter(name: String, value: String, expected: String)
    /// A combination this module does not implement.
    case unsupported(String)
    /// A logits buffer does not hold what the sampler was built for.
    case logitsShape(count: Int, expected: Int)
    /// Every token's score is −∞ after processing (e.g. each one completes a banned n-gram), so no
    /// token can be chosen.
    case noTokenLeft(step: Int)
    /// A step was asked of a sampler or beam search that has already finished.
    case finished

    public var description: String {
        switch self {
        case .invalidParameter(let name, let value, let expected):
            return "generation parameter \(name) is \(value), expected \(expected)"
        case .unsupported(let message):
            return "unsupported generation parameters: \(message)"
        case .logitsShape(let count, let expected):
            return "logits buffer holds \(count) floats, expected \(expected)"
        case .noTokenLeft(let step):
            return "no token can be chosen at generation step \(step): every score is -inf after the logits processors"
        case .finished:
            return "the sequence has already finished"
        }
    }
}
