// A pipelined, deadline-aware client for the axon protocol over a blocking socket, with one reader
// thread that matches responses to waiting callers by request id.
import Foundation
import Identity
import Wire

/// Why a call could not complete.
public enum ClientError: Error, CustomStringConvertible {
    case badEndpoint(String)
    case connectFailed(endpoint: String, reason: String)
    case sendFailed(reason: String)
    case timedOut(id: UInt64, seconds: Double)
    case connectionClosed(reason: String)
    case malformedResponse(String)
    case noReceiver(endpoint: String, reason: String)

    public var description: String {
        switch self {
        case let .badEndpoint(text): return "endpoint '\(text)' is not HOST:PORT"
        case let .connectFailed(endpoint, reason): return "cannot connect to \(endpoint): \(reason)"
        case let .sendFailed(reason): return "sending failed: \(reason)"
        case let .timedOut(id, seconds): return "no response to request \(id) within \(seconds) s"
        case let .connectionClosed(reason): return "the connection closed: \(reason)"
        case let .malformedResponse(reason): return "the server sent a malformed response: \(reason)"
        case let .noReceiver(endpoint, reason):
            return "cannot sign for \(endpoint): its hotkey is unknown (\(reason)); pass it in the endpoints file or check INFO"
        }
    }
}

/// One TCP connection to an axon. Thread-safe: several threads may call at once (pipelining).
/// With a hotkey, FORWARD requests are signed (one `SigningSession` per client, so one uuid per
/// connection); the receiver is the axon's hotkey, from `receiver` or else from INFO on first use.
public final class AxonClient: @unchecked Sendable {
    public let endpoint: String
    /// Signs FORWARD requests; nil sends them unsigned (for `--no-auth` axons).
    public let session: SigningSession?
    private var knownReceiver: String?
    private let socket: Int32
    private let decoder: FrameDecoder
    private let writeLock = NSLock()
    private let condition = NSCondition()
    private var arrived: [Response] = []
    private var closedReason: String?
    private var closedByClient = false
    private var nextID: UInt64 = 1
    private let readerDone = DispatchSemaphore(value: 0)
    /// Answers held for callers that have not collected them yet. An axon that sends more than
    /// this (answers to ids nobody sent) is misbehaving: the connection is closed instead of
    /// growing without bound.
    public static let maxUncollectedResponses = 4096

    /// Connects to `host:port`.
    /// - Throws: `ClientError.connectFailed`.
    public init(host: String, port: Int, hotkey: Hotkey? = nil, receiver: String? = nil,
                maxFrame: Int = 512 * 1024 * 1024) throws {
        endpoint = "\(host):\(port)"
        session = hotkey.map { SigningSession(hotkey: $0) }
        knownReceiver = receiver
        decoder = FrameDecoder(maxFrameSize: maxFrame)
        var hints = addrinfo()
        hints.ai_socktype = Int32(SOCK_STREAM.rawValue)
        var list: UnsafeMutablePointer<addrinfo>?
        let status = getaddrinfo(host, String(port), &hints, &list)
        guard status == 0, let first = list else {
            throw ClientError.connectFailed(endpoint: "\(host):\(port)", reason: String(cString: gai_strerror(status)))
        }
        defer { freeaddrinfo(list) }
        var lastError = "no address"
        var connected: Int32 = -1
        var candidate: UnsafeMutablePointer<addrinfo>? = first
        while let info = candidate, connected < 0 {
            let fd = Foundation.socket(info.pointee.ai_family, info.pointee.ai_socktype, info.pointee.ai_protocol)
            if fd >= 0, connect(fd, info.pointee.ai_addr, info.pointee.ai_addrlen) == 0 {
                connected = fd
            } else {
                lastError = String(cString: strerror(errno))
                if fd >= 0 { Foundation.close(fd) }
            }
            candidate = info.pointee.ai_next
        }
        guard connected >= 0 else { throw ClientError.connectFailed(endpoint: endpoint, reason: lastError) }
        socket = connected
        var one: Int32 = 1
        setsockopt(socket, Int32(IPPROTO_TCP), TCP_NODELAY, &one, socklen_t(MemoryLayout<Int32>.size))
        let thread = Thread { [self] in
            readLoop()
            readerDone.signal()
        }
        thread.name = "axon-client-reader"
        thread.start()
    }

    /// Connects to "HOST:PORT" (IPv6 as "[::1]:PORT").
    public convenience init(endpoint: String, hotkey: Hotkey? = nil, receiver: String? = nil) throws {
        let (host, port) = try Self.parse(endpoint: endpoint)
        try self.init(host: host, port: port, hotkey: hotkey, receiver: receiver)
    }

    /// Splits "HOST:PORT" (IPv6 as "[::1]:PORT").
    /// - Throws: `ClientError.badEndpoint`.
    public static func parse(endpoint: String) throws -> (host: String, port: Int) {
        guard let colon = endpoint.lastIndex(of: ":"), let port = Int(endpoint[endpoint.index(after: colon)...]),
              (1...65535).contains(port) else {
            throw ClientError.badEndpoint(endpoint)
        }
        return (endpoint[..<colon].trimmingCharacters(in: CharacterSet(charactersIn: "[]")), port)
    }

    /// The axon's hotkey that signatures name as receiver: given at init, or asked with INFO once.
    /// - Throws: `ClientError.noReceiver` when INFO fails or reports no hotkey.
    public func receiver() throws -> String {
        if let known = condition.withLock({ knownReceiver }) { return known }
        let response = try call(.info)
        guard response.code == .success, let hotkey = response.info?.hotkey, !hotkey.isEmpty else {
            throw ClientError.noReceiver(endpoint: endpoint, reason: response.code == .success
                ? "INFO reports no hotkey" : "INFO answered \(response.code): \(response.message)")
        }
        condition.withLock { knownReceiver = hotkey }
        return hotkey
    }

    deinit { close() }

    /// Closes the socket; waiting calls fail with `connectionClosed`.
    public func close() {
        condition.lock()
        let first = !closedByClient
        closedByClient = true
        if closedReason == nil { closedReason = "closed by the client" }
        condition.broadcast()
        condition.unlock()
        if first {
            shutdown(socket, Int32(SHUT_RDWR))
            readerDone.wait()
            Foundation.close(socket)
        }
    }

    /// A fresh request id (ids start at 1).
    public func makeID() -> UInt64 {
        condition.lock()
        defer { condition.unlock() }
        nextID += 1
        return nextID - 1
    }

    /// Sends raw bytes (tests use this for malformed frames).
    /// - Throws: `ClientError.sendFailed`.
    public func sendRaw(_ bytes: [UInt8]) throws {
        writeLock.lock()
        defer { writeLock.unlock() }
        try writeAll(bytes)
    }

    /// Called with `writeLock` held.
    private func writeAll(_ bytes: [UInt8]) throws {
        var offset = 0
        while offset < bytes.count {
            let sent = bytes.withUnsafeBytes { raw in
                Foundation.send(socket, raw.baseAddress.unsafelyUnwrapped + offset, bytes.count - offset, Int32(MSG_NOSIGNAL))
            }
            if sent < 0 {
                if errno == EINTR { continue }
                throw ClientError.sendFailed(reason: String(cString: strerror(errno)))
            }
            offset += sent
        }
    }

    /// Sends one request frame without waiting (pipelining); collect the answer with `response(id:)`.
    /// An unsigned FORWARD is signed first when the client has a hotkey; signing and sending happen
    /// under one lock, so nonces reach the axon in increasing order.
    public func send(_ request: Request) throws {
        guard request.method == .forward, request.auth == nil, let session else {
            return try sendRaw(FrameEncoder.frame(request.serializedBytes()))
        }
        let receiver = try receiver()
        writeLock.lock()
        defer { writeLock.unlock() }
        var signed = request
        signed.auth = session.auth(receiver: receiver, body: request.body)
        try writeAll(FrameEncoder.frame(signed.serializedBytes()))
    }

    /// Waits for the response with `id`.
    /// - Throws: `ClientError.timedOut` after `timeout` seconds, `connectionClosed` if the socket closes first.
    public func response(id: UInt64, timeout: Double) throws -> Response {
        try waitFor(timeout: timeout, id: id) { $0.id == id }
    }

    /// Waits for the next response of any id, in arrival order (for tests).
    public func nextResponse(timeout: Double) throws -> Response {
        try waitFor(timeout: timeout, id: 0) { _ in true }
    }

    private func waitFor(timeout: Double, id: UInt64, _ matches: (Response) -> Bool) throws -> Response {
        let deadline = Date(timeIntervalSinceNow: timeout)
        condition.lock()
        defer { condition.unlock() }
        while true {
            if let index = arrived.firstIndex(where: matches) { return arrived.remove(at: index) }
            if let closedReason { throw ClientError.connectionClosed(reason: closedReason) }
            if !condition.wait(until: deadline) { throw ClientError.timedOut(id: id, seconds: timeout) }
        }
    }

    /// Sends a request and waits for its answer. The server is told `timeoutMs` (0: its default,
    /// 12 s); the client waits that long plus `grace` seconds.
    public func call(_ method: Method, body: [UInt8] = [], timeoutMs: UInt32 = 0, auth: Auth? = nil,
                     grace: Double = 2) throws -> Response {
        let id = makeID()
        try send(Request(id: id, method: method, timeoutMs: timeoutMs, body: body, auth: auth))
        return try response(id: id, timeout: Double(timeoutMs == 0 ? 12_000 : timeoutMs) / 1000 + grace)
    }

    public func ping(timeoutMs: UInt32 = 0) throws -> Response { try call(.ping, timeoutMs: timeoutMs) }
    public func info(timeoutMs: UInt32 = 0) throws -> Response { try call(.info, timeoutMs: timeoutMs) }
    public func forward(_ request: ForwardRequest, timeoutMs: UInt32 = 0) throws -> Response {
        try call(.forward, body: request.serializedBytes(), timeoutMs: timeoutMs)
    }

    private func readLoop() {
        var buffer = ByteBuffer()
        var chunk = [UInt8](repeating: 0, count: 256 * 1024)
        var reason = "the server closed the connection"
        reading: while true {
            let count = chunk.withUnsafeMutableBytes { recv(socket, $0.baseAddress, $0.count, 0) }
            if count < 0 && errno == EINTR { continue }
            if count <= 0 {
                if count < 0 { reason = String(cString: strerror(errno)) }
                break
            }
            buffer.append(contentsOf: chunk[0..<count])
            do {
                var responses: [Response] = []
                while let frame = try decoder.decode(&buffer) { responses.append(try Response(serializedBytes: frame)) }
                buffer.compact()
                if !responses.isEmpty {
                    condition.lock()
                    arrived.append(contentsOf: responses)
                    let flooded = arrived.count > Self.maxUncollectedResponses
                    condition.broadcast()
                    condition.unlock()
                    if flooded {
                        reason = ClientError.malformedResponse("more than \(Self.maxUncollectedResponses) answers that no caller collected").description
                        break reading
                    }
                }
            } catch {
                reason = ClientError.malformedResponse("\(error)").description
                break reading
            }
        }
        condition.lock()
        if closedReason == nil { closedReason = reason }
        condition.broadcast()
        condition.unlock()
    }
}
