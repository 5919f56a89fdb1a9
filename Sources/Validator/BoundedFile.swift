import Foundation

/// Reading a validator's input files (endpoints, weights) whole, with a cap.
enum BoundedFile {
    /// The bytes of the file at `path`, or nil when it holds more than `maxBytes`. Read through a
    /// file handle, not `Data(contentsOf:)`, so a pipe (`--endpoints <(…)`) works too, and never more
    /// than `maxBytes + 1` bytes of it.
    /// - Throws: Foundation's error when the file cannot be opened or read.
    static func read(_ path: String, maxBytes: Int) throws -> Data? {
        let handle = try FileHandle(forReadingFrom: URL(fileURLWithPath: path))
        defer { try? handle.close() }
        let data = try handle.read(upToCount: maxBytes + 1) ?? Data()
        return data.count <= maxBytes ? data : nil
    }
}
