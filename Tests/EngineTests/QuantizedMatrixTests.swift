import XCTest
import Engine

/// The decode path's reduced-precision weights and kernels, on every instruction-set path this CPU
/// supports and always the scalar fallback: rounding against its definition (and Swift's own
/// Float16 conversion), products against a float64 reference computed from the stored (rounded)
/// weights, within the bound of the f32 accumulation each path performs.
final class QuantizedMatrixTests: XCTestCase {
    /// Deterministic values in [−1, 1).
    struct Generator {
        var state: UInt64
        mutating func next() -> Float {
            state = state &* 6_364_136_223_846_793_005 &+ 1_442_695_040_888_963_407
            return Float(state >> 40) / Float(1 << 23) - 1
        }
        mutating func fill(_ count: Int, scale: Float = 1) -> [Float] { (0..<count).map { _ in next() * scale } }
    }

    /// Error of an output on `path`, derived from its arithmetic. Each output is `lanes` chains of
    /// ⌈k/lanes⌉ fused multiply-adds (the product is exact inside an FMA: one rounding per step;
    /// the scalar path rounds the product and the sum, 2 per step), the lanes summed by a tree of
    /// log₂(lanes) adds, then the int8 row scale (1 rounding) and the optional add into y (1). The
    /// per-block format's weights enter as q·scale rounded once to f32 (1 more rounding per product).
    /// Otherwise the weights are exact in f32 (int8 q, or the f16/bf16 value), so with n the most
    /// roundings any product passes through, the classic bound is |ŷ − y| ≤ γₙ·(Σ|x·w| + |y₀|),
    /// γₙ = n·u/(1 − n·u): a bound for any order of those sums, never a fitted figure.
    ///
    /// `w8a8Block32` sums each block's integer products exactly, then takes one fused multiply-add
    /// per block by ws·d (one f32 product), and the optional add: n = blocks + 2, over the products
    /// of the stored weights with the activations as that format rounds them (`activations`).
    static func bound(k: Int, path: DecodeKernelPath, format: QuantizedMatrix.Format, magnitude: Double) -> Double {
        let lanes = path.lanes
        let steps = (lanes == 1 ? 2 : 1) * ((k + lanes - 1) / lanes)
        let n = format == .w8a8Block32 ? Double((k + 31) / 32 + 2)
            : Double(steps + lanes.trailingZeroBitCount + 2 + (format == .int8Block32 ? 1 : 0))
        let u = Double(Tolerance.u)
        return n * u / (1 - n * u) * magnitude
    }

    /// One activation row as `format`'s product sees it: itself, or for `w8a8Block32` rounded per
    /// block of 32 by Q8_0's definition (scale = max|x| / 127 in f32, q = x / scale rounded to
    /// nearest even, in −127…127), q · scale exactly.
    static func activations(_ x: ArraySlice<Float>, format: QuantizedMatrix.Format) -> [Double] {
        let row = Array(x)
        guard format == .w8a8Block32 else { return row.map(Double.init) }
        var out = [Double](repeating: 0, count: row.count)
        for start in stride(from: 0, to: row.count, by: 32) {
            let block = start..<min(start + 32, row.count)
            let scale = (block.map { abs(row[$0]) }.max() ?? 0) / 127
            guard scale > 0 else { continue }
            for c in block {
                let q = max(-127, min(127, (Double(row[c]) / Double(scale)).rounded(.toNearestOrEven)))
                out[c] = q * Double(scale)
            }
        }
        return out
    }

    static let formats = QuantizedMatrix.Format.allCases

    func testTheScalarFallbackIsAlwaysSupportedAndTheBestPathIsTheWidest() {
        XCTAssertTrue(DecodeKernelPath.scalar.isSupported)
        XCTAssertEqual(DecodeKernelPath.supported.first, .scalar)
        XCTAssertEqual(DecodeKernelPath.best, DecodeKernelPath.supported.last)
        print("decode kernel paths on this CPU: \(DecodeKernelPath.supported.map(\.description).joined(separator: ", "))")
        // The Engine is compiled for x86-64-v3 unless AXON_PORTABLE: then AVX2 must be here.
        #if arch(x86_64)
        if ProcessInfo.processInfo.environment["AXON_PORTABLE"] != "1" { XCTAssertTrue(DecodeKernelPath.avx2.isSupported) }
        #endif
    }

    // MARK: Rounding

    func testInt8RowsRoundWithinHalfAScaleWithScaleMaxOver127() throws {
        var g = Generator(state: 1)
        let rows = 7, k = 45
        var w = g.fill(rows * k)
        for c in 0..<k { w[2 * k + c] = 0 }                            // an all-zero row
        for c in 0..<k { w[3 * k + c] *= 1e-30 }                       // tiny values, normal scale
        w[4 * k + 9] = -3.5                                            // the maximum is negative
        for c in 0..<k { w[5 * k + c] = Float(c % 5) * 0.5 - 1 }        // exact ties at half a step
        for c in 0..<k { w[6 * k + c] *= 1e4 }
        let q = try QuantizedMatrix(format: .int8, rows: rows, columns: k, weights: w, name: "test")
        XCTAssertEqual(q.byteCount, rows * k + rows * 4)
        try XCTUnwrap(q.withInt8Storage { values, scales in
            for r in 0..<rows {
                let row = w[(r * k)..<((r + 1) * k)]
                let maxAbs = row.map { abs($0) }.max() ?? 0
                XCTAssertEqual(scales[r], maxAbs / 127, "row \(r) scale")
                for c in 0..<k {
                    let value = values[r * k + c]
                    XCTAssertTrue((-127...127).contains(value))
                    let error = abs(Double(w[r * k + c]) - Double(value) * Double(scales[r]))
                    XCTAssertLessThanOrEqual(error, Double(scales[r]) / 2, "row \(r) column \(c)")
                    XCTAssertEqual(q.dequantizedDouble(row: r, column: c), Double(value) * Double(scales[r]))
                }
            }
            // The largest magnitude of each non-zero row is stored as ±127.
            XCTAssertEqual(values[4 * k + 9], -127)
            XCTAssertTrue((0..<k).allSatisfy { values[2 * k + $0] == 0 })
        })
    }

    func testInt8BlocksRoundWithinHalfTheirBlocksScale() throws {
        var g = Generator(state: 8)
        let rows = 3, k = 75   // two full blocks of 32 and one of 11
        var w = g.fill(rows * k)
        for c in 32..<64 { w[k + c] = 0 }                 // an all-zero block
        for c in 64..<75 { w[2 * k + c] *= 1e3 }          // a block far larger than its neighbours
        let q = try QuantizedMatrix(format: .int8Block32, rows: rows, columns: k, weights: w, name: "test")
        XCTAssertEqual(q.byteCount, rows * k + rows * 3 * 4)
        XCTAssertNil(q.withInt8Storage { _, _ in 0 })
        for r in 0..<rows {
            for b in 0..<3 {
                let columns = (b * 32)..<min(k, (b + 1) * 32)
                let scale = (columns.map { abs(w[r * k + $0]) }.max() ?? 0) / 127
                for c in columns {
                    let stored = q.dequantizedDouble(row: r, column: c)
                    XCTAssertLessThanOrEqual(abs(Double(w[r * k + c]) - stored), Double(scale) / 2, "row \(r) column \(c)")
                    // The stored value is an integer multiple of the block's scale, within ±127 of it.
                    let steps = scale > 0 ? stored / Double(scale) : 0
                    XCTAssertEqual(steps, steps.rounded())
                    XCTAssertLessThanOrEqual(abs(steps), 127)
                }
            }
        }
        // A Q8_0 block (values q·d with max |q| = 127) comes back exactly.
        let d = Float(Float16(0.0123))
        let q8: [Float] = (0..<64).map { (c: Int) -> Float in
            let q: Int = c % 32 == 0 ? 127 : (c * 37) % 255 - 127   // Q8_0 puts ±127 in each block
            return Float(q) * d
        }
        let exact = try QuantizedMatrix(format: .int8Block32, rows: 1, columns: 64, weights: q8, name: "q8")
        for c in 0..<64 { XCTAssertEqual(exact.dequantizedDouble(row: 0, column: c), Double(q8[c])) }
    }

    func testF16RoundsToNearestEvenAsSwiftsFloat16Does() throws {
        #if arch(x86_64) || arch(arm64)
        var g = Generator(state: 2)
        var w = g.fill(2000, scale: 4)
        w += [0, -0.0, 65504, -65504, 65519.99, 6.1e-5, 6.0e-5, 5.96e-8, 2.98e-8, 2.99e-8, 1e-9, -3.0e-6,
              1 + 0x1p-11, 1 + 3 * 0x1p-11, 1 + 0x1p-12, 2049, 2051]   // boundaries, subnormals, ties
        for path in DecodeKernelPath.supported {   // F16C from AVX2 up, integer arithmetic in scalar
            let q = try QuantizedMatrix(format: .f16, rows: 1, columns: w.count, weights: w, name: "test", path: path)
            XCTAssertEqual(q.byteCount, w.count * 2)
            XCTAssertNil(q.withInt8Storage { _, _ in 0 })
            for (c, v) in w.enumerated() {
                XCTAssertEqual(q.dequantizedDouble(row: 0, column: c).bitPattern, Double(Float(Float16(v))).bitPattern, "\(path) \(v)")
            }
        }
        #endif
    }

    func testBF16KeepsTheNearestEightBitMantissa() throws {
        var g = Generator(state: 3)
        let w = g.fill(3000, scale: 100) + [3e38, -1e-30]
        let q = try QuantizedMatrix(format: .bf16, rows: 2, columns: w.count / 2, weights: w, name: "test")
        for i in 0..<w.count {
            let v = w[i], b = q.dequantizedDouble(row: i / q.columns, column: i % q.columns)
            XCTAssertEqual(Float(b).bitPattern & 0xFFFF, 0)
            // Half a unit in the last of bf16's 8 significant bits: 2^16 f32 ulps / 2.
            XCTAssertLessThanOrEqual(abs(Double(v) - b), Double(v.ulp) * Double(1 << 16) / 2, "\(v)")
        }
        // Ties go to the even neighbour: 1 + 2⁻⁸ → 1, 1 + 3·2⁻⁸ → 1 + 2⁻⁶, −(1 + 2⁻⁸) → −1.
        let ties: [Float] = [1 + 0x1p-8, 1 + 3 * 0x1p-8, -(1 + 0x1p-8)]
        let t = try QuantizedMatrix(format: .bf16, rows: 1, columns: 3, weights: ties, name: "ties")
        XCTAssertEqual((0..<3).map { t.dequantizedDouble(row: 0, column: $0) }, [1, 1 + 0x1p-6, -1])
    }

    func testWeightsTheFormatCannotHoldAreATypedError() {
        let nan: [Float] = [1, .nan, 2, 3]
        for format in Self.formats {
            XCTAssertThrowsError(try QuantizedMatrix(format: format, rows: 2, columns: 2, weights: nan, name: "blk.0.x")) { error in
                XCTAssertEqual(error as? DecodeWeightsError, .notRepresentable(matrix: "blk.0.x", count: 1, format: format))
            }
        }
        // Nine values, so the F16C loop (8 at a time) and its tail both see an overflow.
        let big: [Float] = [1, 70_000, -65_520, 65_504, 65_519, 0, 0, 0, -1e6]
        for path in DecodeKernelPath.supported {
            XCTAssertThrowsError(try QuantizedMatrix(format: .f16, rows: 1, columns: 9, weights: big, name: "w", path: path)) { error in
                XCTAssertEqual(error as? DecodeWeightsError, .notRepresentable(matrix: "w", count: 3, format: .f16))
                XCTAssertTrue("\(error)".contains("65504"))
            }
        }
        XCTAssertNoThrow(try QuantizedMatrix(format: .int8, rows: 1, columns: 9, weights: big, name: "w"))
        XCTAssertNoThrow(try QuantizedMatrix(format: .bf16, rows: 1, columns: 9, weights: big, name: "w"))
        XCTAssertThrowsError(try QuantizedMatrix(format: .int8, rows: 0, columns: 4, weights: big, name: "w"))
    }

    // MARK: Products

    /// y (m × n, stride ldy) against Σ x·w in float64 over the stored weights, within `bound`.
    private func check(_ q: QuantizedMatrix, x: [Float], m: Int, ldx: Int, y: [Float], ldy: Int, initial: [Float]?,
                       path: DecodeKernelPath, file: StaticString = #filePath, line: UInt = #line) {
        let n = q.rows, k = q.columns
        var worst = 0.0
        for i in 0..<m {
            let a = Self.activations(x[(i * ldx)..<(i * ldx + k)], format: q.format)
            for j in 0..<n {
                var exact = 0.0, magnitude = 0.0
                for c in 0..<k {
                    let p = a[c] * q.dequantizedDouble(row: j, column: c)
                    exact += p
                    magnitude += abs(p)
                }
                if let initial { exact += Double(initial[i * ldy + j]); magnitude += abs(Double(initial[i * ldy + j])) }
                let error = abs(Double(y[i * ldy + j]) - exact), allowed = Self.bound(k: k, path: path, format: q.format, magnitude: magnitude)
                worst = max(worst, error / max(allowed, .leastNormalMagnitude))
                if error > allowed {
                    XCTFail("\(q.format) \(path) m \(m) n \(n) k \(k): y[\(i)][\(j)] = \(y[i * ldy + j]), exact \(exact), error \(error) > \(allowed)",
                            file: file, line: line)
                    return
                }
            }
        }
    }

    func testProductsMatchTheFloat64ReferenceOnOddShapesOnEveryPath() throws {
        var g = Generator(state: 4)
        // k around every lane width (1, 8, 16) and the model's own; n around every tile width (3, 6, 8, 24).
        let shapes: [(n: Int, k: Int)] = [(1, 1), (5, 7), (3, 8), (7, 9), (8, 15), (9, 16), (23, 17), (25, 31), (24, 33),
                                          (49, 576), (13, 581), (6, 1536)]
        for path in DecodeKernelPath.supported {
            for format in Self.formats {
                for (n, k) in shapes {
                    let w = g.fill(n * k, scale: 0.3)
                    let q = try QuantizedMatrix(format: format, rows: n, columns: k, weights: w, name: "test")
                    for m in [1, 2, 3, 4, 5, 7, 16, 33] {
                        let x = g.fill(m * k)
                        var y = [Float](repeating: .nan, count: m * n)
                        q.multiply(x, rows: m, stride: k, into: &y, stride: n, path: path)
                        check(q, x: x, m: m, ldx: k, y: y, ldy: n, initial: nil, path: path)
                    }
                }
            }
        }
    }

    func testEveryRowCountFrom1To33WithStridesAndAccumulation() throws {
        var g = Generator(state: 5)
        let n = 29, k = 83, ldx = 97, ldy = 31
        for path in DecodeKernelPath.supported {
            for format in Self.formats {
                let q = try QuantizedMatrix(format: format, rows: n, columns: k, weights: g.fill(n * k), name: "test")
                for m in 1...33 {
                    let x = g.fill(m * ldx)
                    let initial = g.fill(m * ldy)
                    var y = initial
                    q.multiply(x, rows: m, stride: ldx, into: &y, stride: ldy, accumulate: true, path: path)
                    check(q, x: x, m: m, ldx: ldx, y: y, ldy: ldy, initial: initial, path: path)
                    // The padding between rows of y is never written.
                    for i in 0..<m { for j in n..<ldy { XCTAssertEqual(y[i * ldy + j], initial[i * ldy + j]) } }
                }
            }
        }
    }

    /// A row's result is the same bits whatever else is in the batch, however the outputs are
    /// split over threads, and for any output range: the order of each output's sum is fixed.
    func testARowsResultDoesNotDependOnTheBatchOrTheThreadSplit() throws {
        var g = Generator(state: 6)
        let n = 1000, k = 576, m = 19
        for path in DecodeKernelPath.supported {
            for format in Self.formats {
                let q = try QuantizedMatrix(format: format, rows: n, columns: k, weights: g.fill(n * k), name: "test")
                let x = g.fill(m * k)
                var batch = [Float](repeating: 0, count: m * n)
                q.multiply(x, rows: m, stride: k, into: &batch, stride: n, threads: 3, path: path)
                for i in [0, 5, 18] {
                    var alone = [Float](repeating: 0, count: n)
                    x.withUnsafeBufferPointer { q.multiply($0.baseAddress! + i * k, rows: 1, stride: k, into: &alone, stride: n, path: path) }
                    XCTAssertEqual(alone, Array(batch[(i * n)..<((i + 1) * n)]), "\(format) \(path) row \(i)")
                }
                var part = [Float](repeating: 0, count: 2 * n)
                q.multiply(x, rows: 2, stride: k, outputs: 101..<517, into: &part, stride: n, threads: 2, path: path)
                XCTAssertEqual(Array(part[101..<517]), Array(batch[101..<517]))
                XCTAssertEqual(Array(part[(n + 101)..<(n + 517)]), Array(batch[(n + 101)..<(n + 517)]))
                XCTAssertTrue(part[0..<101].allSatisfy { $0 == 0 } && part[517..<n].allSatisfy { $0 == 0 })
                // On the decode path's persistent threads: the same bits.
                var pooled = [Float](repeating: 0, count: m * n)
                q.multiply(x, rows: m, stride: k, into: &pooled, stride: n, pool: Self.pool, path: path)
                XCTAssertEqual(pooled, batch, "\(format) \(path) on a WorkerPool")
            }
        }
    }

    static let pool = WorkerPool(threads: 3)

    /// The W8A8 product is defined in integers and one f32 multiply-add per block, so every path
    /// (VNNI where the CPU has it, the scalar fallback everywhere) gives the same bits, and it holds
    /// int8Block32's stored values exactly, padded rows and columns included.
    func testW8A8GivesTheSameBitsOnEveryPathAndHoldsTheBlockFormatsValues() throws {
        var g = Generator(state: 7)
        for (n, k) in [(1, 1), (17, 33), (40, 640), (33, 95)] {
            let w = g.fill(n * k, scale: 0.5)
            let w8a8 = try QuantizedMatrix(format: .w8a8Block32, rows: n, columns: k, weights: w, name: "w8a8", threads: 2)
            let blocks = try QuantizedMatrix(format: .int8Block32, rows: n, columns: k, weights: w, name: "blocks")
            for j in 0..<n { for c in 0..<k { XCTAssertEqual(w8a8.dequantizedDouble(row: j, column: c), blocks.dequantizedDouble(row: j, column: c)) } }
            XCTAssertEqual(w8a8.byteCount, (n + 15) / 16 * 16 * ((k + 31) / 32) * (32 + 4))
            let m = 19
            var x = g.fill(m * k, scale: 3)
            x[0] = 0   // a zero and a lone large value in row 0's first block
            if k > 1 { x[1] = 40 }
            var reference = [Float](repeating: 0, count: m * n)
            w8a8.multiply(x, rows: m, stride: k, into: &reference, stride: n, path: .scalar)
            for path in DecodeKernelPath.supported {
                var y = [Float](repeating: .nan, count: m * n)
                w8a8.multiply(x, rows: m, stride: k, into: &y, stride: n, pool: Self.pool, path: path)
                XCTAssertEqual(y, reference, "n \(n) k \(k) on \(path)")
            }
        }
    }

    /// Every part of every job runs exactly once, across many back-to-back jobs of varying sizes
    /// (parts claimed under one job's epoch never leak into the next), and a job started from inside
    /// a part runs inline.
    func testWorkerPoolRunsEveryPartOnce() {
        let pool = WorkerPool(threads: 3, spinNanoseconds: 20_000)
        XCTAssertEqual(pool.threads, 3)
        let slots = UnsafeMutablePointer<Int>.allocate(capacity: 64)
        defer { slots.deallocate() }
        for job in 0..<3000 {
            let parts = 1 + job % 37
            slots.initialize(repeating: 0, count: 64)
            pool.run(parts: parts) { part in slots[part] += 1 }
            XCTAssertTrue((0..<parts).allSatisfy { slots[$0] == 1 } && (parts..<64).allSatisfy { slots[$0] == 0 }, "job \(job)")
            if job % 500 == 0 { usleep(50_000) }   // past the spin: the workers park and are woken
        }
        slots.initialize(repeating: 0, count: 64)
        pool.run(parts: 4) { outer in pool.run(parts: 4) { inner in slots[outer * 4 + inner] += 1 } }
        XCTAssertTrue((0..<16).allSatisfy { slots[$0] == 1 })
    }
}
