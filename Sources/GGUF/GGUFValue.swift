/// One metadata value, exactly as typed in the file.
public enum GGUFValue: Sendable, Equatable {
    case uint8(UInt8), int8(Int8), uint16(UInt16), int16(Int16), uint32(UInt32), int32(Int32)
    case float32(Float), bool(Bool), string(String), array([GGUFValue])
    case uint64(UInt64), int64(Int64), float64(Double)

    /// Any integer type as `Int`, or nil when the value is not an integer or does not fit.
    /// Real files store many counts as u32 where the spec says u64, so callers should not care.
    public var int: Int? {
        switch self {
        case .uint8(let v): return Int(v)
        case .int8(let v): return Int(v)
        case .uint16(let v): return Int(v)
        case .int16(let v): return Int(v)
        case .uint32(let v): return Int(v)
        case .int32(let v): return Int(v)
        case .uint64(let v): return Int(exactly: v)
        case .int64(let v): return Int(exactly: v)
        default: return nil
        }
    }

    /// Any float or integer type as `Double`.
    public var double: Double? {
        switch self {
        case .float32(let v): return Double(v)
        case .float64(let v): return v
        case .uint64(let v): return Double(v)
        case .int64(let v): return Double(v)
        default: return int.map(Double.init)
        }
    }

    public var string: String? {
        if case .string(let s) = self { return s }
        return nil
    }

    public var array: [GGUFValue]? {
        if case .array(let a) = self { return a }
        return nil
    }

    /// An array whose every element is a string, else nil.
    public var stringArray: [String]? {
        guard case .array(let a) = self else { return nil }
        var out: [String] = []
        out.reserveCapacity(a.count)
        for element in a {
            guard case .string(let s) = element else { return nil }
            out.append(s)
        }
        return out
    }

    public var bool: Bool? {
        if case .bool(let b) = self { return b }
        return nil
    }

    /// The GGUF value-type name ("u32", "string", "array[string]" …), for messages and `inspect`.
    public var typeName: String {
        switch self {
        case .uint8: return "u8"
        case .int8: return "i8"
        case .uint16: return "u16"
        case .int16: return "i16"
        case .uint32: return "u32"
        case .int32: return "i32"
        case .float32: return "f32"
        case .bool: return "bool"
        case .string: return "string"
        case .uint64: return "u64"
        case .int64: return "i64"
        case .float64: return "f64"
        case .array(let a): return "array[\(a.first?.typeName ?? "")]"
        }
    }
}
