import ArgumentParser
import Engine
import Foundation
import GGUF
import Identity
import LibUV
import Logging
import Server
import Tokenizer

/// Byte sizes on the command line: a number of bytes, or with a KiB/MiB/GiB suffix.
struct ByteSize: ExpressibleByArgument {
    let bytes: Int

    init(bytes: Int) { self.bytes = bytes }

    init?(argument: String) {
        let units: [(String, Int)] = [("GiB", 1 << 30), ("MiB", 1 << 20), ("KiB", 1 << 10), ("G", 1 << 30), ("M", 1 << 20), ("K", 1 << 10), ("B", 1)]
        let text = argument.trimmingCharacters(in: .whitespaces)
        let (number, scale) = units.first { text.hasSuffix($0.0) }.map { (String(text.dropLast($0.0.count)), $0.1) } ?? (text, 1)
        guard let value = Int(number.trimmingCharacters(in: .whitespaces)), value > 0,
              value <= Int.max / scale else { return nil }
        bytes = value * scale
    }

    var defaultValueDescription: String {
        bytes % (1 << 20) == 0 ? "\(bytes >> 20)MiB" : "\(bytes)"
    }
}

/// What `axon serve` (and `axon loadgen --direct`) serve: the model's engine, or a fake of its shape.
enum BackendLoader {
    struct Loaded {
        let backend: InferenceBackend
        /// The model's tokenizer (INFO's identity fields; the network space translates into it).
        let tokenizer: any TextTokenizer
        let description: String
        /// The row limit in force: as asked, or by default min(2048, the model's context length).
        let maxSeq: Int
        /// Set when the default was lowered to the model's context length.
        let clampedToContext: Int?
    }

    /// Opens the model, its tokenizer (for INFO's identity fields) and the backend.
    /// `maxSeq` nil means min(2048, the model's `context_length`) (`RowLimit`).
    /// `generation` (serve's flags) adds the KV cache and TEXT_SEQ_2_SEQ; nil serves FORWARD only.
    static func load(path: String, threads: Int?, maxBatch: Int, maxSeq requested: Int?, maxBatchTokens: Int,
                     fake: Bool, fakeComputeSeconds: Double = 0, generation: GenerationServeOptions? = nil,
                     precision: EnginePrecision = .f32) throws -> Loaded {
        let file = try GGUFFile(path: path)
        let limit = RowLimit(requested: requested, gguf: file)
        let maxSeq = limit.maxSeq, clamped = limit.clampedToContext
        let tokenizer = try TokenizerLoader.load(gguf: file)
        let info = ModelInfo(gguf: file, tokenizer: tokenizer)
        if fake {
            return Loaded(backend: FakeGenerationBackend(modelInfo: info, computeDelay: fakeComputeSeconds), tokenizer: tokenizer, description: "fake backend shaped like \(info.name)",
                          maxSeq: maxSeq, clampedToContext: clamped)
        }
        let sequences = generation?.maxSequences ?? 1
        let engine = try EngineBackend(file: file, modelInfo: info, threads: threads, maxRows: max(maxBatch, sequences),
                                       maxSeq: maxSeq, maxBatchTokens: maxBatchTokens,
                                       kvCacheBytes: (generation?.kvCacheMb ?? 0) << 20, maxSequences: sequences,
                                       decodePrecision: generation?.decodePrecision ?? .f32, precision: precision,
                                       kvCachePrecision: generation?.resolvedKVCachePrecision ?? .f32)
        let backend: InferenceBackend = generation == nil ? engine : EngineGenerationBackend(engine)
        let parameters = file.parameterCount.formatted(.number.grouping(.automatic))
        return Loaded(backend: backend, tokenizer: tokenizer, description: "\(info.name), \(parameters) parameters", maxSeq: maxSeq,
                      clampedToContext: clamped)
    }
}

struct Serve: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Serve the model to validators over TCP (length-prefixed protobuf frames; see docs/PROTOCOL.md).")
    @OptionGroup var modelOption: ModelOption

    @Option(help: "Address to listen on.") var host = "127.0.0.1"
    @Option(help: "Port to listen on (0 picks a free one).") var port = 8091
    @Option(help: "Port of the Prometheus GET /metrics endpoint (0 turns it off).") var metricsPort = 7091
    @Option(help: "Address of the metrics endpoint (default: --host).") var metricsHost: String?
    @Option(help: "Engine threads (default: all cores).") var threads: Int?
    @OptionGroup var precisionOption: PrecisionOption
    @Option(help: "Width of hidden-state outputs: the hidden vector is zero-padded, centred (default: the model's hidden size).")
    var networkDim: Int?
    @Option(help: ArgumentHelp("The network's standard tokenizer: GPT-2 ranks in tiktoken format, for network-space requests (default: \(TokenSpaceOption.networkRanksFileName) from Models/fetch gpt2, in ./Models, the repository's Models/ or /models; without it only model space is served).",
                               valueName: "path"))
    var networkTokenizer: String?
    @Option(help: "Most rows in one request.") var maxBatch = 64
    @Option(help: "Most positions per row (default: 2048, or the model's context length if shorter).") var maxSeq: Int?
    @Option(help: "Most tokens in one request, and in one dynamic batch.") var maxBatchTokens = 4096
    @Option(help: "Queued requests beyond this are answered Backoff.") var maxQueue = 256
    @Option(help: "Largest request frame.") var maxFrame = ByteSize(bytes: 16 << 20)
    @Option(help: "Largest response.") var maxResponse = ByteSize(bytes: 256 << 20)
    @Option(help: "Connections beyond this are refused at accept.") var maxConnections = 1024
    @Option(help: "Connections one IP address may hold open; beyond this they are refused at accept.") var maxConnectionsPerIp = 256
    @Option(help: "With --metagraph: slots kept for connections that sent a FORWARD from a registered sender (default: --max-connections / 8).")
    var reservedConnections: Int?
    @Option(help: "Most synapses in one FORWARD.") var maxSynapses = 64
    @Option(help: "Response bytes all connections together may have pending before reads pause.") var maxPendingResponse = ByteSize(bytes: 1 << 30)
    @Option(help: "Seconds before an idle connection, or a frame left incomplete, is closed.") var idleTimeout = 60.0
    @Option(help: "Deadline for requests with timeout_ms = 0.") var timeoutDefaultMs: UInt32 = 12_000
    @Option(help: "Log level: trace, debug (one line per request), info, warning, error.") var logLevel = "info"
    @OptionGroup(title: "Generation (TEXT_SEQ_2_SEQ)") var generation: GenerationServeOptions
    @OptionGroup(title: "Identity and admission") var keyOption: KeyOption
    @OptionGroup(title: "Identity and admission") var admission: AdmissionOptions
    @Flag(help: ArgumentHelp("Serve a deterministic fake backend of the model's shape (server benchmarks).", visibility: .hidden))
    var fake = false
    @Option(help: ArgumentHelp("With --fake, each batch takes this long, as a fixed stand-in for compute (replica benchmarks).", visibility: .hidden))
    var fakeComputeMs = 0.0

    func validate() throws {
        try ServerLogging.check(level: logLevel)
        if let networkDim, networkDim <= 0 { throw ValidationError("--network-dim must be positive, got \(networkDim)") }
        if idleTimeout <= 0 { throw ValidationError("--idle-timeout must be positive, got \(idleTimeout)") }
        if !(0...65535).contains(port) { throw ValidationError("--port must be 0...65535, got \(port)") }
        if !(0...65535).contains(metricsPort) { throw ValidationError("--metrics-port must be 0...65535, got \(metricsPort)") }
    }

    func run() throws {
        let logger = ServerLogging.start(level: logLevel, label: "axon")
        let path = try modelOption.resolvedPath()
        let started = Date()
        let loaded = try BackendLoader.load(path: path, threads: threads, maxBatch: maxBatch, maxSeq: maxSeq,
                                            maxBatchTokens: maxBatchTokens, fake: fake, fakeComputeSeconds: fakeComputeMs / 1000,
                                            generation: generation, precision: precisionOption.resolved)
        let loadSeconds = Date().timeIntervalSince(started)
        let maxSeq = loaded.maxSeq
        if let clamped = loaded.clampedToContext {
            logger.notice("--max-seq defaults to the model's context length \(clamped) (below \(RowLimit.defaultMaximum))")
        }

        var config = ServerConfiguration()
        config.host = host
        config.port = port
        config.metricsPort = metricsPort == 0 ? nil : metricsPort
        config.metricsHost = metricsHost
        config.networkDim = networkDim
        config.maxBatch = maxBatch
        config.maxSeq = maxSeq
        config.maxBatchTokens = maxBatchTokens
        config.maxQueue = maxQueue
        config.maxFrame = maxFrame.bytes
        config.maxResponse = maxResponse.bytes
        config.maxConnections = maxConnections
        config.maxConnectionsPerIP = maxConnectionsPerIp
        config.reservedConnections = reservedConnections
        config.maxSynapses = maxSynapses
        config.maxPendingResponseBytes = maxPendingResponse.bytes
        config.idleTimeout = idleTimeout
        config.defaultTimeoutMs = timeoutDefaultMs
        config.handleSignals = true
        generation.configure(&config)
        config.networkSpace = try networkSpace(model: loaded.tokenizer, logger: logger)
        try admission.configure(&config, keyOption: keyOption, logger: logger)
        // The machine line, which libraries run the products (when OpenBLAS runs an older core
        // than the CPU supports, the f32 products run on oneDNN instead: F32GEMM), and what
        // generation's decode steps read.
        logger.info("machine: \(SystemInfo.current().line)")
        if !fake {
            logger.info("\(precisionOption.startupLine)")
            logger.info("\(F32GEMM.startupLine(.preferred, requested: nil))")
            let why = generation.kvCachePrecision == nil ? "beside \(generation.decodePrecision) decode weights" : "as requested"
            let head = generation.decodePrecision.headFormat(sharedWithPrefill: precisionOption.resolved == .int8)?.rawValue ?? "f32"
            logger.info("generation: decode weights \(generation.decodePrecision) (LM head \(head)), KV cache \(generation.resolvedKVCachePrecision) (\(why))")
        }
        let server = try AxonServer(backend: loaded.backend, configuration: config, logger: logger)
        do { try server.start() } catch let error as UVError where error.code == -EADDRINUSE {
            throw Failure("cannot listen on \(host):\(port): the address is already in use (another axon or program holds it); stop that one, or pass --port N for another port (--port 0 picks a free one)")
        }
        let info = server.info
        logger.info("axon serving \(loaded.description) (\(path)) vocab \(info.vocabSize) hidden \(info.hiddenSize) network-dim \(info.networkDim); max batch \(maxBatch) seq \(maxSeq) batch-tokens \(maxBatchTokens) queue \(maxQueue) connections \(maxConnections); loaded in \(String(format: "%.2f", loadSeconds)) s; listening on \(host):\(server.port)\(server.metricsPort.map { " (metrics on \(metricsHost ?? host):\($0)/metrics)" } ?? "") as hotkey \(info.hotkey) uid \(info.uid) (SIGUSR1 prints counters)")
        server.waitUntilStopped()
    }

    /// The network token space over the model's tokenizer: from `--network-tokenizer`, else the
    /// fetched GPT-2 ranks when they are found (without them, a warning and model space only).
    private func networkSpace(model: any TextTokenizer, logger: Logger) throws -> NetworkTokenSpace? {
        guard let path = networkTokenizer ?? ModelOption.locate(TokenSpaceOption.networkRanksFileName) else {
            logger.warning("network space off: \(TokenSpaceOption.networkRanksFileName) was not found (looked in ./Models, the repository's Models/ and /models); run Models/fetch gpt2 or pass --network-tokenizer PATH to serve space NETWORK")
            return nil
        }
        let started = Date()
        let standard: NetworkStandardTokenizer
        do { standard = try Tokenizer.networkStandard(ranksPath: path) } catch {
            throw Failure("--network-tokenizer \(path) cannot be loaded: \(error) (expected GPT-2 ranks in tiktoken format: Models/fetch gpt2)")
        }
        let space = NetworkTokenSpace(standard: standard, model: model)
        logger.info("network space: \(space.name) from \(path) (sha256 \(space.sha256.prefix(12))…, \(space.vocabSize) tokens; phrases at most \(space.maxPhraseLength) long), translator built in \(String(format: "%.2f", Date().timeIntervalSince(started))) s")
        return space
    }
}
