import ArgumentParser
import Engine
import Foundation
import GGUF
import Server
import Tokenizer

/// `axon run`: the next-token candidates for a text, for a person to read.
struct Run: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Print the most likely next tokens after a text, with probabilities.")
    @OptionGroup var modelOption: ModelOption
    @OptionGroup var precisionOption: PrecisionOption

    @Option(help: "How many candidates to print.")
    var top: Int = 10

    @Option(help: "Threads for sgemm and the engine's workers (default: all cores).")
    var threads: Int = ProcessInfo.processInfo.activeProcessorCount

    @Option(help: "Comma-separated token ids to use instead of the text.")
    var ids: String?

    @Flag(help: "Recognise special tokens such as <|im_start|> written in the text.")
    var parseSpecial = false

    @Argument(help: "The text to continue.")
    var text: String?

    func run() throws {
        guard top >= 1 else { throw ValidationError("--top must be at least 1") }
        let file = try GGUFFile(path: modelOption.resolvedPath())
        let tokenizer = try TokenizerLoader.load(gguf: file)
        let tokens: [Int32]
        if let ids {
            tokens = try ids.split(separator: ",").map { item in
                guard let id = Int32(item.trimmingCharacters(in: .whitespaces)) else {
                    throw ValidationError("--ids: '\(item)' is not a token id")
                }
                return id
            }
        } else if let text {
            tokens = tokenizer.encode(text, addSpecial: true, parseSpecial: parseSpecial)
        } else {
            throw ValidationError("give a text to continue, or --ids")
        }
        guard !tokens.isEmpty else { throw Failure("the text has no tokens") }
        let engine = try InferenceEngine(file: file, options: EngineOptions(
            threads: threads, maxBatchTokens: max(tokens.count, 1), maxRows: 1, maxSeq: tokens.count,
            maxLogitRows: 1, precision: precisionOption.resolved,
            calibrationTokens: precisionOption.resolved == .int8 ? EngineOptions.calibrationTokens(tokenizer) : []))
        FileHandle.standardError.write(Data(precisionOption.startupLines(f32GEMM: engine.f32GEMM).utf8))
        let result = try engine.forward(RaggedBatch(rows: [tokens]), logits: .last)
        guard let logits = result.lastLogits(row: 0) else { return }
        let candidates = topK(logits, k: top)
        print("\(tokens.count) tokens in; next-token candidates:")
        for (rank, (id, p)) in zip(candidates.ids, candidates.probs).enumerated() {
            let piece = (try? tokenizer.decode([id])) ?? "<\(id)>"
            print(String(format: "%3d  %6.2f%%  %6d  %@", rank + 1, p * 100, id, Self.visible(piece)))
        }
        print(String(format: "rest: %.2f%% over %d other tokens", candidates.leftoverMass * 100, engine.config.vocabSize - candidates.ids.count))
    }

    /// The piece quoted, with whitespace and control characters escaped so they can be seen.
    static func visible(_ piece: String) -> String {
        var out = "\""
        for scalar in piece.unicodeScalars {
            switch scalar {
            case "\n": out += "\\n"
            case "\t": out += "\\t"
            case "\r": out += "\\r"
            case "\"": out += "\\\""
            default:
                out += scalar.value < 0x20 ? String(format: "\\u{%02X}", scalar.value) : String(scalar)
            }
        }
        return out + "\""
    }
}
