import XCTest
import Engine

/// The decode-attention kernels (C, per instruction set) against a float64 reference of their
/// definition, on every path this CPU supports and the scalar fallback, at SmolLM2's head shape
/// (group 3, headDim 64), Gemma 3 270M's (group 4, headDim 256) and one no vector path takes
/// (headDim 20: every path falls back to scalar, so all must agree exactly); with an f32 and an f16
/// cache (the reference then reads the cached rows rounded to f16, which the kernels convert exactly).
final class DecodeAttentionKernelTests: XCTestCase {
    typealias Generator = QuantizedMatrixTests.Generator

    /// γₙ·Σ|terms|: each output is at most `n` roundings deep (FMA chains of length ⌈hd/lanes⌉ or
    /// the positions, a log₂(lanes)-deep tree of lane sums, the scale; scalar rounds product and sum).
    static func bound(_ n: Int, magnitude: Double) -> Double {
        let u = Double(Tolerance.u)
        return Double(n) * u / (1 - Double(n) * u) * magnitude
    }

    static let shapes: [(group: Int, hd: Int, first: Int, cached: Int, fresh: Int)] = [
        (3, 64, 0, 150, 1),     // a decode step after 150 cached positions: 10 blocks, the last partial
        (3, 64, 37, 97, 1),     // a window that starts inside a block
        (4, 256, 5, 40, 1),
        (3, 64, 0, 0, 1),       // nothing cached yet
        (2, 20, 3, 30, 2),      // headDim no vector path takes
        (2, 32, 3, 33, 1),      // two heads, a value row narrower than a pass's vectors
        (5, 64, 0, 20, 1),      // more heads than one pass holds (4, then 1)
    ]

    /// The cached rows as a cache of `precision` holds them.
    static func held(_ rows: [Float], _ precision: KVCachePrecision) -> [Float] {
        precision == .f32 ? rows : rows.map { Float(Float16($0)) }
    }

    func testScoresMatchTheirDefinitionOnEveryPath() {
        for precision in KVCachePrecision.allCases { for shape in Self.shapes {
            var g = Generator(state: UInt64(shape.hd * 31 + shape.first))
            let q = g.fill(shape.group * shape.hd), stored = g.fill(shape.cached * shape.hd, scale: 2), fresh = g.fill(shape.fresh * shape.hd)
            let keys = Self.held(stored, precision)
            let n = shape.cached + shape.fresh, scale: Float = 0.125
            var results: [[Float]] = []
            for path in DecodeKernelPath.supported {
                let s = DecodeAttentionKernels.scores(path: path, precision: precision, queries: q, group: shape.group, headDim: shape.hd, scale: scale,
                                                      first: shape.first, cachedKeys: stored, newKeys: fresh)
                results.append(s)
                let lanes = shape.hd % path.lanes == 0 ? path.lanes : 1
                let depth = (lanes == 1 ? 2 * shape.hd : shape.hd / lanes) + lanes.trailingZeroBitCount + 1
                for j in 0..<shape.group {
                    for i in 0..<n {
                        let key = i < shape.cached ? Array(keys[(i * shape.hd)..<((i + 1) * shape.hd)])
                            : Array(fresh[((i - shape.cached) * shape.hd)..<((i - shape.cached + 1) * shape.hd)])
                        var exact = 0.0, magnitude = 0.0
                        for d in 0..<shape.hd {
                            let t = Double(q[j * shape.hd + d]) * Double(key[d])
                            exact += t
                            magnitude += abs(t)
                        }
                        XCTAssertLessThanOrEqual(abs(Double(s[j * n + i]) - exact * Double(scale)),
                                                 Self.bound(depth, magnitude: magnitude * Double(scale)),
                                                 "\(path) \(precision) \(shape) head \(j) key \(i)")
                    }
                }
            }
            if shape.hd == 20 { XCTAssertTrue(results.allSatisfy { $0 == results[0] }, "\(shape): every path is the scalar one") }
        } }
    }

    func testValuesMatchTheirDefinitionOnEveryPath() {
        for precision in KVCachePrecision.allCases { for shape in Self.shapes {
            var g = Generator(state: UInt64(shape.hd * 17 + shape.cached))
            let n = shape.cached + shape.fresh
            let p = (0..<(shape.group * n)).map { _ in (g.next() + 1) / 2 }
            let stored = g.fill(shape.cached * shape.hd, scale: 3), fresh = g.fill(shape.fresh * shape.hd)
            let values = Self.held(stored, precision)
            var results: [[Float]] = []
            for path in DecodeKernelPath.supported {
                let out = DecodeAttentionKernels.values(path: path, precision: precision, weights: p, group: shape.group, headDim: shape.hd,
                                                        first: shape.first, cachedValues: stored, newValues: fresh)
                results.append(out)
                // One chain of FMAs over the positions per output (scalar: product and sum rounded).
                let depth = (shape.hd % path.lanes == 0 && path.lanes > 1 ? 1 : 2) * n
                for j in 0..<shape.group {
                    for d in 0..<shape.hd {
                        var exact = 0.0, magnitude = 0.0
                        for i in 0..<n {
                            let v = i < shape.cached ? values[i * shape.hd + d] : fresh[(i - shape.cached) * shape.hd + d]
                            let t = Double(p[j * n + i]) * Double(v)
                            exact += t
                            magnitude += abs(t)
                        }
                        XCTAssertLessThanOrEqual(abs(Double(out[j * shape.hd + d]) - exact), Self.bound(depth, magnitude: magnitude),
                                                 "\(path) \(precision) \(shape) head \(j) dimension \(d)")
                    }
                }
            }
            if shape.hd == 20 { XCTAssertTrue(results.allSatisfy { $0 == results[0] }, "\(shape): every path is the scalar one") }
        } }
    }
}
