/// Lowercase hexadecimal, as used in key files and the signed message.
public enum Hex {
    private static let digits = Array("0123456789abcdef".utf8)

    public static func encode<C: Collection>(_ bytes: C) -> String where C.Element == UInt8 {
        var out = [UInt8]()
        out.reserveCapacity(bytes.count * 2)
        for b in bytes {
            out.append(digits[Int(b >> 4)])
            out.append(digits[Int(b & 0x0F)])
        }
        return String(decoding: out, as: UTF8.self)
    }

    /// Decodes hex (either case).
    /// - Throws: `HexError` naming the first bad character or an odd length.
    public static func decode(_ text: String) throws -> [UInt8] {
        let utf8 = Array(text.utf8)
        guard utf8.count % 2 == 0 else { throw HexError.oddLength(utf8.count) }
        var out = [UInt8]()
        out.reserveCapacity(utf8.count / 2)
        var i = 0
        while i < utf8.count {
            guard let hi = nibble(utf8[i]) else { throw HexError.invalidCharacter(position: i) }
            guard let lo = nibble(utf8[i + 1]) else { throw HexError.invalidCharacter(position: i + 1) }
            out.append(hi << 4 | lo)
            i += 2
        }
        return out
    }

    private static func nibble(_ c: UInt8) -> UInt8? {
        switch c {
        case UInt8(ascii: "0")...UInt8(ascii: "9"): return c - UInt8(ascii: "0")
        case UInt8(ascii: "a")...UInt8(ascii: "f"): return c - UInt8(ascii: "a") + 10
        case UInt8(ascii: "A")...UInt8(ascii: "F"): return c - UInt8(ascii: "A") + 10
        default: return nil
        }
    }
}

public enum HexError: Error, CustomStringConvertible, Equatable {
    case oddLength(Int)
    case invalidCharacter(position: Int)

    public var description: String {
        switch self {
        case .oddLength(let n): return "hex text has an odd length (\(n) characters)"
        case .invalidCharacter(let p): return "hex text has a non-hex character at position \(p)"
        }
    }
}
