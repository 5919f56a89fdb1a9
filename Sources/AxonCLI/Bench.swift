import ArgumentParser
import Engine
import Foundation
import GGUF
import Server
import Tokenizer
import Validator   // SplitMix64: benchmark ids, the same every run

/// `axon bench`: prefill throughput of the engine on fixed shapes, after a warm-up.
struct Bench: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Time the forward pass (prefill) on batch×sequence shapes of random valid token ids, or generation (--decode).")
    @OptionGroup var modelOption: ModelOption
    @OptionGroup var precisionOption: PrecisionOption

    @Option(help: "Threads for sgemm and the engine's workers (default: all cores).")
    var threads: Int = ProcessInfo.processInfo.activeProcessorCount

    @Option(help: "Comma-separated shapes BATCHxSEQ.")
    var shapes: String = "1x128,8x128,1x512,4x512"

    @Option(help: "Which positions get logits: last, all (streamed in chunks) or none.")
    var logits: String = "last"

    @Option(help: "Timed runs per shape (after one warm-up); the median is reported.")
    var repeats: Int = 3

    @Flag(help: "Print one JSON object and nothing else.")
    var json = false

    @Flag(help: "Also report each phase's share of the forward time and sgemm GFLOP/s (with --decode: a decode step's phases in ms, DecodeStepProfile).")
    var profile = false

    @Flag(help: "Also time the f32 GEMM in use (and at --precision int8 oneDNN's dnnl_gemm_u8s8s32) on the model's projection shapes and report the forward pass's useful GFLOP/s as a fraction of it.")
    var roofline = false

    @Option(name: .customLong("f32-gemm"), help: "The f32 products' library: openblas or onednn. Default: oneDNN when OpenBLAS runs an older kernel core than the CPU supports, else OpenBLAS (docs/ENGINE.md).")
    var f32GEMM: F32GEMM?

    @OptionGroup(title: "Generation (--decode)") var decodeOptions: DecodeBenchOptions

    struct Shape { let batch: Int; let seq: Int }

    func run() throws {
        if decodeOptions.decode {
            return try DecodeBench(options: decodeOptions, path: modelOption.resolvedPath(), threads: threads,
                                   precision: precisionOption.resolved, json: json, profile: profile).run()
        }
        let parsedShapes = try Self.parseShapes(shapes)
        guard ["last", "all", "none"].contains(logits) else {
            throw ValidationError("--logits must be last, all or none, not '\(logits)'")
        }
        guard repeats >= 1 else { throw ValidationError("--repeats must be at least 1") }
        let path = try modelOption.resolvedPath()
        let precision = precisionOption.resolved
        let maxTokens = parsedShapes.map { $0.batch * $0.seq }.max() ?? 1
        let maxRows = parsedShapes.map(\.batch).max() ?? 1
        var options = EngineOptions(threads: threads, maxBatchTokens: maxTokens, maxRows: maxRows,
                                    maxSeq: parsedShapes.map(\.seq).max() ?? 1,
                                    maxLogitRows: min(maxTokens, max(maxRows, 512)), collectTimings: profile,
                                    precision: precision, f32GEMM: f32GEMM)
        let loadStart = DispatchTime.now().uptimeNanoseconds
        // The file is mapped only while the engine loads (its pages would otherwise stay resident).
        let engine: InferenceEngine = try {
            let file = try GGUFFile(path: path)
            if precision == .int8 { options.calibrationTokens = EngineOptions.calibrationTokens(try TokenizerLoader.load(gguf: file)) }
            return try InferenceEngine(file: file, options: options)
        }()
        let loadSeconds = Double(DispatchTime.now().uptimeNanoseconds - loadStart) * 1e-9

        var generator = SplitMix64(seed: 0x5EED)
        var results: [Result] = []
        let progress = Progress("bench", total: parsedShapes.count * (repeats + 1), unit: "forward passes", quiet: json)
        for shape in parsedShapes {
            let rows = (0..<shape.batch).map { _ in
                (0..<shape.seq).map { _ in Int32(truncatingIfNeeded: generator.next() % UInt64(engine.config.vocabSize)) }
            }
            let batch = RaggedBatch(rows: rows)
            try forward(engine, batch)   // warm-up: page in scratch, spin up threads
            progress.advance(detail: "\(shape.batch)x\(shape.seq) warm-up")
            engine.timings = ForwardTimings()
            var times: [Double] = [], sgemmRates: [Double] = [], int8Rates: [Double] = []
            for _ in 0..<repeats {
                let start = DispatchTime.now().uptimeNanoseconds
                try forward(engine, batch)
                times.append(Double(DispatchTime.now().uptimeNanoseconds - start) * 1e-9)
                // The roofline is timed right after each forward pass and summarized the same way (median),
                // so load from other processes weighs on both sides of the fraction alike.
                if roofline {
                    sgemmRates.append(SgemmRoofline.gflops(config: engine.config, tokens: batch.tokenCount, threads: threads, repeats: 1,
                                                           gemm: engine.f32GEMM))
                    if precision == .int8 {
                        int8Rates.append(Int8GemmRoofline.gops(config: engine.config, tokens: batch.tokenCount, threads: threads, repeats: 1))
                    }
                }
                progress.advance(detail: "\(shape.batch)x\(shape.seq)")
            }
            progress.finish()
            let median = times.sorted()[times.count / 2]
            let lengths = Array(repeating: shape.seq, count: shape.batch)
            let headRows = logits == "all" ? batch.tokenCount : (logits == "last" ? shape.batch : 0)
            let usefulFlops = UsefulFlops.forward(engine.config, rowLengths: lengths, headRows: headRows)
            let useful = usefulFlops / median * 1e-9
            let usefulWithoutAttention = (usefulFlops - UsefulFlops.attention(engine.config, rowLengths: lengths)) / median * 1e-9
            let sgemmRate = roofline ? sgemmRates.sorted()[sgemmRates.count / 2] : nil
            let int8Rate = int8Rates.isEmpty ? nil : int8Rates.sorted()[int8Rates.count / 2]
            results.append(Result(batch: shape.batch, seq: shape.seq, logits: logits,
                                  tokens_per_s: Double(batch.tokenCount) / median, ms: median * 1e3,
                                  phases: profile ? Phases(engine.timings, config: engine.config, rowLengths: lengths, logits: logits) : nil,
                                  useful_gflops: useful, useful_gflops_without_attention: usefulWithoutAttention,
                                  sgemm_roofline_gflops: sgemmRate, roofline_fraction: sgemmRate.map { useful / $0 },
                                  int8_gemm_gops: int8Rate, int8_gemm_fraction: int8Rate.map { useful / $0 }))
            if !json {
                let r = results[results.count - 1]
                print(String(format: "%dx%d logits=%@: %.1f tokens/s, %.1f ms, %.0f useful GFLOP/s (%.0f without attention)",
                             shape.batch, shape.seq, logits, r.tokens_per_s, r.ms, useful, usefulWithoutAttention))
                if let rate = sgemmRate { print(String(format: "  sgemm roofline (%@) on this model's projection shapes: %.0f GFLOP/s; forward at %.1f%% of it", engine.f32GEMM.description, rate, useful / rate * 100)) }
                if let rate = int8Rate { print(String(format: "  dnnl_gemm_u8s8s32 on the same shapes: %.0f GOP/s; forward at %.1f%% of it", rate, useful / rate * 100)) }
                if let p = r.phases { print("  " + p.text) }
            }
        }
        let peak = PeakMemory.residentMegabytes()
        if json {
            let report = Report(model: URL(fileURLWithPath: path).lastPathComponent, threads: threads, precision: precision.rawValue,
                                f32_gemm: engine.f32GEMM.rawValue,
                                load_seconds: loadSeconds, peak_rss_mb: peak, machine: MachineLine(SystemInfo.current()),
                                results: results)
            let encoder = JSONEncoder()
            encoder.outputFormatting = [.sortedKeys]
            print(String(decoding: try encoder.encode(report), as: UTF8.self))
        } else {
            print(String(format: "load %.2f s, peak RSS %@ MB", loadSeconds, peak.map { String(format: "%.0f", $0) } ?? "?"))
            print(precisionOption.startupLines(f32GEMM: engine.f32GEMM, requested: f32GEMM), terminator: "")
            print("machine: \(SystemInfo.current().line)")
        }
    }

    private func forward(_ engine: InferenceEngine, _ batch: RaggedBatch) throws {
        switch logits {
        case "all": _ = try engine.forward(batch) { _, _, _ in }
        case "none": _ = try engine.forward(batch, logits: .none)
        default: _ = try engine.forward(batch, logits: .last)
        }
    }

    static func parseShapes(_ text: String) throws -> [Shape] {
        try text.split(separator: ",").map { item in
            let parts = item.lowercased().split(separator: "x")
            guard parts.count == 2, let b = Int(parts[0]), let s = Int(parts[1]), b > 0, s > 0, b * s <= 1 << 20 else {
                throw ValidationError("shape '\(item)' is not BATCHxSEQ with positive sizes (e.g. 4x512)")
            }
            return Shape(batch: b, seq: s)
        }
    }

    struct Report: Encodable {
        let model: String
        let threads: Int
        /// The projections' precision on prefill (`--precision`, or the CPU's default).
        let precision: String
        /// The f32 products' library (`F32GEMM`: "openblas" or "onednn").
        let f32_gemm: String
        let load_seconds: Double
        let peak_rss_mb: Double?
        /// The CPU, ISA and OpenBLAS core these figures were measured on.
        let machine: MachineLine
        let results: [Result]
    }

    struct Result: Encodable {
        let batch: Int
        let seq: Int
        let logits: String
        let tokens_per_s: Double
        let ms: Double
        let phases: Phases?
        /// Projection, attention (the query–key pairs each query sees) and LM-head FLOPs over wall
        /// time (`UsefulFlops.forward`).
        let useful_gflops: Double
        /// The same without attention's FLOPs (what `useful_gflops` counted before attention was).
        let useful_gflops_without_attention: Double
        let sgemm_roofline_gflops: Double?
        let roofline_fraction: Double?
        /// At int8 with --roofline: `dnnl_gemm_u8s8s32` alone on the same shapes, and the useful
        /// rate's fraction of it.
        let int8_gemm_gops: Double?
        let int8_gemm_fraction: Double?
    }

    /// Shares of forward time and the sgemm rate of the projections, from the engine's timings.
    struct Phases: Encodable {
        let projections: Double
        let attention: Double
        let lm_head: Double
        let norms: Double
        let rope: Double
        let activation: Double
        let other: Double
        let projection_gflops: Double
        /// Attention's useful FLOPs (`UsefulFlops.attention`) over its wall time.
        let attention_gflops: Double
        /// Projections, attention and LM head over the whole forward time.
        let overall_gflops: Double

        /// `rowLengths` is one forward pass's batch; every pass timed in `t` ran it.
        init(_ t: ForwardTimings, config c: ModelConfig, rowLengths: [Int], logits: String) {
            let total = max(t.total, 1e-12)
            projections = t.projections / total
            attention = t.attention / total
            lm_head = t.lmHead / total
            norms = t.norms / total
            rope = t.rope / total
            activation = t.activation / total
            other = t.other / total
            let passes = Double(t.forwardCount)
            let headRows = logits == "all" ? rowLengths.reduce(0, +) : (logits == "last" ? rowLengths.count : 0)
            projection_gflops = UsefulFlops.projections(c, tokens: t.tokens) / max(t.projections, 1e-12) * 1e-9
            attention_gflops = UsefulFlops.attention(c, rowLengths: rowLengths) * passes / max(t.attention, 1e-12) * 1e-9
            overall_gflops = UsefulFlops.forward(c, rowLengths: rowLengths, headRows: headRows) * passes / total * 1e-9
        }

        var text: String {
            String(format: "projections %.1f%% (%.0f GFLOP/s), attention %.1f%% (%.0f GFLOP/s useful), LM head %.1f%%, norms %.1f%%, RoPE %.1f%%, activation %.1f%%, other %.1f%%; %.0f GFLOP/s overall (projections, attention, LM head)",
                   projections * 100, projection_gflops, attention * 100, attention_gflops, lm_head * 100, norms * 100, rope * 100, activation * 100, other * 100, overall_gflops)
        }
    }
}

/// Peak resident memory of this process (VmHWM in /proc/self/status), in MB; nil where unavailable.
enum PeakMemory {
    static func residentMegabytes() -> Double? {
        guard let status = try? String(contentsOfFile: "/proc/self/status", encoding: .utf8) else { return nil }
        for line in status.split(separator: "\n") where line.hasPrefix("VmHWM:") {
            let kb = line.split(separator: " ").compactMap { Double($0) }.first
            return kb.map { $0 / 1024 }
        }
        return nil
    }
}
