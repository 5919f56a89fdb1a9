// Replay checks and token buckets shared by the replicas of one UID, in Redis (issue 16,
// docs/SCALE.md). Each check is one EVALSHA of `AdmissionScript`, atomic in Redis, so two
// replicas racing on one nonce cannot both accept it. Loop thread only, except `status`.
import Foundation
import LibUV
import Identity
import Logging

/// `serve --state redis://HOST:PORT[/DB]`.
public struct RedisEndpoint: Equatable, Sendable, CustomStringConvertible {
    public var host: String
    public var port: Int
    public var database: Int

    public init(host: String, port: Int, database: Int = 0) {
        self.host = host
        self.port = port
        self.database = database
    }

    /// Parses `redis://HOST:PORT[/DB]` (an IPv6 host in brackets).
    /// - Throws: `SharedStateError.invalidURL` naming what is wrong.
    public init(url: String) throws {
        func invalid(_ why: String) -> SharedStateError { .invalidURL(url, why) }
        guard url.hasPrefix("redis://") else { throw invalid("it must start with redis://") }
        var rest = Substring(url.dropFirst("redis://".count))
        var database = 0
        if let slash = rest.firstIndex(of: "/") {
            let db = rest[rest.index(after: slash)...]
            guard let n = Int(db), n >= 0, n <= 65535 else { throw invalid("the database '\(db)' is not a number 0...65535") }
            database = n
            rest = rest[..<slash]
        }
        guard !rest.contains("@") else { throw invalid("credentials are not supported; keep Redis on a private address") }
        let host: Substring, portText: Substring
        if rest.hasPrefix("[") {
            guard let close = rest.firstIndex(of: "]") else { throw invalid("the IPv6 host has no closing ]") }
            host = rest[rest.index(after: rest.startIndex)..<close]
            let after = rest[rest.index(after: close)...]
            guard after.hasPrefix(":") else { throw invalid("expected :PORT after the host") }
            portText = after.dropFirst()
        } else {
            guard let colon = rest.lastIndex(of: ":") else { throw invalid("expected HOST:PORT") }
            host = rest[..<colon]
            portText = rest[rest.index(after: colon)...]
        }
        guard !host.isEmpty else { throw invalid("the host is empty") }
        guard let port = Int(portText), (1...65535).contains(port) else { throw invalid("the port '\(portText)' is not 1...65535") }
        self.init(host: String(host), port: port, database: database)
    }

    public var description: String {
        let h = host.contains(":") ? "[\(host)]" : host
        return "redis://\(h):\(port)" + (database == 0 ? "" : "/\(database)")
    }
}

public enum SharedStateError: Error, CustomStringConvertible, Equatable {
    case invalidURL(String, String)

    public var description: String {
        switch self {
        case let .invalidURL(url, why): return "--state \(url): \(why) (expected redis://HOST:PORT[/DB], e.g. redis://127.0.0.1:6379)"
        }
    }
}

/// Where admission state lives when it is shared (`ServerConfiguration.sharedState`).
public struct SharedStateConfiguration: Sendable {
    public var endpoint: RedisEndpoint
    /// `--state-fallback local`: while Redis is unreachable, decide with this replica's own tables
    /// (replays across replicas and the shared rate are then not enforced). Otherwise FORWARD fails closed.
    public var fallbackLocal = false
    /// A check not answered within this is answered Unavailable, and the connection is reopened.
    public var commandTimeoutMs = 500
    /// A connect not established within this is abandoned and retried.
    public var connectTimeoutMs = 1_000
    /// Reconnection backoff: the first retry after `minBackoffMs`, doubling up to `maxBackoffMs`.
    public var minBackoffMs = 50
    public var maxBackoffMs = 1_000
    /// A sender's sessions (nonce hash and its LRU) expire this long after its last accepted request.
    public var sessionTTLSeconds = 86_400
    /// Prefix of every key, before the axon's hotkey.
    public var keyPrefix = "axon"

    public init(endpoint: RedisEndpoint) { self.endpoint = endpoint }
}

/// The shared state's connection, as INFO (`admission_state`) and `axon_state_redis_up` report it.
public enum SharedStateStatus: String, Sendable {
    /// No --state: this process's tables.
    case local
    case connecting
    case connected
    /// Unreachable and failing closed: FORWARD answers Unavailable.
    case down
    /// Unreachable, deciding with this replica's tables (--state-fallback local).
    case fallback

    /// INFO's `admission_state` text.
    func info(_ endpoint: RedisEndpoint?) -> String {
        guard let endpoint else { return rawValue }
        switch self {
        case .local: return "local"
        case .connecting: return "redis \(endpoint) connecting"
        case .connected: return "redis \(endpoint) connected"
        case .down: return "redis \(endpoint) down: FORWARD fails closed"
        case .fallback: return "redis \(endpoint) down: local fallback"
        }
    }
}

/// The script every check runs: compare-and-set of the nonce, then the token bucket, in one
/// atomic step. Nonces are compared as decimal strings (they exceed a Lua double's 2^53); time is
/// Redis's own clock, so replicas share one bucket clock.
enum AdmissionScript {
    /// KEYS: 1 the sender's nonces (hash uuid → last nonce), 2 its sessions by last use (zset),
    /// 3 its bucket (hash tokens, at µs). ARGV: 1 uuid, 2 nonce, 3 sessions kept per sender,
    /// 4 session ttl s, 5 rate/s (0: no limit), 6 burst.
    /// Returns {0} accepted, {1, last} stale, {2} rate limited.
    static let source = """
    local function above(a, b)
      if #a ~= #b then return #a > #b end
      return a > b
    end
    local last = redis.call('HGET', KEYS[1], ARGV[1])
    if last and not above(ARGV[2], last) then return {1, last} end
    local t = redis.call('TIME')
    local now = tonumber(t[1]) * 1000000 + tonumber(t[2])
    redis.call('HSET', KEYS[1], ARGV[1], ARGV[2])
    redis.call('ZADD', KEYS[2], now, ARGV[1])
    local excess = redis.call('ZCARD', KEYS[2]) - tonumber(ARGV[3])
    if excess > 0 then
      local old = redis.call('ZRANGE', KEYS[2], 0, excess - 1)
      redis.call('ZREMRANGEBYRANK', KEYS[2], 0, excess - 1)
      redis.call('HDEL', KEYS[1], unpack(old))
    end
    redis.call('EXPIRE', KEYS[1], ARGV[4])
    redis.call('EXPIRE', KEYS[2], ARGV[4])
    local rate = tonumber(ARGV[5])
    if rate > 0 then
      local burst = tonumber(ARGV[6])
      local b = redis.call('HMGET', KEYS[3], 'tokens', 'at')
      local tokens, at = tonumber(b[1]), tonumber(b[2])
      if not tokens or not at then tokens, at = burst, now end
      if now > at then
        tokens = math.min(burst, tokens + (now - at) / 1000000 * rate)
        at = now
      end
      local allowed = tokens >= 1
      if allowed then tokens = tokens - 1 end
      redis.call('HSET', KEYS[3], 'tokens', string.format('%.17g', tokens), 'at', string.format('%.0f', at))
      redis.call('EXPIRE', KEYS[3], math.ceil(burst / rate) + 1)
      if not allowed then return {2} end
    end
    return {0}
    """

    /// The keys of one check: the axon's hotkey, then the sender (the uuid is a field of the first).
    static func keys(prefix: String, receiver: String, sender: String) -> [String] {
        ["\(prefix):\(receiver):nonces:\(sender)", "\(prefix):\(receiver):sessions:\(sender)", "\(prefix):\(receiver):bucket:\(sender)"]
    }

    static func arguments(_ query: AdmissionStateQuery, sessionsPerSender: Int, ttlSeconds: Int, limit: RateLimit?) -> [String] {
        [query.uuid, String(query.nonce), String(sessionsPerSender), String(ttlSeconds),
         limit.map { String($0.requestsPerSecond) } ?? "0", limit.map { String($0.burst) } ?? "0"]
    }

    /// The verdict in a reply, nil when the reply is not one the script returns.
    static func verdict(_ reply: RedisReply) -> AdmissionStateVerdict? {
        guard case .array(let items) = reply, case .integer(let code)? = items.first else { return nil }
        switch code {
        case 0: return .accepted
        case 1:
            guard items.count == 2, let text = items[1].text, let last = UInt64(text) else { return nil }
            return .staleNonce(lastSeen: last)
        case 2: return .rateLimited
        default: return nil
        }
    }
}

/// A shared check's outcome.
enum SharedCheckOutcome {
    case decided(AdmissionStateVerdict)
    /// Redis cannot answer and the state fails closed: FORWARD answers Unavailable with this.
    case unavailable(String)
}

/// The Redis-backed admission state of one replica: its connection, reconnection with backoff,
/// the per-check timeout and the local fallback. Loop thread only, except `status`.
final class RedisAdmissionStore {
    let configuration: SharedStateConfiguration
    private let receiver: String
    private let sessionsPerSender: Int
    /// This replica's tables, for --state-fallback local.
    private let local: AdmissionState?
    private let metrics: ServerMetrics
    private let logger: Logger

    private var client: RedisClient?
    private var timer: RepeatingTimer?
    private var scriptSHA: String?
    private var connectStarted: UInt64 = 0
    private var retryAt: UInt64 = 0
    private var backoffMs: Int
    private var warnedFallback = false
    private var lastError = ""
    private var closed = false
    /// Checks sent and not answered: their deadlines, by id, oldest first.
    private var inFlight: [(id: UInt64, deadline: UInt64)] = []
    private var waiting: [UInt64: (SharedCheckOutcome) -> Void] = [:]
    private var nextCheckID: UInt64 = 1

    private let statusLock = NSLock()
    private var currentStatus = SharedStateStatus.connecting

    init(configuration: SharedStateConfiguration, receiver: String, sessionsPerSender: Int, local: AdmissionState?,
         metrics: ServerMetrics, logger: Logger) {
        self.configuration = configuration
        self.receiver = receiver
        self.sessionsPerSender = sessionsPerSender
        self.local = configuration.fallbackLocal ? local : nil
        self.metrics = metrics
        self.logger = logger
        backoffMs = configuration.minBackoffMs
    }

    /// The connection's state (any thread).
    var status: SharedStateStatus { statusLock.withLock { currentStatus } }

    /// Checks waiting for Redis.
    var waitingCount: Int { waiting.count }

    private func set(_ status: SharedStateStatus) {
        statusLock.withLock { currentStatus = status }
        metrics.sharedState(up: status == .connected)
    }

    /// Starts connecting, and the timer that retries and times checks out.
    func start(loop: EventLoop) throws {
        let client = RedisClient(loop: loop)
        client.onConnect = { [unowned self] up, message in self.connected(up, message) }
        client.onDisconnect = { [unowned self] message in self.lost("connection lost: \(message)") }
        self.client = client
        timer = try RepeatingTimer(loop: loop, intervalMs: 10) { [unowned self] in self.tick() }
        connect()
    }

    func close() {
        closed = true
        timer?.close()
        timer = nil
        client?.drop()
        client = nil
        failWaiting("the server is shutting down")
    }

    private var unreachableStatus: SharedStateStatus { local == nil ? .down : .fallback }

    private func connect() {
        guard let client, !closed, !client.isOpen else { return }
        connectStarted = monotonicNanoseconds()
        do {
            try client.connect(host: configuration.endpoint.host, port: configuration.endpoint.port)
        } catch {
            lost("\(error)")
        }
    }

    private func connected(_ up: Bool, _ message: String) {
        guard up else { return lost("connect failed: \(message)") }
        guard let client else { return }
        if configuration.endpoint.database != 0 {
            client.send(["SELECT", String(configuration.endpoint.database)]) { [weak self] reply in
                if case .error(let e)? = reply { self?.lost("SELECT \(self?.configuration.endpoint.database ?? 0): \(e)", drop: true) }
            }
        }
        scriptSHA = nil
        client.send(["SCRIPT", "LOAD", AdmissionScript.source]) { [weak self] reply in
            if let sha = reply?.text, case .string? = reply { self?.scriptSHA = sha }
        }
        backoffMs = configuration.minBackoffMs
        if status != .connected {
            logger.notice("admission state: connected to \(configuration.endpoint)")
        }
        warnedFallback = false
        set(.connected)
    }

    /// The connection is gone or unusable: waiting checks fail, a retry is scheduled.
    private func lost(_ reason: String, drop: Bool = false) {
        if drop { client?.drop() }
        failWaiting("Redis \(configuration.endpoint) is unreachable (\(reason))")
        guard !closed else { return }
        if status == .connected || reason != lastError {
            let meanwhile = local == nil ? "FORWARD answers Unavailable meanwhile" : "deciding with local tables meanwhile"
            logger.warning("admission state: \(configuration.endpoint) \(reason); retrying in \(backoffMs) ms, \(meanwhile)")
        }
        lastError = reason
        set(unreachableStatus)
        retryAt = monotonicNanoseconds() + UInt64(backoffMs) * 1_000_000
        backoffMs = min(configuration.maxBackoffMs, backoffMs * 2)
    }

    private func failWaiting(_ message: String) {
        let failed = waiting
        waiting = [:]
        inFlight = []
        for (_, completion) in failed.sorted(by: { $0.key < $1.key }) { completion(unreachableOutcome(message)) }
    }

    /// What a check gets while Redis cannot answer: the local tables' verdict, or Unavailable.
    private func unreachableOutcome(_ message: String, check: (() -> AdmissionStateVerdict)? = nil) -> SharedCheckOutcome {
        guard local != nil, let check else {
            metrics.sharedStateUnavailable()
            return .unavailable("admission state: \(message); this axon fails closed for FORWARD (PING and INFO still answer), retry shortly")
        }
        metrics.sharedStateFallback()
        if !warnedFallback {
            warnedFallback = true
            logger.warning("admission state: \(message); --state-fallback local: deciding with this replica's own tables, so replays to other replicas and the shared rate limit are not enforced until Redis is back")
        }
        return .decided(check())
    }

    private func tick() {
        guard let client, !closed else { return }
        let now = monotonicNanoseconds()
        if client.isOpen && !client.isConnected && now - connectStarted > UInt64(configuration.connectTimeoutMs) * 1_000_000 {
            client.drop()
            lost("connect timed out after \(configuration.connectTimeoutMs) ms")
        } else if !client.isOpen && now >= retryAt {
            set(status == .fallback || status == .down ? status : .connecting)
            connect()
        }
        if let oldest = inFlight.first(where: { waiting[$0.id] != nil }), now > oldest.deadline {
            // Redis stopped answering with the connection open: reopen it, failing what waits.
            client.drop()
            lost("no answer within \(configuration.commandTimeoutMs) ms")
        } else {
            inFlight.removeAll { waiting[$0.id] == nil }
        }
    }

    /// Steps 6–7 for `query`: the completion runs on the loop thread, at once when Redis is down.
    func check(_ query: AdmissionStateQuery, limit: RateLimit?, now: MonotonicTime,
               completion: @escaping (SharedCheckOutcome) -> Void) {
        let localCheck: (() -> AdmissionStateVerdict)? = local.map { local in
            { local.check(sender: query.sender, uuid: query.uuid, nonce: query.nonce, trusted: query.trusted, limit: limit, now: now) }
        }
        guard let client, client.isConnected else {
            let reason = closed ? "the server is shutting down" : (lastError.isEmpty ? "not connected yet" : lastError)
            return completion(unreachableOutcome("Redis \(configuration.endpoint) is unreachable (\(reason))", check: localCheck))
        }
        let id = nextCheckID
        nextCheckID += 1
        let sent = monotonicNanoseconds()
        waiting[id] = { outcome in completion(outcome) }
        inFlight.append((id, sent + UInt64(configuration.commandTimeoutMs) * 1_000_000))
        let keys = AdmissionScript.keys(prefix: configuration.keyPrefix, receiver: receiver, sender: query.sender)
        let arguments = AdmissionScript.arguments(query, sessionsPerSender: sessionsPerSender,
                                                  ttlSeconds: configuration.sessionTTLSeconds, limit: limit)
        evaluate(keys: keys, arguments: arguments) { [weak self] reply in
            guard let self, let completion = self.waiting.removeValue(forKey: id) else { return }
            self.metrics.sharedStateRoundTrip(seconds: Double(monotonicNanoseconds() - sent) / 1e9)
            guard let reply else {
                return completion(self.unreachableOutcome("Redis \(self.configuration.endpoint) dropped the connection", check: localCheck))
            }
            if let verdict = AdmissionScript.verdict(reply) { return completion(.decided(verdict)) }
            let detail: String
            if case .error(let e) = reply { detail = e } else { detail = "\(reply)" }
            self.logger.error("admission state: unexpected reply from \(self.configuration.endpoint): \(detail)")
            completion(self.unreachableOutcome("Redis \(self.configuration.endpoint) answered an error (\(detail))", check: localCheck))
        }
    }

    /// EVALSHA once the script is loaded (EVAL until then, and when Redis lost its script cache).
    private func evaluate(keys: [String], arguments: [String], completion: @escaping RedisClient.Completion) {
        guard let client else { return completion(nil) }
        let tail = [String(keys.count)] + keys + arguments
        guard let sha = scriptSHA else {
            if !client.send(["EVAL", AdmissionScript.source] + tail, completion: completion) { completion(nil) }
            return
        }
        let sent = client.send(["EVALSHA", sha] + tail) { [weak self] reply in
            if case .error(let e)? = reply, e.hasPrefix("NOSCRIPT"), let self {
                self.scriptSHA = nil
                self.evaluate(keys: keys, arguments: arguments, completion: completion)
            } else {
                completion(reply)
            }
        }
        if !sent { completion(nil) }
    }
}
