/// A growable byte buffer with a read cursor: bytes are appended at the end and frames are read
/// from the front. `compact()` drops the bytes already read.
public struct ByteBuffer: Sendable {
    public private(set) var storage: [UInt8] = []
    /// The index of the first unread byte.
    public private(set) var readerIndex = 0

    public init() {}
    public init(_ bytes: [UInt8]) { storage = bytes }

    /// Bytes not yet read.
    public var readableBytes: Int { storage.count - readerIndex }

    public mutating func append<C: Collection>(contentsOf bytes: C) where C.Element == UInt8 {
        storage.append(contentsOf: bytes)
    }

    public mutating func append(_ bytes: UnsafeRawBufferPointer) {
        storage.append(contentsOf: bytes)
    }

    /// The unread byte at `offset` from the reader index, without moving it.
    public func getByte(at offset: Int) -> UInt8? {
        let index = readerIndex + offset
        return index < storage.count ? storage[index] : nil
    }

    /// Reads `count` bytes and advances the reader index; nil (and no move) if fewer are readable.
    public mutating func readBytes(_ count: Int) -> [UInt8]? {
        guard count <= readableBytes else { return nil }
        let bytes = Array(storage[readerIndex..<(readerIndex + count)])
        readerIndex += count
        return bytes
    }

    public mutating func moveReaderIndex(forwardBy count: Int) {
        readerIndex = min(storage.count, readerIndex + count)
    }

    /// Drops the bytes already read (cheap when everything was read; otherwise one move).
    public mutating func compact() {
        if readerIndex == storage.count {
            storage.removeAll(keepingCapacity: storage.capacity <= 1 << 20)
        } else if readerIndex > 0 {
            storage.removeFirst(readerIndex)
        }
        readerIndex = 0
    }
}

/// Why a byte stream could not be split into frames. After one of these the stream cannot be
/// resynchronised, so the connection answers `InvalidRequest` and closes.
public enum FrameError: Error, Equatable, CustomStringConvertible {
    /// The length prefix announces more bytes than the limit.
    case frameTooLarge(length: UInt64, limit: Int)
    /// The length prefix runs past 5 bytes (the most a 32-bit length needs).
    case varintTooLong

    public var description: String {
        switch self {
        case let .frameTooLarge(length, limit):
            return "frame of \(length) bytes exceeds the limit of \(limit) bytes (--max-frame)"
        case .varintTooLong:
            return "frame length prefix is longer than 5 bytes; expected a protobuf varint of at most 5 bytes"
        }
    }
}

/// Splits a byte stream into frames: a protobuf varint length (at most 5 bytes) and then exactly
/// that many bytes (the protobuf "delimited" convention). A pure value type, no I/O.
public struct FrameDecoder: Sendable {
    /// The most bytes in one frame's payload.
    public let maxFrameSize: Int

    public static let maxVarintBytes = 5

    public init(maxFrameSize: Int) {
        self.maxFrameSize = maxFrameSize
    }

    /// Reads one frame's payload from the front of `buffer`.
    /// - Returns: the payload, or nil when the frame is incomplete (then nothing is consumed).
    /// - Throws: `FrameError` for an oversize frame or an over-long length prefix, as soon as the
    ///   prefix shows it (before the payload arrives).
    public func decode(_ buffer: inout ByteBuffer) throws -> [UInt8]? {
        guard let (length, prefixBytes) = try peekLength(buffer) else { return nil }
        guard buffer.readableBytes - prefixBytes >= length else { return nil }
        buffer.moveReaderIndex(forwardBy: prefixBytes)
        return buffer.readBytes(length)
    }

    /// The announced payload length and the prefix size, or nil if the prefix is incomplete.
    private func peekLength(_ buffer: ByteBuffer) throws -> (Int, Int)? {
        var value: UInt64 = 0
        for index in 0..<Self.maxVarintBytes {
            guard let byte = buffer.getByte(at: index) else { return nil }
            value |= UInt64(byte & 0x7F) << (7 * UInt64(index))
            if byte & 0x80 == 0 {
                guard value <= UInt64(maxFrameSize) else {
                    throw FrameError.frameTooLarge(length: value, limit: maxFrameSize)
                }
                return (Int(value), index + 1)
            }
        }
        throw FrameError.varintTooLong
    }
}

/// Writes frames: a varint length, then the payload.
public enum FrameEncoder {
    /// Appends the varint encoding of `value` to `bytes`.
    public static func appendVarint(_ value: UInt64, to bytes: inout [UInt8]) {
        var rest = value
        while rest >= 0x80 {
            bytes.append(UInt8(truncatingIfNeeded: rest) | 0x80)
            rest >>= 7
        }
        bytes.append(UInt8(rest))
    }

    /// One frame holding `payload`.
    public static func frame(_ payload: [UInt8]) -> [UInt8] {
        var bytes: [UInt8] = []
        bytes.reserveCapacity(payload.count + FrameDecoder.maxVarintBytes)
        appendVarint(UInt64(payload.count), to: &bytes)
        bytes.append(contentsOf: payload)
        return bytes
    }
}
