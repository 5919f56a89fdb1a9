import Engine
import Foundation
import GGUF
import Tokenizer

/// The real engine behind the `InferenceBackend` seam. Hidden states and last-position logits are
/// handed over as the engine's own views (no copy). Every-position logits are streamed by the engine
/// in chunks and gathered here, so the engine's logit buffer stays small.
public final class EngineBackend: InferenceBackend {
    public let modelInfo: ModelInfo
    public let engine: InferenceEngine
    private var batch = RaggedBatch()
    /// Every-position logits, `[tokens, vocab]`; grown on demand, reused across batches.
    private var allLogits: [Float] = []

    /// Loads the model from a parsed GGUF file.
    /// - Throws: `EngineError` when the model or the limits are unusable.
    /// `kvCacheBytes` and `maxSequences` size the KV cache generation uses (`EngineGenerationBackend`);
    /// `decodePrecision` is the weights its decode steps read (docs/ENGINE.md, "Decode kernels");
    /// `precision` the projections' precision on prefill ("int8 prefill").
    public init(file: GGUFFile, modelInfo: ModelInfo, threads: Int?, maxRows: Int, maxSeq: Int, maxBatchTokens: Int,
                kvCacheBytes: Int = 0, maxSequences: Int = 1, decodePrecision: DecodePrecision = .f32,
                precision: EnginePrecision = .f32, kvCachePrecision: KVCachePrecision = .f32) throws {
        // Logit rows held at once: a chunk of streamed positions, and each row's last two (`.lastTwo`).
        var options = EngineOptions(threads: threads ?? ProcessInfo.processInfo.activeProcessorCount,
                                    maxBatchTokens: maxBatchTokens, maxRows: maxRows, maxSeq: maxSeq,
                                    maxLogitRows: max(maxRows, min(maxBatchTokens, max(512, 2 * maxRows))),
                                    kvCacheBytes: kvCacheBytes, maxSequences: maxSequences, decodePrecision: decodePrecision,
                                    precision: precision)
        options.kvCachePrecision = kvCachePrecision
        if precision == .int8 { options.calibrationTokens = try EngineOptions.calibrationTokens(TokenizerLoader.load(gguf: file)) }
        engine = try InferenceEngine(file: file, options: options)
        var info = modelInfo
        info.vocabSize = engine.config.vocabSize
        info.hiddenSize = engine.config.hiddenSize
        self.modelInfo = info
    }

    public func forward(rows: [[Int32]], hidden: Bool, logits: LogitsWanted, body: (BackendOutput) throws -> Void) throws {
        batch.removeAll()
        for row in rows { batch.append(row: row) }
        let tokens = batch.tokenCount, h = engine.config.hiddenSize, v = engine.config.vocabSize
        let result: ForwardResult
        switch logits {
        case .none, .last:
            result = try engine.forward(batch, logits: logits == .last ? .last : .none)
        case .lastTwo:
            // Each row's last two flat indices, the one before the last first (one for a one-token row).
            let offsets = batch.rowOffsets
            let positions = (0..<rows.count).flatMap { r in max(offsets[r], offsets[r + 1] - 2)..<offsets[r + 1] }
            result = try engine.forward(batch, logits: .positions(positions))
        case .all:
            if allLogits.count < tokens * v { allLogits = [Float](repeating: 0, count: tokens * v) }
            let offsets = batch.rowOffsets
            result = try allLogits.withUnsafeMutableBufferPointer { destination in
                try engine.forward(batch) { row, position, values in
                    guard let source = values.baseAddress, let target = destination.baseAddress else { return }
                    (target + (offsets[row] + position) * v).update(from: source, count: v)
                }
            }
        }
        let hiddenView = UnsafeBufferPointer(start: result.hidden(row: 0).baseAddress, count: tokens * h)
        switch logits {
        case .none:
            try body(BackendOutput(hidden: hiddenView, logits: nil, logitsWanted: .none))
        case .last:
            let lastView = UnsafeBufferPointer(start: result.lastLogits(row: 0)?.baseAddress, count: rows.count * v)
            try body(BackendOutput(hidden: hiddenView, logits: lastView, logitsWanted: .last))
        case .lastTwo:
            let selected = rows.reduce(0) { $0 + min(2, $1.count) }
            let selectedView = UnsafeBufferPointer(start: result.selectedLogits(0)?.baseAddress, count: selected * v)
            try body(BackendOutput(hidden: hiddenView, logits: selectedView, logitsWanted: .lastTwo))
        case .all:
            try allLogits.withUnsafeBufferPointer { all in
                try body(BackendOutput(hidden: hiddenView, logits: UnsafeBufferPointer(rebasing: all[0..<(tokens * v)]),
                                       logitsWanted: .all))
            }
        }
    }
}

extension EngineOptions {
    /// The int8 path's smoothing calibration tokens (`EngineOptions.calibrationTokens`): the built-in
    /// `Int8Calibration.text` in the model's own tokenizer, as a prompt (with its BOS if it adds one).
    public static func calibrationTokens(_ tokenizer: any TextTokenizer) -> [Int32] {
        Array(tokenizer.encode(Int8Calibration.text, addSpecial: true, parseSpecial: false).prefix(Int8Calibration.maxTokens))
    }
}
