import Foundation

/// Paths shared by the test targets. Tests need no Python: everything they compare against
/// is a committed fixture produced by a script under scripts/reference/.
public enum TestPaths {
    /// The repository root, found from this file's location.
    public static let repositoryRoot: URL = URL(fileURLWithPath: #filePath)
        .deletingLastPathComponent()   // TestSupport
        .deletingLastPathComponent()   // Tests
        .deletingLastPathComponent()   // root

    /// The default model, fetched by `Models/fetch` (scripts/test runs it first), or `$AXON_MODEL`.
    public static func defaultModel() throws -> String {
        if let env = ProcessInfo.processInfo.environment["AXON_MODEL"], !env.isEmpty { return env }
        let path = repositoryRoot.appendingPathComponent("Models/SmolLM2-135M-Instruct.Q4_1.gguf").path
        guard FileManager.default.fileExists(atPath: path) else {
            throw MissingModel(path: path)
        }
        return path
    }

    public struct MissingModel: Error, CustomStringConvertible {
        public let path: String
        public var description: String { "default model missing at \(path): run Models/fetch (scripts/test does)" }
    }
}
