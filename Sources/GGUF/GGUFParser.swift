/// Parses the header, metadata and tensor infos of a GGUF v2/v3 file and checks that every
/// tensor's data lies inside the file. Every count and length is checked against a cap and
/// against the bytes remaining before anything is allocated.
struct GGUFParser {
    /// Caps on fields read from the file. Values past these are treated as corruption even
    /// when the file is large enough to hold them.
    enum Limits {
        static let maxKeyLength = 1 << 16
        static let maxTensorNameLength = 1 << 16
        static let maxStringValueLength = 1 << 30
        static let maxArrayCount = 1 << 26
        /// Array nesting depth (an array directly under a key has depth 1).
        static let maxArrayDepth = 8
        static let maxMetadataKeys: UInt64 = 1 << 20
        static let maxTensors: UInt64 = 1 << 20
        static let maxDimensions = 4
        static let maxAlignment = 1 << 30
    }

    static let headerSize = 24
    static let defaultAlignment = 32
    /// Smallest possible key/value pair: empty key (8), type (4), one-byte value.
    static let minimumPairBytes: UInt64 = 13
    /// Smallest possible tensor info: empty name (8), n_dims (4), one dim (8), type (4), offset (8).
    static let minimumTensorInfoBytes: UInt64 = 32

    struct Parsed {
        var version: UInt32 = 0
        var metadataKeys: [String] = []
        var metadata: [String: GGUFValue] = [:]
        var tensors: [GGUFTensorInfo] = []
        var alignment = GGUFParser.defaultAlignment
        var dataOffset = 0
    }

    static func parse(_ bytes: UnsafeRawBufferPointer) throws -> Parsed {
        var cursor = ByteCursor(bytes)
        var parsed = Parsed()

        // Header: magic, version, tensor count, key count. Check the magic and version as soon as
        // their bytes exist, so a short non-GGUF file is reported as such.
        guard bytes.count >= 4 else { throw GGUFError.truncatedHeader(fileSize: bytes.count, needed: headerSize) }
        let magic = Array(bytes[0 ..< 4])
        guard magic == [0x47, 0x47, 0x55, 0x46] else { throw GGUFError.badMagic(found: magic) }
        guard bytes.count >= headerSize else {
            if bytes.count >= 8 { try checkVersion(bytes.loadUnaligned(fromByteOffset: 4, as: UInt32.self).littleEndian) }
            throw GGUFError.truncatedHeader(fileSize: bytes.count, needed: headerSize)
        }
        _ = try header { try cursor.read(UInt32.self) }
        parsed.version = try header { try cursor.read(UInt32.self) }
        try checkVersion(parsed.version)
        let tensorCount = try header { try cursor.read(UInt64.self) }
        let keyCount = try header { try cursor.read(UInt64.self) }

        let remaining = UInt64(cursor.remaining)
        let keyLimit = min(Limits.maxMetadataKeys, remaining / minimumPairBytes)
        guard keyCount <= keyLimit else { throw GGUFError.tooManyMetadataKeys(count: keyCount, limit: keyLimit) }
        let tensorLimit = min(Limits.maxTensors, remaining / minimumTensorInfoBytes)
        guard tensorCount <= tensorLimit else { throw GGUFError.tooManyTensors(count: tensorCount, limit: tensorLimit) }

        // Metadata.
        parsed.metadataKeys.reserveCapacity(Int(keyCount))
        parsed.metadata.reserveCapacity(Int(keyCount))
        for index in 0 ..< Int(keyCount) {
            let key = try readString(&cursor, limit: Limits.maxKeyLength, context: "key #\(index)")
            let typeID = try metadataField(&cursor, context: "key '\(key)'") { try $0.read(UInt32.self) }
            let value = try readValue(&cursor, typeID: typeID, depth: 0, context: "key '\(key)'")
            guard parsed.metadata.updateValue(value, forKey: key) == nil else { throw GGUFError.duplicateKey(key) }
            parsed.metadataKeys.append(key)
        }
        parsed.alignment = try alignment(in: parsed.metadata)

        // Tensor infos.
        var infos: [PendingTensorInfo] = []
        infos.reserveCapacity(Int(tensorCount))
        var names = Set<String>(minimumCapacity: Int(tensorCount))
        for index in 0 ..< Int(tensorCount) {
            let info = try readTensorInfo(&cursor, index: index)
            guard names.insert(info.name).inserted else { throw GGUFError.duplicateTensor(info.name) }
            infos.append(info)
        }

        // Data section: starts at the next aligned position after the infos.
        cursor.align(to: parsed.alignment)
        parsed.dataOffset = cursor.offset
        let dataSize = max(0, bytes.count - cursor.offset)
        parsed.tensors = try place(infos, alignment: parsed.alignment, dataSize: dataSize)
        return parsed
    }

    private static func checkVersion(_ version: UInt32) throws {
        guard version == 2 || version == 3 else { throw GGUFError.unsupportedVersion(version) }
    }

    private static func header<T>(_ body: () throws -> T) throws -> T {
        do { return try body() } catch let e as ByteCursor.OutOfBytes {
            throw GGUFError.truncatedHeader(fileSize: e.offset + e.remaining, needed: headerSize)
        }
    }

    // MARK: Metadata values

    /// Runs a fixed-size read, reporting running out of bytes as truncated metadata at `context`.
    private static func metadataField<T>(_ cursor: inout ByteCursor, context: @autoclosure () -> String,
                                         _ body: (inout ByteCursor) throws -> T) throws -> T {
        do { return try body(&cursor) } catch let e as ByteCursor.OutOfBytes {
            throw GGUFError.truncatedMetadata(context: context(), offset: e.offset, needed: e.needed, remaining: e.remaining)
        }
    }

    private static func readString(_ cursor: inout ByteCursor, limit: Int, context: @autoclosure () -> String) throws -> String {
        do { return try cursor.readString(limit: limit) } catch let e as ByteCursor.OutOfBytes {
            throw GGUFError.truncatedMetadata(context: context(), offset: e.offset, needed: e.needed, remaining: e.remaining)
        } catch let e as ByteCursor.BadStringLength {
            if e.exceedsLimit { throw GGUFError.stringTooLong(context: context(), length: e.length, limit: limit) }
            throw GGUFError.truncatedString(context: context(), offset: e.offset, length: e.length, remaining: e.remaining)
        } catch let e as ByteCursor.BadUTF8 {
            throw GGUFError.invalidUTF8(context: context(), offset: e.offset)
        }
    }

    /// Size in bytes of a scalar value type, 8 for a string (its length) and 12 for an array
    /// (element type and count): the least one element can occupy. Nil for an unknown type.
    private static func minimumSize(ofValueType typeID: UInt32) -> Int? {
        switch typeID {
        case 0, 1, 7: return 1
        case 2, 3: return 2
        case 4, 5, 6: return 4
        case 8, 10, 11, 12: return 8
        case 9: return 12
        default: return nil
        }
    }

    private static func readValue(_ cursor: inout ByteCursor, typeID: UInt32, depth: Int,
                                  context: @autoclosure () -> String) throws -> GGUFValue {
        switch typeID {
        case 0: return .uint8(try metadataField(&cursor, context: context()) { try $0.read(UInt8.self) })
        case 1: return .int8(try metadataField(&cursor, context: context()) { try $0.read(Int8.self) })
        case 2: return .uint16(try metadataField(&cursor, context: context()) { try $0.read(UInt16.self) })
        case 3: return .int16(try metadataField(&cursor, context: context()) { try $0.read(Int16.self) })
        case 4: return .uint32(try metadataField(&cursor, context: context()) { try $0.read(UInt32.self) })
        case 5: return .int32(try metadataField(&cursor, context: context()) { try $0.read(Int32.self) })
        case 6: return .float32(try metadataField(&cursor, context: context()) { try $0.readFloat() })
        case 7: return .bool(try metadataField(&cursor, context: context()) { try $0.read(UInt8.self) } != 0)
        case 8: return .string(try readString(&cursor, limit: Limits.maxStringValueLength, context: context()))
        case 10: return .uint64(try metadataField(&cursor, context: context()) { try $0.read(UInt64.self) })
        case 11: return .int64(try metadataField(&cursor, context: context()) { try $0.read(Int64.self) })
        case 12: return .float64(try metadataField(&cursor, context: context()) { try $0.readDouble() })
        case 9:
            guard depth < Limits.maxArrayDepth else {
                throw GGUFError.arrayNestingTooDeep(context: context(), limit: Limits.maxArrayDepth)
            }
            let elementType = try metadataField(&cursor, context: context()) { try $0.read(UInt32.self) }
            guard let elementSize = minimumSize(ofValueType: elementType) else {
                throw GGUFError.invalidValueType(context: context(), typeID: elementType)
            }
            let count = try metadataField(&cursor, context: context()) { try $0.read(UInt64.self) }
            guard count <= UInt64(Limits.maxArrayCount) else {
                throw GGUFError.arrayTooLong(context: context(), count: count, limit: Limits.maxArrayCount)
            }
            let minimumBytes = count * UInt64(elementSize)   // both bounded: no overflow
            guard minimumBytes <= UInt64(cursor.remaining) else {
                throw GGUFError.truncatedArray(context: context(), count: count, minimumBytes: minimumBytes, remaining: cursor.remaining)
            }
            var elements: [GGUFValue] = []
            elements.reserveCapacity(Int(count))
            for index in 0 ..< Int(count) {
                elements.append(try readValue(&cursor, typeID: elementType, depth: depth + 1, context: "\(context())[\(index)]"))
            }
            return .array(elements)
        default:
            throw GGUFError.invalidValueType(context: context(), typeID: typeID)
        }
    }

    /// `general.alignment`: any integer type is accepted; it must be a power of two.
    private static func alignment(in metadata: [String: GGUFValue]) throws -> Int {
        let key = "general.alignment"
        guard let value = metadata[key] else { return defaultAlignment }
        guard let alignment = value.int else {
            if value.double == nil {
                throw GGUFError.metadataTypeMismatch(key: key, expected: "u32", found: value.typeName)
            }
            // An integer outside Int's range (u64 above Int.max): not a usable alignment.
            throw GGUFError.invalidAlignment(Int.max)
        }
        guard alignment > 0, alignment <= Limits.maxAlignment, alignment & (alignment - 1) == 0 else {
            throw GGUFError.invalidAlignment(alignment)
        }
        return alignment
    }

    // MARK: Tensor infos

    /// A tensor info whose offset has not yet been checked against the data section.
    private struct PendingTensorInfo {
        let name: String
        let dims: [Int]
        let type: GGMLType
        let offset: UInt64
        let elementCount: Int
        let byteCount: Int
    }

    private static func tensorField<T>(_ cursor: inout ByteCursor, tensor: @autoclosure () -> String,
                                       _ body: (inout ByteCursor) throws -> T) throws -> T {
        do { return try body(&cursor) } catch let e as ByteCursor.OutOfBytes {
            throw GGUFError.truncatedTensorInfo(tensor: tensor(), offset: e.offset, needed: e.needed, remaining: e.remaining)
        }
    }

    private static func readTensorInfo(_ cursor: inout ByteCursor, index: Int) throws -> PendingTensorInfo {
        let name: String
        do {
            name = try cursor.readString(limit: Limits.maxTensorNameLength)
        } catch let e as ByteCursor.OutOfBytes {
            throw GGUFError.truncatedTensorInfo(tensor: "#\(index)", offset: e.offset, needed: e.needed, remaining: e.remaining)
        } catch let e as ByteCursor.BadStringLength {
            if e.exceedsLimit {
                throw GGUFError.stringTooLong(context: "tensor #\(index) name", length: e.length, limit: Limits.maxTensorNameLength)
            }
            throw GGUFError.truncatedString(context: "tensor #\(index) name", offset: e.offset, length: e.length, remaining: e.remaining)
        } catch let e as ByteCursor.BadUTF8 {
            throw GGUFError.invalidUTF8(context: "tensor #\(index) name", offset: e.offset)
        }

        let dimCount = try tensorField(&cursor, tensor: name) { try $0.read(UInt32.self) }
        guard dimCount >= 1, dimCount <= UInt32(Limits.maxDimensions) else {
            throw GGUFError.invalidDimensionCount(tensor: name, count: dimCount, maximum: Limits.maxDimensions)
        }
        var rawDims: [UInt64] = []
        rawDims.reserveCapacity(Int(dimCount))
        for _ in 0 ..< Int(dimCount) {
            rawDims.append(try tensorField(&cursor, tensor: name) { try $0.read(UInt64.self) })
        }
        var dims: [Int] = []
        dims.reserveCapacity(rawDims.count)
        var elementCount = 1
        for (i, raw) in rawDims.enumerated() {
            guard raw >= 1, raw <= UInt64(Int64.max) else {
                throw GGUFError.invalidDimension(tensor: name, index: i, value: raw)
            }
            let dim = Int(raw)
            let (product, overflow) = elementCount.multipliedReportingOverflow(by: dim)
            guard !overflow else { throw GGUFError.elementCountOverflow(tensor: name, dims: rawDims) }
            elementCount = product
            dims.append(dim)
        }

        let typeID = try tensorField(&cursor, tensor: name) { try $0.read(UInt32.self) }
        guard let type = GGMLType(rawValue: typeID) else { throw GGUFError.unknownTensorType(tensor: name, typeID: typeID) }
        guard dims[0] % type.blockSize == 0 else {
            throw GGUFError.rowNotBlockMultiple(tensor: name, type: type, rowLength: dims[0], blockSize: type.blockSize)
        }
        let (byteCount, overflow) = (elementCount / type.blockSize).multipliedReportingOverflow(by: type.bytesPerBlock)
        guard !overflow else { throw GGUFError.elementCountOverflow(tensor: name, dims: rawDims) }

        let offset = try tensorField(&cursor, tensor: name) { try $0.read(UInt64.self) }
        return PendingTensorInfo(name: name, dims: dims, type: type, offset: offset,
                                 elementCount: elementCount, byteCount: byteCount)
    }

    // MARK: Data placement

    /// Every tensor must start at a multiple of the alignment, lie inside the data section, and
    /// not overlap another. Unlike llama.cpp we do not require offsets to equal the running padded
    /// size: gaps and any order are accepted, since they are harmless to a reader.
    private static func place(_ infos: [PendingTensorInfo], alignment: Int, dataSize: Int) throws -> [GGUFTensorInfo] {
        var tensors: [GGUFTensorInfo] = []
        tensors.reserveCapacity(infos.count)
        for t in infos {
            guard t.offset % UInt64(alignment) == 0 else {
                throw GGUFError.misalignedTensorOffset(tensor: t.name, offset: t.offset, alignment: alignment)
            }
            guard t.offset <= UInt64(dataSize) else {
                throw GGUFError.tensorOffsetOutOfRange(tensor: t.name, offset: t.offset, dataSize: dataSize)
            }
            let offset = Int(t.offset)
            guard t.byteCount <= dataSize - offset else {
                throw GGUFError.truncatedTensorData(tensor: t.name, end: t.offset + UInt64(t.byteCount), dataSize: dataSize)
            }
            tensors.append(GGUFTensorInfo(name: t.name, dims: t.dims, type: t.type, offset: offset,
                                          elementCount: t.elementCount, byteCount: t.byteCount))
        }
        let byStart = tensors.indices.sorted { tensors[$0].offset < tensors[$1].offset }
        for (previous, next) in zip(byStart, byStart.dropFirst()) {
            let first = tensors[previous], second = tensors[next]
            guard second.offset >= first.offset + first.byteCount else {
                throw GGUFError.overlappingTensors(first: first.name, firstEnd: first.offset + first.byteCount,
                                                   second: second.name, secondOffset: second.offset)
            }
        }
        return tensors
    }
}
