import Wire

/// Limits and addresses of an `AxonServer` (the `axon serve` options).
public struct ServerConfiguration: Sendable {
    public var host = "127.0.0.1"
    /// 0 picks an ephemeral port (read it back from `AxonServer.port`).
    public var port = 8091
    /// Hidden states are zero-padded, centred, to this width; nil means the model's hidden size.
    public var networkDim: Int?
    public var maxBatch = 64
    public var maxSeq = 2048
    public var maxBatchTokens = 4096
    public var maxQueue = 256
    public var maxFrame = 16 * 1024 * 1024
    public var maxResponse = 256 * 1024 * 1024
    public var maxConnections = 1024
    /// Seconds a connection may stay idle, or leave a frame incomplete, before it is closed.
    public var idleTimeout: Double = 60
    public var defaultTimeoutMs: UInt32 = 12_000
    /// Stop reading from a connection while more than this many response bytes wait to be written.
    public var maxQueuedOutputBytes = 8 * 1024 * 1024
    /// How long shutdown waits for in-flight work.
    public var drainTimeout: Double = 5
    /// Handle SIGINT/SIGTERM (graceful shutdown) and SIGUSR1 (print counters) on the loop.
    public var handleSignals = false
    /// INFO's identity fields (filled in by the identity layer).
    public var hotkey = ""
    public var uid: Int32 = -1
    public var netuid: UInt32 = 0
    public var version = "0.1.0"
    /// Admission check run on the loop before a request is handled (identity, blacklist, rate):
    /// return a code and message to refuse it. nil admits everyone.
    public var admission: (@Sendable (Request) -> (ReturnCode, String)?)?

    public init() {}
}
