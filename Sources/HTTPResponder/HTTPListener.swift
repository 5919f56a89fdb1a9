// An HTTP responder on a libuv loop (the metrics endpoint's, the playground's): one request per
// connection, answered and closed. Handlers may answer later from another thread (a playground
// query to the miners takes seconds);
// their answers are handed to the loop through uv_async. Every input gets an answer or a close,
// within bounded bytes, connections and time.
import CLibUV
import Foundation
import LibUV

/// Where a handler sends its one answer; thread-safe, and a second answer is ignored.
public final class HTTPReply: @unchecked Sendable {
    fileprivate let connection: UInt64
    fileprivate weak var listener: HTTPListener?
    private let lock = NSLock()
    private var sent = false

    fileprivate init(connection: UInt64, listener: HTTPListener) {
        self.connection = connection
        self.listener = listener
    }

    public func send(_ response: HTTPResponse) {
        guard lock.withLock({ let first = !sent; sent = true; return first }) else { return }
        listener?.enqueue(response.serialized(), for: connection)
    }
}

/// Accepts connections on `host:port` and passes each complete request to `handler` on the loop thread.
public final class HTTPListener: @unchecked Sendable {
    /// Connections open at once; more are closed at accept.
    public let maxConnections: Int
    /// A connection whose request has not all arrived this long after the accept is closed.
    static let requestTimeoutNs: UInt64 = 10_000_000_000
    /// A connection waiting longer than this for its handler (a stuck query) is closed.
    static let answerTimeoutNs: UInt64 = 120_000_000_000

    private final class Connection {
        let id: UInt64
        let socket: TCPSocket
        let opened: UInt64
        var bytes: [UInt8] = []
        var dispatched = false
        var writing = false
        init(id: UInt64, socket: TCPSocket, opened: UInt64) { self.id = id; self.socket = socket; self.opened = opened }
    }

    private let loop: EventLoop
    private let parser: HTTPRequestParser
    private let handler: (HTTPRequest, HTTPReply) -> Void
    private var listener: TCPSocket?
    private var sweeper: RepeatingTimer?
    private var wakeup: AsyncWakeup?
    private var connections: [UInt64: Connection] = [:]
    private var nextID: UInt64 = 1
    private let outboxLock = NSLock()
    private var outbox: [(UInt64, [UInt8])] = []
    /// The bound port.
    public let port: Int

    /// Binds and listens on `host:port` (0 picks a free port) on `loop`; call from the loop's thread.
    /// - Throws: `UVError` when the address cannot be bound (for example, the port is taken).
    package init(loop: EventLoop, host: String, port: Int, parser: HTTPRequestParser, maxConnections: Int = 64,
                 handler: @escaping (HTTPRequest, HTTPReply) -> Void) throws {
        self.loop = loop
        self.maxConnections = maxConnections
        self.parser = parser
        self.handler = handler
        let listener = try TCPSocket(loop: loop)
        do {
            try listener.listen(host: host, port: port, backlog: 64)
            self.port = try listener.localPort()
        } catch {
            listener.close()
            throw error
        }
        self.listener = listener
        sweeper = try RepeatingTimer(loop: loop, intervalMs: 1000) { [unowned self] in self.sweep() }
        wakeup = try AsyncWakeup(loop: loop) { [unowned self] in self.flush() }
        listener.onConnection = { [unowned self] in self.accept() }
    }

    /// Stops listening and closes every connection (loop thread).
    package func close() {
        listener?.onConnection = nil
        listener?.close()
        listener = nil
        sweeper?.close()
        sweeper = nil
        // Under the lock: a worker thread's `enqueue` must never send to a closing handle.
        outboxLock.withLock {
            wakeup?.close()
            wakeup = nil
        }
        for connection in Array(connections.values) { finish(connection) }
    }

    /// Connections currently open (loop thread).
    package var openConnections: Int { connections.count }

    fileprivate func enqueue(_ bytes: [UInt8], for connection: UInt64) {
        outboxLock.withLock {
            guard let wakeup else { return }
            outbox.append((connection, bytes))
            wakeup.send()
        }
    }

    private func flush() {
        let ready = outboxLock.withLock { () -> [(UInt64, [UInt8])] in
            defer { outbox.removeAll() }
            return outbox
        }
        for (id, bytes) in ready {
            guard let connection = connections[id], !connection.writing else { continue }
            connection.writing = true
            connection.socket.write(bytes)
        }
    }

    private func accept() {
        guard let listener, let socket = try? TCPSocket(loop: loop) else { return }
        do { try listener.accept(into: socket) } catch { socket.close(); return }
        guard connections.count < maxConnections else { socket.close(); return }
        let connection = Connection(id: nextID, socket: socket, opened: uv_hrtime())
        nextID += 1
        connections[connection.id] = connection
        socket.onRead = { [unowned self, unowned connection] bytes in self.received(bytes, on: connection) }
        socket.onEnd = { [unowned self, unowned connection] _ in self.finish(connection) }
        socket.onWriteDone = { [unowned self, unowned connection] _ in self.finish(connection) }
        socket.startReading()
    }

    private func received(_ bytes: UnsafeRawBufferPointer, on connection: Connection) {
        guard !connection.dispatched else { return }
        // Keep at most one byte past the largest request: enough to know the limit was passed.
        connection.bytes.append(contentsOf: bytes.prefix(max(0, parser.maxRequestBytes + 1 - connection.bytes.count)))
        let request: HTTPRequest
        do {
            guard let complete = try parser.parse(connection.bytes) else { return }
            request = complete
        } catch let error as HTTPRequestError {
            return answer(connection, .error(error.status, error.description))
        } catch {
            return answer(connection, .error(.badRequest, "\(error)"))
        }
        connection.dispatched = true
        connection.bytes = []
        // Reading goes on (discarding) until the answer is written: closing with unread bytes
        // would send a reset, which can destroy the answer before the client reads it.
        handler(request, HTTPReply(connection: connection.id, listener: self))
    }

    private func answer(_ connection: Connection, _ response: HTTPResponse) {
        connection.dispatched = true
        connection.bytes = []
        connection.writing = true
        connection.socket.write(response.serialized())
    }

    private func finish(_ connection: Connection) {
        guard connections.removeValue(forKey: connection.id) != nil else { return }
        connection.socket.onRead = nil
        connection.socket.onEnd = nil
        connection.socket.onWriteDone = nil
        connection.socket.close()
    }

    private func sweep() {
        let now = uv_hrtime()
        for connection in Array(connections.values) where !connection.writing {
            let limit = connection.dispatched ? Self.answerTimeoutNs : Self.requestTimeoutNs
            if now - connection.opened > limit { finish(connection) }
        }
    }
}
