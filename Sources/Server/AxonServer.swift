// The axon endpoint: one libuv loop thread for all socket I/O, one worker thread for inference
// (Scheduler), completions handed back through uv_async. See docs/PROTOCOL.md.
import CLibUV
import Foundation
import Identity
import LibUV
import Logging
import Wire

/// Why a server could not be configured.
public enum ServerError: Error, CustomStringConvertible {
    case networkDimTooSmall(networkDim: Int, hiddenSize: Int)
    case invalidLimit(name: String, value: Int)

    public var description: String {
        switch self {
        case let .networkDimTooSmall(networkDim, hiddenSize):
            return "--network-dim \(networkDim) is smaller than the model's hidden size \(hiddenSize)"
        case let .invalidLimit(name, value):
            return "\(name) must be positive, got \(value)"
        }
    }
}

/// A FORWARD submitted to the scheduler and not answered yet.
private struct PendingForward {
    let requestID: UInt64
    let arrival: UInt64
    /// Response bytes reserved for it in the connection's and the server's budgets.
    let reservedBytes: Int
}

/// One accepted connection's state (loop thread only).
private final class Connection {
    let id: UInt64
    let socket: TCPSocket
    let peer: String
    let acceptedAt: UInt64
    var buffer = ByteBuffer()
    /// FORWARDs submitted and not answered, by job id: shutdown answers each one Unavailable.
    var pending: [UInt64: PendingForward] = [:]
    var reservedBytes = 0
    var queuedOutputBytes = 0
    /// Decoding paused (frames left in `buffer`, reads stopped past a read-ahead) while its pending
    /// response bytes are over budget.
    var pausedForBudget = false
    var closeWhenFlushed = false
    var closed = false
    var lastActivity: UInt64
    /// When the incomplete frame at the front of `buffer` began arriving.
    var partialSince: UInt64?
    /// A FORWARD from it was admitted: it is past the lifetime of a connection that never was.
    var admittedForward = false
    /// A FORWARD from a registered sender was admitted: it may use the reserved slots and is never
    /// evicted to make room.
    var staked = false
    let cancellation = CancellationFlag()

    /// Response bytes this connection holds or will hold: reserved for its FORWARDs plus queued to write.
    var outstandingBytes: Int { reservedBytes + queuedOutputBytes }

    init(id: UInt64, socket: TCPSocket, peer: String, now: UInt64) {
        self.id = id
        self.socket = socket
        self.peer = peer
        acceptedAt = now
        lastActivity = now
    }
}

/// A miner endpoint serving one `InferenceBackend` over TCP, or relaying its FORWARDs through a
/// `ForwardRelay` (the mixture axon).
public final class AxonServer: @unchecked Sendable {
    public let configuration: ServerConfiguration
    /// The model's, or for a relay the relay's as of start (INFO reads the relay's each time).
    public let modelInfo: ModelInfo
    private let logger: Logger
    private let networkDim: Int
    private let decoder: FrameDecoder
    private let validator: ForwardValidator
    private let counters = CounterStore()
    private let abuse: AbuseLog
    /// The worker for a local model; nil for a relay.
    private var scheduler: Scheduler?
    /// FORWARDs handed to a relay instead of a model (ForwardRelay.swift).
    private var relays: RelayQueue?
    private let relay: ForwardRelay?
    /// TEXT_SEQ_2_SEQ, when the backend generates (GenerationService.swift).
    private let generation: GenerationService?
    /// Replay and rate-limit state shared with other replicas (`--state`), on the loop.
    private let sharedState: RedisAdmissionStore?

    // Loop-thread state.
    private var loop: EventLoop?
    private var listener: TCPSocket?
    private var wakeup: AsyncWakeup?
    private var sweeper: RepeatingTimer?
    private var drainTimer: RepeatingTimer?
    private var signalWatchers: [SignalWatcher] = []
    private var metricsEndpoint: MetricsEndpoint?
    private var connections: [UInt64: Connection] = [:]
    private var connectionsPerIP: [String: Int] = [:]
    private var nextConnectionID: UInt64 = 1
    private var nextJobID: UInt64 = 1
    /// Σ `outstandingBytes` over every connection, against `maxPendingResponseBytes`.
    private var pendingResponseBytes = 0
    /// Connections whose reads are paused for the response budget, resumed as bytes drain.
    private var budgetPaused: Set<UInt64> = []
    private var draining = false
    private var drainDeadline: UInt64 = 0
    /// Past the drain: every pending FORWARD has been answered; late completions are ignored.
    private var shutDown = false
    private var closeDeadline: UInt64 = 0

    // Shared with other threads, under `lock`.
    private let lock = NSLock()
    private var completions: [Completion] = []
    private var shutdownRequested = false
    private var openConnectionCount = 0
    /// Set once the async handle is closed: later wake-ups must not touch it.
    private var loopClosed = false

    private let stopped = DispatchSemaphore(value: 0)
    /// The bound port, once `start()` returned.
    public private(set) var port = 0
    /// The bound port of the `/metrics` endpoint once `start()` returned; nil when it is off or
    /// its address could not be bound.
    public private(set) var metricsPort: Int?

    /// - Throws: `ServerError` for an impossible configuration.
    public convenience init(backend: InferenceBackend, configuration: ServerConfiguration, logger: Logger) throws {
        try self.init(backend: backend, relay: nil, configuration: configuration, logger: logger)
    }

    /// A server whose FORWARDs go to `relay`: network space only, admitted, checked and prioritised
    /// here, at most `configuration.maxRelaysInFlight` relayed at once and `maxQueue` waiting.
    /// - Throws: `ServerError` for an impossible configuration.
    public convenience init(relay: ForwardRelay, configuration: ServerConfiguration, logger: Logger) throws {
        try self.init(backend: nil, relay: relay, configuration: configuration, logger: logger)
    }

    private init(backend: InferenceBackend?, relay: ForwardRelay?, configuration: ServerConfiguration, logger: Logger) throws {
        self.configuration = configuration
        self.logger = logger
        self.relay = relay
        let info = backend?.modelInfo ?? relay?.modelInfo ?? ModelInfo(name: "", architecture: "", vocabSize: 1, hiddenSize: 1)
        modelInfo = info
        networkDim = configuration.networkDim ?? info.hiddenSize
        guard networkDim >= info.hiddenSize else {
            throw ServerError.networkDimTooSmall(networkDim: networkDim, hiddenSize: info.hiddenSize)
        }
        for (name, value) in [("--max-batch", configuration.maxBatch), ("--max-seq", configuration.maxSeq),
                              ("--max-batch-tokens", configuration.maxBatchTokens), ("--max-frame", configuration.maxFrame),
                              ("--max-response", configuration.maxResponse), ("--max-connections", configuration.maxConnections),
                              ("--max-connections-per-ip", configuration.maxConnectionsPerIP),
                              ("--max-synapses", configuration.maxSynapses),
                              ("--max-pending-response", configuration.maxPendingResponseBytes),
                              ("--max-relays", configuration.maxRelaysInFlight)]
        where value <= 0 {
            throw ServerError.invalidLimit(name: name, value: value)
        }
        decoder = FrameDecoder(maxFrameSize: configuration.maxFrame)
        validator = ForwardValidator(vocabSize: info.vocabSize, hiddenSize: info.hiddenSize, networkDim: networkDim,
                                     maxBatch: configuration.maxBatch, maxSeq: configuration.maxSeq,
                                     maxBatchTokens: configuration.maxBatchTokens, maxResponse: configuration.maxResponse,
                                     maxSynapses: configuration.maxSynapses, network: configuration.networkSpace)
        abuse = AbuseLog(interval: configuration.abuseLogInterval, now: monotonicNanoseconds(), registry: counters.metrics.registry)
        let encoder = SynapseEncoder(vocabSize: info.vocabSize, hiddenSize: info.hiddenSize, networkDim: networkDim,
                                     network: configuration.networkSpace)
        generation = try (backend as? GenerationBackend).map {
            try GenerationService(backend: $0, configuration: configuration)
        }
        if let shared = configuration.sharedState, let admission = configuration.admission {
            sharedState = RedisAdmissionStore(configuration: shared, receiver: admission.receiver,
                                              sessionsPerSender: admission.policy.noncesPerSender, local: admission.state,
                                              metrics: counters.metrics, logger: logger)
        } else {
            sharedState = nil
        }
        if let backend {
            let scheduler = Scheduler(backend: backend, encoder: encoder, maxQueue: configuration.maxQueue,
                                      maxBatchRows: configuration.maxBatch, maxBatchTokens: configuration.maxBatchTokens,
                                      decode: generation?.loop, deliver: { [weak self] in self?.deliver($0) })
            scheduler.metrics = counters.metrics
            self.scheduler = scheduler
        }
        if let relay {
            relays = RelayQueue(relay: relay, maxInFlight: configuration.maxRelaysInFlight, maxQueue: configuration.maxQueue,
                                deliver: { [weak self] in self?.deliver($0) })
        }
    }

    /// Jobs waiting for the worker or for a relay slot.
    private var queueDepth: Int { (scheduler?.depth ?? 0) + (relays?.depth ?? 0) }

    /// Where admission state lives and, when it is shared, its connection's state.
    public var admissionStateStatus: SharedStateStatus { sharedState?.status ?? .local }

    /// The INFO answer.
    public var info: InfoResponse {
        var info = InfoResponse()
        info.hotkey = configuration.hotkey
        if let metagraph = configuration.metagraph?.current {
            info.uid = metagraph.uid(of: configuration.hotkey)
            info.netuid = metagraph.netuid
        } else {
            info.uid = configuration.uid
            info.netuid = configuration.netuid
        }
        let modelInfo = relay?.modelInfo ?? modelInfo
        info.model = modelInfo.name
        info.architecture = modelInfo.architecture
        info.vocabSize = UInt32(modelInfo.vocabSize)
        info.hiddenSize = UInt32(modelInfo.hiddenSize)
        info.networkDim = UInt32(networkDim)
        info.maxBatch = UInt32(configuration.maxBatch)
        info.maxSeq = UInt32(configuration.maxSeq)
        info.maxBatchTokens = UInt32(configuration.maxBatchTokens)
        info.tokenizerSHA256 = modelInfo.tokenizerSHA256
        info.version = configuration.version
        info.bosID = modelInfo.bosID
        info.eosID = modelInfo.eosID
        info.padID = modelInfo.padID
        if let network = configuration.networkSpace?.identity ?? relay?.network {
            info.networkTokenizer = network.name
            info.networkTokenizerSHA256 = network.sha256
            info.networkVocabSize = UInt32(network.vocabSize)
        }
        info.admissionState = admissionStateStatus.info(configuration.sharedState?.endpoint)
        return info
    }

    /// Binds, then runs the loop and the worker on their own threads. `port` is valid on return.
    /// - Throws: `UVError` when the address cannot be bound.
    public func start() throws {
        // Response frames of a MiB or more are mmapped, so freeing one (written, or dropped with its
        // connection) returns the memory at once instead of leaving it in a malloc arena.
        mmapLargeAllocations(threshold: 1 << 20)
        // A peer that closes while an answer is being written must cost an EPIPE, not the process.
        signal(SIGPIPE, SIG_IGN)
        let loop = try EventLoop()
        self.loop = loop
        let listener = try TCPSocket(loop: loop)
        do {
            try listener.listen(host: configuration.host, port: configuration.port)
            port = try listener.localPort()
        } catch {
            listener.close()
            uv_run(loop.loop, UV_RUN_NOWAIT)
            throw error
        }
        listener.onConnection = { [unowned self] in self.acceptConnection() }
        self.listener = listener
        wakeup = try AsyncWakeup(loop: loop) { [unowned self] in self.drainCompletions() }
        let sweepMs = UInt64(max(10, min(1000, configuration.idleTimeout * 250)))
        sweeper = try RepeatingTimer(loop: loop, intervalMs: sweepMs) { [unowned self] in self.sweepIdleConnections() }
        startMetricsEndpoint(loop)
        try sharedState?.start(loop: loop)
        if configuration.handleSignals {
            for signal in [SIGINT, SIGTERM] {
                signalWatchers.append(try SignalWatcher(loop: loop, signal: signal) { [unowned self] in
                    self.logger.info("signal received: draining in-flight work (up to \(self.configuration.drainTimeout) s)")
                    self.beginDrain()
                })
            }
            signalWatchers.append(try SignalWatcher(loop: loop, signal: SIGUSR1) { [unowned self] in
                self.logger.info("counters: \(self.counterSnapshot())")
            })
            signalWatchers.append(try SignalWatcher(loop: loop, signal: SIGHUP) { [unowned self] in
                if self.configuration.metagraphPath != nil || self.relay == nil { self.reloadMetagraph() }
                self.relay?.reload()
            })
        }
        scheduler?.start()
        let thread = Thread { [self] in
            loop.run()
            self.loop = nil
            stopped.signal()
        }
        thread.name = "axon-loop"
        thread.start()
    }

    /// Graceful shutdown from any thread: stop accepting, finish in-flight work (up to the drain
    /// timeout), close every connection. `waitUntilStopped()` returns afterwards.
    public func shutdown() {
        lock.withLock {
            shutdownRequested = true
            if !loopClosed { wakeup?.send() }
        }
    }

    /// Blocks until the loop has stopped (after `shutdown()` or SIGINT/SIGTERM).
    public func waitUntilStopped() {
        stopped.wait()
        stopped.signal()
    }

    /// Reloads `configuration.metagraphPath` into `configuration.metagraph` (what SIGHUP does): the
    /// new snapshot replaces the old one atomically if it loads and validates; a bad file keeps the
    /// old snapshot and is logged with the reason.
    /// - Returns: the outcome, or nil when the server has no metagraph file.
    @discardableResult
    public func reloadMetagraph() -> Result<Metagraph, MetagraphError>? {
        guard let path = configuration.metagraphPath, let store = configuration.metagraph else {
            logger.warning("SIGHUP: no --metagraph file to reload")
            return nil
        }
        let result = store.reload(path: path)
        switch result {
        case .success(let metagraph):
            logger.info("metagraph reloaded from \(path): netuid \(metagraph.netuid), block \(metagraph.block), \(metagraph.neurons.count) neurons; this axon's uid \(metagraph.uid(of: configuration.hotkey))")
        case .failure(let error):
            logger.error("metagraph reload of \(path) refused, keeping the snapshot of block \(store.current.block): \(error)")
        }
        return result
    }

    /// How many requests the starvation guard has served ahead of a waiting higher-priority one.
    public var starvationPromotions: Int { scheduler?.promotionCount ?? 0 }

    /// Totals of refusals that point at abuse (also summarised in the log every `abuseLogInterval`).
    public var abuseCounts: AbuseCounts { abuse.snapshot }

    /// The engine throughput (tokens/s) the scheduler estimates the cost of a FORWARD with.
    public var estimatedTokensPerSecond: Double { scheduler?.estimatedTokensPerSecond ?? 0 }

    public func counterSnapshot() -> ServerCounters {
        counters.snapshot(queueDepth: queueDepth, openConnections: lock.withLock { openConnectionCount })
    }

    /// The Prometheus page (what `GET /metrics` answers), from any thread.
    public func metricsPage() -> [UInt8] {
        counters.metrics.page(queueDepth: queueDepth, openConnections: lock.withLock { openConnectionCount })
    }

    /// Binds `/metrics` if configured. A port that cannot be bound costs one warning, not the axon.
    private func startMetricsEndpoint(_ loop: EventLoop) {
        guard let port = configuration.metricsPort else { return }
        let host = configuration.metricsHost ?? configuration.host
        do {
            let endpoint = try MetricsEndpoint(loop: loop, host: host, port: port) { [unowned self] in self.metricsPage() }
            metricsEndpoint = endpoint
            metricsPort = endpoint.port
        } catch {
            logger.warning("metrics: cannot listen on \(host):\(port) (\(error)); serving without /metrics (choose another --metrics-port, or 0 to turn it off)")
        }
    }

    // MARK: - Connections (loop thread)

    /// Slots kept for staked connections: only with a loaded metagraph (who is staked is known).
    private var reservedSlots: Int {
        guard let admission = configuration.admission, !admission.metagraph.current.neurons.isEmpty else { return 0 }
        return min(configuration.maxConnections - 1, max(0, configuration.reservedConnections ?? configuration.maxConnections / 8))
    }

    private func refuse(_ socket: TCPSocket, perIP: Bool, reason: String) {
        counters.refusedConnection()
        abuse.count { $0.refusedConnections += 1; if perIP { $0.refusedPerIP += 1 } }
        logger.debug("connection refused: \(reason)")
        socket.close()
    }

    private func acceptConnection() {
        guard let loop, let listener, let socket = try? TCPSocket(loop: loop) else { return }
        do { try listener.accept(into: socket) } catch {
            logger.warning("accept failed: \(error)")
            socket.close()
            return
        }
        guard !draining else { return refuse(socket, perIP: false, reason: "shutting down") }
        let peer = socket.peerAddress() ?? "unknown"
        let fromPeer = connectionsPerIP[peer, default: 0]
        guard fromPeer < configuration.maxConnectionsPerIP else {
            return refuse(socket, perIP: true, reason: "\(peer) holds \(fromPeer), --max-connections-per-ip \(configuration.maxConnectionsPerIP)")
        }
        let reserved = reservedSlots
        let unproven = connections.values.filter { !$0.staked }
        if connections.count >= configuration.maxConnections || (reserved > 0 && unproven.count >= configuration.maxConnections - reserved) {
            // With a metagraph, the oldest connection that never proved a staked sender makes room.
            guard reserved > 0, let oldest = unproven.min(by: { $0.acceptedAt < $1.acceptedAt }) else {
                return refuse(socket, perIP: false, reason: "\(connections.count) open, --max-connections \(configuration.maxConnections)")
            }
            abuse.count { $0.evictedConnections += 1 }
            close(oldest, reason: "evicted for a new connection: no staked FORWARD, and only \(configuration.maxConnections - reserved) such connections may be open")
        }
        let connection = Connection(id: nextConnectionID, socket: socket, peer: peer, now: monotonicNanoseconds())
        nextConnectionID += 1
        connections[connection.id] = connection
        connectionsPerIP[peer, default: 0] += 1
        lock.withLock { openConnectionCount = connections.count }
        socket.onRead = { [unowned self, unowned connection] bytes in self.received(bytes, on: connection) }
        socket.onEnd = { [unowned self, unowned connection] status in
            self.close(connection, reason: String(cString: uv_err_name(status)))
        }
        socket.onWriteDone = { [unowned self, unowned connection] size in self.wrote(size, on: connection) }
        socket.startReading()
    }

    private func close(_ connection: Connection, reason: String) {
        guard !connection.closed else { return }
        connection.closed = true
        connection.cancellation.cancel()
        connections[connection.id] = nil
        if let count = connectionsPerIP[connection.peer], count > 1 {
            connectionsPerIP[connection.peer] = count - 1
        } else {
            connectionsPerIP[connection.peer] = nil
        }
        // Its answers are dropped with it (libuv cancels the queued writes and frees them).
        pendingResponseBytes -= connection.outstandingBytes
        budgetPaused.remove(connection.id)
        lock.withLock { openConnectionCount = connections.count }
        // Writes cancelled by the close still call back; the connection may be gone by then.
        connection.socket.onRead = nil
        connection.socket.onEnd = nil
        connection.socket.onWriteDone = nil
        connection.socket.close()
        logger.debug("connection \(connection.id) closed: \(reason)")
        resumePausedConnections()
    }

    /// While a connection's decoding is paused for its budget, reading goes on until this many bytes
    /// wait unread, so a peer that closes is still noticed (and its answers' memory freed) at once.
    private static let pausedReadAhead = 64 * 1024

    private func received(_ bytes: UnsafeRawBufferPointer, on connection: Connection) {
        connection.lastActivity = monotonicNanoseconds()
        connection.buffer.append(bytes)
        if connection.pausedForBudget {
            if connection.buffer.readableBytes >= Self.pausedReadAhead { connection.socket.stopReading() }
            return
        }
        decodeBuffered(on: connection)
    }

    /// Whether a connection must wait before another request of it is read: it already has answers
    /// pending and is over its own budget, or the server is over its total. One with nothing pending
    /// may always send one, so a reading client is served however many others do not read.
    private func isOverBudget(_ connection: Connection) -> Bool {
        connection.outstandingBytes > 0
            && (connection.outstandingBytes >= configuration.maxQueuedOutputBytes
                || pendingResponseBytes >= configuration.maxPendingResponseBytes)
    }

    /// Decodes and handles the complete frames in the connection's buffer, until it runs out or
    /// the connection goes over its response budget (then its reads pause).
    private func decodeBuffered(on connection: Connection) {
        let now = monotonicNanoseconds()
        var decodedAny = false
        while !connection.closeWhenFlushed && !connection.closed {
            if isOverBudget(connection) {
                if !connection.pausedForBudget {
                    connection.pausedForBudget = true
                    budgetPaused.insert(connection.id)
                }
                if connection.buffer.readableBytes >= Self.pausedReadAhead { connection.socket.stopReading() }
                break
            }
            do {
                guard let payload = try decoder.decode(&connection.buffer) else { break }
                decodedAny = true
                handleFrame(payload, on: connection)
            } catch {
                // The stream cannot be resynchronised after a bad length prefix: answer, then close.
                abuse.count { $0.badFrames += 1 }
                connection.socket.stopReading()
                connection.closeWhenFlushed = true
                send(Response(id: 0, code: .invalidRequest, message: "\(error)"), on: connection, arrival: now, method: .unspecified)
            }
        }
        guard !connection.closed else { return }
        connection.buffer.compact()
        if connection.buffer.readableBytes == 0 || connection.pausedForBudget {
            connection.partialSince = nil
        } else if decodedAny || connection.partialSince == nil {
            connection.partialSince = now
        }
    }

    /// Resumes paused connections that are back under budget: half their own budget (so reads do
    /// not flap on every write) and under the server's total.
    private func resumePausedConnections() {
        guard !budgetPaused.isEmpty, !shutDown else { return }
        for id in Array(budgetPaused) {
            guard let connection = connections[id] else { budgetPaused.remove(id); continue }
            let ownOK = connection.outstandingBytes <= configuration.maxQueuedOutputBytes / 2
            guard connection.outstandingBytes == 0 || (ownOK && pendingResponseBytes < configuration.maxPendingResponseBytes) else { continue }
            budgetPaused.remove(id)
            connection.pausedForBudget = false
            if !connection.closeWhenFlushed { connection.socket.startReading() }
            decodeBuffered(on: connection)
        }
    }

    private func wrote(_ size: Int, on connection: Connection) {
        connection.queuedOutputBytes -= size
        pendingResponseBytes -= size
        connection.lastActivity = monotonicNanoseconds()
        if connection.closeWhenFlushed, connection.queuedOutputBytes == 0 {
            close(connection, reason: shutDown ? "server shutdown" : "closed after an unrecoverable framing error")
            return
        }
        resumePausedConnections()
    }

    /// Answers a frame at once; `method` is what the frame asked (`.unspecified` if it did not decode).
    private func send(_ response: Response, on connection: Connection, arrival: UInt64, method: Method = .forward) {
        record(method: method, code: response.code, id: response.id, connection: connection.id, arrival: arrival, tokens: 0)
        write(response.serializedFrame(), on: connection)
    }

    private func write(_ frame: [UInt8], on connection: Connection) {
        guard !connection.closed else { return }
        connection.queuedOutputBytes += frame.count
        pendingResponseBytes += frame.count
        connection.socket.write(frame)
    }

    private func record(method: Method = .forward, code: ReturnCode, id: UInt64, connection: UInt64, arrival: UInt64,
                        tokens: Int) {
        let latency = monotonicNanoseconds() - arrival
        counters.record(method: method, code: code, latencyNs: latency, tokens: tokens)
        if code == .backoff || code == .unauthenticated {
            abuse.count { if code == .backoff { $0.backoffs += 1 } else { $0.unauthenticated += 1 } }
        }
        logger.debug("request \(id) on connection \(connection): \(code) in \(latency / 1000) µs")
    }

    // MARK: - Requests (loop thread)

    private func handleFrame(_ payload: [UInt8], on connection: Connection) {
        let arrival = monotonicNanoseconds()
        let request: Request
        do {
            request = try Request(serializedBytes: payload)
        } catch {
            abuse.count { $0.badFrames += 1 }
            send(Response(id: 0, code: .requestDeserializationException, message: "\(error)"), on: connection,
                 arrival: arrival, method: .unspecified)
            return
        }
        if draining {
            send(Response(id: request.id, code: .unavailable, message: "the server is shutting down"), on: connection,
                 arrival: arrival, method: request.method)
            return
        }
        switch request.method {
        case .ping:
            send(Response(id: request.id, code: .success), on: connection, arrival: arrival, method: .ping)
        case .info:
            send(Response(id: request.id, code: .success, info: info), on: connection, arrival: arrival, method: .info)
        case .forward:
            handleForward(request, on: connection, arrival: arrival)
        default:
            send(Response(id: request.id, code: .notImplemented,
                          message: "method \(request.method.rawValue) is not implemented; expected PING (1), INFO (2) or FORWARD (3)"),
                 on: connection, arrival: arrival, method: request.method)
        }
    }

    private func handleForward(_ request: Request, on connection: Connection, arrival: UInt64) {
        guard let admission = configuration.admission else {
            // No admission at all: the connection made FORWARD progress.
            connection.admittedForward = true
            return serveAdmitted(request, on: connection, arrival: arrival, priority: .unregistered)
        }
        let auth = request.auth.map { AuthFields(hotkey: $0.hotkey, nonce: $0.nonce, uuid: $0.uuid, signature: $0.signature) }
        let now = MonotonicTime(nanoseconds: arrival)
        let step = request.body.withUnsafeBytes { admission.screen(auth: auth, body: $0) }
        switch step {
        case .decided(let decision):
            admitted(decision, request, on: connection, arrival: arrival)
        case .needsState(let query):
            guard let sharedState else {
                let verdict = admission.state.check(sender: query.sender, uuid: query.uuid, nonce: query.nonce,
                                                    trusted: query.trusted, limit: admission.policy.rateLimit, now: now)
                return admitted(admission.decide(query, verdict), request, on: connection, arrival: arrival)
            }
            // The request waits for Redis off the loop's critical path: its bytes count against the
            // connection's budget meanwhile, so a client cannot pile up unbounded waiting requests.
            let held = request.body.count
            connection.reservedBytes += held
            pendingResponseBytes += held
            let connectionID = connection.id
            sharedState.check(query, limit: admission.policy.rateLimit, now: now) { [unowned self] outcome in
                // The connection may have closed while Redis answered: its request is dropped with it.
                guard let connection = self.connections[connectionID], !connection.closed else { return }
                connection.reservedBytes -= held
                self.pendingResponseBytes -= held
                defer { self.resumePausedConnections() }
                if self.draining {
                    return self.send(Response(id: request.id, code: .unavailable, message: "the server is shutting down"),
                                     on: connection, arrival: arrival)
                }
                switch outcome {
                case .unavailable(let message):
                    self.send(Response(id: request.id, code: .unavailable, message: message), on: connection, arrival: arrival)
                case .decided(let verdict):
                    self.admitted(admission.decide(query, verdict), request, on: connection, arrival: arrival)
                }
            }
        }
    }

    /// Answers an admission refusal, or goes on to serve the admitted request.
    private func admitted(_ decision: AdmissionDecision, _ request: Request, on connection: Connection, arrival: UInt64) {
        switch decision {
        case .admitted(let priority, _):
            connection.admittedForward = true
            if priority.registered { connection.staked = true }
            serveAdmitted(request, on: connection, arrival: arrival, priority: priority)
        case .rejected(let rejection):
            counters.metrics.refused(rejection)
            send(Response(id: request.id, code: Self.code(for: rejection), message: rejection.description),
                 on: connection, arrival: arrival)
        }
    }

    /// Validates an admitted FORWARD and queues it for the engine (or for generation).
    private func serveAdmitted(_ request: Request, on connection: Connection, arrival: UInt64, priority: AdmissionPriority) {
        if let relays, let relay {
            return handleRelayed(request, relays, relay, on: connection, arrival: arrival, priority: priority)
        }
        guard let scheduler else { return }
        let forward: ValidatedForward
        do {
            forward = try validator.validate(body: request.body)
            counters.metrics.asked(forward.synapses.map(\.type))
        } catch let refusal as Refusal {
            send(Response(id: request.id, code: refusal.code, message: refusal.message), on: connection, arrival: arrival)
            return
        } catch {
            send(Response(id: request.id, code: .unknownException, message: "\(error)"), on: connection, arrival: arrival)
            return
        }
        if let generation, forward.synapses.contains(where: { $0.type == .textSeq2Seq }) {
            return handleGeneration(request, forward, generation, on: connection, arrival: arrival, priority: priority)
        }
        let timeoutMs = request.timeoutMs == 0 ? configuration.defaultTimeoutMs : request.timeoutMs
        let job = ForwardJob(jobID: nextJobID, connectionID: connection.id, requestID: request.id, arrival: arrival,
                             deadline: arrival + UInt64(timeoutMs) * 1_000_000, priority: priority,
                             forward: forward, cancellation: connection.cancellation)
        nextJobID += 1
        settle(scheduler.submit(job), jobID: job.jobID, request, reservedBytes: forward.responseBytes, on: connection,
               arrival: arrival) { estimateUs, leftUs, tokensPerSecond in
            "refused without compute: it would finish in about \(estimateUs) µs (\(forward.tokenCount) tokens "
                + "at the measured \(Int(tokensPerSecond)) tokens/s, after the work queued ahead), but its deadline "
                + "leaves \(leftUs) µs"
        }
    }

    /// After a submit: an accepted job's response bytes are reserved until it is answered; a
    /// refused one is answered now (Backoff when the queue is full, Timeout when it is doomed).
    private func settle(_ outcome: SubmitOutcome, jobID: UInt64, _ request: Request, reservedBytes: Int, on connection: Connection,
                        arrival: UInt64, doomed: (_ estimateUs: UInt64, _ leftUs: UInt64, _ tokensPerSecond: Double) -> String) {
        switch outcome {
        case .queued:
            connection.pending[jobID] = PendingForward(requestID: request.id, arrival: arrival, reservedBytes: reservedBytes)
            connection.reservedBytes += reservedBytes
            pendingResponseBytes += reservedBytes
        case .full:
            send(Response(id: request.id, code: .backoff,
                          message: "the queue is full (--max-queue \(configuration.maxQueue)); retry later"),
                 on: connection, arrival: arrival)
        case let .doomed(estimateUs, leftUs, tokensPerSecond):
            send(Response(id: request.id, code: .timeout, message: doomed(estimateUs, leftUs, tokensPerSecond)),
                 on: connection, arrival: arrival)
        }
    }

    // MARK: - Relays (loop thread)

    /// A FORWARD for the relay: checked, then queued for a relay slot by priority.
    private func handleRelayed(_ request: Request, _ relays: RelayQueue, _ relay: ForwardRelay, on connection: Connection,
                               arrival: UInt64, priority: AdmissionPriority) {
        let timeoutMs = request.timeoutMs == 0 ? configuration.defaultTimeoutMs : request.timeoutMs
        let forward: RelayedForward
        do {
            forward = try validator.validateRelayed(body: request.body, networkVocabSize: relay.network.vocabSize,
                                                    deadline: arrival + UInt64(timeoutMs) * 1_000_000, priority: priority)
            counters.metrics.asked(forward.request.synapses.map(\.type))
        } catch let refusal as Refusal {
            return send(Response(id: request.id, code: refusal.code, message: refusal.message), on: connection, arrival: arrival)
        } catch {
            return send(Response(id: request.id, code: .unknownException, message: "\(error)"), on: connection, arrival: arrival)
        }
        let job = RelayJob(jobID: nextJobID, connectionID: connection.id, requestID: request.id, arrival: arrival,
                           forward: forward, cancellation: connection.cancellation)
        nextJobID += 1
        // An estimate (phrases of one id each): the answer's size is the relay's to choose.
        let reserved = forward.batch * forward.request.synapses.reduce(0) { $0 + Int($1.topk) * 8 + 4 }
        settle(relays.submit(job), jobID: job.jobID, request, reservedBytes: reserved, on: connection, arrival: arrival) { _, _, _ in
            "the relay cannot meet the deadline"
        }
    }

    // MARK: - Generation (loop thread)

    /// A FORWARD of TEXT_SEQ_2_SEQ synapses: checked, then queued for the worker's generation steps.
    private func handleGeneration(_ request: Request, _ forward: ValidatedForward, _ service: GenerationService,
                                  on connection: Connection, arrival: UInt64, priority: AdmissionPriority) {
        let validated: ValidatedGeneration
        do {
            validated = try service.validator.validate(forward, randomSeed: { UInt64.random(in: .min ... .max) })
        } catch let refusal as Refusal {
            return send(Response(id: request.id, code: refusal.code, message: refusal.message), on: connection, arrival: arrival)
        } catch {
            return send(Response(id: request.id, code: .unknownException, message: "\(error)"), on: connection, arrival: arrival)
        }
        let timeoutMs = request.timeoutMs == 0 ? configuration.defaultGenerationTimeoutMs : request.timeoutMs
        let deadline = arrival + UInt64(timeoutMs) * 1_000_000
        let job = GenerationJob(jobID: nextJobID, connectionID: connection.id, requestID: request.id, arrival: arrival,
                                deadline: deadline, waitUntil: min(deadline, arrival + UInt64(configuration.generationWaitMs) * 1_000_000),
                                priority: priority, generation: validated, cancellation: connection.cancellation)
        nextJobID += 1
        guard let scheduler else { return }
        settle(scheduler.submitGeneration(job), jobID: job.jobID, request, reservedBytes: validated.responseBytes, on: connection,
               arrival: arrival) { estimateUs, leftUs, tokensPerSecond in
            "refused without compute: reading its \(validated.promptTokens) prompt tokens would take about \(estimateUs) µs "
                + "at the measured \(Int(tokensPerSecond)) tokens/s, but its deadline leaves \(leftUs) µs"
        }
    }

    /// Timings of the most recent finished generations (at most 1,024), oldest first.
    public var recentGenerations: [GenerationRecord] { scheduler?.recentGenerations ?? [] }

    /// Generations waiting, running and decoding, as of the worker's last step.
    public var generationStatus: GenerationStatus { scheduler?.generationStatus ?? GenerationStatus(waiting: 0, running: 0, decodingRows: 0) }

    /// The return code each admission refusal maps to (see docs/PROTOCOL.md).
    static func code(for rejection: AdmissionRejection) -> ReturnCode {
        switch rejection {
        case .unauthenticated: return .unauthenticated
        case .senderUnknown: return .senderUnknown
        case .blacklisted: return .blacklisted
        case .rateLimited: return .backoff
        }
    }

    // MARK: - Completions, idle sweep, shutdown (loop thread)

    /// Worker thread: hand finished frames to the loop.
    private func deliver(_ finished: [Completion]) {
        guard !finished.isEmpty else { return }
        lock.withLock {
            completions.append(contentsOf: finished)
            if !loopClosed { wakeup?.send() }
        }
    }

    private func drainCompletions() {
        let (finished, stop) = lock.withLock { () -> ([Completion], Bool) in
            defer { completions.removeAll(keepingCapacity: true) }
            return (completions, shutdownRequested)
        }
        for completion in finished where !shutDown {
            let connection = connections[completion.connectionID]
            // Answered already (Unavailable at shutdown): the late result is dropped.
            if let connection, connection.pending[completion.jobID] == nil { continue }
            record(code: completion.code, id: completion.requestID, connection: completion.connectionID,
                   arrival: completion.arrival, tokens: completion.tokens)
            guard let connection, let pending = connection.pending.removeValue(forKey: completion.jobID) else { continue }
            connection.reservedBytes -= pending.reservedBytes
            pendingResponseBytes -= pending.reservedBytes
            write(completion.frame, on: connection)
        }
        resumePausedConnections()
        if stop { beginDrain() }
    }

    private func sweepIdleConnections() {
        let now = monotonicNanoseconds()
        let limit = UInt64(configuration.idleTimeout * 1e9)
        for connection in Array(connections.values) {
            if let since = connection.partialSince, now - since > limit {
                close(connection, reason: "a frame stayed incomplete for over \(configuration.idleTimeout) s")
            } else if !connection.admittedForward, now - connection.acceptedAt > limit {
                // PING and INFO do not keep a slot: without an admitted FORWARD a connection lives one idle timeout.
                abuse.count { $0.expiredUnproven += 1 }
                close(connection, reason: "no FORWARD admitted within \(configuration.idleTimeout) s of accept")
            } else if connection.pending.isEmpty, now - connection.lastActivity > limit {
                close(connection, reason: "idle for over \(configuration.idleTimeout) s")
            }
        }
        abuse.summarize(now: now, logger: logger)
    }

    private func beginDrain() {
        guard !draining, let loop else { return }
        draining = true
        listener?.close()
        listener = nil
        drainDeadline = monotonicNanoseconds() + UInt64(configuration.drainTimeout * 1e9)
        drainTimer = try? RepeatingTimer(loop: loop, intervalMs: 5) { [unowned self] in self.checkDrained() }
        if drainTimer == nil { finishShutdown() }
    }

    private func checkDrained() {
        guard !shutDown else { return }
        let pending = lock.withLock { !completions.isEmpty }
        let quiet = (scheduler?.isIdle ?? true) && (relays?.isIdle ?? true) && !pending && (sharedState?.waitingCount ?? 0) == 0
            && connections.values.allSatisfy { $0.pending.isEmpty && $0.queuedOutputBytes == 0 }
        if quiet || monotonicNanoseconds() > drainDeadline {
            if !quiet { logger.warning("drain timeout: answering the FORWARDs still pending Unavailable") }
            finishShutdown()
        }
    }

    /// The drain is over: the worker stops after its batch, every FORWARD still pending is answered
    /// Unavailable, and connections close once those answers are written (or after one more second).
    private func finishShutdown() {
        guard !shutDown else { return }
        scheduler?.stop()
        relays?.stop()
        let now = monotonicNanoseconds()
        for connection in Array(connections.values) {
            for (_, pending) in connection.pending.sorted(by: { $0.key < $1.key }) {
                send(Response(id: pending.requestID, code: .unavailable,
                              message: "the server shut down before this request finished (drain timeout \(configuration.drainTimeout) s)"),
                     on: connection, arrival: pending.arrival)
            }
            pendingResponseBytes -= connection.reservedBytes
            connection.reservedBytes = 0
            connection.pending = [:]
            connection.socket.stopReading()
            connection.closeWhenFlushed = true
        }
        shutDown = true
        for connection in Array(connections.values) where connection.queuedOutputBytes == 0 {
            close(connection, reason: "server shutdown")
        }
        closeDeadline = now + 1_000_000_000
        drainTimer?.close()
        drainTimer = nil
        if let loop, let timer = try? RepeatingTimer(loop: loop, intervalMs: 5, action: { [unowned self] in self.checkClosed() }) {
            drainTimer = timer
        } else {
            closeEverything()
        }
    }

    private func checkClosed() {
        if connections.isEmpty || monotonicNanoseconds() > closeDeadline { closeEverything() }
    }

    private func closeEverything() {
        for connection in Array(connections.values) { close(connection, reason: "server shutdown") }
        metricsEndpoint?.close()
        metricsEndpoint = nil
        sharedState?.close()
        lock.withLock { loopClosed = true }
        drainTimer?.close()
        sweeper?.close()
        wakeup?.close()
        for watcher in signalWatchers { watcher.close() }
        drainTimer = nil; sweeper = nil; signalWatchers = []
        logger.info("stopped: \(counterSnapshot())")
    }
}

/// glibc's `mallopt(M_MMAP_THRESHOLD, threshold)`: blocks of `threshold` bytes or more are mmapped
/// (a fixed threshold also stops glibc raising it after each large free, which left hundreds of MB
/// of freed response frames in the heap). Looked up at run time: `<malloc.h>` is not in Glibc's module.
private func mmapLargeAllocations(threshold: Int32) {
    #if os(Linux)
    typealias Mallopt = @convention(c) (Int32, Int32) -> Int32
    let mmapThresholdParameter: Int32 = -3  // M_MMAP_THRESHOLD in <malloc.h>
    guard let symbol = dlsym(UnsafeMutableRawPointer(bitPattern: 0), "mallopt") else { return }
    _ = unsafeBitCast(symbol, to: Mallopt.self)(mmapThresholdParameter, threshold)
    #endif
}
