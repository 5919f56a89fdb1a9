/// A strict, allocation-light JSON reader that walks a document in place (RFC 8259 grammar),
/// so a 16,384-neuron metagraph is read without building a tree of Foundation objects.
/// Callers pull values in the order they appear; nesting is capped at `maxDepth`.
struct JSONCursor {
    enum Kind: Equatable { case object, array, string, number, bool, null }

    /// A syntax error at a byte offset.
    struct SyntaxError: Error, CustomStringConvertible {
        let offset: Int
        let expected: String
        var description: String { "at byte \(offset): expected \(expected)" }
    }

    static let maxDepth = 64

    private let bytes: [UInt8]
    private(set) var offset = 0
    private var depth = 0

    init(_ bytes: [UInt8]) { self.bytes = bytes }

    private func fail(_ expected: String) -> SyntaxError { SyntaxError(offset: offset, expected: expected) }

    private mutating func skipWhitespace() {
        while offset < bytes.count {
            switch bytes[offset] {
            case 0x20, 0x09, 0x0A, 0x0D: offset += 1
            default: return
            }
        }
    }

    /// The kind of the next value.
    mutating func peekKind() throws -> Kind {
        skipWhitespace()
        guard offset < bytes.count else { throw fail("a value, found the end of the input") }
        switch bytes[offset] {
        case UInt8(ascii: "{"): return .object
        case UInt8(ascii: "["): return .array
        case UInt8(ascii: "\""): return .string
        case UInt8(ascii: "-"), UInt8(ascii: "0")...UInt8(ascii: "9"): return .number
        case UInt8(ascii: "t"), UInt8(ascii: "f"): return .bool
        case UInt8(ascii: "n"): return .null
        default: throw fail("a value")
        }
    }

    /// Fails unless only whitespace remains.
    mutating func finish() throws {
        skipWhitespace()
        guard offset == bytes.count else { throw fail("the end of the input") }
    }

    private mutating func consume(_ c: UInt8) -> Bool {
        skipWhitespace()
        if offset < bytes.count && bytes[offset] == c { offset += 1; return true }
        return false
    }

    private mutating func expect(_ c: UInt8) throws {
        guard consume(c) else { throw fail("'\(Character(UnicodeScalar(c)))'") }
    }

    private mutating func literal(_ word: String) throws {
        for c in word.utf8 {
            guard offset < bytes.count && bytes[offset] == c else { throw fail("'\(word)'") }
            offset += 1
        }
    }

    /// Reads an object, calling `member` with each key; `member` must read or skip the value.
    mutating func readObject(_ member: (String, inout JSONCursor) throws -> Void) throws {
        try expect(UInt8(ascii: "{"))
        depth += 1
        guard depth <= Self.maxDepth else { throw fail("nesting no deeper than \(Self.maxDepth)") }
        if !consume(UInt8(ascii: "}")) {
            repeat {
                guard try peekKind() == .string else { throw fail("an object key (a string)") }
                let key = try readString()
                try expect(UInt8(ascii: ":"))
                try member(key, &self)
            } while consume(UInt8(ascii: ","))
            try expect(UInt8(ascii: "}"))
        }
        depth -= 1
    }

    /// Reads an array, calling `element` with each index; `element` must read or skip the value.
    mutating func readArray(_ element: (Int, inout JSONCursor) throws -> Void) throws {
        try expect(UInt8(ascii: "["))
        depth += 1
        guard depth <= Self.maxDepth else { throw fail("nesting no deeper than \(Self.maxDepth)") }
        if !consume(UInt8(ascii: "]")) {
            var index = 0
            repeat {
                try element(index, &self)
                index += 1
            } while consume(UInt8(ascii: ","))
            try expect(UInt8(ascii: "]"))
        }
        depth -= 1
    }

    mutating func readBool() throws -> Bool {
        skipWhitespace()
        if offset < bytes.count && bytes[offset] == UInt8(ascii: "t") { try literal("true"); return true }
        try literal("false")
        return false
    }

    mutating func readNull() throws {
        skipWhitespace()
        try literal("null")
    }

    /// A number's value, and its exact integer value when it has one that fits in Int.
    struct Number {
        let double: Double
        let integer: Int?
    }

    mutating func readNumber() throws -> Number {
        skipWhitespace()
        let start = offset
        func digits() -> Int {
            let from = offset
            while offset < bytes.count && bytes[offset] >= UInt8(ascii: "0") && bytes[offset] <= UInt8(ascii: "9") { offset += 1 }
            return offset - from
        }
        if offset < bytes.count && bytes[offset] == UInt8(ascii: "-") { offset += 1 }
        let integerDigits = digits()
        guard integerDigits > 0 else { throw fail("a digit") }
        guard integerDigits == 1 || bytes[offset - integerDigits] != UInt8(ascii: "0") else { throw fail("no leading zero") }
        var plainInteger = true
        if offset < bytes.count && bytes[offset] == UInt8(ascii: ".") {
            offset += 1
            plainInteger = false
            guard digits() > 0 else { throw fail("a digit after '.'") }
        }
        if offset < bytes.count && (bytes[offset] == UInt8(ascii: "e") || bytes[offset] == UInt8(ascii: "E")) {
            offset += 1
            plainInteger = false
            if offset < bytes.count && (bytes[offset] == UInt8(ascii: "+") || bytes[offset] == UInt8(ascii: "-")) { offset += 1 }
            guard digits() > 0 else { throw fail("a digit in the exponent") }
        }
        let text = String(decoding: bytes[start..<offset], as: UTF8.self)
        if plainInteger, let exact = Int(text) { return Number(double: Double(exact), integer: exact) }
        guard let value = Double(text) else { throw fail("a number") }
        return Number(double: value, integer: plainInteger ? nil : Int(exactly: value))
    }

    mutating func readString() throws -> String {
        try expect(UInt8(ascii: "\""))
        let start = offset
        while offset < bytes.count {
            let c = bytes[offset]
            if c == UInt8(ascii: "\"") {
                offset += 1
                return String(decoding: bytes[start..<(offset - 1)], as: UTF8.self)
            }
            if c == UInt8(ascii: "\\") { break }
            guard c >= 0x20 else { throw fail("no control character inside a string") }
            offset += 1
        }
        // Slow path: escapes.
        var out = Array(bytes[start..<offset])
        while offset < bytes.count {
            let c = bytes[offset]
            offset += 1
            switch c {
            case UInt8(ascii: "\""):
                return String(decoding: out, as: UTF8.self)
            case UInt8(ascii: "\\"):
                guard offset < bytes.count else { throw fail("an escape") }
                let e = bytes[offset]
                offset += 1
                switch e {
                case UInt8(ascii: "\""), UInt8(ascii: "\\"), UInt8(ascii: "/"): out.append(e)
                case UInt8(ascii: "b"): out.append(0x08)
                case UInt8(ascii: "f"): out.append(0x0C)
                case UInt8(ascii: "n"): out.append(0x0A)
                case UInt8(ascii: "r"): out.append(0x0D)
                case UInt8(ascii: "t"): out.append(0x09)
                case UInt8(ascii: "u"):
                    var scalar = try hex4()
                    if (0xD800..<0xDC00).contains(scalar) {
                        try literal("\\u")
                        let low = try hex4()
                        guard (0xDC00..<0xE000).contains(low) else { throw fail("a low surrogate") }
                        scalar = 0x10000 + ((scalar - 0xD800) << 10) + (low - 0xDC00)
                    }
                    guard let u = UnicodeScalar(scalar) else { throw fail("a valid \\u escape") }
                    out.append(contentsOf: Array(String(Character(u)).utf8))
                default: throw fail("a valid escape")
                }
            default:
                guard c >= 0x20 else { throw fail("no control character inside a string") }
                out.append(c)
            }
        }
        throw fail("a closing '\"'")
    }

    private mutating func hex4() throws -> UInt32 {
        var value: UInt32 = 0
        for _ in 0..<4 {
            guard offset < bytes.count else { throw fail("four hex digits") }
            let c = bytes[offset]
            let d: UInt32
            switch c {
            case UInt8(ascii: "0")...UInt8(ascii: "9"): d = UInt32(c - UInt8(ascii: "0"))
            case UInt8(ascii: "a")...UInt8(ascii: "f"): d = UInt32(c - UInt8(ascii: "a") + 10)
            case UInt8(ascii: "A")...UInt8(ascii: "F"): d = UInt32(c - UInt8(ascii: "A") + 10)
            default: throw fail("four hex digits")
            }
            value = value << 4 | d
            offset += 1
        }
        return value
    }

    /// Reads and discards one value of any kind.
    mutating func skipValue() throws {
        switch try peekKind() {
        case .object: try readObject { _, cursor in try cursor.skipValue() }
        case .array: try readArray { _, cursor in try cursor.skipValue() }
        case .string: _ = try readString()
        case .number: _ = try readNumber()
        case .bool: _ = try readBool()
        case .null: try readNull()
        }
    }
}
