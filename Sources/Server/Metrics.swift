// The server's Prometheus registry (swift-prometheus): one typed handle per series, created up
// front so the hot path never touches the registry's name table, and the label sets are closed
// (a client cannot grow them). Names are Bittensor v3's axon names where it had one. The page
// format is the library's; MetricsEndpoint serves it. See docs/PROTOCOL.md, "Metrics".
#if canImport(Glibc)
import Glibc
#endif
import Identity
import Prometheus
import Wire

/// Where a FORWARD's time went, as the scheduler measures it (`axon_engine_seconds_total{phase}`).
enum EnginePhase: String, CaseIterable {
    /// Arrival until the job's batch started, summed over jobs.
    case queue
    /// The backend's forward pass, per batch.
    case compute
    /// Encoding every synapse's tensors and serialising the responses, per batch.
    case encode
    /// Generation steps (decode tokens and prefill chunks), per step.
    case generate
}

/// The `axon_blacklisted_total{reason}` label of each admission refusal.
extension AdmissionRejection {
    var metricReason: String {
        switch self {
        case .unauthenticated: return "unauthenticated"
        case .senderUnknown: return "sender_unknown"
        case .blacklisted(_, .denied): return "denied"
        case .blacklisted(_, .belowMinStake): return "min_stake"
        case .blacklisted(_, .noValidatorPermit): return "no_validator_permit"
        case .rateLimited: return "rate_limited"
        }
    }

    static let metricReasons = ["unauthenticated", "sender_unknown", "denied", "min_stake", "no_validator_permit",
                                "rate_limited"]
}

/// The Prometheus metrics of one `AxonServer`. Thread-safe: the loop records answers and
/// refusals, the worker records batches, the endpoint renders pages.
final class ServerMetrics: Sendable {
    /// `axon_forward_latency_seconds` bucket bounds: Bittensor's 12 s validator timeout is the last.
    static let latencyBuckets: [Double] = [0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2, 4, 8, 12]
    /// `axon_batch_rows` bucket bounds: powers of two up to past `--max-batch`'s default of 64.
    static let batchRowBuckets: [Double] = [1, 2, 4, 8, 16, 32, 64, 128, 256]
    /// `axon_state_redis_seconds` bucket bounds: a loopback round trip is tens of µs, a LAN one
    /// hundreds; the last bound is past the default check timeout (500 ms).
    static let stateRoundTripBuckets: [Double] = [0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1]
    /// The label an out-of-range synapse type or method counts under, so labels stay a closed set.
    static let otherLabel = "other"

    let registry = PrometheusCollectorRegistry()
    private let totalForward: Counter
    private let forwardLatency: ValueHistogram
    /// Indexed by `ReturnCode.rawValue` (0...25).
    private let codes: [Counter]
    /// Indexed by `SynapseType.rawValue` (0...4), then `other`.
    private let synapses: [Counter]
    /// Indexed like `methods`, then `other`.
    private let requests: [Counter]
    /// The methods counted under their own `axon_requests_total{method}` label.
    private static let methods: [Method] = [.ping, .info, .forward]
    private let tokens: Counter
    private let batchRows: ValueHistogram
    private let engineSeconds: [EnginePhase: Counter]
    private let blacklisted: [String: Counter]
    private let refusedConnections: Counter
    private let queueDepth: Gauge
    private let connections: Gauge
    private let residentMemory: Gauge
    private let generatedTokens: Counter
    private let activeSequences: Gauge
    private let kvCacheBytes: Gauge
    private let stateRoundTrip: ValueHistogram
    private let stateUp: Gauge
    private let stateFallbacks: Counter
    private let stateUnavailable: Counter

    init() {
        let r = registry
        func counter(_ name: String, _ help: String, _ labels: [(String, String)] = []) -> Counter {
            r.makeCounter(descriptor: MetricNameDescriptor(metricName: name, unitName: "", helpText: help), labels: labels)
        }
        func gauge(_ name: String, _ help: String) -> Gauge {
            r.makeGauge(descriptor: MetricNameDescriptor(metricName: name, unitName: "", helpText: help))
        }
        func histogram(_ name: String, _ help: String, _ buckets: [Double]) -> ValueHistogram {
            r.makeValueHistogram(descriptor: MetricNameDescriptor(metricName: name, unitName: "", helpText: help),
                                 labels: [], buckets: buckets)
        }
        totalForward = counter("axon_total_forward", "FORWARD requests answered, whatever the code.")
        forwardLatency = histogram("axon_forward_latency_seconds",
                                   "FORWARD latency, from the frame's arrival to its answer being queued for writing.",
                                   Self.latencyBuckets)
        codes = ReturnCode.names.map {
            counter("axon_forward_codes_total", "FORWARD answers by return code.", [("code", $0)])
        }
        let synapseNames = (0...4).map { SynapseType(rawValue: $0).description } + [Self.otherLabel]
        synapses = synapseNames.map {
            counter("axon_forward_synapses_total", "Synapses asked for by FORWARDs that passed admission and validation.",
                    [("synapse", $0)])
        }
        requests = (Self.methods.map(\.description) + [Self.otherLabel]).map {
            counter("axon_requests_total", "Frames answered, by method (other: an unknown method or an undecodable frame).",
                    [("method", $0)])
        }
        tokens = counter("axon_tokens_total", "Tokens computed for successful FORWARDs.")
        batchRows = histogram("axon_batch_rows", "Rows in each dynamic batch the engine ran.", Self.batchRowBuckets)
        engineSeconds = Dictionary(uniqueKeysWithValues: EnginePhase.allCases.map {
            ($0, counter("axon_engine_seconds_total",
                         "Scheduler time by phase: queue (summed over jobs), compute and encode (per batch), generate (per step).",
                         [("phase", $0.rawValue)]))
        })
        blacklisted = Dictionary(uniqueKeysWithValues: AdmissionRejection.metricReasons.map {
            ($0, counter("axon_blacklisted_total", "FORWARDs refused by admission, by reason.", [("reason", $0)]))
        })
        refusedConnections = counter("axon_refused_connections_total",
                                     "Connections closed at accept because --max-connections were open.")
        queueDepth = gauge("axon_queue_depth", "FORWARD jobs waiting for the engine.")
        connections = gauge("axon_connections", "Open client connections.")
        residentMemory = gauge("process_resident_memory_bytes", "Resident memory size in bytes.")
        generatedTokens = counter("axon_generated_tokens_total", "Tokens chosen by TEXT_SEQ_2_SEQ decoding (one per live sequence per step).")
        activeSequences = gauge("axon_active_sequences", "Sequences (rows and beams of running generations) holding KV cache.")
        kvCacheBytes = gauge("axon_kv_cache_bytes", "KV cache bytes held by the running generations' sequences.")
        stateRoundTrip = histogram("axon_state_redis_seconds",
                                   "Round trip of each shared admission check (serve --state): the script's EVALSHA, sent to answered.",
                                   Self.stateRoundTripBuckets)
        stateUp = gauge("axon_state_redis_up", "1 while the shared admission state's Redis connection is up (serve --state), else 0.")
        stateFallbacks = counter("axon_state_fallback_total",
                                 "Admission checks decided by this replica's own tables because Redis was unreachable (--state-fallback local).")
        stateUnavailable = counter("axon_state_unavailable_total",
                                   "FORWARDs answered Unavailable because the shared admission state was unreachable.")
    }

    /// One answered frame. Only FORWARDs count toward the forward series and the latency.
    func answered(method: Method, code: ReturnCode, latencyNs: UInt64, tokens count: Int) {
        requests[Self.methods.firstIndex(of: method) ?? Self.methods.count].increment()
        guard method == .forward else { return }
        totalForward.increment()
        if codes.indices.contains(Int(code.rawValue)) { codes[Int(code.rawValue)].increment() }
        forwardLatency.record(Double(latencyNs) / 1e9)
        if count > 0 { tokens.increment(by: Int64(count)) }
    }

    func asked(_ synapseTypes: [SynapseType]) {
        for type in synapseTypes { synapses[Self.index(type.rawValue, count: synapses.count)].increment() }
    }

    func refused(_ rejection: AdmissionRejection) { blacklisted[rejection.metricReason]?.increment() }

    func refusedConnection() { refusedConnections.increment() }

    /// One batch the worker ran: its rows and the time of each phase.
    func ranBatch(rows: Int, seconds: [EnginePhase: Double]) {
        batchRows.record(Double(rows))
        for (phase, value) in seconds where value > 0 { engineSeconds[phase]?.increment(by: value) }
    }

    /// One generation step: the tokens it chose and its engine time.
    func ranStep(generatedTokens count: Int, seconds: Double) {
        if count > 0 { generatedTokens.increment(by: Int64(count)) }
        if seconds > 0 { engineSeconds[.generate]?.increment(by: seconds) }
    }

    /// What the running generations hold, after each step (read at scrape time).
    func generationState(activeSequences sequences: Int, kvCacheBytes bytes: Int) {
        activeSequences.set(to: Double(sequences))
        kvCacheBytes.set(to: Double(bytes))
    }

    /// The shared admission state's connection went up or down.
    func sharedState(up: Bool) { stateUp.set(to: up ? 1 : 0) }

    func sharedStateRoundTrip(seconds: Double) { stateRoundTrip.record(seconds) }

    func sharedStateFallback() { stateFallbacks.increment() }

    func sharedStateUnavailable() { stateUnavailable.increment() }

    /// Time jobs spent queued before a batch that did not run (deadline passed, engine idle).
    func queued(seconds: Double) {
        if seconds > 0 { engineSeconds[.queue]?.increment(by: seconds) }
    }

    /// The page in the Prometheus text format 0.0.4, with the gauges read now.
    func page(queueDepth depth: Int, openConnections: Int) -> [UInt8] {
        queueDepth.set(to: Double(depth))
        connections.set(to: Double(openConnections))
        if let rss = Self.residentBytes() { residentMemory.set(to: Double(rss)) }
        return registry.emitToBuffer()
    }

    /// A label index for an open enum value: its own slot when known, else the last (`other`).
    private static func index(_ raw: Int32, count: Int) -> Int {
        raw >= 0 && Int(raw) < count - 1 ? Int(raw) : count - 1
    }

    /// Resident set size from /proc/self/statm (its second field, in pages); nil off Linux.
    static func residentBytes() -> Int? {
        #if os(Linux)
        let fd = open("/proc/self/statm", O_RDONLY)
        guard fd >= 0 else { return nil }
        defer { close(fd) }
        var bytes = [UInt8](repeating: 0, count: 128)
        let n = bytes.withUnsafeMutableBytes { read(fd, $0.baseAddress, $0.count) }
        guard n > 0 else { return nil }
        let fields = bytes[..<n].split(separator: UInt8(ascii: " "))
        guard fields.count > 1, let pages = Int(String(decoding: fields[1], as: UTF8.self)) else { return nil }
        return pages * Int(sysconf(Int32(_SC_PAGESIZE)))
        #else
        return nil
        #endif
    }
}
