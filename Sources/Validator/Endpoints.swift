import Foundation

/// One axon to query: its UID, its hotkey (the receiver its requests are signed for) and address.
public struct Endpoint: Sendable, Equatable, Codable {
    public var uid: Int
    public var hotkey: String
    public var host: String
    public var port: Int

    public init(uid: Int, hotkey: String, host: String, port: Int) {
        self.uid = uid; self.hotkey = hotkey; self.host = host; self.port = port
    }
}

public enum EndpointsError: Error, CustomStringConvertible, Equatable {
    case unreadable(path: String, reason: String)
    case malformed(path: String, reason: String)
    case badPort(index: Int, uid: Int, port: Int)
    case duplicateUID(index: Int, uid: Int)
    case empty(path: String)

    public var description: String {
        switch self {
        case let .unreadable(path, reason): return "endpoints file '\(path)' cannot be read: \(reason)"
        case let .malformed(path, reason):
            return "endpoints file '\(path)' is not a JSON list of {uid, hotkey, host, port}: \(reason)"
        case let .badPort(index, uid, port): return "endpoints[\(index)] (uid \(uid)): port \(port) is not in 1...65535"
        case let .duplicateUID(index, uid): return "endpoints[\(index)]: uid \(uid) appears more than once"
        case let .empty(path): return "endpoints file '\(path)' lists no endpoints"
        }
    }
}

public enum Endpoints {
    /// An endpoints file is at most this large (16,384 UIDs take about 1.5 MB).
    public static let maxBytes = 64 << 20

    /// Reads a JSON list of `{uid, hotkey, host, port}`.
    /// - Throws: `EndpointsError` naming the file or the offending entry.
    public static func load(path: String) throws -> [Endpoint] {
        let read: Data?
        do { read = try BoundedFile.read(path, maxBytes: maxBytes) } catch {
            throw EndpointsError.unreadable(path: path, reason: error.localizedDescription)
        }
        guard let data = read else {
            throw EndpointsError.unreadable(path: path, reason: "larger than \(maxBytes >> 20) MiB, far more than any metagraph's endpoints")
        }
        let endpoints: [Endpoint]
        do { endpoints = try JSONDecoder().decode([Endpoint].self, from: data) } catch {
            throw EndpointsError.malformed(path: path, reason: "\(error)")
        }
        guard !endpoints.isEmpty else { throw EndpointsError.empty(path: path) }
        var seen = Set<Int>()
        for (index, endpoint) in endpoints.enumerated() {
            guard (1...65535).contains(endpoint.port) else {
                throw EndpointsError.badPort(index: index, uid: endpoint.uid, port: endpoint.port)
            }
            guard seen.insert(endpoint.uid).inserted else { throw EndpointsError.duplicateUID(index: index, uid: endpoint.uid) }
        }
        return endpoints
    }
}
