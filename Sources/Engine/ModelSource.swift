import GGUF

/// Where the engine reads a model from: metadata by key and tensors by name, dequantized to f32.
/// `GGUFFile` conforms; tests may supply other sources.
public protocol ModelSource {
    /// An integer metadata value (any integer type in the file), or nil when absent.
    func metadataInt(_ key: String) -> Int?
    /// A floating-point (or integer) metadata value, or nil when absent.
    func metadataDouble(_ key: String) -> Double?
    /// A string metadata value, or nil when absent.
    func metadataString(_ key: String) -> String?
    /// The dims of a tensor, `ne[0]` (the contiguous row length) first, or nil when absent.
    func tensorDims(_ name: String) -> [Int]?
    /// The stored type of a tensor, or nil when absent; checked before any memory is reserved.
    func tensorType(_ name: String) -> GGMLType?
    /// Dequantizes rows `rows` (each `ne[0]` values) of a tensor into `destination`, which holds
    /// exactly `rows.count · ne[0]` values. Called concurrently for disjoint ranges while the engine loads.
    /// - Throws: any error of the underlying reader.
    func dequantizeRows(_ name: String, rows: Range<Int>, into destination: UnsafeMutableBufferPointer<Float>) throws
    /// Says that rows `rows` of a tensor have been converted and will not be needed again soon
    /// (a mapped file may drop their pages). Reading them again later must still work.
    func releaseRows(_ name: String, rows: Range<Int>)
}

extension ModelSource {
    public func releaseRows(_ name: String, rows: Range<Int>) {}
}

/// A source that changes some tensors' values and passes everything else through to `base`: it
/// implements `dequantizeRows` only.
public protocol ModelSourceWrapper: ModelSource {
    var base: ModelSource { get }
}

extension ModelSourceWrapper {
    public func metadataInt(_ key: String) -> Int? { base.metadataInt(key) }
    public func metadataDouble(_ key: String) -> Double? { base.metadataDouble(key) }
    public func metadataString(_ key: String) -> String? { base.metadataString(key) }
    public func tensorDims(_ name: String) -> [Int]? { base.tensorDims(name) }
    public func tensorType(_ name: String) -> GGMLType? { base.tensorType(name) }
    public func releaseRows(_ name: String, rows: Range<Int>) { base.releaseRows(name, rows: rows) }
}

extension GGUFFile: ModelSource {
    public func metadataInt(_ key: String) -> Int? { int(key) }
    public func metadataDouble(_ key: String) -> Double? { double(key) }
    public func metadataString(_ key: String) -> String? { string(key) }
    public func tensorDims(_ name: String) -> [Int]? { tensor(named: name)?.dims }
    public func tensorType(_ name: String) -> GGMLType? { tensor(named: name)?.type }

    public func dequantizeRows(_ name: String, rows: Range<Int>, into destination: UnsafeMutableBufferPointer<Float>) throws {
        guard let info = tensor(named: name) else { throw EngineError.missingTensor(name: name) }
        try dequantizeRows(info, rows: rows, into: destination)
    }

    public func releaseRows(_ name: String, rows: Range<Int>) {
        if let info = tensor(named: name) { releasePages(of: info, rows: rows) }
    }
}
