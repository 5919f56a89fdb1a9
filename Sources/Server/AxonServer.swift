// The axon endpoint: one libuv loop thread for all socket I/O, one worker thread for inference
// (Scheduler), completions handed back through uv_async. See docs/PROTOCOL.md.
import CLibUV
import Foundation
import Identity
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

/// One accepted connection's state (loop thread only).
private final class Connection {
    let id: UInt64
    let socket: TCPSocket
    var buffer = ByteBuffer()
    var inFlight = 0
    var queuedOutputBytes = 0
    var pausedForBackpressure = false
    var closeWhenFlushed = false
    var closed = false
    var lastActivity: UInt64
    /// When the incomplete frame at the front of `buffer` began arriving.
    var partialSince: UInt64?
    let cancellation = CancellationFlag()

    init(id: UInt64, socket: TCPSocket, now: UInt64) {
        self.id = id
        self.socket = socket
        lastActivity = now
    }
}

/// A miner endpoint serving one `InferenceBackend` over TCP.
public final class AxonServer: @unchecked Sendable {
    public let configuration: ServerConfiguration
    public let modelInfo: ModelInfo
    private let logger: Logger
    private let networkDim: Int
    private let decoder: FrameDecoder
    private let validator: ForwardValidator
    private let counters = CounterStore()
    private var scheduler: Scheduler!

    // Loop-thread state.
    private var loop: EventLoop?
    private var listener: TCPSocket?
    private var wakeup: AsyncWakeup?
    private var sweeper: RepeatingTimer?
    private var drainTimer: RepeatingTimer?
    private var signalWatchers: [SignalWatcher] = []
    private var metricsEndpoint: MetricsEndpoint?
    private var connections: [UInt64: Connection] = [:]
    private var nextConnectionID: UInt64 = 1
    private var draining = false
    private var drainDeadline: UInt64 = 0

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
    public init(backend: InferenceBackend, configuration: ServerConfiguration, logger: Logger) throws {
        self.configuration = configuration
        self.logger = logger
        let info = backend.modelInfo
        modelInfo = info
        networkDim = configuration.networkDim ?? info.hiddenSize
        guard networkDim >= info.hiddenSize else {
            throw ServerError.networkDimTooSmall(networkDim: networkDim, hiddenSize: info.hiddenSize)
        }
        for (name, value) in [("--max-batch", configuration.maxBatch), ("--max-seq", configuration.maxSeq),
                              ("--max-batch-tokens", configuration.maxBatchTokens), ("--max-frame", configuration.maxFrame),
                              ("--max-response", configuration.maxResponse), ("--max-connections", configuration.maxConnections)]
        where value <= 0 {
            throw ServerError.invalidLimit(name: name, value: value)
        }
        decoder = FrameDecoder(maxFrameSize: configuration.maxFrame)
        validator = ForwardValidator(vocabSize: info.vocabSize, hiddenSize: info.hiddenSize, networkDim: networkDim,
                                     maxBatch: configuration.maxBatch, maxSeq: configuration.maxSeq,
                                     maxBatchTokens: configuration.maxBatchTokens, maxResponse: configuration.maxResponse)
        let encoder = SynapseEncoder(vocabSize: info.vocabSize, hiddenSize: info.hiddenSize, networkDim: networkDim)
        scheduler = Scheduler(backend: backend, encoder: encoder, maxQueue: configuration.maxQueue,
                              maxBatchRows: configuration.maxBatch, maxBatchTokens: configuration.maxBatchTokens,
                              deliver: { [unowned self] in self.deliver($0) })
        scheduler.metrics = counters.metrics
    }

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
        return info
    }

    /// Binds, then runs the loop and the worker on their own threads. `port` is valid on return.
    /// - Throws: `UVError` when the address cannot be bound.
    public func start() throws {
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
                self.reloadMetagraph()
            })
        }
        scheduler.start()
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
    public var starvationPromotions: Int { scheduler.promotionCount }

    public func counterSnapshot() -> ServerCounters {
        counters.snapshot(queueDepth: scheduler.depth, openConnections: lock.withLock { openConnectionCount })
    }

    /// The Prometheus page (what `GET /metrics` answers), from any thread.
    public func metricsPage() -> [UInt8] {
        counters.metrics.page(queueDepth: scheduler.depth, openConnections: lock.withLock { openConnectionCount })
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

    private func acceptConnection() {
        guard let loop, let listener, let socket = try? TCPSocket(loop: loop) else { return }
        do { try listener.accept(into: socket) } catch {
            logger.warning("accept failed: \(error)")
            socket.close()
            return
        }
        guard connections.count < configuration.maxConnections, !draining else {
            counters.refusedConnection()
            logger.debug("connection refused: \(connections.count) open, --max-connections \(configuration.maxConnections)")
            socket.close()
            return
        }
        let connection = Connection(id: nextConnectionID, socket: socket, now: monotonicNanoseconds())
        nextConnectionID += 1
        connections[connection.id] = connection
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
        lock.withLock { openConnectionCount = connections.count }
        // Writes cancelled by the close still call back; the connection may be gone by then.
        connection.socket.onRead = nil
        connection.socket.onEnd = nil
        connection.socket.onWriteDone = nil
        connection.socket.close()
        logger.debug("connection \(connection.id) closed: \(reason)")
    }

    private func received(_ bytes: UnsafeRawBufferPointer, on connection: Connection) {
        let now = monotonicNanoseconds()
        connection.lastActivity = now
        connection.buffer.append(bytes)
        var decodedAny = false
        while !connection.closeWhenFlushed && !connection.closed {
            do {
                guard let payload = try decoder.decode(&connection.buffer) else { break }
                decodedAny = true
                handleFrame(payload, on: connection)
            } catch {
                // The stream cannot be resynchronised after a bad length prefix: answer, then close.
                connection.socket.stopReading()
                connection.closeWhenFlushed = true
                send(Response(id: 0, code: .invalidRequest, message: "\(error)"), on: connection, arrival: now, method: .unspecified)
            }
        }
        connection.buffer.compact()
        if connection.buffer.readableBytes == 0 {
            connection.partialSince = nil
        } else if decodedAny || connection.partialSince == nil {
            connection.partialSince = now
        }
    }

    private func wrote(_ size: Int, on connection: Connection) {
        connection.queuedOutputBytes -= size
        connection.lastActivity = monotonicNanoseconds()
        if connection.pausedForBackpressure, connection.queuedOutputBytes <= configuration.maxQueuedOutputBytes / 2 {
            connection.pausedForBackpressure = false
            if !connection.closeWhenFlushed { connection.socket.startReading() }
        }
        if connection.closeWhenFlushed, connection.queuedOutputBytes == 0 {
            close(connection, reason: "closed after an unrecoverable framing error")
        }
    }

    /// Answers a frame at once; `method` is what the frame asked (`.unspecified` if it did not decode).
    private func send(_ response: Response, on connection: Connection, arrival: UInt64, method: Method = .forward) {
        record(method: method, code: response.code, id: response.id, connection: connection.id, arrival: arrival, tokens: 0)
        write(response.serializedFrame(), on: connection)
    }

    private func write(_ frame: [UInt8], on connection: Connection) {
        guard !connection.closed else { return }
        connection.queuedOutputBytes += frame.count
        connection.socket.write(frame)
        if connection.queuedOutputBytes > configuration.maxQueuedOutputBytes, !connection.pausedForBackpressure {
            connection.pausedForBackpressure = true
            connection.socket.stopReading()
        }
    }

    private func record(method: Method = .forward, code: ReturnCode, id: UInt64, connection: UInt64, arrival: UInt64,
                        tokens: Int) {
        let latency = monotonicNanoseconds() - arrival
        counters.record(method: method, code: code, latencyNs: latency, tokens: tokens)
        logger.debug("request \(id) on connection \(connection): \(code) in \(latency / 1000) µs")
    }

    // MARK: - Requests (loop thread)

    private func handleFrame(_ payload: [UInt8], on connection: Connection) {
        let arrival = monotonicNanoseconds()
        let request: Request
        do {
            request = try Request(serializedBytes: payload)
        } catch {
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
        var priority = AdmissionPriority.unregistered
        if let admission = configuration.admission {
            let auth = request.auth.map { AuthFields(hotkey: $0.hotkey, nonce: $0.nonce, uuid: $0.uuid, signature: $0.signature) }
            switch admission.admit(auth: auth, body: request.body, now: MonotonicTime(nanoseconds: arrival)) {
            case .admitted(let admitted, _):
                priority = admitted
            case .rejected(let rejection):
                counters.metrics.refused(rejection)
                send(Response(id: request.id, code: Self.code(for: rejection), message: rejection.description),
                     on: connection, arrival: arrival)
                return
            }
        }
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
        let timeoutMs = request.timeoutMs == 0 ? configuration.defaultTimeoutMs : request.timeoutMs
        let job = ForwardJob(connectionID: connection.id, requestID: request.id, arrival: arrival,
                             deadline: arrival + UInt64(timeoutMs) * 1_000_000, priority: priority,
                             forward: forward, cancellation: connection.cancellation)
        if scheduler.submit(job) {
            connection.inFlight += 1
        } else {
            send(Response(id: request.id, code: .backoff,
                          message: "the queue is full (--max-queue \(configuration.maxQueue)); retry later"),
                 on: connection, arrival: arrival)
        }
    }

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
        for completion in finished {
            record(code: completion.code, id: completion.requestID, connection: completion.connectionID,
                   arrival: completion.arrival, tokens: completion.tokens)
            guard let connection = connections[completion.connectionID] else { continue }
            connection.inFlight -= 1
            write(completion.frame, on: connection)
        }
        if stop { beginDrain() }
    }

    private func sweepIdleConnections() {
        let now = monotonicNanoseconds()
        let limit = UInt64(configuration.idleTimeout * 1e9)
        for connection in Array(connections.values) {
            if let since = connection.partialSince, now - since > limit {
                close(connection, reason: "a frame stayed incomplete for over \(configuration.idleTimeout) s")
            } else if connection.inFlight == 0, now - connection.lastActivity > limit {
                close(connection, reason: "idle for over \(configuration.idleTimeout) s")
            }
        }
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
        let pending = lock.withLock { !completions.isEmpty }
        let quiet = scheduler.isIdle && !pending
            && connections.values.allSatisfy { $0.inFlight == 0 && $0.queuedOutputBytes == 0 }
        if quiet || monotonicNanoseconds() > drainDeadline {
            if !quiet { logger.warning("drain timeout: closing with work still in flight") }
            finishShutdown()
        }
    }

    private func finishShutdown() {
        for connection in Array(connections.values) { close(connection, reason: "server shutdown") }
        metricsEndpoint?.close()
        metricsEndpoint = nil
        scheduler.stop(timeout: 1)
        lock.withLock { loopClosed = true }
        drainTimer?.close()
        sweeper?.close()
        wakeup?.close()
        for watcher in signalWatchers { watcher.close() }
        drainTimer = nil; sweeper = nil; signalWatchers = []
        logger.info("stopped: \(counterSnapshot())")
    }
}
