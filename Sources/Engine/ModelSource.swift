/// Where the engine reads a model from: metadata by key and tensors by name, dequantized to f32.
/// `GGUFFile` conforms; tests may supply small in-memory models.
public protocol ModelSource {
    /// An integer metadata value (any integer type in the file), or nil when absent.
    func metadataInt(_ key: String) -> Int?
    /// A floating-point (or integer) metadata value, or nil when absent.
    func metadataDouble(_ key: String) -> Double?
    /// A string metadata value, or nil when absent.
    func metadataString(_ key: String) -> String?
    /// The dims of a tensor, `ne[0]` (the contiguous row length) first, or nil when absent.
    func tensorDims(_ name: String) -> [Int]?
    /// Dequantizes a whole tensor into `destination`, whose count equals the element count.
    /// Called concurrently for different tensors while the engine loads.
    /// - Throws: any error of the underlying reader.
    func dequantizeTensor(_ name: String, into destination: UnsafeMutableBufferPointer<Float>) throws
}
