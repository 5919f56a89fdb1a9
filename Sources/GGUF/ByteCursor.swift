/// A bounds-checked little-endian reader over a byte buffer. `read*` advances; nothing here
/// allocates except `readString`, and only after checking the length against what remains.
struct ByteCursor {
    /// Thrown when a read would run past the end; the parser maps it to an error with context.
    struct OutOfBytes: Error {
        let offset: Int
        let needed: Int
        let remaining: Int
    }

    /// A string whose length field is larger than the bytes left (or than `limit`).
    struct BadStringLength: Error {
        let offset: Int
        let length: UInt64
        let remaining: Int
        let exceedsLimit: Bool
    }

    struct BadUTF8: Error { let offset: Int }

    let bytes: UnsafeRawBufferPointer
    private(set) var offset: Int

    init(_ bytes: UnsafeRawBufferPointer, offset: Int = 0) {
        self.bytes = bytes
        self.offset = offset
    }

    var remaining: Int { bytes.count - offset }

    mutating func read<T: FixedWidthInteger>(_: T.Type) throws -> T {
        let size = MemoryLayout<T>.size
        guard remaining >= size else { throw OutOfBytes(offset: offset, needed: size, remaining: remaining) }
        let value = bytes.loadUnaligned(fromByteOffset: offset, as: T.self)
        offset += size
        return T(littleEndian: value)
    }

    mutating func readFloat() throws -> Float { Float(bitPattern: try read(UInt32.self)) }
    mutating func readDouble() throws -> Double { Double(bitPattern: try read(UInt64.self)) }

    /// A u64 length, then that many UTF-8 bytes (no NUL).
    mutating func readString(limit: Int) throws -> String {
        let start = offset
        let length = try read(UInt64.self)
        guard length <= UInt64(limit) else {
            throw BadStringLength(offset: start, length: length, remaining: remaining, exceedsLimit: true)
        }
        guard length <= UInt64(remaining) else {
            throw BadStringLength(offset: start, length: length, remaining: remaining, exceedsLimit: false)
        }
        let count = Int(length)
        let slice = UnsafeRawBufferPointer(rebasing: bytes[offset ..< offset + count])
        guard let string = String(validating: slice.assumingMemoryBound(to: UInt8.self), as: UTF8.self) else {
            throw BadUTF8(offset: start)
        }
        offset += count
        return string
    }

    /// Moves to the next multiple of `alignment` (a power of two), which may lie past the end.
    mutating func align(to alignment: Int) {
        offset = (offset + alignment - 1) & ~(alignment - 1)
    }
}
