import ArgumentParser
import Foundation
import GGUF
import Tokenizer

struct Tokenize: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Print the token ids of a text, given as an argument or as UTF-8 on stdin.",
        discussion: """
        Stdin is encoded byte for byte, so `echo TEXT | axon tokenize` includes the newline echo adds, \
        which is a token of its own; pass --strip-newline (or the text as an argument, or `printf %s TEXT`) \
        to leave it out.
        """)
    @OptionGroup var modelOption: ModelOption

    @Option(help: "Whose token ids: the model's, or the network's standard GPT-2 ones.")
    var space: TokenSpaceOption = .model

    @Flag(help: "Print exactly one JSON array of integers and nothing else.")
    var json = false

    @Flag(help: "Print one token per line: id, vocabulary piece and the text it stands for.")
    var pieces = false

    @Flag(help: "Recognize special tokens such as <|im_start|> written in the text.")
    var parseSpecial = false

    @Flag(help: "Add the bos/eos ids if the model asks for them.")
    var addSpecial = false

    @Flag(help: "Drop one trailing newline (\\n or \\r\\n) from stdin, such as the one `echo` adds.")
    var stripNewline = false

    @Argument(help: "The text to tokenize (default: read stdin).")
    var text: String?

    @Option(help: ArgumentHelp("Time encoding FILE (MB/s, single thread) instead of reading stdin.", visibility: .hidden))
    var bench: String?

    @Option(help: ArgumentHelp("Timed repetitions for --bench.", visibility: .hidden))
    var benchRepeats = 5

    @Flag(help: ArgumentHelp("With --bench, encode each paragraph in its own call (request-sized inputs) through one reused session.", visibility: .hidden))
    var benchParagraphs = false

    func validate() throws {
        if json && pieces { throw ValidationError("--json and --pieces are exclusive: --json prints only the ids") }
        if benchRepeats < 1 { throw ValidationError("--bench-repeats must be at least 1, got \(benchRepeats)") }
        if text != nil && stripNewline { throw ValidationError("--strip-newline applies to stdin; the text argument is encoded as given") }
    }

    func run() throws {
        let tokenizer = try space.tokenizer(modelOption)
        if let bench {
            try runBenchmark(tokenizer, path: bench)
            return
        }
        let text = try self.text ?? Self.readStandardInput(stripNewline: stripNewline)
        let ids = tokenizer.encode(text, addSpecial: addSpecial, parseSpecial: parseSpecial)
        if json {
            print("[" + ids.map(String.init).joined(separator: ",") + "]")
        } else if pieces {
            for id in ids {
                let piece = tokenizer.piece(for: id) ?? ""
                let text = (try? tokenizer.decode([id])) ?? ""
                print("\(id)\t\(piece)\t\(text.debugDescription)")
            }
        } else {
            print(ids.map(String.init).joined(separator: " "))
        }
    }

    /// Stdin as UTF-8, less one trailing newline when asked.
    private static func readStandardInput(stripNewline: Bool) throws -> String {
        let data = FileHandle.standardInput.readDataToEndOfFile()
        guard var text = String(validating: data, as: UTF8.self) else {
            throw Failure("stdin is not valid UTF-8 (\(data.count) bytes)")
        }
        // "\r\n" is one Character in Swift, so one removal drops either ending.
        if stripNewline, let last = text.last, last == "\n" || last == "\r\n" { text.removeLast() }
        return text
    }

    /// Encodes the file once to warm up, then `benchRepeats` times, each call from a cold
    /// per-call cache, and prints the best and median throughput.
    private func runBenchmark(_ tokenizer: any TextTokenizer, path: String) throws {
        let data = try Data(contentsOf: URL(fileURLWithPath: path))
        guard let text = String(validating: data, as: UTF8.self) else {
            throw Failure("\(path) is not valid UTF-8")
        }
        let clock = ContinuousClock()
        // Paragraph mode keeps the separators inside the pieces so the bytes encoded are the same.
        var inputs = [text]
        if benchParagraphs {
            inputs = text.components(separatedBy: "\n\n")
            for i in 0..<(inputs.count - 1) { inputs[i] += "\n\n" }
        }
        let session = tokenizer.makeSession()
        func encodeAll() -> Int {
            benchParagraphs ? inputs.reduce(0) { $0 + session.encode($1, addSpecial: false, parseSpecial: false).count }
                : tokenizer.encode(text, addSpecial: false, parseSpecial: false).count
        }
        let count = encodeAll()
        var seconds: [Double] = []
        for _ in 0..<benchRepeats {
            let start = clock.now
            let ids = encodeAll()
            let elapsed = clock.now - start
            guard ids == count else { throw Failure("encode is not deterministic: \(ids) vs \(count) ids") }
            seconds.append(Double(elapsed.components.seconds) + Double(elapsed.components.attoseconds) * 1e-18)
        }
        seconds.sort()
        let mb = Double(data.count) / 1e6
        let best = mb / seconds[0]
        let median = mb / seconds[seconds.count / 2]
        print(String(format: "axon encode: %d bytes in %d call(s), %d ids, best %.4f s = %.1f MB/s, median %.1f MB/s (%d runs, 1 thread)",
                     data.count, inputs.count, count, seconds[0], best, median, benchRepeats))
    }
}
