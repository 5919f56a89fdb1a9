// A small HTTP/1.x for the axon's own pages (the metrics endpoint, the playground): a bounded
// request parser (a pure function over the bytes received so far, testable without a socket) and
// the responses written. Only GET and POST with a Content-Length body are understood; everything
// else is a typed error with its status.
import Foundation

/// The statuses the responders answer with.
public enum HTTPStatus: Int, Equatable, Sendable {
    case ok = 200
    case badRequest = 400
    case forbidden = 403
    case notFound = 404
    case methodNotAllowed = 405
    case lengthRequired = 411
    case payloadTooLarge = 413
    case unsupportedMediaType = 415
    case tooManyRequests = 429
    case headerTooLarge = 431
    case notImplemented = 501
    case versionNotSupported = 505

    public var reason: String {
        switch self {
        case .ok: return "OK"
        case .badRequest: return "Bad Request"
        case .forbidden: return "Forbidden"
        case .notFound: return "Not Found"
        case .methodNotAllowed: return "Method Not Allowed"
        case .lengthRequired: return "Length Required"
        case .payloadTooLarge: return "Payload Too Large"
        case .unsupportedMediaType: return "Unsupported Media Type"
        case .tooManyRequests: return "Too Many Requests"
        case .headerTooLarge: return "Request Header Fields Too Large"
        case .notImplemented: return "Not Implemented"
        case .versionNotSupported: return "HTTP Version Not Supported"
        }
    }
}

public enum HTTPMethod: String, Equatable, Sendable {
    case get = "GET", post = "POST"
}

/// One complete request.
public struct HTTPRequest: Equatable, Sendable {
    public var method: HTTPMethod
    /// The target's path, without the query.
    public var path: String
    /// Header names lowercased, values trimmed, in arrival order.
    public var headers: [(name: String, value: String)]
    public var body: [UInt8]

    public init(method: HTTPMethod, path: String, headers: [(name: String, value: String)] = [], body: [UInt8] = []) {
        self.method = method; self.path = path; self.headers = headers; self.body = body
    }

    public func header(_ name: String) -> String? { headers.first { $0.name == name.lowercased() }?.value }

    public static func == (a: HTTPRequest, b: HTTPRequest) -> Bool {
        a.method == b.method && a.path == b.path && a.body == b.body
            && a.headers.map(\.name) == b.headers.map(\.name) && a.headers.map(\.value) == b.headers.map(\.value)
    }
}

/// Why a request cannot be served; each has the status it is answered with.
public enum HTTPRequestError: Error, Equatable, CustomStringConvertible {
    case headerTooLarge(limit: Int)
    case malformedRequestLine
    case unsupportedVersion(String)
    case methodNotAllowed(String)
    case malformedHeader(String)
    case lengthRequired
    case badContentLength(String)
    case bodyTooLarge(length: Int, limit: Int)
    case transferEncodingUnsupported(String)

    public var status: HTTPStatus {
        switch self {
        case .headerTooLarge: return .headerTooLarge
        case .malformedRequestLine, .malformedHeader, .badContentLength: return .badRequest
        case .unsupportedVersion: return .versionNotSupported
        case .methodNotAllowed: return .methodNotAllowed
        case .lengthRequired: return .lengthRequired
        case .bodyTooLarge: return .payloadTooLarge
        case .transferEncodingUnsupported: return .notImplemented
        }
    }

    public var description: String {
        switch self {
        case let .headerTooLarge(limit): return "the request header exceeds \(limit) bytes"
        case .malformedRequestLine: return "the request line is not METHOD /path HTTP/1.x"
        case let .unsupportedVersion(version): return "\(version) is not HTTP/1.0 or HTTP/1.1"
        case let .methodNotAllowed(method): return "method \(method) is not allowed: only GET and POST"
        case let .malformedHeader(line): return "header line '\(line.prefix(80))' is not NAME: VALUE"
        case .lengthRequired: return "a POST needs a Content-Length"
        case let .badContentLength(value): return "Content-Length '\(value.prefix(40))' is not one non-negative integer"
        case let .bodyTooLarge(length, limit): return "the body of \(length) bytes exceeds \(limit) bytes"
        case let .transferEncodingUnsupported(value): return "Transfer-Encoding '\(value.prefix(40))' is not supported; send a Content-Length"
        }
    }
}

/// Reads one request from the bytes of a connection, within fixed limits.
public struct HTTPRequestParser: Sendable {
    public let maxHeaderBytes: Int
    public let maxBodyBytes: Int

    public init(maxHeaderBytes: Int = 8 * 1024, maxBodyBytes: Int = 64 * 1024) {
        self.maxHeaderBytes = maxHeaderBytes
        self.maxBodyBytes = maxBodyBytes
    }

    /// The most bytes a connection needs to buffer: a full header and a full body.
    public var maxRequestBytes: Int { maxHeaderBytes + maxBodyBytes }

    /// The request, once all of it (header and `Content-Length` body) has arrived; nil while it
    /// is incomplete and still within the limits. Bytes after the body are ignored (one request
    /// per connection).
    /// - Throws: `HTTPRequestError` as soon as the bytes so far break a rule.
    public func parse(_ bytes: [UInt8]) throws -> HTTPRequest? {
        guard let headerEnd = Self.endOfHeader(bytes, limit: maxHeaderBytes) else {
            if bytes.count > maxHeaderBytes { throw HTTPRequestError.headerTooLarge(limit: maxHeaderBytes) }
            return nil
        }
        guard headerEnd <= maxHeaderBytes else { throw HTTPRequestError.headerTooLarge(limit: maxHeaderBytes) }
        var lines = Self.lines(bytes[..<headerEnd])
        guard !lines.isEmpty else { throw HTTPRequestError.malformedRequestLine }
        let (method, path) = try Self.requestLine(lines.removeFirst())
        var headers: [(name: String, value: String)] = []
        for line in lines where !line.isEmpty {
            guard let colon = line.firstIndex(of: ":"), colon != line.startIndex,
                  line[..<colon].allSatisfy({ Self.tokenCharacters.contains($0) }) else {
                throw HTTPRequestError.malformedHeader(line)
            }
            headers.append((line[..<colon].lowercased(), line[line.index(after: colon)...].trimmingCharacters(in: .whitespaces)))
        }
        if let encoding = headers.first(where: { $0.name == "transfer-encoding" }) {
            throw HTTPRequestError.transferEncodingUnsupported(encoding.value)
        }
        let lengths = headers.filter { $0.name == "content-length" }.map(\.value)
        var length = 0
        if let first = lengths.first {
            // Several Content-Length headers must agree (RFC 9112 6.3); digits only, no sign.
            guard lengths.allSatisfy({ $0 == first }), !first.isEmpty, first.count <= 18, first.allSatisfy(\.isASCIIDigit),
                  let value = Int(first) else { throw HTTPRequestError.badContentLength(lengths.joined(separator: ",")) }
            length = value
        } else if method == .post {
            throw HTTPRequestError.lengthRequired
        }
        guard length <= maxBodyBytes else { throw HTTPRequestError.bodyTooLarge(length: length, limit: maxBodyBytes) }
        guard bytes.count - headerEnd >= length else { return nil }
        return HTTPRequest(method: method, path: path, headers: headers, body: Array(bytes[headerEnd..<(headerEnd + length)]))
    }

    /// RFC 9110 token characters (header names).
    private static let tokenCharacters = Set("!#$%&'*+-.^_`|~0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ")

    private static func requestLine(_ line: String) throws -> (HTTPMethod, String) {
        let parts = line.split(separator: " ", omittingEmptySubsequences: false)
        guard parts.count == 3, let target = parts[1].first, target == "/",
              !parts[0].isEmpty, parts[0].allSatisfy({ $0.isASCII && $0.isUppercase }) else {
            throw HTTPRequestError.malformedRequestLine
        }
        guard parts[2] == "HTTP/1.1" || parts[2] == "HTTP/1.0" else { throw HTTPRequestError.unsupportedVersion(String(parts[2].prefix(20))) }
        guard let method = HTTPMethod(rawValue: String(parts[0])) else { throw HTTPRequestError.methodNotAllowed(String(parts[0].prefix(20))) }
        let path = parts[1].split(separator: "?", maxSplits: 1, omittingEmptySubsequences: false)[0]
        return (method, String(path))
    }

    /// The header's lines without their CR LF (or bare LF), as text (invalid UTF-8 replaced).
    private static func lines(_ header: ArraySlice<UInt8>) -> [String] {
        header.split(separator: UInt8(ascii: "\n"), omittingEmptySubsequences: false).map { line in
            String(decoding: line.last == UInt8(ascii: "\r") ? line.dropLast() : line, as: UTF8.self)
        }.filter { !$0.isEmpty }
    }

    /// The index just past the header's blank line (CRLF CRLF, or bare LF LF), looking no further
    /// than `limit` + 4 bytes.
    static func endOfHeader(_ bytes: [UInt8], limit: Int) -> Int? {
        let end = min(bytes.count, limit + 4)
        var index = 0
        while index < end {
            guard bytes[index] == UInt8(ascii: "\n") else { index += 1; continue }
            let next = index + 1
            if next < bytes.count, bytes[next] == UInt8(ascii: "\n") { return next + 1 }
            if next + 1 < bytes.count, bytes[next] == UInt8(ascii: "\r"), bytes[next + 1] == UInt8(ascii: "\n") { return next + 2 }
            index = next
        }
        return nil
    }
}

extension Character {
    fileprivate var isASCIIDigit: Bool { isASCII && isNumber }
}

/// One response, written whole, then the connection closes.
public struct HTTPResponse: Equatable, Sendable {
    public var status: HTTPStatus
    public var contentType: String
    public var body: [UInt8]
    /// The methods a 405 names in its Allow header.
    public var allow: [HTTPMethod] = [.get, .post]

    public init(status: HTTPStatus, contentType: String, body: [UInt8]) {
        self.status = status; self.contentType = contentType; self.body = body
    }

    public static func json(_ body: [UInt8], status: HTTPStatus = .ok) -> HTTPResponse {
        HTTPResponse(status: status, contentType: "application/json; charset=utf-8", body: body)
    }

    /// `{"error": message}` with the status.
    public static func error(_ status: HTTPStatus, _ message: String) -> HTTPResponse {
        json((try? JSONEncoder().encode(["error": message])).map(Array.init) ?? Array("{}".utf8), status: status)
    }

    /// The bytes on the wire. The headers keep the page to its own scripts and styles (no inline
    /// script can run, whatever a miner's text smuggles in), forbid framing and sniffing, and
    /// stop caching of answers.
    public func serialized() -> [UInt8] {
        var head = "HTTP/1.1 \(status.rawValue) \(status.reason)\r\n"
            + "Content-Type: \(contentType)\r\n"
            + "Content-Length: \(body.count)\r\n"
            + "Connection: close\r\n"
            + "Cache-Control: no-store\r\n"
            + "X-Content-Type-Options: nosniff\r\n"
            + "X-Frame-Options: DENY\r\n"
            + "Referrer-Policy: no-referrer\r\n"
            + "Content-Security-Policy: default-src 'none'; script-src 'self'; style-src 'self'; connect-src 'self'; img-src 'self'; base-uri 'none'; form-action 'self'; frame-ancestors 'none'\r\n"
        if status == .methodNotAllowed { head += "Allow: \(allow.map(\.rawValue).joined(separator: ", "))\r\n" }
        return Array((head + "\r\n").utf8) + body
    }
}
