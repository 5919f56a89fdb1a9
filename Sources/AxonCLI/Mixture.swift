import ArgumentParser
import Foundation
import Identity
import LibUV
import Logging
import Mixture
import Server
import Tokenizer

/// `axon mixture`: an axon whose model is other axons (docs/VALIDATING.md, "Serving a mixture").
/// The protocol side is `axon serve`'s (AxonServer); the experts and their mixing are Mixture's.
struct MixtureCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "mixture",
        abstract: "Serve a mixture of other axons: network-space TEXT_CAUSAL_LM_NEXT answered by mixing the top experts of weights.json.",
        discussion: """
        Each network-space TEXT_CAUSAL_LM_NEXT is sent, signed with this axon's hotkey, to the --experts UIDs of \
        --weights with the largest weight (they must be in --endpoints, and in --metagraph when it has neurons), each \
        under --upstream-deadline-ms or less when the caller's deadline leaves less (a tenth of it, at least 50 ms, is \
        kept for mixing). The answers are mixed with weights proportional to exp(-ema_loss) (Validator.PhraseMixture: \
        each expert's floor stands for the phrases it did not list); experts that time out, fail or answer malformed \
        are left out and the rest renormalised. Other synapses and model space are answered NotImplemented. \
        SIGHUP reloads --metagraph and --weights (a file that fails to load keeps the old one).
        """)
    @Option(help: "JSON list of {uid, hotkey, host, port}: where the experts listen.") var endpoints: String
    @Option(help: "The validator's weights.json (axon validate --weights-out); SIGHUP reloads it.") var weights: String
    @Option(help: "Address to listen on.") var host = "127.0.0.1"
    @Option(help: "Port to listen on (0 picks a free one).") var port = 8091
    @Option(help: "Experts asked per request: the top N of --weights by weight.") var experts = 2
    @Option(help: "Milliseconds each expert gets at most (less when the caller's deadline leaves less).") var upstreamDeadlineMs = 8_000
    @Option(help: "Port of the Prometheus GET /metrics endpoint (0 turns it off).") var metricsPort = 7091
    @Option(help: "Address of the metrics endpoint (default: --host).") var metricsHost: String?
    @Option(help: "Most rows in one request.") var maxBatch = 64
    @Option(help: "Most standard tokens per row.") var maxSeq = 2048
    @Option(help: "Most standard tokens in one request.") var maxBatchTokens = 4096
    @Option(help: "Requests relayed at once; the rest wait by stake priority.") var maxRelays = 32
    @Option(help: "Requests waiting beyond this are answered Backoff.") var maxQueue = 256
    @Option(help: "Connections beyond this are refused at accept.") var maxConnections = 1024
    @Option(help: "Connections one IP address may hold open.") var maxConnectionsPerIp = 256
    @Option(help: "Deadline for requests with timeout_ms = 0.") var timeoutDefaultMs: UInt32 = 12_000
    @Option(help: "Log level: trace, debug (one line per left-out expert), info, warning, error.") var logLevel = "info"
    @OptionGroup(title: "Identity and admission") var keyOption: KeyOption
    @OptionGroup(title: "Identity and admission") var admission: AdmissionOptions

    func validate() throws {
        try ServerLogging.check(level: logLevel)
        if experts < 1 { throw ValidationError("--experts must be at least 1, got \(experts)") }
        if upstreamDeadlineMs < 1 { throw ValidationError("--upstream-deadline-ms must be at least 1, got \(upstreamDeadlineMs)") }
        if !(0...65535).contains(port) { throw ValidationError("--port must be 0...65535, got \(port)") }
        if !(0...65535).contains(metricsPort) { throw ValidationError("--metrics-port must be 0...65535, got \(metricsPort)") }
    }

    func run() throws {
        let logger = ServerLogging.start(level: logLevel, label: "axon-mixture")
        var config = ServerConfiguration()
        config.host = host
        config.port = port
        config.metricsPort = metricsPort == 0 ? nil : metricsPort
        config.metricsHost = metricsHost
        config.maxBatch = maxBatch
        config.maxSeq = maxSeq
        config.maxBatchTokens = maxBatchTokens
        config.maxRelaysInFlight = maxRelays
        config.maxQueue = maxQueue
        config.maxConnections = maxConnections
        config.maxConnectionsPerIP = maxConnectionsPerIp
        config.defaultTimeoutMs = timeoutDefaultMs
        config.handleSignals = true
        try admission.configure(&config, keyOption: keyOption, logger: logger)
        let standard = try TokenSpaceOption.networkStandard()
        let network = RelayNetworkIdentity(name: NetworkStandardTokenizer.name, sha256: standard.ranksSHA256,
                                           vocabSize: standard.tokenizer.vocabSize)
        var settings = MixtureSettings()
        settings.experts = experts
        settings.upstreamDeadline = Double(upstreamDeadlineMs) / 1000
        let relay: MixtureRelay
        do {
            relay = try MixtureRelay(network: network, settings: settings, hotkey: try keyOption.load(defaultName: "miner"),
                                     endpointsPath: endpoints, weightsPath: weights,
                                     metagraph: config.metagraph ?? MetagraphStore(Metagraph.empty()), logger: logger)
        } catch {
            throw Failure("\(error)")
        }
        let server = try AxonServer(relay: relay, configuration: config, logger: logger)
        do { try server.start() } catch let error as UVError where error.code == -EADDRINUSE {
            throw Failure("cannot listen on \(host):\(port): the address is already in use; pass --port N for another port (--port 0 picks a free one)")
        }
        let roster = relay.experts
        let skipped = roster.skipped.isEmpty ? "" : "; passed over: " + roster.skipped.joined(separator: "; ")
        let metrics = server.metricsPort.map { " (metrics on \(metricsHost ?? host):\($0)/metrics)" } ?? ""
        logger.info("axon mixture serving \(roster.description) from \(weights) (step \(roster.step))\(skipped); upstream deadline \(upstreamDeadlineMs) ms; listening on \(host):\(server.port)\(metrics) as hotkey \(server.info.hotkey) (SIGHUP reloads the weights)")
        server.waitUntilStopped()
        let outcomes = relay.expertOutcomes.sorted { $0.key < $1.key }
            .map { uid, counts in "uid \(uid): " + counts.sorted { $0.key < $1.key }.map { "\($0.value) \($0.key)" }.joined(separator: ", ") }
        let summary = outcomes.isEmpty ? "none asked" : outcomes.joined(separator: "; ")
        logger.info("experts' outcomes: \(summary)")
    }
}
