import CKernels
import Foundation
import GGUF

/// The decode path's weights: every projection of every layer (Q|K|V, attention output, gate|up,
/// down) and the LM head, each at its precision, with the one call the forward pass makes per
/// projection. At f32 a matrix is the engine's own arena read through sgemm/sgemv (no copy); at
/// f16 or int8 it is a `QuantizedMatrix` built at load from those f32 weights.
///
/// Immutable after init. Prefill stays on f32 sgemm; a forward pass sends the rows of its decode
/// tokens here (see docs/ENGINE.md, "Decode kernels", for the wiring).
public final class ProjectionWeights: @unchecked Sendable {
    /// The matrices of one layer, in the order the forward pass multiplies them.
    public enum Projection: Int, CaseIterable, Sendable {
        /// (heads·hd + 2·kvHeads·hd) × hidden: rows Q, then K, then V.
        case qkv
        /// hidden × heads·hd.
        case attentionOutput
        /// 2·ffn × hidden: rows gate, then up.
        case gateUp
        /// hidden × ffn.
        case down

        /// The GGUF tensors (`blk.N.<name>.weight`) whose rows it stacks, in order.
        var tensors: [String] {
            switch self {
            case .qkv: return ["attn_q", "attn_k", "attn_v"]
            case .attentionOutput: return ["attn_output"]
            case .gateUp: return ["ffn_gate", "ffn_up"]
            case .down: return ["ffn_down"]
            }
        }

        /// Its tensors' full names in layer `l`: "blk.l.<tensor>.weight".
        func weightNames(layer l: Int) -> [String] { tensors.map { "blk.\(l).\($0).weight" } }

        /// (outputs, inputs) in `c`.
        func shape(_ c: ModelConfig) -> (rows: Int, columns: Int) {
            switch self {
            case .qkv: return (c.qkvWidth, c.hiddenSize)
            case .attentionOutput: return (c.hiddenSize, c.attentionWidth)
            case .gateUp: return (2 * c.ffnSize, c.hiddenSize)
            case .down: return (c.hiddenSize, c.ffnSize)
            }
        }

        /// For messages: "blk.3.attn_q|k|v".
        func name(layer l: Int) -> String {
            switch self {
            case .qkv: return "blk.\(l).attn_q|k|v"
            case .attentionOutput: return "blk.\(l).attn_output"
            case .gateUp: return "blk.\(l).ffn_gate|up"
            case .down: return "blk.\(l).ffn_down"
            }
        }
    }

    /// A weight matrix [rows][columns] as the decode path reads it.
    enum Matrix {
        case f32(UnsafePointer<Float>, rows: Int, columns: Int)
        case reduced(QuantizedMatrix)

        var rows: Int {
            switch self {
            case let .f32(_, rows, _): return rows
            case let .reduced(q): return q.rows
            }
        }

        var columns: Int {
            switch self {
            case let .f32(_, _, columns): return columns
            case let .reduced(q): return q.columns
            }
        }

        /// Bytes one full product reads.
        var bytesRead: Int {
            switch self {
            case let .f32(_, rows, columns): return rows * columns * 4
            case let .reduced(q): return q.byteCount
            }
        }
    }

    /// The projections' reduced-precision format, or nil when they are read in f32.
    public let format: QuantizedMatrix.Format?
    /// The head's reduced-precision format, or nil when it is read in f32.
    public let headFormat: QuantizedMatrix.Format?
    /// The kernels' instruction-set path (the CPU's best unless chosen).
    public let path: DecodeKernelPath
    public let threads: Int
    /// The threads the reduced-precision products run on (`threads` of them, the caller included);
    /// the forward pass runs a decode step's attention on them too.
    public let pool: WorkerPool
    private let layers: [[Matrix]]   // [layer][Projection.rawValue]
    private let head: Matrix

    /// Bytes of reduced-precision copies held (0 at f32: nothing is copied).
    public let copyBytes: Int
    /// Bytes one decode step at batch 1 reads through these matrices: every projection of every
    /// layer once, and the head once.
    public let bytesPerToken: Int

    /// Builds the copies from the engine's f32 weights, or, for a projection the engine holds no f32
    /// copy of (an int8 engine, `EngineOptions.precision`), from `source`, one matrix at a time.
    /// - Throws: `DecodeWeightsError` naming a matrix the precision cannot hold, or
    ///   `EngineError.tensorLoadFailed` for a tensor `source` cannot dequantize.
    init(weights: ModelWeights, config c: ModelConfig, format: QuantizedMatrix.Format?, headFormat: QuantizedMatrix.Format?,
         threads: Int, path: DecodeKernelPath = .best, source: ModelSource? = nil) throws {
        precondition(path.isSupported, "\(path) kernels are not supported on this CPU")
        self.format = format
        self.headFormat = headFormat
        self.path = path
        self.threads = threads
        pool = WorkerPool(threads: threads)
        func matrix(_ pointer: UnsafePointer<Float>, rows: Int, columns: Int, format: QuantizedMatrix.Format?, name: String) throws -> Matrix {
            guard let format else { return .f32(pointer, rows: rows, columns: columns) }
            return .reduced(try QuantizedMatrix(format: format, rows: rows, columns: columns, weights: pointer, name: name,
                                                threads: threads, path: path))
        }
        /// The projection from the engine's f32 weights, or rounded from the source's tensors.
        func projection(_ pointer: UnsafePointer<Float>?, _ p: Projection, layer l: Int) throws -> Matrix {
            let (rows, columns) = p.shape(c), name = p.name(layer: l)
            if let pointer { return try matrix(pointer, rows: rows, columns: columns, format: format, name: name) }
            guard let format, let source else {
                preconditionFailure("\(name): the engine holds no f32 copy and no source or format was given")
            }
            let scratch = try Self.stackedRows(p, layer: l, config: c, from: source)
            return .reduced(try QuantizedMatrix(format: format, rows: rows, columns: columns, weights: scratch.base, name: name,
                                                threads: threads, path: path))
        }
        layers = try weights.layers.enumerated().map { l, layer in
            try zip(Projection.allCases, [layer.qkv, layer.attnOutput, layer.gateUp, layer.down]).map { p, pointer in
                try projection(pointer.map { UnsafePointer($0) }, p, layer: l)
            }
        }
        head = try matrix(weights.output, rows: c.vocabSize, columns: c.hiddenSize, format: headFormat,
                          name: c.tiedOutput ? "token_embd (tied head)" : "output")
        let all = layers.flatMap { $0 } + [head]
        copyBytes = all.reduce(0) { total, m in if case .reduced = m { return total + m.bytesRead } else { return total } }
        bytesPerToken = all.reduce(0) { $0 + $1.bytesRead }
    }

    /// Projection `p` of layer `l` dequantized from `source`: its tensors (`Projection.tensors`)
    /// stacked by rows, in a scratch that lives as long as the caller holds it.
    /// - Throws: `EngineError.tensorLoadFailed` for a tensor `source` cannot dequantize.
    static func stackedRows(_ p: Projection, layer l: Int, config c: ModelConfig, from source: ModelSource) throws -> AlignedFloats {
        let (rows, columns) = p.shape(c)
        let scratch = AlignedFloats(count: rows * columns)
        var at = 0
        for tensor in p.weightNames(layer: l) {
            let count = source.tensorDims(tensor).map { $0.dropFirst().reduce(1, *) } ?? 0
            do {
                try source.dequantizeRows(tensor, rows: 0..<count,
                                          into: UnsafeMutableBufferPointer(start: scratch.base + at * columns, count: count * columns))
                source.releaseRows(tensor, rows: 0..<count)
            } catch {
                throw EngineError.tensorLoadFailed(name: tensor, reason: "\(error)")
            }
            at += count
        }
        precondition(at == rows, "\(p.name(layer: l)): the source's tensors hold \(at) rows, expected \(rows)")
        return scratch
    }

    /// Rounds every reduced-precision projection again from `source`, in place, one matrix at a
    /// time: the int8 path's smoothing, applied after the calibration pass ran on these very
    /// matrices, so a second copy of the model is never held (docs/ENGINE.md, "int8 prefill").
    /// Load time only: no product may run meanwhile.
    /// - Throws: `EngineError.tensorLoadFailed` or `DecodeWeightsError`, as `init`.
    func requantizeProjections(config c: ModelConfig, from source: ModelSource) throws {
        for l in 0..<layerCount {
            for p in Projection.allCases {
                guard let q = quantized(p, layer: l) else { continue }
                let scratch = try Self.stackedRows(p, layer: l, config: c, from: source)
                try q.requantize(from: scratch.base, name: p.name(layer: l), threads: threads, path: path)
            }
        }
    }

    /// y = x·Wᵀ for projection `p` of layer `layer`: x is (rows × columns) with row stride ldx, y
    /// (rows × outputs) with row stride ldy; with `accumulate`, y += x·Wᵀ (the residual add).
    /// f32 calls sgemm exactly as a default engine's prefill does (`F32GEMM.preferred`).
    public func project(_ p: Projection, layer: Int, _ x: UnsafePointer<Float>, stride ldx: Int, rows m: Int,
                        into y: UnsafeMutablePointer<Float>, stride ldy: Int, accumulate: Bool = false) {
        switch layers[layer][p.rawValue] {
        case let .f32(w, n, k):
            F32GEMM.preferred.multiply(m: m, n: n, k: k, a: x, lda: ldx, b: w, ldb: k, transposeB: true, beta: accumulate ? 1 : 0,
                                       c: y, ldc: ldy, threads: threads)
        case let .reduced(q):
            q.multiply(x, rows: m, stride: ldx, into: y, stride: ldy, accumulate: accumulate, pool: pool, path: path)
        }
    }

    /// logits (rows × vocab, contiguous) = hidden (rows × hidden, contiguous) · headᵀ. f32 is sgemv
    /// for one row and sgemm above, as the engine's LM head.
    public func head(_ hidden: UnsafePointer<Float>, rows m: Int, into logits: UnsafeMutablePointer<Float>) {
        switch head {
        case let .f32(w, v, h):
            if m <= InferenceEngine.gemvRowLimit {
                for r in 0..<m { sgemv(rows: v, columns: h, matrix: w, vector: hidden + r * h, result: logits + r * v) }
            } else {
                F32GEMM.preferred.multiply(m: m, n: v, k: h, a: hidden, lda: h, b: w, ldb: h, transposeB: true,
                                           c: logits, ldc: v, threads: threads)
            }
        case let .reduced(q):
            q.multiply(hidden, rows: m, stride: q.columns, into: logits, stride: q.rows, pool: pool, path: path)
        }
    }

    /// The reduced-precision copy of a projection (nil at f32). A per-row int8 copy is the s8 operand
    /// an int8 GEMM can share (`QuantizedMatrix.withInt8Storage`).
    public func quantized(_ p: Projection, layer: Int) -> QuantizedMatrix? {
        if case let .reduced(q) = layers[layer][p.rawValue] { return q }
        return nil
    }

    /// The head's reduced-precision copy (nil at f32).
    public var quantizedHead: QuantizedMatrix? {
        if case let .reduced(q) = head { return q }
        return nil
    }

    /// (outputs, columns) of a projection.
    public func shape(_ p: Projection, layer: Int) -> (rows: Int, columns: Int) {
        let m = layers[layer][p.rawValue]
        return (m.rows, m.columns)
    }

    public var layerCount: Int { layers.count }
    /// The head's outputs (the vocabulary).
    public var headRows: Int { head.rows }
    /// Bytes one product of layer 0's projection `p` reads (every layer has the same shapes).
    public func bytesRead(_ p: Projection) -> Int { layers.first?[p.rawValue].bytesRead ?? 0 }
    /// Bytes one product of the head reads.
    public var headBytes: Int { head.bytesRead }
}

extension InferenceEngine {
    /// The decode path's weights for this engine at `precision` (`precision.format` for the
    /// projections, `precision.headFormat` for the LM head), on the engine's thread count. Copies
    /// are built from the engine's f32 weights, which stay in place (prefill reads them); the
    /// result reads them too at f32, so it must not outlive the engine.
    /// - Throws: `DecodeWeightsError` naming a matrix the precision cannot hold.
    public func makeProjectionWeights(precision: DecodePrecision, path: DecodeKernelPath = .best) throws -> ProjectionWeights {
        try makeProjectionWeights(format: precision.format, headFormat: precision.headFormat, path: path)
    }

    /// As `makeProjectionWeights(precision:path:)` with any formats (nil: f32), for measurements.
    /// - Throws: `DecodeWeightsError` naming a matrix the format cannot hold.
    public func makeProjectionWeights(format: QuantizedMatrix.Format?, headFormat: QuantizedMatrix.Format?,
                                      path: DecodeKernelPath = .best) throws -> ProjectionWeights {
        try ProjectionWeights(weights: weights, config: config, format: format, headFormat: headFormat,
                              threads: options.threads, path: path)
    }
}

/// A `ModelSource` whose projection weights (q, k, v, attention output, gate, up, down) come out
/// rounded as a decode precision stores them, everything else as the wrapped source gives it. An
/// f32 engine loaded from it computes what the decode path computes with those weights, up to the
/// order of f32 sums: the accuracy cost of the precision, measured without touching the forward pass.
/// The token embeddings (and a tied head) are left exact.
public struct RoundedProjectionsSource: ModelSourceWrapper {
    public let base: ModelSource
    public let format: QuantizedMatrix.Format

    public init(_ base: ModelSource, format: QuantizedMatrix.Format) {
        self.base = base
        self.format = format
    }

    static let projectionSuffixes = ProjectionWeights.Projection.allCases.flatMap { $0.tensors.map { $0 + ".weight" } }

    static func isProjection(_ name: String) -> Bool {
        name.hasPrefix("blk.") && projectionSuffixes.contains { name.hasSuffix("." + $0) }
    }

    /// - Throws: what the base source throws, or `DecodeWeightsError` for a weight the format
    ///   cannot hold.
    public func dequantizeRows(_ name: String, rows: Range<Int>, into destination: UnsafeMutableBufferPointer<Float>) throws {
        try base.dequantizeRows(name, rows: rows, into: destination)
        guard Self.isProjection(name), let start = destination.baseAddress, !rows.isEmpty else { return }
        let k = destination.count / rows.count
        // Rows are rounded one at a time: int8 scales are per row, so any row range rounds the same.
        let copy = try QuantizedMatrix(format: format, rows: rows.count, columns: k, weights: start, name: name)
        copy.dequantize(rows: 0..<rows.count, into: start)
    }
}
