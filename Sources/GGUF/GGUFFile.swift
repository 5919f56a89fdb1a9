/// One tensor's entry in the file: its name, shape, storage type and where its bytes are.
public struct GGUFTensorInfo: Sendable, Equatable {
    public let name: String
    /// Dimensions with `ne[0]` first: `dims[0]` is the contiguous row length. A 2-D weight
    /// with dims {in, out} is `out` rows of `in` values.
    public let dims: [Int]
    public let type: GGMLType
    /// Byte offset of the tensor's data, relative to the start of the data section.
    public let offset: Int
    /// Product of `dims`.
    public let elementCount: Int
    /// Bytes of the tensor's data: `elementCount / type.blockSize * type.bytesPerBlock`.
    public let byteCount: Int

    /// Elements per row (`dims[0]`).
    public var rowLength: Int { dims[0] }
    /// Number of rows: the product of every dimension after the first.
    public var rowCount: Int { elementCount / dims[0] }
    /// Bytes per row: rows are whole blocks, so row `r` starts at `r * bytesPerRow`.
    public var bytesPerRow: Int { dims[0] / type.blockSize * type.bytesPerBlock }
}

/// A parsed, validated GGUF (v2 or v3) file, memory-mapped read-only.
///
/// Opening checks the whole structure (header, metadata, tensor infos, and that every tensor's
/// data lies inside the file without overlap), so that every `GGUFTensorInfo` can be read
/// safely afterwards. Immutable after `init`, and therefore safe to share between threads.
public final class GGUFFile: @unchecked Sendable {
    public let version: UInt32
    /// Metadata keys in file order.
    public let metadataKeys: [String]
    public let metadata: [String: GGUFValue]
    /// Tensor infos in file order.
    public let tensors: [GGUFTensorInfo]
    /// `general.alignment`, or 32 when absent.
    public let alignment: Int
    /// Absolute byte offset of the data section in the file.
    public let dataOffset: Int

    private let bytes: FileBytes
    private let tensorIndex: [String: Int]

    /// Maps and parses the file at `path`.
    /// - Throws: `GGUFError` naming the first problem found (the file is not changed).
    public convenience init(path: String) throws {
        try self.init(bytes: FileBytes(mapping: path))
    }

    /// Parses an in-memory copy of `bytes` with the same checks as `init(path:)` (for tests and tools).
    /// - Throws: `GGUFError` naming the first problem found.
    public convenience init(bytes: [UInt8]) throws {
        try self.init(bytes: FileBytes(copying: bytes))
    }

    private init(bytes: FileBytes) throws {
        let parsed = try GGUFParser.parse(bytes.buffer)
        self.bytes = bytes
        version = parsed.version
        metadataKeys = parsed.metadataKeys
        metadata = parsed.metadata
        tensors = parsed.tensors
        alignment = parsed.alignment
        dataOffset = parsed.dataOffset
        var index: [String: Int] = [:]
        index.reserveCapacity(parsed.tensors.count)
        for (i, t) in parsed.tensors.enumerated() { index[t.name] = i }
        tensorIndex = index
    }

    /// Size of the whole file in bytes.
    public var fileSize: Int { bytes.buffer.count }

    /// The number of weights: every tensor's element count, summed.
    public var parameterCount: Int { tensors.reduce(0) { $0 + $1.elementCount } }

    public func tensor(named name: String) -> GGUFTensorInfo? {
        tensorIndex[name].map { tensors[$0] }
    }

    // MARK: Metadata accessors (nil when absent or of another type)

    public func int(_ key: String) -> Int? { metadata[key]?.int }
    public func double(_ key: String) -> Double? { metadata[key]?.double }
    public func string(_ key: String) -> String? { metadata[key]?.string }
    public func bool(_ key: String) -> Bool? { metadata[key]?.bool }
    public func array(_ key: String) -> [GGUFValue]? { metadata[key]?.array }
    public func stringArray(_ key: String) -> [String]? { metadata[key]?.stringArray }

    // MARK: Tensor data

    /// The tensor's raw bytes (`t.byteCount` of them), valid while this `GGUFFile` lives.
    /// `t` should come from this file's `tensors` (whose placement `init` checked); for an info
    /// that does not fit this file the result is empty.
    public func rawData(of t: GGUFTensorInfo) -> UnsafeRawBufferPointer {
        let start = dataOffset + t.offset
        guard t.offset >= 0, t.byteCount >= 0, t.byteCount <= bytes.buffer.count - dataOffset,
              t.offset <= bytes.buffer.count - dataOffset - t.byteCount else {
            return UnsafeRawBufferPointer(start: nil, count: 0)
        }
        return UnsafeRawBufferPointer(rebasing: bytes.buffer[start ..< start + t.byteCount])
    }

    /// Dequantizes the whole tensor to f32 into `output`, which must hold exactly `t.elementCount` values.
    /// - Throws: `GGUFError.unsupportedTensorType` for a type that cannot be dequantized,
    ///   `.outputSizeMismatch` when `output.count` differs from the element count.
    public func dequantize(_ t: GGUFTensorInfo, into output: UnsafeMutableBufferPointer<Float>) throws {
        guard output.count == t.elementCount else {
            throw GGUFError.outputSizeMismatch(tensor: t.name, elementCount: t.elementCount, outputCount: output.count)
        }
        try dequantizeRows(t, rows: 0 ..< t.rowCount, into: output)
    }

    /// Dequantizes the whole tensor to a new f32 array.
    /// - Throws: `GGUFError.unsupportedTensorType` for a type that cannot be dequantized.
    public func dequantize(_ t: GGUFTensorInfo) throws -> [Float] {
        guard t.type.isDequantizable else { throw GGUFError.unsupportedTensorType(tensor: t.name, type: t.type) }
        return try [Float](unsafeUninitializedCapacity: t.elementCount) { buffer, initialized in
            try dequantize(t, into: buffer)
            initialized = t.elementCount
        }
    }

    /// Tells the kernel that rows `rows` of the tensor will not be read again soon, so a mapped
    /// file's pages holding only those rows leave the resident set: a loader that has converted
    /// them keeps one copy, not two. Reading them later is still correct (the pages fault back in).
    public func releasePages(of t: GGUFTensorInfo, rows: Range<Int>) {
        guard rows.lowerBound >= 0, rows.upperBound <= t.rowCount, t.offset >= 0 else { return }
        let start = dataOffset + t.offset + rows.lowerBound * t.bytesPerRow
        bytes.dropPages(start ..< start + rows.count * t.bytesPerRow)
    }

    /// Dequantizes rows `rows` of the tensor (each `t.rowLength` values) into `output`, which must
    /// hold exactly `rows.count * t.rowLength` values. Disjoint row ranges may run in parallel.
    /// - Throws: `GGUFError.unsupportedTensorType`, or `.outputSizeMismatch` when the range is
    ///   outside the tensor or `output` has the wrong size.
    public func dequantizeRows(_ t: GGUFTensorInfo, rows: Range<Int>, into output: UnsafeMutableBufferPointer<Float>) throws {
        guard t.type.isDequantizable else { throw GGUFError.unsupportedTensorType(tensor: t.name, type: t.type) }
        guard rows.lowerBound >= 0, rows.upperBound <= t.rowCount, output.count == rows.count * t.rowLength else {
            throw GGUFError.outputSizeMismatch(tensor: t.name, elementCount: rows.count * t.rowLength, outputCount: output.count)
        }
        guard let out = output.baseAddress else { return }
        let raw = rawData(of: t)
        let start = rows.lowerBound * t.bytesPerRow
        let slice = UnsafeRawBufferPointer(rebasing: raw[start ..< start + rows.count * t.bytesPerRow])
        try t.type.dequantize(slice, count: output.count, into: out)
    }
}
