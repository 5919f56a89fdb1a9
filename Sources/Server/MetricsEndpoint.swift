// A GET-only HTTP/1.x responder for Prometheus scrapes, on the server's libuv loop: one request per
// connection, answered and closed. Every input gets an answer or a close, within bounded bytes,
// connections and time, and never touches the axon's own clients.
import Foundation
import LibUV

/// What the responder makes of the bytes a scrape connection has sent so far.
enum ScrapeRequest: Equatable {
    /// The header has not ended yet, and it is still under the size limit.
    case incomplete
    /// Answer with this status, then close.
    case answer(HTTPStatus)
}

/// The statuses the responder uses.
enum HTTPStatus: Int, Equatable {
    case ok = 200
    case badRequest = 400
    case notFound = 404
    case methodNotAllowed = 405
    case headerTooLarge = 431

    var reason: String {
        switch self {
        case .ok: return "OK"
        case .badRequest: return "Bad Request"
        case .notFound: return "Not Found"
        case .methodNotAllowed: return "Method Not Allowed"
        case .headerTooLarge: return "Request Header Fields Too Large"
        }
    }
}

extension ScrapeRequest {
    /// The largest request header accepted; a Prometheus scrape sends a few hundred bytes.
    static let maxHeaderBytes = 8 * 1024
    static let path = "/metrics"

    /// Judges a request from its bytes so far (a pure function, testable without a socket): the
    /// header ends at the first blank line; only `GET /metrics` (any query) over HTTP/1.x is 200.
    static func parse(_ bytes: [UInt8]) -> ScrapeRequest {
        guard let headerEnd = endOfHeader(bytes) else {
            return bytes.count > maxHeaderBytes ? .answer(.headerTooLarge) : .incomplete
        }
        guard headerEnd <= maxHeaderBytes else { return .answer(.headerTooLarge) }
        let lineEnd = bytes.firstIndex(of: UInt8(ascii: "\n")) ?? headerEnd
        var line = bytes[..<lineEnd]
        if line.last == UInt8(ascii: "\r") { line = line.dropLast() }
        let parts = line.split(separator: UInt8(ascii: " "), omittingEmptySubsequences: false)
        guard parts.count == 3, parts[2].starts(with: Array("HTTP/1.".utf8)), parts[2].count == 8,
              let target = parts[1].first, target == UInt8(ascii: "/"),
              parts[0].allSatisfy({ (UInt8(ascii: "A")...UInt8(ascii: "Z")).contains($0) }), !parts[0].isEmpty
        else { return .answer(.badRequest) }
        guard parts[0].elementsEqual("GET".utf8) else { return .answer(.methodNotAllowed) }
        let pathPart = parts[1].split(separator: UInt8(ascii: "?"), maxSplits: 1, omittingEmptySubsequences: false)[0]
        return pathPart.elementsEqual(path.utf8) ? .answer(.ok) : .answer(.notFound)
    }

    /// The index just past the header's blank line (CRLF CRLF, or bare LF LF), if it arrived.
    private static func endOfHeader(_ bytes: [UInt8]) -> Int? {
        var index = 0
        while let newline = bytes[index...].firstIndex(of: UInt8(ascii: "\n")) {
            let next = newline + 1
            if next < bytes.count, bytes[next] == UInt8(ascii: "\n") { return next + 1 }
            if next + 1 < bytes.count, bytes[next] == UInt8(ascii: "\r"), bytes[next + 1] == UInt8(ascii: "\n") {
                return next + 2
            }
            index = next
        }
        return nil
    }

    /// The whole response for `status`: the page for 200, a one-line reason otherwise.
    static func response(_ status: HTTPStatus, page: () -> [UInt8]) -> [UInt8] {
        let body = status == .ok ? page() : Array("\(status.rawValue) \(status.reason)\n".utf8)
        let type = status == .ok ? "text/plain; version=0.0.4; charset=utf-8" : "text/plain; charset=utf-8"
        var head = "HTTP/1.1 \(status.rawValue) \(status.reason)\r\nContent-Type: \(type)\r\n"
            + "Content-Length: \(body.count)\r\nConnection: close\r\n"
        if status == .methodNotAllowed { head += "Allow: GET\r\n" }
        return Array((head + "\r\n").utf8) + body
    }
}

/// The listener and its scrape connections (loop thread only).
final class MetricsEndpoint {
    /// Scrape connections open at once; more are closed at accept.
    static let maxConnections = 16
    /// A connection still open this long after it was accepted (its header incomplete, or its
    /// answer not taken) is closed.
    static let requestTimeoutNs: UInt64 = 10_000_000_000

    private final class Scrape {
        let socket: TCPSocket
        let opened: UInt64
        var bytes: [UInt8] = []
        var answered = false
        init(socket: TCPSocket, opened: UInt64) { self.socket = socket; self.opened = opened }
    }

    private let loop: EventLoop
    private let page: () -> [UInt8]
    private var listener: TCPSocket?
    private var sweeper: RepeatingTimer?
    private var scrapes: [ObjectIdentifier: Scrape] = [:]
    /// The bound port.
    let port: Int

    /// Binds and listens on `host:port` (0 picks a free port).
    /// - Throws: `UVError` when the address cannot be bound (for example, the port is taken).
    init(loop: EventLoop, host: String, port: Int, page: @escaping () -> [UInt8]) throws {
        self.loop = loop
        self.page = page
        let listener = try TCPSocket(loop: loop)
        do {
            try listener.listen(host: host, port: port, backlog: 64)
            self.port = try listener.localPort()
            sweeper = try RepeatingTimer(loop: loop, intervalMs: 1000) { [unowned self] in self.sweep() }
        } catch {
            listener.close()
            throw error
        }
        self.listener = listener
        listener.onConnection = { [unowned self] in self.accept() }
    }

    /// Stops listening and closes every scrape connection.
    func close() {
        listener?.onConnection = nil
        listener?.close()
        listener = nil
        sweeper?.close()
        sweeper = nil
        for scrape in Array(scrapes.values) { finish(scrape) }
    }

    private func accept() {
        guard let listener, let socket = try? TCPSocket(loop: loop) else { return }
        do { try listener.accept(into: socket) } catch { socket.close(); return }
        guard scrapes.count < Self.maxConnections else { socket.close(); return }
        let scrape = Scrape(socket: socket, opened: monotonicNanoseconds())
        scrapes[ObjectIdentifier(scrape)] = scrape
        socket.onRead = { [unowned self, unowned scrape] bytes in self.received(bytes, on: scrape) }
        socket.onEnd = { [unowned self, unowned scrape] _ in self.finish(scrape) }
        socket.onWriteDone = { [unowned self, unowned scrape] _ in self.finish(scrape) }
        socket.startReading()
    }

    private func received(_ bytes: UnsafeRawBufferPointer, on scrape: Scrape) {
        guard !scrape.answered else { return }
        // Keep at most one byte past the limit: enough to know it was exceeded.
        scrape.bytes.append(contentsOf: bytes.prefix(max(0, ScrapeRequest.maxHeaderBytes + 1 - scrape.bytes.count)))
        guard case .answer(let status) = ScrapeRequest.parse(scrape.bytes) else { return }
        // Reading goes on (discarding) until the answer is written: closing with unread bytes
        // would send a reset, which can destroy the answer before the client reads it.
        scrape.answered = true
        scrape.socket.write(ScrapeRequest.response(status, page: page))
    }

    private func finish(_ scrape: Scrape) {
        guard scrapes.removeValue(forKey: ObjectIdentifier(scrape)) != nil else { return }
        scrape.socket.onRead = nil
        scrape.socket.onEnd = nil
        scrape.socket.onWriteDone = nil
        scrape.socket.close()
    }

    private func sweep() {
        let now = monotonicNanoseconds()
        for scrape in Array(scrapes.values) where now - scrape.opened > Self.requestTimeoutNs {
            finish(scrape)
        }
    }
}
