import Foundation
import GGUF
import XCTest

/// Reads the fixtures written by scripts/reference/gguf_fixtures.py (the `gguf` PyPI package).
enum Fixtures {
    static func url(_ name: String) throws -> URL {
        let directory = try XCTUnwrap(Bundle.module.url(forResource: "Fixtures", withExtension: nil), "Fixtures missing from the test bundle")
        return directory.appendingPathComponent(name)
    }

    static func json(_ name: String) throws -> [String: Any] {
        let data = try Data(contentsOf: url(name))
        return try XCTUnwrap(JSONSerialization.jsonObject(with: data) as? [String: Any], "\(name) is not a JSON object")
    }

    /// A little-endian f32 blob.
    static func floats(_ name: String) throws -> [Float] {
        let data = try Data(contentsOf: url(name))
        return data.withUnsafeBytes { raw in
            (0 ..< raw.count / 4).map { Float(bitPattern: UInt32(littleEndian: raw.loadUnaligned(fromByteOffset: 4 * $0, as: UInt32.self))) }
        }
    }

    struct BadFixture: Error, CustomStringConvertible {
        let description: String
    }

    /// A scalar as the script encodes it: integers in decimal, floats as IEEE bits in hex.
    static func scalar(type: String, _ text: String) throws -> GGUFValue {
        func parse<T: FixedWidthInteger>(_: T.Type) throws -> T {
            guard let v = T(text) else { throw BadFixture(description: "bad \(type) '\(text)'") }
            return v
        }
        func bits<T: FixedWidthInteger>(_: T.Type) throws -> T {
            guard text.hasPrefix("0x"), let v = T(text.dropFirst(2), radix: 16) else { throw BadFixture(description: "bad \(type) '\(text)'") }
            return v
        }
        switch type {
        case "u8": return .uint8(try parse(UInt8.self))
        case "i8": return .int8(try parse(Int8.self))
        case "u16": return .uint16(try parse(UInt16.self))
        case "i16": return .int16(try parse(Int16.self))
        case "u32": return .uint32(try parse(UInt32.self))
        case "i32": return .int32(try parse(Int32.self))
        case "u64": return .uint64(try parse(UInt64.self))
        case "i64": return .int64(try parse(Int64.self))
        case "f32": return .float32(Float(bitPattern: try bits(UInt32.self)))
        case "f64": return .float64(Double(bitPattern: try bits(UInt64.self)))
        case "bool": return .bool(text == "true")
        case "string": return .string(text)
        default: throw BadFixture(description: "unknown value type \(type)")
        }
    }

    /// `{"type": ..., "value": ...}`, recursively for arrays.
    static func value(_ object: Any) throws -> GGUFValue {
        guard let entry = object as? [String: Any], let type = entry["type"] as? String else {
            throw BadFixture(description: "bad value entry \(object)")
        }
        if type == "array" {
            let elements = try XCTUnwrap(entry["value"] as? [Any])
            return .array(try elements.map(value))
        }
        return try scalar(type: type, XCTUnwrap(entry["value"] as? String))
    }
}

/// Asserts `actual` equals `expected` bit for bit (so NaN payloads and signed zeros count too).
func assertBitwiseEqual(_ actual: [Float], _ expected: ArraySlice<Float>, _ what: String,
                        file: StaticString = #filePath, line: UInt = #line) {
    XCTAssertEqual(actual.count, expected.count, "\(what): element count", file: file, line: line)
    var mismatches: [String] = []
    var count = 0
    for (i, (a, e)) in zip(actual, expected).enumerated() where a.bitPattern != e.bitPattern {
        count += 1
        if mismatches.count < 5 {
            mismatches.append("[\(i)] \(a) (0x\(String(a.bitPattern, radix: 16))) != \(e) (0x\(String(e.bitPattern, radix: 16)))")
        }
    }
    XCTAssertEqual(count, 0, "\(what): \(count) values differ, e.g. \(mismatches.joined(separator: ", "))", file: file, line: line)
}
