import ArgumentParser
import AxonClient
import Engine
import Foundation
import GGUF
import Server
import Tokenizer
import Wire

/// The `Generation` fields on the command line: an option left out is a field left absent, which
/// takes the protocol's default (Protos/axon.proto).
struct GenerationOptions: ParsableArguments {
    @Option(help: "num_to_generate: new tokens at most (default 256; an axon caps it at its --max-new-tokens).")
    var numToGenerate: UInt32?
    @Option(help: "topk: sample among the k most likely (default 50; 0 = no top-k filter).") var topk: UInt32?
    @Flag(help: "do_sample: sample instead of greedy decoding (or beam search with --num-beams above 1).")
    var doSample = false
    @Option(help: "top_p: sample among the most likely tokens reaching this probability, in (0, 1] (default 0.95).")
    var topP: Float?
    @Option(help: "temperature: divide the logits by it when sampling, above 0 (default 1).") var temperature: Float?
    @Option(help: "repetition_penalty: above 0, 1 = off (default 1).") var repetitionPenalty: Float?
    @Option(help: "no_repeat_ngram_size: no n-gram of this size occurs twice (default 2; 0 = off).") var noRepeatNgramSize: UInt32?
    @Option(help: "num_beams: beam search with this many beams (default 1).") var numBeams: UInt32?
    @Option(help: "length_penalty: beam scores are divided by length^this (default 1).") var lengthPenalty: Float?
    @Flag(help: "early_stopping: beam search stops once num_beams hypotheses are finished.") var earlyStopping = false
    @Option(help: "seed: the same seed and request give the same tokens (default: a random seed).") var seed: UInt64?
    @Option(help: "stop_tokens: an id that ends the text (repeatable; default: the model's eos; --stop-token=-1 alone never stops).")
    var stopToken: [Int32] = []

    /// The fields as sent: only the options given are set.
    var generation: Generation {
        Generation(numToGenerate: numToGenerate, topk: topk, doSample: doSample ? true : nil, topP: topP, temperature: temperature,
                   repetitionPenalty: repetitionPenalty, noRepeatNgramSize: noRepeatNgramSize, numBeams: numBeams,
                   lengthPenalty: lengthPenalty, earlyStopping: earlyStopping ? true : nil, seed: seed, stopTokens: stopToken)
    }
}

/// `axon generate`: continue a text, here (streamed) or by an axon (printed when it answers).
struct Generate: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Continue a text: with the model in this process (streamed as tokens come), or by a running axon's TEXT_SEQ_2_SEQ.")
    @OptionGroup var modelOption: ModelOption
    @Option(help: "Ask this axon (HOST:PORT) instead of running the model here; --model then names the tokenizer, checked against the axon's.")
    var endpoint: String?
    @OptionGroup(title: "Generation fields (absent: the protocol's defaults)") var fields: GenerationOptions
    @Option(help: "Local: engine threads (default: all cores).") var threads: Int?
    @Option(help: "Local: KV cache size in MiB.") var kvCacheMb = 256
    @Option(help: "Local: weights decode steps read: int8, f16 or f32 (docs/ENGINE.md).") var decodePrecision: DecodePrecision = .int8
    @Option(help: "Local: elements of the KV cache, f32 or f16 (default: f16 beside int8 or f16 decode weights, f32 beside f32).")
    var kvCachePrecision: KVCachePrecision?
    @OptionGroup(title: "Local") var precisionOption: PrecisionOption
    @Option(help: "Remote: the request's deadline in milliseconds.") var timeoutMs: UInt32 = 36_000
    @Option(help: "Remote: whose token ids the prompt and the answer are in: the model's, or the network's standard GPT-2 ones (the axon translates).")
    var space: TokenSpaceOption = .model
    @OptionGroup var keyOption: KeyOption
    @Flag(help: "Remote: send the request unsigned (for --no-auth axons).") var unsigned = false
    @Flag(help: "Recognise special tokens such as <|im_start|> written in the text.") var parseSpecial = false
    @Flag(help: ArgumentHelp("Local: a deterministic fake of the model's shape instead of the engine (tests).", visibility: .hidden))
    var fake = false
    @Argument(help: "The text to continue.") var text: String

    func validate() throws {
        if text.isEmpty { throw ValidationError("give a text to continue") }
        if kvCacheMb < 1 { throw ValidationError("--kv-cache-mb must be at least 1, got \(kvCacheMb)") }
        if let threads, threads < 1 { throw ValidationError("--threads must be at least 1, got \(threads)") }
        if space == .network && endpoint == nil {
            throw ValidationError("--space network asks an axon to translate: give --endpoint (the model here generates in its own space)")
        }
    }

    func run() throws {
        if let endpoint, space == .network { return try remoteNetwork(endpoint) }
        let file = try GGUFFile(path: modelOption.resolvedPath())
        let tokenizer = try TokenizerLoader.load(gguf: file)
        let prompt = tokenizer.encode(text, addSpecial: true, parseSpecial: parseSpecial)
        guard !prompt.isEmpty else { throw Failure("the text has no tokens") }
        if let endpoint { return try remote(endpoint, prompt: prompt, tokenizer: tokenizer) }
        if !fake { FileHandle.standardError.write(Data(precisionOption.startupLines(f32GEMM: .preferred).utf8)) }
        let backend = try GenerationBackendLoader.load(file: file, tokenizer: tokenizer, threads: threads,
                                                      kvCacheBytes: kvCacheMb << 20, maxSeq: nil, maxSequences: 16, stepTokens: 256,
                                                      decodePrecision: decodePrecision, precision: precisionOption.resolved,
                                                      kvCachePrecision: kvCachePrecision, fake: fake)
        let generator = try LocalGenerator(backend: backend, maxNewTokens: Int(Int32.max))
        let stops = Set(fields.stopToken.isEmpty ? [Int32(truncatingIfNeeded: backend.modelInfo.eosID)] : fields.stopToken)
        var printer = TextStream(tokenizer: tokenizer, hidden: stops)
        let start = Date()
        var firstToken: Date?
        let output: [Int32]
        do {
            output = try generator.generate(prompt: prompt, generation: fields.generation) { token in
                if firstToken == nil { firstToken = Date() }
                printer.append(token)
            }
        } catch let refusal as GenerationRefusal {
            throw Failure("cannot generate: \(refusal.message)")
        }
        if printer.printed == 0 { printer.appendAll(output) }   // beam search: the tokens are known at the end
        printer.finish()
        let seconds = Date().timeIntervalSince(start)
        let decodeSeconds = firstToken.map { Date().timeIntervalSince($0) } ?? seconds
        let rate = output.count > 1 ? Double(output.count - 1) / max(decodeSeconds, 1e-9) : 0
        FileHandle.standardError.write(Data(String(format: "\n%d prompt tokens, %d generated in %.2f s (first after %.0f ms, then %.1f tokens/s)\n",
                                                   prompt.count, output.count, seconds,
                                                   (firstToken ?? Date()).timeIntervalSince(start) * 1000, rate).utf8))
    }

    /// In network space the prompt is the text's standard GPT-2 ids (no bos: the axon adds the
    /// model's own when it translates) and the answer is standard ids, <|endoftext|> for the eos.
    private func remoteNetwork(_ endpoint: String) throws {
        let standard = try TokenSpaceOption.networkStandard()
        let prompt = standard.tokenizer.encode(text, addSpecial: false, parseSpecial: parseSpecial)
        guard !prompt.isEmpty else { throw Failure("the text has no tokens") }
        try remote(endpoint, prompt: prompt, tokenizer: standard.tokenizer, network: standard)
    }

    /// One signed FORWARD with one TEXT_SEQ_2_SEQ synapse; the answer is checked, then printed.
    private func remote(_ endpoint: String, prompt: [Int32], tokenizer: any TextTokenizer,
                        network: NetworkStandardTokenizer? = nil) throws {
        let hotkey = unsigned ? nil : try keyOption.load(defaultName: "default")
        let client = try AxonClient(endpoint: endpoint, hotkey: hotkey)
        let remote = try client.info().checkedInfo()
        if let network { try Query.checkNetworkTokenizer(network, remote) } else { try Query.checkSameTokenizer(tokenizer, remote) }
        // In network space the axon checks the row's model tokens against its --max-seq itself.
        guard network != nil || prompt.count <= Int(remote.maxSeq) else {
            throw Failure("the text is \(prompt.count) tokens and the axon takes at most \(remote.maxSeq) per row (its --max-seq)")
        }
        let generation = fields.generation
        let body = ForwardRequest(tokens: Tensor(int32Rows: [prompt]), synapses: [Synapse(type: .textSeq2Seq, generation: generation)],
                                  space: network == nil ? .model : .network)
        let start = Date()
        let response = try client.forward(body, timeoutMs: timeoutMs)
        let elapsed = Date().timeIntervalSince(start)
        let maxTokens = Int(generation.numToGenerate ?? Generation.Defaults.numToGenerate)
        let vocab = network.map { $0.vocabSize } ?? Int(remote.vocabSize)
        let output = try response.checkedResult(.textSeq2Seq).checkedGeneration(rows: 1, maxTokens: maxTokens, vocab: vocab)[0]
        let eos = network == nil ? Int32(truncatingIfNeeded: remote.eosID) : NetworkStandardTokenizer.endOfText
        let stops = Set(generation.stopTokens.isEmpty ? [eos] : generation.stopTokens)
        var printer = TextStream(tokenizer: tokenizer, hidden: stops)
        printer.appendAll(output)
        printer.finish()
        let timing = response.timing.map { ", queue \($0.queueUs / 1000) ms, compute \($0.computeUs / 1000) ms, step rows up to \($0.batchRows)" } ?? ""
        FileHandle.standardError.write(Data(String(format: "\n%d prompt tokens, %d generated; answered in %.2f s%@\n",
                                                   prompt.count, output.count, elapsed, timing).utf8))
    }
}

/// Writes generated tokens to stdout as text as they come, holding back the bytes of a character
/// that is not complete yet; stop tokens (control tokens such as eos) are not printed.
struct TextStream {
    let tokenizer: any TextTokenizer
    let hidden: Set<Int32>
    private var pending: [UInt8] = []
    private(set) var printed = 0

    init(tokenizer: any TextTokenizer, hidden: Set<Int32>) {
        self.tokenizer = tokenizer
        self.hidden = hidden
    }

    mutating func append(_ token: Int32) {
        printed += 1
        guard !hidden.contains(token), let bytes = try? tokenizer.decodeBytes([token]) else { return }
        pending += bytes
        let complete = Self.completePrefix(pending)
        guard complete > 0 else { return }
        FileHandle.standardOutput.write(Data(pending[..<complete]))
        pending.removeFirst(complete)
    }

    mutating func appendAll(_ tokens: [Int32]) { for token in tokens { append(token) } }

    mutating func finish() {
        if !pending.isEmpty { FileHandle.standardOutput.write(Data(String(decoding: pending, as: UTF8.self).utf8)) }
        pending = []
    }

    /// Bytes up to the start of a trailing UTF-8 sequence that is not complete yet.
    static func completePrefix(_ bytes: [UInt8]) -> Int {
        var start = bytes.count
        // A sequence starts at most 3 bytes back from the end.
        for back in 1...min(4, bytes.count) {
            let byte = bytes[bytes.count - back]
            if byte & 0xC0 == 0x80 { continue }   // continuation byte
            let length = byte < 0x80 ? 1 : byte >= 0xF0 ? 4 : byte >= 0xE0 ? 3 : byte >= 0xC0 ? 2 : 1
            start = length > back ? bytes.count - back : bytes.count
            break
        }
        return start
    }
}
