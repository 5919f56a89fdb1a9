import Wire
import XCTest

final class FrameDecoderTests: XCTestCase {
    private let decoder = FrameDecoder(maxFrameSize: 1 << 20)

    func testIncompleteFrameReturnsNilAndConsumesNothing() throws {
        var buffer = ByteBuffer(FrameEncoder.frame([1, 2, 3, 4]).dropLast())
        XCTAssertNil(try decoder.decode(&buffer))
        XCTAssertEqual(buffer.readerIndex, 0)
        XCTAssertEqual(buffer.readableBytes, 4)
    }

    func testBytesFedOneAtATimeYieldEveryFrameOnce() throws {
        let payloads: [[UInt8]] = [[], [7], Array(repeating: 0xAB, count: 300), Array(0..<200)]
        let stream = payloads.flatMap(FrameEncoder.frame)
        var buffer = ByteBuffer()
        var decoded: [[UInt8]] = []
        for byte in stream {
            buffer.append(contentsOf: [byte])
            while let frame = try decoder.decode(&buffer) { decoded.append(frame) }
            buffer.compact()
        }
        XCTAssertEqual(decoded, payloads)
        XCTAssertEqual(buffer.readableBytes, 0)
    }

    func testManyFramesInOneReadAreAllDecoded() throws {
        let payloads = (0..<100).map { Array(repeating: UInt8($0), count: $0 * 3) }
        var buffer = ByteBuffer(payloads.flatMap(FrameEncoder.frame))
        var decoded: [[UInt8]] = []
        while let frame = try decoder.decode(&buffer) { decoded.append(frame) }
        XCTAssertEqual(decoded, payloads)
    }

    func testFrameOverTheLimitIsRejectedFromItsPrefixAlone() {
        let small = FrameDecoder(maxFrameSize: 100)
        var prefix: [UInt8] = []
        FrameEncoder.appendVarint(101, to: &prefix)
        var buffer = ByteBuffer(prefix)
        XCTAssertThrowsError(try small.decode(&buffer)) { error in
            XCTAssertEqual(error as? FrameError, .frameTooLarge(length: 101, limit: 100))
        }
    }

    func testFrameExactlyAtTheLimitIsAccepted() throws {
        let small = FrameDecoder(maxFrameSize: 100)
        var buffer = ByteBuffer(FrameEncoder.frame(Array(repeating: 1, count: 100)))
        XCTAssertEqual(try small.decode(&buffer)?.count, 100)
    }

    func testLengthPrefixLongerThanFiveBytesIsRejected() {
        // Five continuation bytes: the sixth would be needed, so it fails without waiting for it.
        var buffer = ByteBuffer([0x80, 0x80, 0x80, 0x80, 0x80])
        XCTAssertThrowsError(try FrameDecoder(maxFrameSize: Int(UInt32.max)).decode(&buffer)) { error in
            XCTAssertEqual(error as? FrameError, .varintTooLong)
        }
    }

    func testVarintEncodingMatchesProtobufForBoundaryValues() {
        // Base-128 little-endian groups, continuation bit set on all but the last byte.
        let cases: [(UInt64, [UInt8])] = [
            (0, [0x00]), (1, [0x01]), (127, [0x7F]), (128, [0x80, 0x01]), (300, [0xAC, 0x02]),
            (16_384, [0x80, 0x80, 0x01]), (UInt64(UInt32.max), [0xFF, 0xFF, 0xFF, 0xFF, 0x0F]),
        ]
        for (value, expected) in cases {
            var bytes: [UInt8] = []
            FrameEncoder.appendVarint(value, to: &bytes)
            XCTAssertEqual(bytes, expected, "varint of \(value)")
        }
    }
}
