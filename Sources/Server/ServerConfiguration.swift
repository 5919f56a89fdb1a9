import Identity
import Wire

/// Limits and addresses of an `AxonServer` (the `axon serve` options).
public struct ServerConfiguration: Sendable {
    public var host = "127.0.0.1"
    /// 0 picks an ephemeral port (read it back from `AxonServer.port`).
    public var port = 8091
    /// The port of the Prometheus `/metrics` endpoint; nil turns it off (the default here; `axon
    /// serve` uses 7091), 0 picks an ephemeral port (read it back from `AxonServer.metricsPort`).
    public var metricsPort: Int?
    /// The metrics endpoint's address; nil means `host`.
    public var metricsHost: String?
    /// Hidden states are zero-padded, centred, to this width; nil means the model's hidden size.
    public var networkDim: Int?
    /// The network's standard token space (`space = NETWORK` requests, INFO fields 17–19); nil
    /// answers such requests NotImplemented. Its model tokenizer must be the backend's.
    public var networkSpace: NetworkTokenSpace?
    public var maxBatch = 64
    public var maxSeq = 2048
    public var maxBatchTokens = 4096
    public var maxQueue = 256
    public var maxFrame = 16 * 1024 * 1024
    public var maxResponse = 256 * 1024 * 1024
    public var maxConnections = 1024
    /// Connections one IP address may hold open at once (beyond: refused at accept).
    public var maxConnectionsPerIP = 256
    /// With a loaded metagraph, slots kept for connections that sent an admitted FORWARD from a
    /// registered sender: other connections may hold at most `maxConnections - reservedConnections`,
    /// and past that a new connection closes the oldest of them. nil: an eighth of `maxConnections`.
    public var reservedConnections: Int?
    /// Most synapses in one FORWARD (beyond: RequestShapeException).
    public var maxSynapses = 64
    /// A relaying server's FORWARDs relayed at once (`AxonServer(relay:)`); the rest wait, by
    /// priority, up to `maxQueue`.
    public var maxRelaysInFlight = 32
    /// Seconds a connection may stay idle, or leave a frame incomplete, before it is closed. A
    /// connection that has not had a FORWARD admitted is closed this long after it was accepted,
    /// whatever else it sends (PING does not keep a slot).
    public var idleTimeout: Double = 60
    public var defaultTimeoutMs: UInt32 = 12_000
    /// Response bytes one connection may have pending (queued for its FORWARDs or waiting to be
    /// written). Past it the connection's reads pause and its next requests wait unread.
    public var maxQueuedOutputBytes = 8 * 1024 * 1024
    /// Response bytes all connections together may have pending. Past it, connections that already
    /// have an answer pending pause; one with nothing pending may still send one request.
    public var maxPendingResponseBytes = 1 << 30
    /// Seconds between the info-level summaries of refused connections, bad frames and Backoffs.
    public var abuseLogInterval: Double = 10
    /// How long shutdown waits for in-flight work.
    public var drainTimeout: Double = 5
    /// Handle SIGINT/SIGTERM (graceful shutdown) and SIGUSR1 (print counters) on the loop.
    public var handleSignals = false
    /// This axon's hotkey (SS58), reported by INFO.
    public var hotkey = ""
    /// INFO's uid when there is no metagraph (with one, the uid is looked up in it).
    public var uid: Int32 = -1
    /// INFO's netuid when there is no metagraph.
    public var netuid: UInt32 = 0
    public var version = "0.1.0"
    /// Who may send FORWARD requests (signature, nonce, metagraph, blacklist, rate limit) and in
    /// which order they are served. nil admits every FORWARD at one priority (`--no-auth`).
    /// PING and INFO are always open.
    public var admission: Admission?
    /// Where replay and rate-limit state lives when replicas share it (`serve --state`); nil keeps
    /// it in this process (`admission.state`). Needs `admission`.
    public var sharedState: SharedStateConfiguration?
    /// The metagraph snapshot INFO's uid and netuid come from (usually `admission.metagraph`).
    public var metagraph: MetagraphStore?
    /// The file `reloadMetagraph()` (and SIGHUP) reloads into `metagraph`.
    public var metagraphPath: String?

    // TEXT_SEQ_2_SEQ (served when the backend is a `GenerationBackend`; docs/PROTOCOL.md).
    /// Most tokens one TEXT_SEQ_2_SEQ row may ask for (`num_to_generate`; an absent field asks for
    /// min(256, this)).
    public var maxNewTokens = 512
    /// Tokens one generation step runs at most: every running sequence's next token, then prefill
    /// chunks of new prompts in what is left. Must exceed `maxSequences`.
    public var stepTokens = 256
    /// Sequences (rows × beams of running generations) held at once; at most the backend's.
    public var maxSequences = 64
    /// How long a generation may wait for KV cache space or sequence slots before it is answered
    /// Backoff (never past its deadline).
    public var generationWaitMs: UInt32 = 1_000
    /// Deadline for generation requests with timeout_ms = 0 (Bittensor's TextSeq2Seq timeout).
    public var defaultGenerationTimeoutMs: UInt32 = 36_000

    public init() {}
}
