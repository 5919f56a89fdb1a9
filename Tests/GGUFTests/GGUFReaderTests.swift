import GGUF
import XCTest

/// Valid files built by `GGUFBuilder`: values come back as written, the data section is placed
/// by the alignment, and the accessors and dequantization entry points behave as documented.
final class GGUFReaderTests: XCTestCase {
    private let everyValueType: [(String, GGUFValue)] = [
        ("u8", .uint8(255)), ("i8", .int8(-128)), ("u16", .uint16(65535)), ("i16", .int16(-32768)),
        ("u32", .uint32(.max)), ("i32", .int32(.min)), ("f32", .float32(-0.0)), ("bool", .bool(false)),
        ("string", .string("")), ("u64", .uint64(.max)), ("i64", .int64(.min)), ("f64", .float64(.infinity)),
        ("array", .array([.string("x"), .string("ÿ")])), ("empty", .array([])),
        ("nested", .array([.array([.array([.uint8(1)])]), .array([])])),
    ]

    func testEveryValueTypeReadsBackAsWrittenInVersionsTwoAndThree() throws {
        for version: UInt32 in [2, 3] {
            var b = GGUFBuilder()
            b.version = version
            for (key, value) in everyValueType { b.add(key, value) }
            let file = try GGUFFile(bytes: b.bytes())
            XCTAssertEqual(file.version, version)
            XCTAssertEqual(file.metadataKeys, everyValueType.map(\.0))
            for (key, value) in everyValueType {
                XCTAssertEqual(file.metadata[key], value, key)
            }
            XCTAssertEqual(file.double("f32").map { $0.sign }, .minus, "negative zero survives")
            XCTAssertTrue(file.tensors.isEmpty)
        }
    }

    func testArraysNestedToTheDepthLimitAreAccepted() throws {
        var value = GGUFValue.array([.int16(7)])
        for _ in 1 ..< 8 { value = .array([value]) }
        var b = GGUFBuilder()
        b.add("deep", value)
        XCTAssertEqual(try GGUFFile(bytes: b.bytes()).metadata["deep"], value)
    }

    func testIntegerAccessorAcceptsEveryIntegerTypeAndChecksRange() {
        XCTAssertEqual(GGUFValue.uint8(200).int, 200)
        XCTAssertEqual(GGUFValue.int8(-5).int, -5)
        XCTAssertEqual(GGUFValue.uint32(.max).int, Int(UInt32.max))
        XCTAssertEqual(GGUFValue.int64(.min).int, Int(Int64.min))
        XCTAssertNil(GGUFValue.uint64(.max).int, "does not fit in Int")
        XCTAssertNil(GGUFValue.float32(1).int)
        XCTAssertNil(GGUFValue.string("1").int)
    }

    func testOtherAccessorsReturnNilForOtherTypes() {
        XCTAssertEqual(GGUFValue.float32(0.5).double, 0.5)
        XCTAssertEqual(GGUFValue.int16(-3).double, -3)
        XCTAssertEqual(GGUFValue.uint64(.max).double, Double(UInt64.max))
        XCTAssertNil(GGUFValue.bool(true).double)
        XCTAssertEqual(GGUFValue.string("s").string, "s")
        XCTAssertNil(GGUFValue.uint8(1).string)
        XCTAssertEqual(GGUFValue.array([.string("a"), .string("b")]).stringArray, ["a", "b"])
        XCTAssertNil(GGUFValue.array([.string("a"), .uint8(1)]).stringArray, "mixed arrays are not string arrays")
        XCTAssertEqual(GGUFValue.array([]).stringArray, [])
        XCTAssertNil(GGUFValue.string("a").array)
        XCTAssertEqual(GGUFValue.bool(true).bool, true)
        XCTAssertNil(GGUFValue.uint8(1).bool)
    }

    func testFileAccessorsLookUpKeys() throws {
        var b = GGUFBuilder()
        b.add("general.architecture", .string("llama"))
        b.add("llama.block_count", .uint32(30))
        b.add("llama.rope.freq_base", .float32(100000))
        b.add("tokenizer.ggml.tokens", .array([.string("a"), .string("b")]))
        let file = try GGUFFile(bytes: b.bytes())
        XCTAssertEqual(file.string("general.architecture"), "llama")
        XCTAssertEqual(file.int("llama.block_count"), 30)
        XCTAssertEqual(file.double("llama.rope.freq_base"), 100000)
        XCTAssertEqual(file.stringArray("tokenizer.ggml.tokens"), ["a", "b"])
        XCTAssertEqual(file.array("tokenizer.ggml.tokens")?.count, 2)
        XCTAssertNil(file.int("missing"))
        XCTAssertNil(file.int("general.architecture"))
    }

    func testDataSectionStartsAtTheNextMultipleOfTheDefaultAlignment() throws {
        var b = GGUFBuilder()
        b.add("general.architecture", .string("abc"))   // makes the infos end off a multiple of 32
        b.addF32("w", [1, -2, 3])
        XCTAssertNotEqual(b.infosEnd % 32, 0)
        let file = try GGUFFile(bytes: b.bytes())
        XCTAssertEqual(file.alignment, 32)
        XCTAssertEqual(file.dataOffset, b.dataStart)
        XCTAssertEqual(file.dataOffset % 32, 0)
        XCTAssertEqual(try file.dequantize(file.tensors[0]), [1, -2, 3])
    }

    func testCustomAlignmentPlacesTheDataSectionAndTensors() throws {
        var b = GGUFBuilder()
        b.add("general.alignment", .uint32(256))
        b.alignment = 256
        b.addF32("a", [1, 2, 3])
        b.addF32("b", [4, 5, 6, 7], dims: [2, 2])
        let file = try GGUFFile(bytes: b.bytes())
        XCTAssertEqual(file.alignment, 256)
        XCTAssertEqual(file.dataOffset, 256)
        XCTAssertEqual(file.tensors.map(\.offset), [0, 256])
        XCTAssertEqual(try file.dequantize(file.tensors[1]), [4, 5, 6, 7])
        XCTAssertEqual(file.tensors[1].rowLength, 2)
        XCTAssertEqual(file.tensors[1].rowCount, 2)
        XCTAssertEqual(file.tensors[1].bytesPerRow, 8)
    }

    func testTensorInfoDescribesShapeAndSize() throws {
        var b = GGUFBuilder()
        b.addRaw("q", type: .q4_1, dims: [64, 3, 2], bytes: [UInt8](repeating: 0, count: 2 * 3 * 2 * 20))
        let file = try GGUFFile(bytes: b.bytes())
        let t = try XCTUnwrap(file.tensor(named: "q"))
        XCTAssertEqual(t.dims, [64, 3, 2])
        XCTAssertEqual(t.elementCount, 384)
        XCTAssertEqual(t.byteCount, 240)
        XCTAssertEqual(t.rowCount, 6)
        XCTAssertEqual(t.bytesPerRow, 40)
        XCTAssertEqual(file.rawData(of: t).count, 240)
        XCTAssertNil(file.tensor(named: "missing"))
    }

    func testOutputBufferOfTheWrongSizeIsRejected() throws {
        var b = GGUFBuilder()
        b.addF32("w", [1, 2, 3, 4], dims: [2, 2])
        let file = try GGUFFile(bytes: b.bytes())
        let t = file.tensors[0]
        var out = [Float](repeating: 0, count: 3)
        XCTAssertThrowsError(try out.withUnsafeMutableBufferPointer { try file.dequantize(t, into: $0) }) { error in
            XCTAssertEqual(error as? GGUFError, .outputSizeMismatch(tensor: "w", elementCount: 4, outputCount: 3))
        }
        XCTAssertThrowsError(try out.withUnsafeMutableBufferPointer { try file.dequantizeRows(t, rows: 1 ..< 3, into: $0) }) { error in
            XCTAssertEqual(error as? GGUFError, .outputSizeMismatch(tensor: "w", elementCount: 4, outputCount: 3))
        }
        var row = [Float](repeating: 0, count: 2)
        try row.withUnsafeMutableBufferPointer { try file.dequantizeRows(t, rows: 1 ..< 2, into: $0) }
        XCTAssertEqual(row, [3, 4])
    }

    func testRawEntryPointChecksCountAndBufferSize() throws {
        var out = [Float](repeating: 0, count: 64)
        let raw = [UInt8](repeating: 0, count: 40)
        try raw.withUnsafeBytes { bytes in
            try out.withUnsafeMutableBufferPointer { buffer in
                guard let base = buffer.baseAddress else { return XCTFail("empty buffer") }
                XCTAssertThrowsError(try GGMLType.q4_1.dequantize(bytes, count: 48, into: base)) { error in
                    XCTAssertEqual(error as? GGUFError, .countNotBlockMultiple(type: .q4_1, count: 48))
                }
                XCTAssertThrowsError(try GGMLType.q8_0.dequantize(bytes, count: 64, into: base)) { error in
                    XCTAssertEqual(error as? GGUFError, .rawBufferTooSmall(type: .q8_0, count: 64, needed: 68, available: 40))
                }
                XCTAssertThrowsError(try GGMLType.q2_K.dequantize(bytes, count: 256, into: base)) { error in
                    XCTAssertEqual(error as? GGUFError, .unsupportedDequantization(type: .q2_K))
                }
                XCTAssertNoThrow(try GGMLType.q4_1.dequantize(bytes, count: 64, into: base))
            }
        }
        XCTAssertEqual(out, [Float](repeating: 0, count: 64))
    }

    func testDequantizableTypesAreExactlyTheSupportedOnes() {
        XCTAssertEqual(GGMLType.allCases.filter(\.isDequantizable),
                       [.f32, .f16, .q4_0, .q4_1, .q5_0, .q5_1, .q8_0, .q4_K, .q6_K, .bf16])
    }
}
