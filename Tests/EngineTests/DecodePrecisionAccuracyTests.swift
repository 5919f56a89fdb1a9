import XCTest
import Engine
import GGUF
import TestSupport

/// The accuracy cost of the decode path's weight precisions on the real models, over 512 positions
/// of prose (the ids of llama_top1.json and gemma3_agreement.json): an f32 engine loaded through
/// `RoundedProjectionsSource` computes what the decode kernels compute with those weights (up to
/// the order of f32 sums), and the head's copies run through `QuantizedMatrix` itself. Held to the
/// int8 issue's bars against the f32 path: mean next-token loss within 0.01 nats, and top-1
/// agreement at least llama.cpp's own agreement with an exact fp32 pass on the same positions.
final class DecodePrecisionAccuracyTests: XCTestCase {
    struct SmolFixture: Decodable { let ids: [Int32]; let fp32_llama_agreement: Int }
    struct GemmaFixture: Decodable { let ids: [Int32]; let reference_llama_agreement: Int }

    /// The issue's bound on |mean loss − f32's| (issue 14, "Accuracy").
    static let lossBound = 0.01

    /// The configurations `--decode-precision f16|int8` runs (`DecodePrecision.format` and
    /// `headFormat`: int8 is per block of 32 columns, and so is the head's weights under either). The others
    /// are measured and printed for docs/ENGINE.md, not held to the bars: per-row int8 projections
    /// fall below Gemma's agreement bar (498/512), a per-row int8 head below it on Gemma (488/512)
    /// and, under per-row int8 projections, on SmolLM2 (491/512).
    /// On CPUs with AVX-512 VNNI the head is w8a8Block32 (`DecodePrecision.headFormat`): measured
    /// and held to the bars there only, where it runs (its results are the same bits on any CPU, and
    /// the scalar fallback would take minutes over Gemma 3's head).
    static var offered: [String] {
        let head = DecodePrecision.int8.headFormat?.rawValue ?? "f32"
        return ["projections f16, head \(head)", "projections int8Block32, head \(head)"]
    }
    static var headFormats: [QuantizedMatrix.Format] {
        [.f16, .int8, .int8Block32] + (QuantizedMatrix.w8a8Accelerated ? [.w8a8Block32] : [])
    }

    /// Mean loss, agreement and logit distance of one configuration against the f32 path.
    struct Figures: CustomStringConvertible {
        var name = ""
        var lossSum = 0.0, lossCount = 0, positions = 0, agree = 0, maxDelta: Float = 0, deltaSum = 0.0, deltaCount = 0
        var meanLoss: Double { lossSum / Double(max(lossCount, 1)) }
        var description: String {
            String(format: "%@: mean loss %.5f, top-1 agreement with f32 %d/%d, max |Δ logit| %.4f, mean |Δ logit| %.5f",
                   name, meanLoss, agree, positions, maxDelta, deltaSum / Double(max(deltaCount, 1)))
        }
    }

    /// Runs every projection precision and head precision on `ids` and returns their figures,
    /// the f32 path's first.
    private func measure(modelPath: String, ids: [Int32], projectionFormats: [QuantizedMatrix.Format?],
                         headFormats: [QuantizedMatrix.Format]) throws -> [Figures] {
        let file = try GGUFFile(path: modelPath)
        let options = EngineOptions(threads: 2, maxBatchTokens: ids.count, maxRows: 1, maxSeq: ids.count, maxLogitRows: 32)
        let batch = RaggedBatch(rows: [ids])
        let positions = ids.count       // agreement at every position; loss where there is a next token
        var reference: [Float] = []     // (positions, vocab) logits of the f32 path
        var referenceTop: [Int] = []
        var heads: [(QuantizedMatrix.Format, QuantizedMatrix)] = []
        var all: [Figures] = []
        for projections in projectionFormats {
            let engine = try InferenceEngine(source: projections.map { RoundedProjectionsSource(file, format: $0) } ?? file, options: options)
            let v = engine.config.vocabSize, h = engine.config.hiddenSize
            if heads.isEmpty {
                let name = engine.config.tiedOutput ? "token_embd.weight" : "output.weight"
                let info = try XCTUnwrap(file.tensor(named: name))
                var f32Head = [Float](repeating: 0, count: v * h)
                try f32Head.withUnsafeMutableBufferPointer { try file.dequantizeRows(info, rows: 0..<v, into: $0) }
                heads = try headFormats.map { ($0, try QuantizedMatrix(format: $0, rows: v, columns: h, weights: f32Head, name: name, threads: 2)) }
                reference = [Float](repeating: 0, count: positions * v)
            }
            var figures = Figures(name: "projections \(projections?.rawValue ?? "f32"), head f32")
            func score(_ logits: UnsafeBufferPointer<Float>, position p: Int, into f: inout Figures) {
                var top = 0, m = logits[0]
                for i in 1..<v where logits[i] > m { m = logits[i]; top = i }
                if p + 1 < ids.count {
                    var sum = 0.0
                    for i in 0..<v { sum += exp(Double(logits[i] - m)) }
                    f.lossSum += Double(m) + log(sum) - Double(logits[Int(ids[p + 1])])
                    f.lossCount += 1
                }
                f.positions += 1
                if reference.isEmpty || referenceTop.count <= p { return }
                if top == referenceTop[p] { f.agree += 1 }
                for i in 0..<v {
                    let d = abs(logits[i] - reference[p * v + i])
                    f.maxDelta = max(f.maxDelta, d)
                    f.deltaSum += Double(d)
                }
                f.deltaCount += v
            }
            let isReference = projections == nil
            let result = try engine.forward(batch) { _, p, logits in
                if isReference {
                    for i in 0..<v { reference[p * v + i] = logits[i] }
                    referenceTop.append(logits.indices.max { logits[$0] < logits[$1] } ?? 0)
                } else {
                    score(logits, position: p, into: &figures)
                }
            }
            if isReference {
                for p in 0..<positions {
                    reference.withUnsafeBufferPointer { r in
                        score(UnsafeBufferPointer(rebasing: r[(p * v)..<((p + 1) * v)]), position: p, into: &figures)
                    }
                }
            }
            all.append(figures)
            print(figures)
            // The same hidden states through each reduced-precision copy of the head, 32 rows at a time.
            let hidden = Array(result.hidden(row: 0))
            var logits = [Float](repeating: 0, count: 32 * v)
            for (format, head) in heads {
                var f = Figures(name: "projections \(projections?.rawValue ?? "f32"), head \(format.rawValue)")
                for start in stride(from: 0, to: positions, by: 32) {
                    let rows = min(32, positions - start)
                    hidden.withUnsafeBufferPointer { x in
                        head.multiply(x.baseAddress! + start * h, rows: rows, stride: h, into: &logits, stride: v, threads: 2)
                    }
                    logits.withUnsafeBufferPointer { l in
                        for r in 0..<rows { score(UnsafeBufferPointer(rebasing: l[(r * v)..<((r + 1) * v)]), position: start + r, into: &f) }
                    }
                }
                all.append(f)
                print(f)
            }
        }
        return all
    }

    private func assertWithinBars(_ figures: [Figures], agreementBar: Int, configurations: [String],
                                  file: StaticString = #filePath, line: UInt = #line) {
        guard let f32 = figures.first else { return XCTFail("no figures", file: file, line: line) }
        for name in configurations {
            guard let f = figures.first(where: { $0.name == name }) else { XCTFail("\(name) not measured", file: file, line: line); continue }
            XCTAssertLessThanOrEqual(abs(f.meanLoss - f32.meanLoss), Self.lossBound, "\(name): loss \(f.meanLoss) vs f32 \(f32.meanLoss)",
                                     file: file, line: line)
            XCTAssertGreaterThanOrEqual(f.agree, agreementBar, "\(name): top-1 agreement with f32", file: file, line: line)
        }
    }

    func testSmolLM2DecodePrecisionsStayWithinTheLossAndAgreementBars() throws {
        let fixture = try JSONDecoder().decode(SmolFixture.self, from: ReferenceFixture.load("llama_top1.json"))
        XCTAssertEqual(fixture.ids.count, 512)
        let figures = try measure(modelPath: TestPaths.defaultModel(), ids: fixture.ids,
                                  projectionFormats: [nil, .f16, .bf16, .int8, .int8Block32], headFormats: Self.headFormats)
        assertWithinBars(figures, agreementBar: fixture.fp32_llama_agreement, configurations: Self.offered)
    }

    func testGemma3DecodePrecisionsStayWithinTheLossAndAgreementBars() throws {
        let fixture = try JSONDecoder().decode(GemmaFixture.self, from: ReferenceFixture.load("gemma3_agreement.json"))
        let figures = try measure(modelPath: EngineGemmaTests.modelPath(), ids: fixture.ids,
                                  projectionFormats: [nil, .f16, .int8, .int8Block32], headFormats: Self.headFormats)
        assertWithinBars(figures, agreementBar: fixture.reference_llama_agreement, configurations: Self.offered)
    }
}
