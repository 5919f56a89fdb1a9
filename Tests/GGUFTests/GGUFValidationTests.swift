import GGUF
import XCTest

/// One handcrafted corrupt file per validation rule, each expecting its own error.
final class GGUFValidationTests: XCTestCase {
    /// A small valid file: two metadata keys and one f32 tensor "w" of 8 values.
    private func valid() -> GGUFBuilder {
        var b = GGUFBuilder()
        b.add("general.architecture", .string("test"))
        b.add("test.count", .uint32(7))
        b.addF32("w", (0 ..< 8).map(Float.init))
        return b
    }

    private func assertRejects(_ bytes: [UInt8], _ expected: GGUFError, file: StaticString = #filePath, line: UInt = #line) {
        do {
            _ = try GGUFFile(bytes: bytes)
            XCTFail("accepted a file that should fail with \(expected)", file: file, line: line)
        } catch let error as GGUFError {
            XCTAssertEqual(error, expected, file: file, line: line)
        } catch {
            XCTFail("unexpected error type \(error)", file: file, line: line)
        }
    }

    private func le<T: FixedWidthInteger>(_ v: T) -> [UInt8] { GGUFBuilder.le(v) }

    func testTheValidBaseFileLoads() throws {
        let file = try GGUFFile(bytes: valid().bytes())
        XCTAssertEqual(file.tensors.map(\.name), ["w"])
        XCTAssertEqual(try file.dequantize(file.tensors[0]), (0 ..< 8).map(Float.init))
    }

    // MARK: Header

    func testBadMagicIsRejected() {
        var b = valid()
        b.magic = Array("GGML".utf8)
        assertRejects(b.bytes(), .badMagic(found: [0x47, 0x47, 0x4D, 0x4C]))
    }

    func testVersionOneIsRejectedAsUnsupported() {
        var b = valid()
        b.version = 1
        assertRejects(b.bytes(), .unsupportedVersion(1))
        XCTAssertTrue(GGUFError.unsupportedVersion(1).description.contains("version 1"))
    }

    func testUnknownVersionsAreRejected() {
        for version: UInt32 in [0, 4, 0x0300_0000] {
            var b = valid()
            b.version = version
            assertRejects(b.bytes(), .unsupportedVersion(version))
        }
    }

    func testVersionTwoIsAccepted() throws {
        var b = valid()
        b.version = 2
        let file = try GGUFFile(bytes: b.bytes())
        XCTAssertEqual(file.version, 2)
        XCTAssertEqual(file.int("test.count"), 7)
    }

    func testTruncatedHeaderIsRejected() {
        let bytes = valid().bytes()
        for size in [0, 3, 4, 20, 23] {
            assertRejects(Array(bytes.prefix(size)), .truncatedHeader(fileSize: size, needed: 24))
        }
    }

    func testVersionIsCheckedEvenWhenTheHeaderIsTruncated() {
        var b = valid()
        b.version = 1
        assertRejects(Array(b.bytes().prefix(10)), .unsupportedVersion(1))
    }

    func testAbsurdTensorCountIsRejected() {
        var b = valid()
        b.tensorCountOverride = 1 << 40
        let bytes = b.bytes()
        assertRejects(bytes, .tooManyTensors(count: 1 << 40, limit: UInt64(bytes.count - 24) / 32))
    }

    func testAbsurdMetadataKeyCountIsRejected() {
        var b = valid()
        b.keyCountOverride = .max
        let bytes = b.bytes()
        assertRejects(bytes, .tooManyMetadataKeys(count: .max, limit: UInt64(bytes.count - 24) / 13))
    }

    // MARK: Metadata

    func testTruncatedKeyIsRejected() {
        var b = GGUFBuilder()
        b.add(String(repeating: "a", count: 20), .uint8(1))
        b.add(String(repeating: "k", count: 40), .uint8(1))
        // Cut inside the second key's length field, then inside its characters.
        let keyAt = 24 + 8 + 20 + 4 + 1
        assertRejects(Array(b.bytes().prefix(keyAt + 4)), .truncatedMetadata(context: "key #1", offset: keyAt, needed: 8, remaining: 4))
        assertRejects(Array(b.bytes().prefix(keyAt + 8 + 20)), .truncatedString(context: "key #1", offset: keyAt, length: 40, remaining: 20))
    }

    func testTruncatedStringValueIsRejected() {
        var b = GGUFBuilder()
        b.add("general.name", .string(String(repeating: "x", count: 100)))
        let valueAt = 24 + 8 + 12 + 4
        assertRejects(Array(b.bytes().prefix(valueAt + 8 + 44)),
                      .truncatedString(context: "key 'general.name'", offset: valueAt, length: 100, remaining: 44))
    }

    func testTruncatedScalarValueIsRejected() {
        var b = GGUFBuilder()
        b.add("k", .uint64(5))
        let valueAt = 24 + 8 + 1 + 4
        assertRejects(Array(b.bytes().prefix(valueAt + 4)),
                      .truncatedMetadata(context: "key 'k'", offset: valueAt, needed: 8, remaining: 4))
    }

    func testTruncatedValueTypeIsRejected() {
        var b = GGUFBuilder()
        b.add(String(repeating: "k", count: 20), .uint64(5))
        let typeAt = 24 + 8 + 20
        assertRejects(Array(b.bytes().prefix(typeAt + 2)),
                      .truncatedMetadata(context: "key '\(String(repeating: "k", count: 20))'", offset: typeAt, needed: 4, remaining: 2))
    }

    func testTruncatedArrayIsRejected() {
        var b = GGUFBuilder()
        b.add("arr", .array((1 ... 5).map { .uint32($0) }))
        let elementsAt = 24 + 8 + 3 + 4 + 4 + 8
        assertRejects(Array(b.bytes().prefix(elementsAt + 8)),
                      .truncatedArray(context: "key 'arr'", count: 5, minimumBytes: 20, remaining: 8))
    }

    func testTruncatedStringInsideAnArrayNamesTheElement() {
        var b = GGUFBuilder()
        b.add("tokens", .array([.string("first"), .string("second")]))
        let secondAt = 24 + 8 + 6 + 4 + 4 + 8 + (8 + 5)
        assertRejects(Array(b.bytes().prefix(secondAt + 8 + 3)),
                      .truncatedString(context: "key 'tokens'[1]", offset: secondAt, length: 6, remaining: 3))
    }

    func testHugeKeyLengthIsRejectedBeforeAllocating() {
        var b = GGUFBuilder()
        b.entries = [.bytes(le(UInt64.max) + [UInt8](repeating: 0x61, count: 32))]
        assertRejects(b.bytes(), .stringTooLong(context: "key #0", length: .max, limit: 1 << 16))
    }

    func testHugeStringValueLengthIsRejectedBeforeAllocating() {
        var b = GGUFBuilder()
        b.entries = [.raw("k", typeID: 8, bytes: le(UInt64(1) << 40) + [UInt8](repeating: 0x61, count: 32))]
        assertRejects(b.bytes(), .stringTooLong(context: "key 'k'", length: 1 << 40, limit: 1 << 30))
    }

    func testStringLongerThanTheFileIsRejected() {
        var b = GGUFBuilder()
        b.entries = [.raw("k", typeID: 8, bytes: le(UInt64(1000)) + [UInt8](repeating: 0x61, count: 32))]
        assertRejects(b.bytes(), .truncatedString(context: "key 'k'", offset: 24 + 9 + 4, length: 1000, remaining: 32))
    }

    func testAbsurdArrayCountIsRejected() {
        var b = GGUFBuilder()
        b.entries = [.raw("k", typeID: 9, bytes: le(UInt32(4)) + le(UInt64(1) << 40) + [UInt8](repeating: 0, count: 16))]
        assertRejects(b.bytes(), .arrayTooLong(context: "key 'k'", count: 1 << 40, limit: 1 << 26))
    }

    func testArrayCountLargerThanTheRemainingBytesIsRejectedBeforeAllocating() {
        var b = GGUFBuilder()
        // 1M strings need at least 8 MB of length fields; 16 bytes remain.
        b.entries = [.raw("k", typeID: 9, bytes: le(UInt32(8)) + le(UInt64(1) << 20) + [UInt8](repeating: 0, count: 16))]
        assertRejects(b.bytes(), .truncatedArray(context: "key 'k'", count: 1 << 20, minimumBytes: 8 << 20, remaining: 16))
    }

    func testNestedArrayBombIsRejected() {
        var b = GGUFBuilder()
        // 100 levels of single-element arrays of arrays.
        var payload: [UInt8] = []
        for _ in 0 ..< 100 { payload += le(UInt32(9)) + le(UInt64(1)) }
        payload += le(UInt32(0)) + le(UInt64(0))
        b.entries = [.raw("bomb", typeID: 9, bytes: payload)]
        assertRejects(b.bytes(), .arrayNestingTooDeep(context: "key 'bomb'" + String(repeating: "[0]", count: 8), limit: 8))
    }

    func testWideArrayOfArraysBombIsRejected() {
        var b = GGUFBuilder()
        // 2^25 nested arrays claimed (each needs at least 12 bytes) in a file of a few bytes.
        b.entries = [.raw("bomb", typeID: 9, bytes: le(UInt32(9)) + le(UInt64(1) << 25) + [UInt8](repeating: 0, count: 24))]
        assertRejects(b.bytes(), .truncatedArray(context: "key 'bomb'", count: 1 << 25, minimumBytes: 12 << 25, remaining: 24))
    }

    func testInvalidValueTypeIsRejected() {
        var b = GGUFBuilder()
        b.entries = [.raw("k", typeID: 13, bytes: [UInt8](repeating: 0, count: 16))]
        assertRejects(b.bytes(), .invalidValueType(context: "key 'k'", typeID: 13))
    }

    func testInvalidArrayElementTypeIsRejected() {
        var b = GGUFBuilder()
        b.entries = [.raw("k", typeID: 9, bytes: le(UInt32(99)) + le(UInt64(1)) + [UInt8](repeating: 0, count: 16))]
        assertRejects(b.bytes(), .invalidValueType(context: "key 'k'", typeID: 99))
    }

    func testInvalidUTF8KeyIsRejected() {
        var b = GGUFBuilder()
        b.entries = [.bytes(le(UInt64(2)) + [0xFF, 0xFE] + le(UInt32(0)) + [1] + [UInt8](repeating: 0, count: 8))]
        assertRejects(b.bytes(), .invalidUTF8(context: "key #0", offset: 24))
    }

    func testDuplicateKeyIsRejected() {
        var b = valid()
        b.add("test.count", .uint32(8))
        assertRejects(b.bytes(), .duplicateKey("test.count"))
    }

    func testAlignmentThatIsNotAPowerOfTwoIsRejected() {
        for value: UInt32 in [0, 3, 48] {
            var b = valid()
            b.add("general.alignment", .uint32(value))
            assertRejects(b.bytes(), .invalidAlignment(Int(value)))
        }
    }

    func testAlignmentOfTheWrongTypeIsRejected() {
        var b = valid()
        b.add("general.alignment", .string("32"))
        assertRejects(b.bytes(), .metadataTypeMismatch(key: "general.alignment", expected: "u32", found: "string"))
    }

    // MARK: Tensor infos

    /// The valid file with a 64-character name first, so that cuts inside the tensor info still
    /// leave room for the claimed tensor count.
    private func validWithRoom() -> GGUFBuilder {
        var b = valid()
        b.add("general.name", .string(String(repeating: "n", count: 64)))
        return b
    }

    func testTruncatedTensorInfoIsRejected() {
        let b = validWithRoom()
        let infoAt = b.headerAndMetadata().count
        let dimsAt = infoAt + 8 + 1 + 4
        assertRejects(Array(b.bytes().prefix(dimsAt + 4)), .truncatedTensorInfo(tensor: "w", offset: dimsAt, needed: 8, remaining: 4))
        let offsetAt = dimsAt + 8 + 4
        assertRejects(Array(b.bytes().prefix(offsetAt + 1)), .truncatedTensorInfo(tensor: "w", offset: offsetAt, needed: 8, remaining: 1))
    }

    func testTruncatedTensorNameIsRejected() {
        let b = validWithRoom()
        let infoAt = b.headerAndMetadata().count
        assertRejects(Array(b.bytes().prefix(infoAt + 3)), .truncatedTensorInfo(tensor: "#0", offset: infoAt, needed: 8, remaining: 3))
    }

    func testDuplicateTensorIsRejected() {
        var b = valid()
        b.addF32("w", [1, 2])
        assertRejects(b.bytes(), .duplicateTensor("w"))
    }

    func testTooManyDimensionsAreRejected() {
        var b = valid()
        b.tensors[0].dims = [8, 1, 1, 1, 1]
        assertRejects(b.bytes(), .invalidDimensionCount(tensor: "w", count: 5, maximum: 4))
    }

    func testZeroDimensionsAreRejected() {
        var b = valid()
        b.tensors[0].dims = []
        assertRejects(b.bytes(), .invalidDimensionCount(tensor: "w", count: 0, maximum: 4))
    }

    func testAbsurdDimensionCountIsRejectedBeforeReadingDimensions() {
        var b = valid()
        b.tensors[0].dimCountOverride = .max
        assertRejects(b.bytes(), .invalidDimensionCount(tensor: "w", count: .max, maximum: 4))
    }

    func testZeroDimensionIsRejected() {
        var b = valid()
        b.tensors[0].dims = [8, 0]
        assertRejects(b.bytes(), .invalidDimension(tensor: "w", index: 1, value: 0))
    }

    func testNegativeDimensionIsRejected() {
        var b = valid()
        b.tensors[0].dims = [UInt64(bitPattern: -8)]
        assertRejects(b.bytes(), .invalidDimension(tensor: "w", index: 0, value: UInt64(bitPattern: -8)))
    }

    func testElementCountOverflowIsRejected() {
        var b = valid()
        b.tensors[0].dims = [1 << 32, 1 << 32]
        assertRejects(b.bytes(), .elementCountOverflow(tensor: "w", dims: [1 << 32, 1 << 32]))
    }

    func testByteCountOverflowIsRejected() {
        // 2^62 f32 elements fit in Int, their 2^64 bytes do not.
        var b = valid()
        b.tensors[0].dims = [1 << 31, 1 << 31]
        assertRejects(b.bytes(), .elementCountOverflow(tensor: "w", dims: [1 << 31, 1 << 31]))
    }

    func testUnknownTensorTypeIsRejected() {
        for typeID: UInt32 in [4, 5, 31, 1000] {
            var b = valid()
            b.tensors[0].typeID = typeID
            assertRejects(b.bytes(), .unknownTensorType(tensor: "w", typeID: typeID))
        }
    }

    func testRowThatIsNotWholeBlocksIsRejected() {
        var b = valid()
        b.addRaw("q", type: .q4_0, dims: [48, 1], bytes: [UInt8](repeating: 0, count: 36))
        assertRejects(b.bytes(), .rowNotBlockMultiple(tensor: "q", type: .q4_0, rowLength: 48, blockSize: 32))
    }

    // MARK: Tensor data placement

    func testMisalignedOffsetIsRejected() {
        var b = valid()
        b.tensors[0].writtenOffset = 16
        assertRejects(b.bytes(), .misalignedTensorOffset(tensor: "w", offset: 16, alignment: 32))
    }

    func testOffsetMisalignedForACustomAlignmentIsRejected() {
        var b = valid()
        b.add("general.alignment", .uint32(64))
        b.alignment = 64
        b.addF32("v", [1])
        b.tensors[1].writtenOffset = 32
        assertRejects(b.bytes(), .misalignedTensorOffset(tensor: "v", offset: 32, alignment: 64))
    }

    func testOffsetOutOfRangeIsRejected() {
        for offset: UInt64 in [1 << 20, 1 << 63] {
            var b = valid()
            b.tensors[0].writtenOffset = offset
            assertRejects(b.bytes(), .tensorOffsetOutOfRange(tensor: "w", offset: offset, dataSize: 32))
        }
    }

    func testTruncatedTensorDataIsRejected() {
        let b = valid()
        let bytes = b.bytes()
        XCTAssertEqual(bytes.count, b.dataStart + 32)
        assertRejects(Array(bytes.prefix(b.dataStart + 20)), .truncatedTensorData(tensor: "w", end: 32, dataSize: 20))
        // Cut before the data section even starts.
        assertRejects(Array(bytes.prefix(b.infosEnd)), .truncatedTensorData(tensor: "w", end: 32, dataSize: 0))
    }

    func testTensorRunningPastTheEndIsRejected() {
        var b = valid()
        b.tensors[0].dims = [16]   // 64 bytes declared, 32 present
        assertRejects(b.bytes(), .truncatedTensorData(tensor: "w", end: 64, dataSize: 32))
    }

    func testOverlappingTensorsAreRejected() {
        var b = GGUFBuilder()
        b.addF32("a", [Float](repeating: 1, count: 16))
        b.addF32("b", [Float](repeating: 2, count: 8))
        b.tensors[1].writtenOffset = 32
        assertRejects(b.bytes(), .overlappingTensors(first: "a", firstEnd: 64, second: "b", secondOffset: 32))
    }

    func testTensorsInAnyOrderWithGapsAreAccepted() throws {
        var b = GGUFBuilder()
        b.addF32("a", [1, 2, 3], dims: [3])
        b.addF32("b", [4, 5])
        b.tensors[0].offset = 128
        b.tensors[1].offset = 0
        let file = try GGUFFile(bytes: b.bytes())
        XCTAssertEqual(try file.dequantize(XCTUnwrap(file.tensor(named: "a"))), [1, 2, 3])
        XCTAssertEqual(try file.dequantize(XCTUnwrap(file.tensor(named: "b"))), [4, 5])
    }

    // MARK: Opening files

    func testMissingFileIsReportedWithItsPath() {
        let path = NSTemporaryDirectory() + "/axon-gguf-missing-\(UUID().uuidString).gguf"
        XCTAssertThrowsError(try GGUFFile(path: path)) { error in
            XCTAssertEqual(error as? GGUFError, .cannotOpen(path: path, reason: "No such file or directory"))
        }
    }

    func testEmptyFileIsATruncatedHeader() throws {
        let path = NSTemporaryDirectory() + "/axon-gguf-empty-\(UUID().uuidString).gguf"
        XCTAssertTrue(FileManager.default.createFile(atPath: path, contents: Data()))
        defer { try? FileManager.default.removeItem(atPath: path) }
        XCTAssertThrowsError(try GGUFFile(path: path)) { error in
            XCTAssertEqual(error as? GGUFError, .truncatedHeader(fileSize: 0, needed: 24))
        }
    }

    func testDirectoryIsNotAFile() {
        let path = NSTemporaryDirectory()
        XCTAssertThrowsError(try GGUFFile(path: path)) { error in
            XCTAssertEqual(error as? GGUFError, .cannotOpen(path: path, reason: "not a regular file"))
        }
    }

    func testMappedFileMatchesInMemoryParse() throws {
        let bytes = valid().bytes()
        let path = NSTemporaryDirectory() + "/axon-gguf-valid-\(UUID().uuidString).gguf"
        XCTAssertTrue(FileManager.default.createFile(atPath: path, contents: Data(bytes)))
        defer { try? FileManager.default.removeItem(atPath: path) }
        let mapped = try GGUFFile(path: path)
        let copied = try GGUFFile(bytes: bytes)
        XCTAssertEqual(mapped.metadata, copied.metadata)
        XCTAssertEqual(mapped.tensors, copied.tensors)
        XCTAssertEqual(try mapped.dequantize(mapped.tensors[0]), try copied.dequantize(copied.tensors[0]))
    }

    // MARK: Messages

    func testErrorMessagesNameTheObjectAndTheObservedAndExpectedValues() {
        let message = GGUFError.misalignedTensorOffset(tensor: "blk.0.attn_q.weight", offset: 16, alignment: 32).description
        XCTAssertEqual(message, "tensor 'blk.0.attn_q.weight' has offset 16, not a multiple of the alignment 32")
        XCTAssertEqual(GGUFError.badMagic(found: [0x47, 0x47, 0x4D, 0x4C]).description,
                       "not a GGUF file: magic bytes are [47 47 4d 4c], expected [47 47 55 46] (\"GGUF\")")
        XCTAssertTrue(GGUFError.unsupportedTensorType(tensor: "x", type: .q2_K).description.contains("Q2_K"))
    }
}
