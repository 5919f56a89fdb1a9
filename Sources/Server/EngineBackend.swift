import GGUF

/// The real engine behind the `InferenceBackend` seam.
public final class EngineBackend: InferenceBackend {
    public let modelInfo: ModelInfo

    public struct Unavailable: Error, CustomStringConvertible {
        public var description: String { "the inference engine is not available in this build yet; use --fake" }
    }

    public init(file: GGUFFile, modelInfo: ModelInfo, threads: Int?, maxRows: Int, maxSeq: Int, maxBatchTokens: Int) throws {
        self.modelInfo = modelInfo
        throw Unavailable()
    }

    public func forward(rows: [[Int32]], hidden: Bool, logits: LogitsWanted, body: (BackendOutput) throws -> Void) throws {
        throw Unavailable()
    }
}
