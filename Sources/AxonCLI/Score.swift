import ArgumentParser
import AxonClient
import Foundation
import GGUF
import Tokenizer
import Wire
import Validator

/// `axon score`: the validator's scoring of one axon on a text corpus.
struct Score: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Score an axon: the mean loss of the true next token over a text corpus (TEXT_CAUSAL_LM_NEXT, top-k).",
        discussion: """
        The corpus is tokenized with the model's tokenizer (checked against the axon's tokenizer_sha256) and cut \
        into windows of --seq tokens, --stride apart; each window asks for the next token's top-k. A true token \
        inside the top-k scores -log p; outside, -log floor with floor = (1 - sum of top-k)/(vocab - k).
        """)
    @OptionGroup var modelOption: ModelOption
    @OptionGroup var keyOption: KeyOption
    @Option(help: "The axon's HOST:PORT.") var endpoint = "127.0.0.1:8091"
    @Option(help: "UTF-8 text file to score on.") var text: String
    @Option(help: "Top-k the axon returns per position.") var topk = 4096
    @Option(help: "Tokens of context per window.") var seq = 256
    @Option(help: "Tokens between window starts (default: --seq).") var stride: Int?
    @Option(help: "Windows sent as the rows of one request.") var rows = 8
    @Option(help: "Deadline per request in milliseconds (0: the server's default).") var timeoutMs: UInt32 = 0
    @Flag(help: "Send unsigned requests (for --no-auth axons).") var unsigned = false
    @Flag(help: "Print one JSON object {loss, perplexity, positions}.") var json = false

    func run() throws {
        let corpus: String
        do { corpus = try String(contentsOfFile: text, encoding: .utf8) } catch {
            throw Failure("--text \(text) cannot be read as UTF-8: \(error.localizedDescription)")
        }
        let hotkey = unsigned ? nil : try keyOption.load(defaultName: "default")
        let client = try AxonClient(endpoint: endpoint, hotkey: hotkey)
        defer { client.close() }
        let remote = try client.info().checkedInfo()
        let tokenizer = try TokenizerLoader.load(gguf: GGUFFile(path: modelOption.resolvedPath()))
        try Query.checkSameTokenizer(tokenizer, remote)
        try checkFits(remote)
        let scorer = Scorer(seq: seq, topk: min(topk, Int(remote.vocabSize)), stride: stride, rowsPerRequest: rows, timeoutMs: timeoutMs,
                            vocab: Int(remote.vocabSize))
        let tokens = tokenizer.encode(corpus, addSpecial: false, parseSpecial: false)
        let progress = Progress("score \(endpoint)", total: ScoreWindows.make(tokens: tokens, seq: seq, stride: stride ?? seq).count,
                                unit: "windows", quiet: json)
        let result = try scorer.score(tokens: tokens, client: client) { done, _ in progress.set(done) }
        progress.finish()
        if json {
            print(String(format: "{\"loss\":%.9g,\"perplexity\":%.9g,\"positions\":%d}", result.loss, result.perplexity, result.positions))
        } else {
            print(String(format: "%@ on %@: loss %.6f nats, perplexity %.4f over %d positions (seq %d, top-k %d)",
                         endpoint, text, result.loss, result.perplexity, result.positions, seq, scorer.topk))
        }
    }

    /// A window is one row of --seq tokens, a request --rows of them: both must fit the axon's limits.
    private func checkFits(_ remote: InfoResponse) throws {
        if seq > remote.maxSeq {
            throw Failure("--seq \(seq) exceeds the axon's --max-seq \(remote.maxSeq); pass --seq \(remote.maxSeq) or less, or start the server with a larger --max-seq")
        }
        if remote.maxBatchTokens > 0, rows * seq > remote.maxBatchTokens {
            let fit = max(1, Int(remote.maxBatchTokens) / seq)
            throw Failure("--rows \(rows) x --seq \(seq) = \(rows * seq) tokens per request exceeds the axon's --max-batch-tokens \(remote.maxBatchTokens); pass --rows \(fit), or start the server with a larger --max-batch-tokens")
        }
        if rows > remote.maxBatch {
            throw Failure("--rows \(rows) exceeds the axon's --max-batch \(remote.maxBatch); pass --rows \(remote.maxBatch) or less")
        }
    }
}
