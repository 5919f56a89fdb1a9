import CKernels
import Dispatch

/// A reduced-precision copy of a weight matrix W [rows][columns] (a weight stored [out][in]),
/// row-major, built once from f32, and its product with a few f32 activation rows:
/// y[m × rows] = x[m × columns] · Wᵀ (the decode path's projections and LM head).
///
/// Each output is computed the same way whatever m, the thread count or the output split (see
/// `DecodeKernelPath.lanes`), so a row's result never depends on the other rows of its batch.
/// Immutable after init; `multiply` may be called from several threads at once.
public final class QuantizedMatrix: @unchecked Sendable {
    /// Element formats. `int8` is symmetric per row: W[r][c] ≈ q[r][c] · scale[r], q in −127…127,
    /// scale = max|W[r]| / 127, q rounded to nearest (even on ties), so |W − q·scale| ≤ scale/2.
    /// `int8Block32` is the same per block of 32 columns (Q8_0's values, with f32 scales apart): a
    /// Q8_0 tensor comes back exactly. `f16` and `bf16` round each weight to nearest even.
    /// `w8a8Block32` holds int8Block32's values, and its product rounds the activations too, per
    /// block of 32 as the weights (Q8_0 × Q8_0, llama.cpp's arithmetic): integer sums per block, then
    /// one f32 multiply-add per block (w8a8_gemm.c). It is fast only where `w8a8Accelerated`.
    public enum Format: String, CaseIterable, Sendable {
        case int8, int8Block32, f16, bf16, w8a8Block32

        var elementSize: Int { self == .f16 || self == .bf16 ? 2 : 1 }
        var kernelFormat: Int32 {
            switch self {
            case .int8: return Int32(AXON_WEIGHT_S8.rawValue)
            case .int8Block32: return Int32(AXON_WEIGHT_S8_BLOCK32.rawValue)
            case .f16: return Int32(AXON_WEIGHT_F16.rawValue)
            case .bf16: return Int32(AXON_WEIGHT_BF16.rawValue)
            case .w8a8Block32: return -1   // its own kernel: axon_w8a8_gemm
            }
        }

        /// Scales per row of `columns` weights.
        func scaleCount(columns: Int) -> Int {
            switch self {
            case .int8: return 1
            case .int8Block32, .w8a8Block32: return (columns + Int(AXON_WEIGHT_BLOCK) - 1) / Int(AXON_WEIGHT_BLOCK)
            case .f16, .bf16: return 0
            }
        }

        /// Bytes of elements and count of scales held for a rows × columns matrix (W8A8 pads its
        /// rows to groups of 16 and its columns to whole blocks).
        func storage(rows: Int, columns: Int) -> (bytes: Int, scales: Int) {
            if self == .w8a8Block32 { return (axon_w8a8_weight_bytes(rows, columns), axon_w8a8_scale_count(rows, columns)) }
            return (rows * columns * elementSize, rows * scaleCount(columns: columns))
        }
    }

    /// Whether this CPU runs `w8a8Block32` products on integer dot-product instructions (AVX-512
    /// VNNI); elsewhere they run on the scalar fallback, with the same results, much slower.
    public static var w8a8Accelerated: Bool { axon_w8a8_vnni_supported() == 1 }

    public let format: Format
    public let rows: Int
    public let columns: Int
    /// (rows, columns) elements of `format` (w8a8Block32: its own layout, `Format.storage`), 64-byte
    /// aligned, then AXON_WEIGHT_PADDING zero bytes.
    let values: UnsafeMutableRawPointer
    /// (rows, format.scaleCount(columns:)) f32 scales for the int8 formats, nil otherwise.
    let scales: UnsafeMutablePointer<Float>?

    /// Bytes a full product reads: the elements plus the row scales.
    public var byteCount: Int {
        let (bytes, scaleCount) = format.storage(rows: rows, columns: columns)
        return bytes + scaleCount * 4
    }

    /// Rounds `weights` (rows × columns f32, row-major) into a new copy, on `threads` threads.
    /// - Parameters:
    ///   - name: the tensor, for error messages.
    ///   - path: the instruction set for the f16 conversion (F16C from AVX2 up; the same results).
    /// - Throws: `DecodeWeightsError` for an empty or oversized shape, a non-finite weight, or
    ///   (f16) a weight outside binary16's range.
    public init(format: Format, rows: Int, columns: Int, weights: UnsafePointer<Float>, name: String = "matrix",
                threads: Int = 1, path: DecodeKernelPath = .best) throws {
        precondition(path.isSupported, "\(path) kernels are not supported on this CPU")
        guard rows > 0, columns > 0, rows <= 1 << 30 / columns else {
            throw DecodeWeightsError.invalidShape(matrix: name, rows: rows, columns: columns)
        }
        self.format = format
        self.rows = rows
        self.columns = columns
        // The kernels read up to AXON_WEIGHT_PADDING bytes past the last row: zeros.
        let (bytes, scaleCount) = format.storage(rows: rows, columns: columns), padding = Int(AXON_WEIGHT_PADDING)
        values = UnsafeMutableRawPointer.allocate(byteCount: (bytes + padding + 63) & ~63, alignment: 64)
        (values + bytes).initializeMemory(as: UInt8.self, repeating: 0, count: (bytes + padding + 63) & ~63 - bytes)
        scales = scaleCount > 0 ? UnsafeMutablePointer<Float>.allocate(capacity: scaleCount) : nil
        // Thrown after every property is set: deinit frees the buffers (exactly once), never here.
        try requantize(from: weights, name: name, threads: threads, path: path)
    }

    /// Rounds `weights` (rows × columns f32, row-major) into this copy: at init, and again in place
    /// when the int8 path's smoothing re-rounds its projections after calibrating on them, so two
    /// copies are never held. Load time only: no `multiply` may run meanwhile.
    /// - Throws: as `init`; the copy is then partly rewritten and must not be used.
    func requantize(from weights: UnsafePointer<Float>, name: String, threads: Int = 1, path: DecodeKernelPath = .best) throws {
        let (rows, format) = (self.rows, self.format)
        let workers = max(1, min(threads, rows / 64))
        let problems = UnsafeMutablePointer<Int>.allocate(capacity: workers)
        problems.initialize(repeating: 0, count: workers)
        defer { problems.deallocate() }
        let (values, scales, k) = (values, scales, columns)
        DispatchQueue.concurrentPerform(iterations: workers) { w in
            let r0 = rows * w / workers, r1 = rows * (w + 1) / workers
            let source = weights + r0 * k, count = (r1 - r0) * k
            switch format {
            case .int8:
                problems[w] = axon_quantize_s8_rows(weights, k, r0, r1, values.assumingMemoryBound(to: Int8.self), scales)
            case .int8Block32:
                problems[w] = axon_quantize_s8_blocks(weights, k, r0, r1, values.assumingMemoryBound(to: Int8.self), scales)
            case .f16:
                let nonFinite = (0..<count).reduce(0) { $0 + (source[$1].isFinite ? 0 : 1) }
                problems[w] = nonFinite + axon_convert_f16(path.rawValue, source, count, values.assumingMemoryBound(to: UInt16.self) + r0 * k)
            case .bf16:
                problems[w] = (0..<count).reduce(0) { $0 + (source[$1].isFinite ? 0 : 1) }
                axon_convert_bf16(source, count, values.assumingMemoryBound(to: UInt16.self) + r0 * k)
            case .w8a8Block32:
                let groups = (rows + Int(AXON_W8A8_GROUP) - 1) / Int(AXON_W8A8_GROUP)
                let g0 = groups * w / workers, g1 = groups * (w + 1) / workers
                let met = axon_w8a8_pack(weights, rows, k, g0, g1, values.assumingMemoryBound(to: UInt8.self), scales)
                precondition(met >= 0, "out of memory packing \(name)")
                problems[w] = met
            }
        }
        let bad = (0..<workers).reduce(0) { $0 + problems[$1] }
        if bad > 0 {
            throw DecodeWeightsError.notRepresentable(matrix: name, count: bad, format: format)
        }
    }

    deinit {
        values.deallocate()
        scales?.deallocate()
    }

    /// The stored value of W[row][column] as a double, exactly.
    public func dequantizedDouble(row: Int, column: Int) -> Double {
        precondition(row >= 0 && row < rows && column >= 0 && column < columns, "(\(row), \(column)) outside \(rows)×\(columns)")
        let i = row * columns + column
        switch format {
        case .int8: return Double(values.assumingMemoryBound(to: Int8.self)[i]) * Double(scales?[row] ?? 0)
        case .int8Block32:
            let scale = scales?[row * format.scaleCount(columns: columns) + column / Int(AXON_WEIGHT_BLOCK)] ?? 0
            return Double(values.assumingMemoryBound(to: Int8.self)[i]) * Double(scale)
        case .f16: return Double(axon_f16_to_f32(values.assumingMemoryBound(to: UInt16.self)[i]))
        case .bf16: return Double(Float(bitPattern: UInt32(values.assumingMemoryBound(to: UInt16.self)[i]) << 16))
        case .w8a8Block32:
            let blocks = format.scaleCount(columns: columns)
            let q = Int(values.assumingMemoryBound(to: UInt8.self)[axon_w8a8_offset(blocks, row, column)]) - 128
            return Double(q) * Double(scales?[axon_w8a8_scale_offset(blocks, row, column)] ?? 0)
        }
    }

    /// Writes rows `range` of the stored matrix, as f32, into `destination` ((range.count, columns)).
    /// int8 values q·scale are rounded to f32 once (relative 2⁻²⁴).
    public func dequantize(rows range: Range<Int>, into destination: UnsafeMutablePointer<Float>) {
        precondition(range.lowerBound >= 0 && range.upperBound <= rows, "rows \(range) outside 0..<\(rows)")
        for r in range {
            let out = destination + (r - range.lowerBound) * columns
            for c in 0..<columns { out[c] = Float(dequantizedDouble(row: r, column: c)) }
        }
    }

    /// The int8 elements [rows][columns] and per-row scales, for a GEMM that takes them as they are
    /// (oneDNN's `dnnl_gemm_u8s8s32`); nil unless the format is `int8` (per row). Valid only inside `body`.
    public func withInt8Storage<R>(_ body: (_ values: UnsafePointer<Int8>, _ scales: UnsafePointer<Float>) throws -> R) rethrows -> R? {
        guard format == .int8, let scales else { return nil }
        return try body(UnsafePointer(values.assumingMemoryBound(to: Int8.self)), UnsafePointer(scales))
    }

    /// y[i·ldy + j] = Σₖ x[i·ldx + k]·W[j][k] for rows i < m and all outputs j, or y += that with
    /// `accumulate`. Outputs are split into contiguous blocks run on `pool` (the decode path's
    /// persistent threads) or, without one, on `threads` workers of DispatchQueue.concurrentPerform,
    /// when the product is large enough to pay for them. Results do not depend on the split.
    /// - Precondition: `path` is supported, ldx ≥ columns, ldy ≥ rows.
    public func multiply(_ x: UnsafePointer<Float>, rows m: Int, stride ldx: Int, into y: UnsafeMutablePointer<Float>,
                         stride ldy: Int, accumulate: Bool = false, threads: Int = 1, pool: WorkerPool? = nil,
                         path: DecodeKernelPath = .best) {
        multiply(x, rows: m, stride: ldx, outputs: 0..<rows, into: y, stride: ldy, accumulate: accumulate, threads: threads,
                 pool: pool, path: path)
    }

    /// As `multiply(_:rows:stride:into:stride:accumulate:threads:pool:path:)`, for outputs j in `outputs` only.
    public func multiply(_ x: UnsafePointer<Float>, rows m: Int, stride ldx: Int, outputs: Range<Int>,
                         into y: UnsafeMutablePointer<Float>, stride ldy: Int, accumulate: Bool = false,
                         threads: Int = 1, pool: WorkerPool? = nil, path: DecodeKernelPath = .best) {
        precondition(path.isSupported, "\(path) kernels are not supported on this CPU")
        precondition(m >= 0 && ldx >= columns && ldy >= rows, "m \(m), ldx \(ldx) < \(columns) or ldy \(ldy) < \(rows)")
        precondition(outputs.lowerBound >= 0 && outputs.upperBound <= rows, "outputs \(outputs) outside 0..<\(rows)")
        guard m > 0, !outputs.isEmpty else { return }
        if format == .w8a8Block32 {
            return multiplyW8A8(x, rows: m, stride: ldx, outputs: outputs, into: y, stride: ldy, accumulate: accumulate,
                                threads: threads, pool: pool, path: path)
        }
        let (k, format, values, scales) = (columns, format.kernelFormat, UnsafeRawPointer(values), scales.map { UnsafePointer($0) })
        let isa = path.rawValue, acc: Int32 = accumulate ? 1 : 0
        let workers = Self.workers(threads: pool?.threads ?? threads, outputs: outputs.count, work: m * outputs.count * k)
        guard workers > 1 else {
            axon_decode_gemm(isa, format, x, ldx, m, values, scales, k, outputs.lowerBound, outputs.upperBound, y, ldy, acc)
            return
        }
        if let pool {
            pool.multiply(parts: workers, alignment: Self.outputAlignment, isa: isa, format: format, x: x, ldx: ldx, m: m,
                          w: values, scales: scales, k: k, outputs: outputs, y: y, ldy: ldy, accumulate: acc)
            return
        }
        let (base, count) = (outputs.lowerBound, outputs.count)
        DispatchQueue.concurrentPerform(iterations: workers) { w in
            let n0 = base + Self.split(count, part: w, of: workers), n1 = base + Self.split(count, part: w + 1, of: workers)
            axon_decode_gemm(isa, format, x, ldx, m, values, scales, k, n0, n1, y, ldy, acc)
        }
    }

    /// The W8A8 product: the activation rows rounded per block (on the calling thread, into a
    /// scratch of m · (k + 8·⌈k/32⌉) bytes, on its stack when it fits: 12 KB at Gemma 3's 16 rows),
    /// then the integer kernel, VNNI on the AVX-512 path where the CPU has it, else scalar.
    private func multiplyW8A8(_ x: UnsafePointer<Float>, rows m: Int, stride ldx: Int, outputs: Range<Int>,
                              into y: UnsafeMutablePointer<Float>, stride ldy: Int, accumulate: Bool, threads: Int,
                              pool: WorkerPool?, path: DecodeKernelPath) {
        let k = columns, blocks = format.scaleCount(columns: k), padded = blocks * Int(AXON_WEIGHT_BLOCK)
        let vnni: Int32 = path == .avx512 ? 1 : 0, acc: Int32 = accumulate ? 1 : 0
        let (values, scales) = (UnsafePointer(values.assumingMemoryBound(to: UInt8.self)), UnsafePointer(scales))
        let workers = Self.workers(threads: pool?.threads ?? threads, outputs: outputs.count, work: m * outputs.count * k)
        withUnsafeTemporaryAllocation(of: Int8.self, capacity: m * padded) { q in
            withUnsafeTemporaryAllocation(of: Float.self, capacity: m * blocks) { d in
                withUnsafeTemporaryAllocation(of: Int32.self, capacity: m * blocks) { comp in
                    let (q, d, comp) = (q.baseAddress!, d.baseAddress!, comp.baseAddress!)
                    // A non-finite activation gives its block scale NaN: that row's outputs are NaN.
                    _ = axon_w8a8_quantize_rows(x, ldx, m, k, q, d, comp)
                    // Part w of `workers` blocks of whole groups (one part: every output).
                    let part = { (w: Int) in
                        let a = outputs.lowerBound + axon_split(outputs.count, w, workers, Int(AXON_W8A8_GROUP))
                        let b = outputs.lowerBound + axon_split(outputs.count, w + 1, workers, Int(AXON_W8A8_GROUP))
                        axon_w8a8_gemm(vnni, q, d, comp, m, values, scales, k, a, b, y, ldy, acc)
                    }
                    if let pool { pool.run(parts: workers, part) } else { DispatchQueue.concurrentPerform(iterations: workers, execute: part) }
                }
            }
        }
    }

    /// Fewest multiply-adds worth handing to another thread (a concurrentPerform round trip costs
    /// a few microseconds; this is about 1 µs of kernel time).
    static let minimumWorkPerThread = 1 << 16
    /// Multiply-adds per block when a product is split finer than one block per thread (about
    /// 10 µs at 16 rows): libdispatch hands blocks to whichever worker is free, so a thread that
    /// another process delays holds up one small block, not half the product.
    static let blockWork = 1 << 20
    /// At most this many blocks per thread.
    static let maximumBlocksPerThread = 8
    /// Output blocks are multiples of this (the kernels' tile widths 8, 6 and 3 divide it).
    static let outputAlignment = 24

    /// Blocks to split a product of `work` multiply-adds over `outputs` outputs into.
    static func workers(threads: Int, outputs: Int, work: Int) -> Int {
        guard threads > 1 else { return 1 }
        let wanted = min(threads * maximumBlocksPerThread, max(threads, work / blockWork))
        return max(1, min(wanted, outputs / outputAlignment, work / minimumWorkPerThread))
    }

    /// Start of part `part` of `count` outputs split into `parts` blocks aligned to `outputAlignment`.
    static func split(_ count: Int, part: Int, of parts: Int) -> Int {
        axon_split(count, part, parts, outputAlignment)
    }
}

/// A weight the decode path cannot hold in its precision, or a shape it cannot hold at all.
public enum DecodeWeightsError: Error, CustomStringConvertible, Equatable {
    case invalidShape(matrix: String, rows: Int, columns: Int)
    /// `count` weights are NaN or infinite, or (f16) beyond ±65504 and would round to infinity.
    case notRepresentable(matrix: String, count: Int, format: QuantizedMatrix.Format)

    public var description: String {
        switch self {
        case let .invalidShape(matrix, rows, columns):
            return "\(matrix): a \(rows)×\(columns) matrix cannot be held by the decode path (expected 1...2^30 elements)"
        case let .notRepresentable(matrix, count, format):
            let why = format == .f16 ? "not finite or beyond f16's ±65504" : "not finite"
            return "\(matrix): \(count) weights are \(why); use --decode-precision f32"
                + (format == .f16 ? " or int8" : "")
        }
    }
}
