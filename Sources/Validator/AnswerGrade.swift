// How the validator's loop grades one UID's answer to a step: a phrase loss when the answer is a
// well-formed network-space TEXT_CAUSAL_LM_NEXT, else a failure recorded under a code. Failures
// count as `PhraseCrossEntropy.worstLoss` (docs/VALIDATING.md).
import AxonClient
import Foundation
import Wire

/// Why an answer earned no score: the key it is counted under in `weights.json`'s `failures`.
/// Return codes the axon sent keep their proto names; what the validator observed itself takes the
/// code Bittensor's dendrite would have recorded, and the malformed cases have their own names.
public enum AnswerFailure: Hashable, Sendable {
    /// No answer within the deadline (Bittensor's `Timeout`).
    case timeout
    /// The connection could not be made (`Unavailable`).
    case unreachable
    /// The exchange broke or the frame did not decode (`ResponseDeserializationException`).
    case broken
    /// The axon answered the request, or the synapse, with this code.
    case code(ReturnCode)
    /// Wrong tensor count, dtype, shape or buffer size, or ids after the −1 padding (`ResponseShapeException`).
    case wrongShape
    /// A probability or the floor outside [0, 1] (NaN included).
    case probabilityOutOfRange
    /// The listed probabilities sum above 1 + `AnswerGrade.sumTolerance`.
    case sumAboveOne
    /// A phrase holds an id ≥ 50257 (outside the network vocabulary).
    case phraseIDOutOfRange

    /// The `failures` key.
    public var key: String {
        switch self {
        case .timeout: return ReturnCode.timeout.description
        case .unreachable: return ReturnCode.unavailable.description
        case .broken: return ReturnCode.responseDeserializationException.description
        case .code(let code): return code.description
        case .wrongShape: return ReturnCode.responseShapeException.description
        case .probabilityOutOfRange: return "ProbabilityOutOfRange"
        case .sumAboveOne: return "ProbabilitySumAboveOne"
        case .phraseIDOutOfRange: return "PhraseIdOutOfRange"
        }
    }
}

/// One UID's result in one step.
public enum AnswerGrade: Equatable, Sendable {
    /// The mean phrase loss over the step's rows.
    case scored(loss: Double)
    case failed(AnswerFailure, detail: String)

    /// How far above 1 the listed probabilities may sum (the contract). Each is a float32
    /// (relative rounding error ≤ 2⁻²⁴) summed here in float64, so rounding adds at most 6e-8 to a
    /// true sum ≤ 1: an answer over the tolerance claims more than all the mass there is.
    public static let sumTolerance = 1e-6

    /// The loss the step counts: the score, or `PhraseCrossEntropy.worstLoss` for a failure.
    public var loss: Double {
        switch self {
        case .scored(let loss): return loss
        case .failed: return PhraseCrossEntropy.worstLoss
        }
    }

    public var failure: AnswerFailure? {
        if case .failed(let failure, _) = self { return failure }
        return nil
    }

    /// Grades a fan-out outcome against the step's targets (the 8 held-out tokens of each row).
    public static func grade(_ outcome: FanOutOutcome, targets: [[Int32]], k: Int,
                             vocabSize: Int = PhraseCrossEntropy.networkVocabSize) -> AnswerGrade {
        score(checkedPhrases(outcome, rows: targets.count, k: k, vocabSize: vocabSize), targets: targets, vocabSize: vocabSize)
    }

    /// Grades an answer: its code, then its form (`checkedPhrases`), then the mean phrase
    /// cross-entropy of its rows.
    public static func grade(_ response: Response, targets: [[Int32]], k: Int,
                             vocabSize: Int = PhraseCrossEntropy.networkVocabSize) -> AnswerGrade {
        score(checkedPhrases(response, rows: targets.count, k: k, vocabSize: vocabSize), targets: targets, vocabSize: vocabSize)
    }

    private static func score(_ checked: Result<PhraseAnswer, PhraseAnswerRejection>, targets: [[Int32]], vocabSize: Int) -> AnswerGrade {
        let answer: PhraseAnswer
        switch checked {
        case .success(let checked): answer = checked
        case .failure(let rejection): return .failed(rejection.failure, detail: rejection.detail)
        }
        let losses = Scorer.phraseLosses(answer, targets: targets, vocabSize: vocabSize)
        return .scored(loss: losses.reduce(0) { $0 + $1.loss } / Double(max(1, losses.count)))
    }
}

/// Why a phrase answer cannot be used: the failure it is counted under and what was wrong.
public struct PhraseAnswerRejection: Error, Sendable, Equatable {
    public let failure: AnswerFailure
    public let detail: String
}

extension AnswerGrade {
    /// A network-space TEXT_CAUSAL_LM_NEXT answer of `rows` rows and `k` phrases, checked in the
    /// validator's order: its code, then its form (shapes, ids, probabilities, sums). The
    /// validator grades with it and the mixture axon takes its experts' answers through it.
    public static func checkedPhrases(_ response: Response, rows: Int, k: Int,
                                      vocabSize: Int = PhraseCrossEntropy.networkVocabSize) -> Result<PhraseAnswer, PhraseAnswerRejection> {
        func reject(_ failure: AnswerFailure, _ detail: String) -> Result<PhraseAnswer, PhraseAnswerRejection> {
            .failure(PhraseAnswerRejection(failure: failure, detail: detail))
        }
        let answer: PhraseAnswer
        do {
            let result = try response.checkedResult(.textCausalLMNext)
            // Ids are checked below, so an id beyond the vocabulary is told apart from a bad shape.
            answer = try result.checkedPhrases(rows: rows, k: k, vocab: Int(Int32.max))
        } catch AnswerError.refused(_, let code, let message), AnswerError.synapseRefused(_, let code, let message) {
            return reject(.code(code), message)
        } catch {
            return reject(.wrongShape, "\(error)")
        }
        if let bad = answer.phrases.first(where: { Int($0) >= vocabSize }) {
            return reject(.phraseIDOutOfRange, "a phrase holds id \(bad), outside the network vocabulary of \(vocabSize)")
        }
        if let bad = (answer.probabilities + answer.floors).first(where: { !($0 >= 0 && $0 <= 1) }) {
            return reject(.probabilityOutOfRange, "a probability or floor is \(bad), outside [0, 1]")
        }
        for row in 0..<answer.rows {
            let sum = answer.probabilities[answer.span(row: row)].reduce(0.0) { $0 + Double($1) }
            if sum > 1 + sumTolerance {
                return reject(.sumAboveOne, "row \(row)'s probabilities sum to \(sum), above 1 + \(sumTolerance)")
            }
        }
        return .success(answer)
    }

    /// `checkedPhrases` of a fan-out outcome: no answer is a failure under its transport name.
    public static func checkedPhrases(_ outcome: FanOutOutcome, rows: Int, k: Int,
                                      vocabSize: Int = PhraseCrossEntropy.networkVocabSize) -> Result<PhraseAnswer, PhraseAnswerRejection> {
        switch outcome {
        case .timedOut(let stage): return .failure(PhraseAnswerRejection(failure: .timeout, detail: "no answer within the deadline (\(stage))"))
        case .unreachable(let reason): return .failure(PhraseAnswerRejection(failure: .unreachable, detail: reason))
        case .failed(let reason): return .failure(PhraseAnswerRejection(failure: .broken, detail: reason))
        case .answered(let response): return checkedPhrases(response, rows: rows, k: k, vocabSize: vocabSize)
        }
    }
}
