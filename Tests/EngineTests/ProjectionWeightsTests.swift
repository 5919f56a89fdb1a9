import XCTest
import Engine
import GGUF

/// The decode path's weight set on a tiny model: each projection multiplies the right rows
/// (Q|K|V and gate|up fused as the engine fuses them), the head is the tied embedding, f32 is the
/// engine's own arithmetic, and `RoundedProjectionsSource` hands the engine exactly the stored
/// values of the reduced copies.
final class ProjectionWeightsTests: XCTestCase {
    /// The f32 rows of the named tensors, stacked in order: an [out][in] matrix.
    private func stacked(_ file: GGUFFile, _ names: [String]) throws -> (values: [Float], rows: Int, columns: Int) {
        var values: [Float] = [], columns = 0
        for name in names {
            let info = try XCTUnwrap(file.tensor(named: name))
            var part = [Float](repeating: 0, count: info.elementCount)
            try part.withUnsafeMutableBufferPointer { try file.dequantizeRows(info, rows: 0..<info.rowCount, into: $0) }
            values += part
            columns = info.rowLength
        }
        return (values, values.count / columns, columns)
    }

    private func names(_ p: ProjectionWeights.Projection, layer l: Int) -> [String] {
        switch p {
        case .qkv: return ["attn_q", "attn_k", "attn_v"].map { "blk.\(l).\($0).weight" }
        case .attentionOutput: return ["blk.\(l).attn_output.weight"]
        case .gateUp: return ["blk.\(l).ffn_gate.weight", "blk.\(l).ffn_up.weight"]
        case .down: return ["blk.\(l).ffn_down.weight"]
        }
    }

    func testEveryProjectionAndTheHeadMultiplyTheirOwnWeightsAtEveryPrecision() throws {
        let file = try TinyModel().file()
        let engine = try InferenceEngine(file: file, options: EngineOptions(threads: 2, maxBatchTokens: 16, maxRows: 2, maxSeq: 16, maxLogitRows: 16))
        var g = QuantizedMatrixTests.Generator(state: 7)
        let m = 5
        for precision in DecodePrecision.allCases {
            for path in DecodeKernelPath.supported {
                let weights = try engine.makeProjectionWeights(precision: precision, path: path)
                XCTAssertEqual(weights.format, precision.format)
                XCTAssertEqual(weights.headFormat, precision.headFormat)
                XCTAssertEqual(weights.layerCount, 2)
                var expectedBytes = 0
                for l in 0..<weights.layerCount {
                    for p in ProjectionWeights.Projection.allCases {
                        let w = try stacked(file, names(p, layer: l))
                        XCTAssertTrue(weights.shape(p, layer: l) == (w.rows, w.columns), "\(p) shape")
                        let x = g.fill(m * w.columns)
                        var y = [Float](repeating: 0.25, count: m * w.rows)
                        weights.project(p, layer: l, x, stride: w.columns, rows: m, into: &y, stride: w.rows, accumulate: p == .down)
                        // The same product through an independent copy of the stacked rows, or in f64 for f32.
                        if let format = precision.format {
                            let q = try QuantizedMatrix(format: format, rows: w.rows, columns: w.columns, weights: w.values)
                            var expected = [Float](repeating: 0.25, count: m * w.rows)
                            q.multiply(x, rows: m, stride: w.columns, into: &expected, stride: w.rows, accumulate: p == .down, path: path)
                            XCTAssertEqual(y, expected, "\(precision) \(path) \(p) layer \(l)")
                            XCTAssertEqual(weights.quantized(p, layer: l)?.byteCount, q.byteCount)
                            expectedBytes += q.byteCount
                        } else {
                            XCTAssertNil(weights.quantized(p, layer: l))
                            for i in 0..<m {
                                for j in 0..<w.rows {
                                    var exact = p == .down ? 0.25 : 0.0, magnitude = 0.0
                                    for c in 0..<w.columns {
                                        let t = Double(x[i * w.columns + c]) * Double(w.values[j * w.columns + c])
                                        exact += t
                                        magnitude += abs(t)
                                    }
                                    // Any f32 summation order (OpenBLAS's blocking is its own): γ_{k+1}.
                                    let n = Double(w.columns + 1), u = Double(Tolerance.u)
                                    XCTAssertEqual(Double(y[i * w.rows + j]), exact, accuracy: n * u / (1 - n * u) * (magnitude + 0.25))
                                }
                            }
                            expectedBytes += w.values.count * 4
                        }
                    }
                }
                // The tied head is the token embedding matrix.
                let e = try stacked(file, ["token_embd.weight"])
                let x = g.fill(m * e.columns)
                var logits = [Float](repeating: 0, count: m * e.rows)
                weights.head(x, rows: m, into: &logits)
                let headFormat = weights.headFormat
                let head = try headFormat.map { try QuantizedMatrix(format: $0, rows: e.rows, columns: e.columns, weights: e.values) }
                for i in 0..<m {
                    let a = QuantizedMatrixTests.activations(x[(i * e.columns)..<((i + 1) * e.columns)], format: headFormat ?? .f16)
                    for j in 0..<e.rows {
                        var exact = 0.0, magnitude = 0.0
                        for c in 0..<e.columns {
                            let t = a[c] * (head?.dequantizedDouble(row: j, column: c) ?? Double(e.values[j * e.columns + c]))
                            exact += t
                            magnitude += abs(t)
                        }
                        let bound = head == nil ? Double(e.columns + 1) * Double(Tolerance.u) * 1.01 * magnitude
                                                : QuantizedMatrixTests.bound(k: e.columns, path: path, format: headFormat ?? .f16, magnitude: magnitude)
                        XCTAssertEqual(Double(logits[i * e.rows + j]), exact, accuracy: bound, "\(precision) head logit [\(i)][\(j)]")
                    }
                }
                expectedBytes += head?.byteCount ?? e.values.count * 4
                XCTAssertEqual(weights.bytesPerToken, expectedBytes)
                XCTAssertEqual(weights.copyBytes, precision == .f32 ? 0 : expectedBytes)
            }
        }
    }

    func testTheRoundedSourceGivesTheEngineTheStoredValuesOfTheProjectionsAndLeavesTheRestExact() throws {
        let file = try TinyModel().file()
        for format in QuantizedMatrix.Format.allCases {
            let source = RoundedProjectionsSource(file, format: format)
            for name in ["blk.1.attn_k.weight", "blk.0.ffn_down.weight", "token_embd.weight", "blk.0.attn_norm.weight"] {
                let exact = try stacked(file, [name])
                let info = try XCTUnwrap(file.tensor(named: name))
                // Rows 3..<7 alone round as they do within the whole tensor (int8 scales are per row).
                let rows = info.rowCount > 7 ? 3..<7 : 0..<info.rowCount
                var rounded = [Float](repeating: .nan, count: rows.count * exact.columns)
                try rounded.withUnsafeMutableBufferPointer { try source.dequantizeRows(name, rows: rows, into: $0) }
                let slice = Array(exact.values[(rows.lowerBound * exact.columns)..<(rows.upperBound * exact.columns)])
                if name.hasPrefix("blk.") && !name.hasSuffix("norm.weight") {
                    let q = try QuantizedMatrix(format: format, rows: exact.rows, columns: exact.columns, weights: exact.values)
                    for (i, v) in rounded.enumerated() {
                        XCTAssertEqual(Double(v), q.dequantizedDouble(row: rows.lowerBound + i / exact.columns, column: i % exact.columns),
                                       accuracy: abs(Double(v)) * Double(Tolerance.u), "\(format) \(name)")
                    }
                    XCTAssertNotEqual(rounded, slice, "\(format) \(name) was not rounded")
                } else {
                    XCTAssertEqual(rounded, slice, "\(name) must be left exact")
                }
            }
        }
    }
}
