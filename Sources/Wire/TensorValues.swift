// Conveniences for reading and building tensors (clients, tests, the CLI).

extension Tensor {
    /// A 2-D INT32 tensor from equal-length rows.
    public init(int32Rows rows: [[Int32]]) {
        let flat = rows.flatMap { $0 }
        self.init(buffer: flat.withUnsafeBytes { Array($0) }, shape: [Int64(rows.count), Int64(rows.first?.count ?? 0)],
                  dtype: .int32)
    }

    /// The elements of a FLOAT32 or FLOAT16 tensor as Float, or nil for another dtype.
    public func floatValues() -> [Float]? {
        switch dtype {
        case .float32:
            return buffer.withUnsafeBytes { raw in
                (0..<(raw.count / 4)).map { Float(bitPattern: UInt32(littleEndian: raw.loadUnaligned(fromByteOffset: $0 * 4, as: UInt32.self))) }
            }
        case .float16:
            return buffer.withUnsafeBytes { raw in
                (0..<(raw.count / 2)).map { Float(Float16(bitPattern: UInt16(littleEndian: raw.loadUnaligned(fromByteOffset: $0 * 2, as: UInt16.self)))) }
            }
        default:
            return nil
        }
    }

    /// The elements of an INT32 tensor, or nil for another dtype.
    public func int32Values() -> [Int32]? {
        guard dtype == .int32 else { return nil }
        return buffer.withUnsafeBytes { raw in
            (0..<(raw.count / 4)).map { Int32(littleEndian: raw.loadUnaligned(fromByteOffset: $0 * 4, as: Int32.self)) }
        }
    }
}
