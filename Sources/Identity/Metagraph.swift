import Foundation

/// One registered slot of a subnet.
public struct Neuron: Sendable, Equatable {
    public var uid: Int
    /// SS58, validated.
    public var hotkey: String
    /// Finite and ≥ 0.
    public var stake: Double
    public var validatorPermit: Bool

    public init(uid: Int, hotkey: String, stake: Double, validatorPermit: Bool) {
        self.uid = uid
        self.hotkey = hotkey
        self.stake = stake
        self.validatorPermit = validatorPermit
    }
}

/// A validated snapshot of a subnet: `{netuid, block, neurons: [{uid, hotkey, stake, validator_permit}]}`.
/// UIDs are unique and below `maxNeurons`, hotkeys are unique valid SS58 addresses, stakes are
/// finite and ≥ 0. Lookup by hotkey is O(1).
public struct Metagraph: Sendable {
    /// The network's scaling target for UIDs per subnet.
    public static let maxNeurons = 16_384
    /// A metagraph file larger than this is refused before it is read (16,384 neurons take ~2 MB).
    public static let maxFileBytes = 64 << 20

    public let netuid: UInt32
    public let block: UInt64
    /// In file order.
    public let neurons: [Neuron]
    private let indexByHotkey: [String: Int]

    /// - Throws: `MetagraphError` naming the first offending neuron.
    public init(netuid: UInt32, block: UInt64, neurons: [Neuron]) throws {
        guard neurons.count <= Self.maxNeurons else {
            throw MetagraphError.tooManyNeurons(count: neurons.count, max: Self.maxNeurons)
        }
        var indexByHotkey = [String: Int](minimumCapacity: neurons.count)
        var indexByUID = [Int: Int](minimumCapacity: neurons.count)
        for (index, n) in neurons.enumerated() {
            guard n.uid >= 0 && n.uid < Self.maxNeurons else {
                throw MetagraphError.uidOutOfRange(index: index, uid: n.uid, max: Self.maxNeurons)
            }
            if let first = indexByUID.updateValue(index, forKey: n.uid) {
                throw MetagraphError.duplicateUID(uid: n.uid, firstIndex: first, index: index)
            }
            do {
                _ = try SS58.decode(n.hotkey)
            } catch let error as SS58Error {
                throw MetagraphError.invalidHotkey(index: index, uid: n.uid, error)
            }
            if let first = indexByHotkey.updateValue(index, forKey: n.hotkey) {
                throw MetagraphError.duplicateHotkey(hotkey: n.hotkey, uid: n.uid, firstUID: neurons[first].uid)
            }
            guard n.stake.isFinite && n.stake >= 0 else {
                throw MetagraphError.invalidStake(index: index, uid: n.uid, stake: n.stake)
            }
        }
        self.netuid = netuid
        self.block = block
        self.neurons = neurons
        self.indexByHotkey = indexByHotkey
    }

    /// A metagraph with no neurons (every sender is unregistered).
    public static func empty(netuid: UInt32 = 0) -> Metagraph {
        Metagraph(unchecked: netuid, block: 0)
    }

    private init(unchecked netuid: UInt32, block: UInt64) {
        self.netuid = netuid
        self.block = block
        neurons = []
        indexByHotkey = [:]
    }

    /// The neuron registered with `hotkey`, if any.
    public func neuron(hotkey: String) -> Neuron? {
        indexByHotkey[hotkey].map { neurons[$0] }
    }

    /// The UID of `hotkey`, or -1 when it is not registered (as INFO reports it).
    public func uid(of hotkey: String) -> Int32 {
        neuron(hotkey: hotkey).map { Int32($0.uid) } ?? -1
    }
}

/// Why a metagraph file or snapshot was refused.
public enum MetagraphError: Error, CustomStringConvertible, Equatable {
    case unreadable(path: String, reason: String)
    case fileTooLarge(path: String, bytes: Int, max: Int)
    case notJSON(reason: String)
    case missingField(String)
    case wrongType(field: String, expected: String)
    case tooManyNeurons(count: Int, max: Int)
    case neuronMissingField(index: Int, field: String)
    case neuronWrongType(index: Int, field: String, expected: String)
    case uidOutOfRange(index: Int, uid: Int, max: Int)
    case duplicateUID(uid: Int, firstIndex: Int, index: Int)
    case invalidHotkey(index: Int, uid: Int, SS58Error)
    case duplicateHotkey(hotkey: String, uid: Int, firstUID: Int)
    case invalidStake(index: Int, uid: Int, stake: Double)

    public var description: String {
        switch self {
        case .unreadable(let path, let reason): return "cannot read metagraph '\(path)': \(reason)"
        case .fileTooLarge(let path, let bytes, let max):
            return "metagraph '\(path)' is \(bytes) bytes, over the \(max)-byte limit"
        case .notJSON(let reason): return "metagraph is not valid JSON: \(reason)"
        case .missingField(let f): return "metagraph has no '\(f)' field (expected {netuid, block, neurons})"
        case .wrongType(let f, let expected): return "metagraph field '\(f)' must be \(expected)"
        case .tooManyNeurons(let n, let max): return "metagraph has \(n) neurons, over the limit of \(max)"
        case .neuronMissingField(let i, let f): return "neurons[\(i)] has no '\(f)' field"
        case .neuronWrongType(let i, let f, let expected): return "neurons[\(i)].\(f) must be \(expected)"
        case .uidOutOfRange(let i, let uid, let max): return "neurons[\(i)] has uid \(uid), outside 0..<\(max)"
        case .duplicateUID(let uid, let first, let i): return "neurons[\(i)] repeats uid \(uid), already used by neurons[\(first)]"
        case .invalidHotkey(let i, let uid, let e): return "neurons[\(i)] (uid \(uid)) has an invalid hotkey: \(e)"
        case .duplicateHotkey(let h, let uid, let first): return "uid \(uid) repeats hotkey \(h), already registered on uid \(first)"
        case .invalidStake(let i, let uid, let s): return "neurons[\(i)] (uid \(uid)) has stake \(s); stake must be finite and ≥ 0"
        }
    }
}
