import GGUF
import TestSupport
import XCTest

/// Compares the reader and dequantizer with the `gguf` PyPI package, through the fixtures
/// written by scripts/reference/gguf_fixtures.py.
final class GGUFReferenceTests: XCTestCase {
    // MARK: Synthetic file: every value type and every dequantizable tensor type

    func testSyntheticFileHeaderMatchesTheReferenceReader() throws {
        let expected = try Fixtures.json("synthetic_expected.json")
        let file = try GGUFFile(path: Fixtures.url("synthetic.gguf.fixture").path)
        XCTAssertEqual(Int(file.version), expected["version"] as? Int)
        XCTAssertEqual(file.alignment, expected["alignment"] as? Int)
        XCTAssertEqual(file.dataOffset, expected["data_offset"] as? Int)
    }

    func testEveryMetadataValueTypeMatchesTheReferenceReader() throws {
        let expected = try XCTUnwrap(Fixtures.json("synthetic_expected.json")["metadata"] as? [[String: Any]])
        let file = try GGUFFile(path: Fixtures.url("synthetic.gguf.fixture").path)
        XCTAssertEqual(file.metadataKeys, expected.compactMap { $0["key"] as? String })
        for entry in expected {
            let key = try XCTUnwrap(entry["key"] as? String)
            XCTAssertEqual(file.metadata[key], try Fixtures.value(entry), key)
        }
        // The nested array, spelled out.
        XCTAssertEqual(file.array("test.nested"), [.array([.int32(1), .int32(2), .int32(3)]), .array([.int32(4)]), .array([.int32(5), .int32(6)])])
    }

    func testSyntheticTensorTableMatchesTheReferenceReader() throws {
        let expected = try XCTUnwrap(Fixtures.json("synthetic_expected.json")["tensors"] as? [[String: Any]])
        let file = try GGUFFile(path: Fixtures.url("synthetic.gguf.fixture").path)
        assertTensorTable(file, expected)
        for (t, e) in zip(file.tensors, expected) {
            XCTAssertEqual(t.elementCount, e["elements"] as? Int, t.name)
        }
    }

    /// Names (in file order), types, dims, offsets and byte counts as the reference reader saw them.
    private func assertTensorTable(_ file: GGUFFile, _ expected: [[String: Any]], line: UInt = #line) {
        XCTAssertEqual(file.tensors.map(\.name), expected.compactMap { $0["name"] as? String }, line: line)
        for (t, e) in zip(file.tensors, expected) {
            XCTAssertEqual(t.type.name, e["type"] as? String, t.name, line: line)
            XCTAssertEqual(t.dims, e["dims"] as? [Int], t.name, line: line)
            XCTAssertEqual(t.offset, e["offset"] as? Int, t.name, line: line)
            XCTAssertEqual(t.byteCount, e["bytes"] as? Int, t.name, line: line)
        }
    }

    // No tolerance: each value is the same few fp32 operations, in the same order, on exactly
    // representable inputs (f16 scales, integer quants) as gguf-py performs; no sum to reorder.
    func testDequantizationOfEverySupportedTypeEqualsTheReferenceBitForBit() throws {
        let expected = try XCTUnwrap(Fixtures.json("synthetic_expected.json")["tensors"] as? [[String: Any]])
        let values = try Fixtures.floats("synthetic_expected.f32")
        let file = try GGUFFile(path: Fixtures.url("synthetic.gguf.fixture").path)
        var typesCovered = Set<String>()
        for e in expected {
            guard let start = e["expected_start"] as? Int else { continue }
            let t = try XCTUnwrap(file.tensor(named: XCTUnwrap(e["name"] as? String)))
            let reference = values[start ..< start + t.elementCount]
            assertBitwiseEqual(try file.dequantize(t), reference, t.name)
            typesCovered.insert(t.type.name)

            // Row by row through the row-range entry point, and through the raw-bytes entry point.
            var byRows = [Float](repeating: .nan, count: t.elementCount)
            try byRows.withUnsafeMutableBufferPointer { out in
                for row in 0 ..< t.rowCount {
                    try file.dequantizeRows(t, rows: row ..< row + 1,
                                            into: UnsafeMutableBufferPointer(rebasing: out[(row * t.rowLength) ..< ((row + 1) * t.rowLength)]))
                }
            }
            assertBitwiseEqual(byRows, reference, "\(t.name) by rows")
            var raw = [Float](repeating: .nan, count: t.elementCount)
            try raw.withUnsafeMutableBufferPointer { out in
                try t.type.dequantize(file.rawData(of: t), count: t.elementCount, into: XCTUnwrap(out.baseAddress))
            }
            assertBitwiseEqual(raw, reference, "\(t.name) from raw bytes")
        }
        XCTAssertEqual(typesCovered, Set(GGMLType.allCases.filter(\.isDequantizable).map(\.name)))
    }

    func testUnsupportedTypesLoadButDequantizeNamesTypeAndTensor() throws {
        let file = try GGUFFile(path: Fixtures.url("synthetic.gguf.fixture").path)
        let unsupported = file.tensors.filter { $0.name.hasSuffix(".unsupported") }
        XCTAssertEqual(unsupported.map(\.type), [.q2_K, .q5_K, .iq4_NL])
        for t in unsupported {
            XCTAssertFalse(t.type.isDequantizable)
            XCTAssertThrowsError(try file.dequantize(t)) { error in
                XCTAssertEqual(error as? GGUFError, .unsupportedTensorType(tensor: t.name, type: t.type))
            }
            XCTAssertEqual(file.rawData(of: t).count, t.byteCount)
        }
    }

    // MARK: Type table

    func testBlockSizesMatchTheReferencePackage() throws {
        let table = try Fixtures.json("quant_sizes.json")
        for type in GGMLType.allCases {
            let entry = try XCTUnwrap(table[type.name] as? [String: Int], "\(type.name) is not a ggml type known to the reference")
            XCTAssertEqual(entry["id"], Int(type.rawValue), type.name)
            XCTAssertEqual(entry["block_size"], type.blockSize, type.name)
            if type == .q8_1 {
                // gguf-py lists Q8_1 as 40 bytes (f32 d and s); ggml's block_q8_1 is two f16 and
                // 32 int8 = 36 bytes (static_assert in ggml-common.h). ggml defines the layout.
                XCTAssertEqual(entry["type_size"], 40)
                XCTAssertEqual(type.bytesPerBlock, 36)
            } else {
                XCTAssertEqual(entry["type_size"], type.bytesPerBlock, type.name)
            }
        }
        // Every type the reference knows has a case here.
        XCTAssertEqual(Set(table.keys), Set(GGMLType.allCases.map(\.name)))
    }

    // MARK: The default model

    func testDefaultModelMetadataMatchesTheReferenceReader() throws {
        let expected = try Fixtures.json("model_expected.json")
        let file = try GGUFFile(path: TestPaths.defaultModel())
        XCTAssertEqual(file.fileSize, expected["file_size"] as? Int)
        XCTAssertEqual(Int(file.version), expected["version"] as? Int)
        XCTAssertEqual(file.alignment, expected["alignment"] as? Int)
        XCTAssertEqual(file.dataOffset, expected["data_offset"] as? Int)
        XCTAssertEqual(file.tensors.count, expected["tensor_count"] as? Int)
        XCTAssertEqual(file.metadataKeys.count, expected["metadata_count"] as? Int)
        XCTAssertEqual(file.tensors.reduce(0) { $0 + $1.elementCount }, expected["parameter_count"] as? Int)

        let metadata = try XCTUnwrap(expected["metadata"] as? [[String: Any]])
        XCTAssertEqual(file.metadataKeys, metadata.compactMap { $0["key"] as? String })
        for entry in metadata {
            let key = try XCTUnwrap(entry["key"] as? String)
            if let elementType = entry["element_type"] as? String {
                let array = try XCTUnwrap(file.array(key), key)
                XCTAssertEqual(array.count, entry["count"] as? Int, key)
                let first = try XCTUnwrap(entry["first"] as? [String]).map { try Fixtures.scalar(type: elementType, $0) }
                let last = try XCTUnwrap(entry["last"] as? [String]).map { try Fixtures.scalar(type: elementType, $0) }
                XCTAssertEqual(Array(array.prefix(first.count)), first, key)
                XCTAssertEqual(Array(array.suffix(last.count)), last, key)
            } else {
                XCTAssertEqual(file.metadata[key], try Fixtures.value(entry), key)
            }
        }
    }

    func testDefaultModelTensorTableMatchesTheReferenceReader() throws {
        let expected = try XCTUnwrap(Fixtures.json("model_expected.json")["tensors"] as? [[String: Any]])
        let file = try GGUFFile(path: TestPaths.defaultModel())
        assertTensorTable(file, expected)
    }

    func testDefaultModelDequantizedRowsEqualTheReferenceBitForBit() throws {
        let expected = try Fixtures.json("model_expected.json")
        let slices = try XCTUnwrap(expected["slices"] as? [[String: Any]])
        let values = try Fixtures.floats("model_slices.f32")
        let file = try GGUFFile(path: TestPaths.defaultModel())
        var types = Set<GGMLType>()
        for slice in slices {
            let t = try XCTUnwrap(file.tensor(named: XCTUnwrap(slice["tensor"] as? String)))
            let row = try XCTUnwrap(slice["row"] as? Int)
            let start = try XCTUnwrap(slice["expected_start"] as? Int)
            XCTAssertEqual(slice["count"] as? Int, t.rowLength)
            var out = [Float](repeating: .nan, count: t.rowLength)
            try out.withUnsafeMutableBufferPointer { try file.dequantizeRows(t, rows: row ..< row + 1, into: $0) }
            assertBitwiseEqual(out, values[start ..< start + t.rowLength], "\(t.name) row \(row)")
            types.insert(t.type)
        }
        XCTAssertEqual(types, Set(file.tensors.map(\.type)), "a slice of every type present in the model")
    }

    func testWholeDefaultModelTensorDequantizesConsistentlyWithItsRows() throws {
        let expected = try Fixtures.json("model_expected.json")
        let slices = try XCTUnwrap(expected["slices"] as? [[String: Any]])
        let values = try Fixtures.floats("model_slices.f32")
        let file = try GGUFFile(path: TestPaths.defaultModel())
        let t = try XCTUnwrap(file.tensor(named: "blk.29.ffn_down.weight"))
        let all = try file.dequantize(t)
        for slice in slices where slice["tensor"] as? String == t.name {
            let row = try XCTUnwrap(slice["row"] as? Int)
            let start = try XCTUnwrap(slice["expected_start"] as? Int)
            assertBitwiseEqual(Array(all[(row * t.rowLength) ..< ((row + 1) * t.rowLength)]), values[start ..< start + t.rowLength], "row \(row)")
        }
    }
}
