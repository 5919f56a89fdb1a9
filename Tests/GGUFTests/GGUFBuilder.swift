import GGUF

/// Builds GGUF files byte by byte for tests: valid ones, and corrupt ones via the overrides and
/// raw entries. Tensor data is laid out like llama.cpp's writer (offsets are the running size
/// padded to the alignment) unless an offset is given.
struct GGUFBuilder {
    enum Entry {
        case value(String, GGUFValue)
        /// A key followed by a value type id and arbitrary bytes.
        case raw(String, typeID: UInt32, bytes: [UInt8])
        /// Arbitrary bytes in place of a whole key/value pair.
        case bytes([UInt8])
    }

    struct Tensor {
        var name: String
        var dims: [UInt64]
        var typeID: UInt32
        var data: [UInt8]
        /// Where the data goes (and the offset written), instead of the running padded size.
        var offset: UInt64?
        /// Written in the tensor info instead of the placement offset; the data stays where it is.
        var writtenOffset: UInt64?
        /// Written instead of `dims.count` when set.
        var dimCountOverride: UInt32?
    }

    var magic: [UInt8] = Array("GGUF".utf8)
    var version: UInt32 = 3
    var entries: [Entry] = []
    var tensors: [Tensor] = []
    var tensorCountOverride: UInt64?
    var keyCountOverride: UInt64?
    /// The alignment used to place the data section and the tensors (write `general.alignment`
    /// yourself to tell the reader).
    var alignment = 32

    mutating func add(_ key: String, _ value: GGUFValue) { entries.append(.value(key, value)) }

    /// Adds an f32 tensor holding `values`, with `dims` (ne[0] first) defaulting to one row.
    mutating func addF32(_ name: String, _ values: [Float], dims: [UInt64]? = nil) {
        let data = values.flatMap { Self.le($0.bitPattern) }
        tensors.append(Tensor(name: name, dims: dims ?? [UInt64(values.count)], typeID: GGMLType.f32.rawValue, data: data))
    }

    /// Adds a tensor of `type` with `dims` whose data is `bytes`.
    mutating func addRaw(_ name: String, type: GGMLType, dims: [UInt64], bytes: [UInt8]) {
        tensors.append(Tensor(name: name, dims: dims, typeID: type.rawValue, data: bytes))
    }

    // MARK: Encoding

    static func le<T: FixedWidthInteger>(_ v: T) -> [UInt8] {
        withUnsafeBytes(of: v.littleEndian) { Array($0) }
    }

    static func string(_ s: String) -> [UInt8] {
        le(UInt64(s.utf8.count)) + Array(s.utf8)
    }

    static func typeID(of value: GGUFValue) -> UInt32 {
        switch value {
        case .uint8: return 0
        case .int8: return 1
        case .uint16: return 2
        case .int16: return 3
        case .uint32: return 4
        case .int32: return 5
        case .float32: return 6
        case .bool: return 7
        case .string: return 8
        case .array: return 9
        case .uint64: return 10
        case .int64: return 11
        case .float64: return 12
        }
    }

    /// The value's payload without its type id. Arrays take their element type from the first
    /// element (u8 when empty).
    static func payload(_ value: GGUFValue) -> [UInt8] {
        switch value {
        case .uint8(let v): return le(v)
        case .int8(let v): return le(v)
        case .uint16(let v): return le(v)
        case .int16(let v): return le(v)
        case .uint32(let v): return le(v)
        case .int32(let v): return le(v)
        case .float32(let v): return le(v.bitPattern)
        case .bool(let v): return [v ? 1 : 0]
        case .string(let s): return string(s)
        case .uint64(let v): return le(v)
        case .int64(let v): return le(v)
        case .float64(let v): return le(v.bitPattern)
        case .array(let a):
            var out = le(a.first.map(typeID(of:)) ?? 0) + le(UInt64(a.count))
            for element in a { out += payload(element) }
            return out
        }
    }

    static func pad(_ n: Int, _ alignment: Int) -> Int { (n + alignment - 1) / alignment * alignment }

    /// Offsets each tensor gets: the given one, or the running padded size.
    var tensorOffsets: [UInt64] {
        var running: UInt64 = 0
        return tensors.map { t in
            let offset = t.offset ?? running
            running = UInt64(Self.pad(Int(offset) + t.data.count, alignment))
            return offset
        }
    }

    /// Byte offset at which the tensor infos end (before padding to the data section).
    var infosEnd: Int { headerAndMetadata().count + tensorInfos().count }

    /// Absolute offset of the data section.
    var dataStart: Int { Self.pad(infosEnd, alignment) }

    func headerAndMetadata() -> [UInt8] {
        var out = magic + Self.le(version)
        out += Self.le(tensorCountOverride ?? UInt64(tensors.count))
        out += Self.le(keyCountOverride ?? UInt64(entries.count))
        for entry in entries {
            switch entry {
            case .value(let key, let value):
                out += Self.string(key) + Self.le(Self.typeID(of: value)) + Self.payload(value)
            case .raw(let key, let typeID, let bytes):
                out += Self.string(key) + Self.le(typeID) + bytes
            case .bytes(let bytes):
                out += bytes
            }
        }
        return out
    }

    func tensorInfos() -> [UInt8] {
        var out: [UInt8] = []
        for (t, offset) in zip(tensors, tensorOffsets) {
            out += Self.string(t.name) + Self.le(t.dimCountOverride ?? UInt32(t.dims.count))
            for d in t.dims { out += Self.le(d) }
            out += Self.le(t.typeID) + Self.le(t.writtenOffset ?? offset)
        }
        return out
    }

    func bytes() -> [UInt8] {
        var out = headerAndMetadata() + tensorInfos()
        guard !tensors.isEmpty else { return out }
        out += [UInt8](repeating: 0, count: Self.pad(out.count, alignment) - out.count)
        let start = out.count
        let offsets = tensorOffsets
        let end = zip(tensors, offsets).map { Int($1) + $0.data.count }.max() ?? 0
        out += [UInt8](repeating: 0, count: Self.pad(end, alignment))
        for (t, offset) in zip(tensors, offsets) {
            out.replaceSubrange((start + Int(offset)) ..< (start + Int(offset) + t.data.count), with: t.data)
        }
        return out
    }
}
