// Who the playground can ask: the endpoints file's UIDs (with stake from a metagraph and the last
// validator weight from a weights file, when given) and the mixture, which is one more axon
// speaking the same protocol. The mixture's hotkey is not in any file, and an endpoint may leave
// its hotkey empty: INFO tells them (trusting the axon's word, as `axon query` does).
import Foundation
import Identity
import Validator
import Wire

/// One miner the page can pick.
public struct Miner: Sendable {
    /// The page's name for it: "uid-3", or "mixture".
    public let id: String
    public let label: String
    /// The UID, nil for the mixture.
    public let uid: Int?
    public let host: String
    public let port: Int
    /// From the endpoints file; nil (the mixture, an empty entry) means INFO's.
    public let hotkey: String?
    public let stake: Double?
    public let weight: Double?
}

public enum RosterError: Error, CustomStringConvertible, Equatable {
    case unreadableWeights(path: String, reason: String)
    case malformedWeights(path: String, reason: String)

    public var description: String {
        switch self {
        case let .unreadableWeights(path, reason): return "weights file '\(path)' cannot be read: \(reason)"
        case let .malformedWeights(path, reason):
            return "weights file '\(path)' is not {\"weights\": [{\"uid\": N, \"weight\": W}, …]} (axon validate --weights-out): \(reason)"
        }
    }
}

/// The last weights a validator wrote (`axon validate --weights-out`), by UID.
public enum WeightsReader {
    public static let maxFileBytes = 64 << 20

    private struct File: Decodable {
        struct Entry: Decodable { let uid: Int; let weight: Double? }
        let weights: [Entry]
    }

    /// - Throws: `RosterError`.
    public static func load(path: String) throws -> [Int: Double] {
        let data: Data
        do {
            let attributes = try FileManager.default.attributesOfItem(atPath: path)
            if let size = attributes[.size] as? Int, size > maxFileBytes {
                throw RosterError.malformedWeights(path: path, reason: "\(size) bytes, more than \(maxFileBytes)")
            }
            data = try Data(contentsOf: URL(fileURLWithPath: path))
        } catch let error as RosterError {
            throw error
        } catch {
            throw RosterError.unreadableWeights(path: path, reason: error.localizedDescription)
        }
        do {
            let file = try JSONDecoder().decode(File.self, from: data)
            var weights: [Int: Double] = [:]
            for entry in file.weights { if let weight = entry.weight, weight.isFinite { weights[entry.uid] = weight } }
            return weights
        } catch {
            throw RosterError.malformedWeights(path: path, reason: "\(error)")
        }
    }
}

/// The miners, and what INFO last said about each (thread-safe).
public final class MinerRoster: @unchecked Sendable {
    public let miners: [Miner]
    private let lock = NSLock()
    private var infos: [String: InfoResponse] = [:]

    /// - Parameters:
    ///   - endpoints: the endpoints file's entries (already checked against a metagraph, if any).
    ///   - metagraph: stake by UID, when given.
    ///   - weights: the last validator weight by UID, when given.
    ///   - mixture: the mixture's address.
    public init(endpoints: [Endpoint], metagraph: Metagraph? = nil, weights: [Int: Double]? = nil,
                mixture: (host: String, port: Int)? = nil) {
        let stakes = Dictionary(metagraph?.neurons.map { ($0.uid, $0.stake) } ?? [], uniquingKeysWith: { first, _ in first })
        var miners = endpoints.sorted { $0.uid < $1.uid }.map { endpoint in
            Miner(id: "uid-\(endpoint.uid)", label: "UID \(endpoint.uid)", uid: endpoint.uid, host: endpoint.host, port: endpoint.port,
                  hotkey: endpoint.hotkey.isEmpty ? nil : endpoint.hotkey, stake: stakes[endpoint.uid], weight: weights?[endpoint.uid])
        }
        if let mixture {
            miners.append(Miner(id: "mixture", label: "mixture", uid: nil, host: mixture.host, port: mixture.port,
                                hotkey: nil, stake: nil, weight: nil))
        }
        self.miners = miners
    }

    public func miner(id: String) -> Miner? { miners.first { $0.id == id } }

    public func info(of miner: Miner) -> InfoResponse? { lock.withLock { infos[miner.id] } }

    public func remember(_ info: InfoResponse, of miner: Miner) { lock.withLock { infos[miner.id] = info } }

    /// The endpoint a FORWARD to `miner` goes to, signed for its hotkey (the mixture's from INFO).
    public func endpoint(of miner: Miner) -> Endpoint? {
        guard let hotkey = miner.hotkey ?? info(of: miner).map(\.hotkey), !hotkey.isEmpty else { return nil }
        return Endpoint(uid: miner.uid ?? -1, hotkey: hotkey, host: miner.host, port: miner.port)
    }
}
