// A GET-only responder for Prometheus scrapes, on the server's libuv loop: one request per
// connection, answered and closed (HTTPResponder: bounded bytes, connections and time), never
// touching the axon's own clients.
import Foundation
import HTTPResponder
import LibUV

/// The listener and its scrape connections (loop thread only).
final class MetricsEndpoint {
    /// Scrape connections open at once; more are closed at accept.
    static let maxConnections = 16
    static let path = "/metrics"

    private let listener: HTTPListener
    /// The bound port.
    var port: Int { listener.port }

    /// Binds and listens on `host:port` (0 picks a free port).
    /// - Throws: `UVError` when the address cannot be bound (for example, the port is taken).
    init(loop: EventLoop, host: String, port: Int, page: @escaping () -> [UInt8]) throws {
        // A Prometheus scrape sends a few hundred bytes and no body.
        listener = try HTTPListener(loop: loop, host: host, port: port, parser: HTTPRequestParser(maxHeaderBytes: 8 * 1024, maxBodyBytes: 0),
                                    maxConnections: Self.maxConnections) { request, reply in
            reply.send(Self.answer(request, page: page))
        }
    }

    /// `GET /metrics` (any query) is the page in the text format 0.0.4; anything else its status.
    static func answer(_ request: HTTPRequest, page: () -> [UInt8]) -> HTTPResponse {
        guard request.method == .get else {
            var refusal = HTTPResponse.error(.methodNotAllowed, "\(request.method.rawValue) \(request.path): a scrape is GET")
            refusal.allow = [.get]
            return refusal
        }
        guard request.path == path else { return .error(.notFound, "no such page: \(request.path.prefix(100)); scrape \(path)") }
        return HTTPResponse(status: .ok, contentType: "text/plain; version=0.0.4; charset=utf-8", body: page())
    }

    /// Stops listening and closes every scrape connection.
    func close() { listener.close() }
}
