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

    /// Parses and validates metagraph JSON.
    /// - Throws: `MetagraphError`.
    public init(json data: Data) throws {
        let root: Any
        do {
            root = try JSONSerialization.jsonObject(with: data)
        } catch {
            throw MetagraphError.notJSON(reason: error.localizedDescription)
        }
        guard let object = root as? [String: Any] else { throw MetagraphError.wrongType(field: "(root)", expected: "an object") }
        guard let netuidValue = object["netuid"] else { throw MetagraphError.missingField("netuid") }
        guard let netuid = JSONValue.integer(netuidValue), let netuid32 = UInt32(exactly: netuid) else {
            throw MetagraphError.wrongType(field: "netuid", expected: "an integer in 0...\(UInt32.max)")
        }
        guard let blockValue = object["block"] else { throw MetagraphError.missingField("block") }
        guard let block = JSONValue.integer(blockValue), block >= 0 else {
            throw MetagraphError.wrongType(field: "block", expected: "a non-negative integer")
        }
        guard let neuronsValue = object["neurons"] else { throw MetagraphError.missingField("neurons") }
        guard let list = neuronsValue as? [Any] else { throw MetagraphError.wrongType(field: "neurons", expected: "an array") }
        guard list.count <= Self.maxNeurons else {
            throw MetagraphError.tooManyNeurons(count: list.count, max: Self.maxNeurons)
        }
        var neurons = [Neuron]()
        neurons.reserveCapacity(list.count)
        for (index, item) in list.enumerated() {
            guard let n = item as? [String: Any] else {
                throw MetagraphError.neuronWrongType(index: index, field: "(entry)", expected: "an object")
            }
            func field(_ name: String) throws -> Any {
                guard let v = n[name] else { throw MetagraphError.neuronMissingField(index: index, field: name) }
                return v
            }
            guard let uid = JSONValue.integer(try field("uid")) else {
                throw MetagraphError.neuronWrongType(index: index, field: "uid", expected: "an integer")
            }
            guard let hotkey = try field("hotkey") as? String else {
                throw MetagraphError.neuronWrongType(index: index, field: "hotkey", expected: "an SS58 string")
            }
            guard let stake = JSONValue.number(try field("stake")) else {
                throw MetagraphError.neuronWrongType(index: index, field: "stake", expected: "a number")
            }
            guard let permit = JSONValue.bool(try field("validator_permit")) else {
                throw MetagraphError.neuronWrongType(index: index, field: "validator_permit", expected: "true or false")
            }
            neurons.append(Neuron(uid: uid, hotkey: hotkey, stake: stake, validatorPermit: permit))
        }
        try self.init(netuid: netuid32, block: UInt64(block), neurons: neurons)
    }
}

/// Typed reads of JSONSerialization values, which arrive as NSNumber for numbers and booleans.
enum JSONValue {
    static func isBool(_ n: NSNumber) -> Bool {
        #if canImport(Darwin)
        return CFGetTypeID(n) == CFBooleanGetTypeID()
        #else
        // corelibs-foundation stores JSON booleans as char-typed numbers; JSON has no other chars.
        return n.objCType.pointee == Int8(UInt8(ascii: "c"))
        #endif
    }

    static func integer(_ value: Any) -> Int? {
        guard let n = value as? NSNumber, !isBool(n) else { return nil }
        return Int(exactly: n.doubleValue) == nil ? nil : (value as? Int) ?? Int(exactly: n.doubleValue)
    }

    static func number(_ value: Any) -> Double? {
        guard let n = value as? NSNumber, !isBool(n) else { return nil }
        return n.doubleValue
    }

    static func bool(_ value: Any) -> Bool? {
        guard let n = value as? NSNumber, isBool(n) else { return nil }
        return n.boolValue
    }
}
