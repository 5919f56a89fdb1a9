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
        The corpus is tokenized in --space (model: the model's tokenizer, checked against the axon's tokenizer_sha256; \
        network: the network's GPT-2, checked against its network_tokenizer_sha256) and cut into windows of --seq \
        tokens, --stride apart; each window asks for the next token's top-k. In model space a true token inside the \
        top-k scores -log p, outside -log floor with floor = (1 - sum of top-k)/(vocab - k). In network space the \
        answer is phrases, scored by Bittensor's phrase cross-entropy against the next 8 standard tokens (loss is \
        its loss_val, phrase loss its phrase loss). Bits per byte (loss / ln 2 per byte of the scored tokens' text) \
        compares models across tokenizers. --compare-model-space measures the translation: see docs/PROTOCOL.md.
        """)
    @OptionGroup var modelOption: ModelOption
    @OptionGroup var keyOption: KeyOption
    @Option(help: "The axon's HOST:PORT.") var endpoint = "127.0.0.1:8091"
    @Option(help: "UTF-8 text file to score on.") var text: String
    @Option(help: "Whose token ids to send: the model's, or the network's standard GPT-2 ones.") var space: TokenSpaceOption = .model
    @Option(help: "Top-k the axon returns per position.") var topk = 4096
    @Option(help: "Tokens of context per window.") var seq = 256
    @Option(help: "Tokens between window starts (default: --seq).") var stride: Int?
    @Option(help: "Score this many windows at random starts (seeded by --seed) instead of side by side.") var sample: Int?
    @Option(help: "Seed of --sample.") var seed: UInt64 = 1
    @Flag(help: "With --space network: at each window also ask model space for the model's own next-token loss, and compare where the window's model tokens are a prefix of the text's (translation quality).")
    var compareModelSpace = false
    @Option(help: "Windows sent as the rows of one request.") var rows = 8
    @Option(help: "Deadline per request in milliseconds (0: the server's default).") var timeoutMs: UInt32 = 0
    @Flag(help: "Send unsigned requests (for --no-auth axons).") var unsigned = false
    @Option(help: "Write one CSV row per window: start,loss,phrase_loss,server_ms (the axon's queue + compute time for the window's request).")
    var windowLosses: String?
    @Flag(help: "Print one JSON object (loss, perplexity, positions, and phraseLoss, bitsPerByte where known).") var json = false

    func validate() throws {
        if let sample, sample < 1 { throw ValidationError("--sample must be at least 1, got \(sample)") }
        if compareModelSpace && space != .network { throw ValidationError("--compare-model-space compares network space with model space: pass --space network") }
    }

    func run() throws {
        let corpus: String
        do { corpus = try String(contentsOfFile: text, encoding: .utf8) } catch {
            throw Failure("--text \(text) cannot be read as UTF-8: \(error.localizedDescription)")
        }
        let hotkey = unsigned ? nil : try keyOption.load(defaultName: "default")
        let client = try AxonClient(endpoint: endpoint, hotkey: hotkey)
        defer { client.close() }
        let remote = try client.info().checkedInfo()
        let tokenizer: any TextTokenizer
        let vocab: Int
        switch space {
        case .model:
            tokenizer = try modelOption.loadTokenizer()
            try Query.checkSameTokenizer(tokenizer, remote)
            vocab = Int(remote.vocabSize)
        case .network:
            let standard = try TokenSpaceOption.networkStandard()
            try Query.checkNetworkTokenizer(standard, remote)
            tokenizer = standard.tokenizer
            vocab = Int(remote.networkVocabSize)
        }
        try checkFits(remote)
        let tokenBytes = (0..<Int32(tokenizer.vocabSize)).map { (try? tokenizer.decodeBytes([$0]).count) ?? 0 }
        let scorer = Scorer(seq: seq, topk: min(topk, vocab), stride: stride, rowsPerRequest: rows, timeoutMs: timeoutMs,
                            vocab: vocab, space: space == .network ? .network : .model, tokenBytes: tokenBytes)
        let tokens = tokenizer.encode(corpus, addSpecial: false, parseSpecial: false)
        let windows = sample.map { ScoreWindows.sample(tokens: tokens, seq: seq, count: $0, seed: seed, following: Scorer.phraseTargetLength) }
            ?? scorer.windows(tokens: tokens)
        if compareModelSpace {
            let comparison = try TranslationQuality(scorer: scorer, standard: tokenizer, model: modelOption.loadTokenizer(), remote: remote)
                .measure(tokens: tokens, windows: windows, client: client, quiet: json)
            print(json ? comparison.json : comparison.report(endpoint: endpoint, text: text))
            return
        }
        let progress = Progress("score \(endpoint)", total: windows.count, unit: "windows", quiet: json)
        var rows = "start,loss,phrase_loss,server_ms\n"
        let result = try scorer.score(tokens: tokens, windows: windows, client: client, progress: { done, _ in progress.set(done) },
                                      each: windowLosses == nil ? nil : { window, loss, response in
            let serverMs = response.timing.map { (Double($0.queueUs) + Double($0.computeUs)) / 1000 }.map { String(format: "%.1f", $0) } ?? ""
            rows += "\(window.start),\(loss.lossVal),\(loss.loss),\(serverMs)\n"
        })
        progress.finish()
        if let windowLosses {
            do { try rows.write(toFile: windowLosses, atomically: true, encoding: .utf8) } catch {
                throw Failure("--window-losses \(windowLosses) cannot be written: \(error.localizedDescription)")
            }
        }
        if json {
            let encoder = JSONEncoder()
            encoder.outputFormatting = .sortedKeys
            print(String(decoding: try encoder.encode(result), as: UTF8.self))
        } else {
            let phrase = result.phraseLoss.map { String(format: ", phrase loss %.6f", $0) } ?? ""
            let bits = result.bitsPerByte.map { String(format: ", %.4f bits per byte", $0) } ?? ""
            print(String(format: "%@ on %@ (%@ space): loss %.6f nats, perplexity %.4f%@%@ over %d positions (seq %d, top-k %d)",
                         endpoint, text, space.rawValue, result.loss, result.perplexity, phrase, bits, result.positions, seq, scorer.topk))
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
