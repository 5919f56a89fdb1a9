import Foundation

extension Metagraph {
    /// Reads and validates a metagraph JSON file.
    /// - Throws: `MetagraphError`.
    public static func load(path: String) throws -> Metagraph {
        let attributes: [FileAttributeKey: Any]
        do {
            attributes = try FileManager.default.attributesOfItem(atPath: path)
        } catch {
            throw MetagraphError.unreadable(path: path, reason: error.localizedDescription)
        }
        let size = (attributes[.size] as? NSNumber)?.intValue ?? 0
        guard size <= maxFileBytes else { throw MetagraphError.fileTooLarge(path: path, bytes: size, max: maxFileBytes) }
        let data: Data
        do {
            data = try Data(contentsOf: URL(fileURLWithPath: path))
        } catch {
            throw MetagraphError.unreadable(path: path, reason: error.localizedDescription)
        }
        guard data.count <= maxFileBytes else {
            throw MetagraphError.fileTooLarge(path: path, bytes: data.count, max: maxFileBytes)
        }
        return try Metagraph(json: data)
    }

    /// Parses and validates metagraph JSON. Unknown fields are ignored; a repeated field keeps its last value.
    /// - Throws: `MetagraphError`.
    public init(json data: Data) throws {
        var cursor = JSONCursor([UInt8](data))
        var netuid: UInt32?, block: UInt64?, neurons: [Neuron]?
        do {
            guard try cursor.peekKind() == .object else { throw MetagraphError.wrongType(field: "(root)", expected: "an object") }
            try cursor.readObject { key, cursor in
                switch key {
                case "netuid":
                    guard try cursor.peekKind() == .number, let n = try cursor.readNumber().integer, let n32 = UInt32(exactly: n) else {
                        throw MetagraphError.wrongType(field: "netuid", expected: "an integer in 0...\(UInt32.max)")
                    }
                    netuid = n32
                case "block":
                    guard try cursor.peekKind() == .number, let n = try cursor.readNumber().integer, n >= 0 else {
                        throw MetagraphError.wrongType(field: "block", expected: "a non-negative integer")
                    }
                    block = UInt64(n)
                case "neurons":
                    neurons = try Self.readNeurons(&cursor)
                default:
                    try cursor.skipValue()
                }
            }
            try cursor.finish()
        } catch let error as JSONCursor.SyntaxError {
            throw MetagraphError.notJSON(reason: error.description)
        }
        guard let netuid else { throw MetagraphError.missingField("netuid") }
        guard let block else { throw MetagraphError.missingField("block") }
        guard let neurons else { throw MetagraphError.missingField("neurons") }
        try self.init(netuid: netuid, block: block, neurons: neurons)
    }

    private static func readNeurons(_ cursor: inout JSONCursor) throws -> [Neuron] {
        guard try cursor.peekKind() == .array else { throw MetagraphError.wrongType(field: "neurons", expected: "an array") }
        var neurons = [Neuron]()
        var count = 0
        try cursor.readArray { index, cursor in
            count += 1
            guard index < maxNeurons else { return try cursor.skipValue() }   // counted for the error below
            neurons.append(try readNeuron(&cursor, index: index))
        }
        guard count <= maxNeurons else { throw MetagraphError.tooManyNeurons(count: count, max: maxNeurons) }
        return neurons
    }

    private static func readNeuron(_ cursor: inout JSONCursor, index: Int) throws -> Neuron {
        guard try cursor.peekKind() == .object else {
            throw MetagraphError.neuronWrongType(index: index, field: "(entry)", expected: "an object")
        }
        var uid: Int?, hotkey: String?, stake: Double?, permit: Bool?
        try cursor.readObject { key, cursor in
            let kind = try cursor.peekKind()
            func require(_ expected: JSONCursor.Kind, _ description: String) throws {
                guard kind == expected else { throw MetagraphError.neuronWrongType(index: index, field: key, expected: description) }
            }
            switch key {
            case "uid":
                try require(.number, "an integer")
                guard let n = try cursor.readNumber().integer else {
                    throw MetagraphError.neuronWrongType(index: index, field: key, expected: "an integer")
                }
                uid = n
            case "hotkey":
                try require(.string, "an SS58 string")
                hotkey = try cursor.readString()
            case "stake":
                try require(.number, "a number")
                stake = try cursor.readNumber().double
            case "validator_permit":
                try require(.bool, "true or false")
                permit = try cursor.readBool()
            default:
                try cursor.skipValue()
            }
        }
        guard let uid else { throw MetagraphError.neuronMissingField(index: index, field: "uid") }
        guard let hotkey else { throw MetagraphError.neuronMissingField(index: index, field: "hotkey") }
        guard let stake else { throw MetagraphError.neuronMissingField(index: index, field: "stake") }
        guard let permit else { throw MetagraphError.neuronMissingField(index: index, field: "validator_permit") }
        return Neuron(uid: uid, hotkey: hotkey, stake: stake, validatorPermit: permit)
    }
}
