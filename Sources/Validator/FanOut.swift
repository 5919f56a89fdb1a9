// The validator's fan-out: one request to each of many axons at once, all sockets non-blocking on
// one poll(2) loop in the calling thread (no thread per connection), each with its own deadline.
import AxonClient
import Foundation
import Identity
import Wire

/// What became of one endpoint's request.
public enum FanOutOutcome: Sendable {
    /// The axon answered (any return code).
    case answered(Response)
    /// No answer within the deadline; `stage` says how far it got (connecting, sending, waiting).
    case timedOut(stage: String)
    /// The connection could not be made (refused, no route, bad address).
    case unreachable(String)
    /// Connected, but the exchange broke (closed early, malformed frame).
    case failed(String)
}

public struct FanOutResult: Sendable {
    public var endpoint: Endpoint
    public var outcome: FanOutOutcome
    /// Seconds from the start of the connect to the outcome.
    public var latency: Double
}

/// Queries many axons concurrently from one thread.
public final class FanOut {
    /// Signs each request for its endpoint's hotkey; nil sends unsigned requests.
    public let hotkey: Hotkey?
    /// Seconds each endpoint gets, from the fan-out's start, to connect and answer.
    public let deadline: Double
    public let maxFrame: Int

    public init(hotkey: Hotkey?, deadline: Double, maxFrame: Int = 512 << 20) {
        self.hotkey = hotkey
        self.deadline = deadline
        self.maxFrame = maxFrame
    }

    private enum Stage: String { case connecting, sending, waiting, done }

    private final class Exchange {
        let endpoint: Endpoint
        var fd: Int32 = -1
        var stage = Stage.connecting
        var output: [UInt8] = []
        var written = 0
        var input = ByteBuffer()
        var outcome: FanOutOutcome?
        var finishedAt: UInt64 = 0
        init(endpoint: Endpoint) { self.endpoint = endpoint }
    }

    /// Sends `method` with `body` to every endpoint and returns one result per endpoint, in the
    /// endpoints' order. The server is told the deadline as `timeout_ms`.
    public func run(endpoints: [Endpoint], method: Method = .forward, body: [UInt8] = []) -> [FanOutResult] {
        let start = Self.now()
        let deadlineNs = start + UInt64(max(0, deadline) * 1e9)
        let timeoutMs = UInt32(clamping: Int(deadline * 1000))
        let exchanges = endpoints.enumerated().map { index, endpoint -> Exchange in
            let exchange = Exchange(endpoint: endpoint)
            var request = Request(id: UInt64(index + 1), method: method, timeoutMs: timeoutMs, body: body)
            // A session (uuid) per connection, like `AxonClient`: requests on different connections
            // may reach one axon in any order, so they must not share a nonce sequence.
            if method == .forward, let hotkey {
                request.auth = SigningSession(hotkey: hotkey).auth(receiver: endpoint.hotkey, body: body)
            }
            exchange.output = FrameEncoder.frame(request.serializedBytes())
            connect(exchange)
            if exchange.outcome != nil { exchange.finishedAt = Self.now() }
            return exchange
        }
        let decoder = FrameDecoder(maxFrameSize: maxFrame)
        var chunk = [UInt8](repeating: 0, count: 64 * 1024)
        var pollSet: [pollfd] = []
        var owners: [Exchange] = []
        while true {
            pollSet.removeAll(keepingCapacity: true)
            owners.removeAll(keepingCapacity: true)
            for exchange in exchanges where exchange.outcome == nil {
                let events = exchange.stage == .waiting ? Int16(POLLIN) : Int16(POLLOUT)
                pollSet.append(pollfd(fd: exchange.fd, events: events, revents: 0))
                owners.append(exchange)
            }
            if pollSet.isEmpty { break }
            let now = Self.now()
            if now >= deadlineNs {
                for exchange in owners { finish(exchange, .timedOut(stage: exchange.stage.rawValue), at: now) }
                break
            }
            let waitMs = Int32(clamping: (deadlineNs - now + 999_999) / 1_000_000)
            let ready = poll(&pollSet, nfds_t(pollSet.count), waitMs)
            if ready < 0 && errno != EINTR { 
                for exchange in owners { finish(exchange, .failed("poll: \(String(cString: strerror(errno)))"), at: Self.now()) }
                break
            }
            for (slot, exchange) in zip(pollSet, owners) where slot.revents != 0 {
                switch exchange.stage {
                case .connecting: connected(exchange)
                case .sending: write(exchange)
                case .waiting: read(exchange, decoder: decoder, chunk: &chunk)
                case .done: break
                }
            }
        }
        return exchanges.map { exchange in
            FanOutResult(endpoint: exchange.endpoint, outcome: exchange.outcome ?? .timedOut(stage: exchange.stage.rawValue),
                         latency: Double((exchange.finishedAt > start ? exchange.finishedAt : start) - start) / 1e9)
        }
    }

    private static func now() -> UInt64 {
        var time = timespec()
        clock_gettime(CLOCK_MONOTONIC, &time)
        return UInt64(time.tv_sec) * 1_000_000_000 + UInt64(time.tv_nsec)
    }

    private func finish(_ exchange: Exchange, _ outcome: FanOutOutcome, at time: UInt64 = FanOut.now()) {
        guard exchange.outcome == nil else { return }
        exchange.outcome = outcome
        exchange.finishedAt = time
        exchange.stage = .done
        if exchange.fd >= 0 { Foundation.close(exchange.fd) }
        exchange.fd = -1
    }

    private static func errorText(_ code: Int32) -> String { String(cString: strerror(code)) }

    /// Starts a non-blocking connect (address resolution is numeric or the system resolver's).
    private func connect(_ exchange: Exchange) {
        var hints = addrinfo()
        hints.ai_socktype = Int32(SOCK_STREAM.rawValue)
        hints.ai_flags = AI_NUMERICSERV
        var list: UnsafeMutablePointer<addrinfo>?
        let status = getaddrinfo(exchange.endpoint.host, String(exchange.endpoint.port), &hints, &list)
        guard status == 0, let info = list else {
            return finish(exchange, .unreachable("cannot resolve \(exchange.endpoint.host): \(String(cString: gai_strerror(status)))"))
        }
        defer { freeaddrinfo(list) }
        let fd = socket(info.pointee.ai_family, Int32(SOCK_STREAM.rawValue) | Int32(SOCK_NONBLOCK.rawValue) | Int32(SOCK_CLOEXEC.rawValue),
                        info.pointee.ai_protocol)
        guard fd >= 0 else { return finish(exchange, .failed("socket: \(Self.errorText(errno))")) }
        exchange.fd = fd
        var one: Int32 = 1
        setsockopt(fd, Int32(IPPROTO_TCP), TCP_NODELAY, &one, socklen_t(MemoryLayout<Int32>.size))
        if Foundation.connect(fd, info.pointee.ai_addr, info.pointee.ai_addrlen) == 0 {
            exchange.stage = .sending
            write(exchange)
        } else if errno != EINPROGRESS {
            finish(exchange, .unreachable(Self.errorText(errno)))
        }
    }

    private func connected(_ exchange: Exchange) {
        var error: Int32 = 0
        var length = socklen_t(MemoryLayout<Int32>.size)
        if getsockopt(exchange.fd, SOL_SOCKET, SO_ERROR, &error, &length) != 0 { error = errno }
        guard error == 0 else { return finish(exchange, .unreachable(Self.errorText(error))) }
        exchange.stage = .sending
        write(exchange)
    }

    private func write(_ exchange: Exchange) {
        while exchange.written < exchange.output.count {
            let sent = exchange.output.withUnsafeBytes { raw in
                Foundation.send(exchange.fd, raw.baseAddress.unsafelyUnwrapped + exchange.written,
                                raw.count - exchange.written, Int32(MSG_NOSIGNAL))
            }
            if sent < 0 {
                if errno == EINTR { continue }
                if errno == EAGAIN || errno == EWOULDBLOCK { return }
                return finish(exchange, .failed("send: \(Self.errorText(errno))"))
            }
            exchange.written += sent
        }
        exchange.stage = .waiting
    }

    private func read(_ exchange: Exchange, decoder: FrameDecoder, chunk: inout [UInt8]) {
        while true {
            let count = chunk.withUnsafeMutableBytes { recv(exchange.fd, $0.baseAddress, $0.count, 0) }
            if count < 0 {
                if errno == EINTR { continue }
                if errno == EAGAIN || errno == EWOULDBLOCK { return }
                return finish(exchange, .failed("recv: \(Self.errorText(errno))"))
            }
            if count == 0 { return finish(exchange, .failed("the axon closed the connection before answering")) }
            exchange.input.append(contentsOf: chunk[0..<count])
            do {
                if let frame = try decoder.decode(&exchange.input) {
                    return finish(exchange, .answered(try Response(serializedBytes: frame)))
                }
            } catch {
                return finish(exchange, .failed("malformed response: \(error)"))
            }
        }
    }
}

/// Counts and latency percentiles over a fan-out's results.
public struct FanOutSummary: Sendable {
    public var total: Int
    /// Answers by return code.
    public var codes: [ReturnCode: Int]
    public var timeouts: Int
    public var unreachable: Int
    public var failed: Int
    /// Milliseconds, over answered endpoints (nearest rank); nil when none answered.
    public var p50: Double?, p90: Double?, p99: Double?

    public init(_ results: [FanOutResult]) {
        total = results.count
        codes = [:]; timeouts = 0; unreachable = 0; failed = 0
        var latencies: [Double] = []
        for result in results {
            switch result.outcome {
            case .answered(let response):
                codes[response.code, default: 0] += 1
                latencies.append(result.latency * 1000)
            case .timedOut: timeouts += 1
            case .unreachable: unreachable += 1
            case .failed: failed += 1
            }
        }
        latencies.sort()
        func rank(_ p: Double) -> Double? {
            latencies.isEmpty ? nil : latencies[min(latencies.count - 1, max(0, Int((p * Double(latencies.count)).rounded(.up)) - 1))]
        }
        p50 = rank(0.5); p90 = rank(0.9); p99 = rank(0.99)
    }
}
