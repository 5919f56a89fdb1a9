import ArgumentParser
import Engine
import Foundation

/// `axon bench-kernels`: the decode path's matrix products (every projection of every layer and
/// the LM head, as one decode step makes them) at each precision, against the memory read rate.
struct BenchKernels: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "bench-kernels",
        abstract: "Time one decode step's weight products (f32 sgemm, f16, int8) in GB/s and tokens/s-equivalent.")
    @OptionGroup var modelOption: ModelOption

    @Option(help: "Threads for the kernels and sgemm (default: all cores).")
    var threads: Int = ProcessInfo.processInfo.activeProcessorCount

    @Option(help: "Comma-separated activation row counts (decode batch sizes).")
    var rows: String = "1,16"

    @Option(help: "Comma-separated projection formats: f32 (the engine's weights on OpenBLAS), f16, bf16, int8 (per row), int8Block32 (what --decode-precision int8 runs).")
    var formats: String = "f32,f16,int8Block32,int8"

    @Option(help: "The LM head's format: f32, f16, bf16, int8, int8Block32, w8a8Block32 (int8 activations too: fast with AVX-512 VNNI), or 'default' (the decode path's: f32 beside f32 projections, else w8a8Block32 on CPUs with AVX-512 VNNI and int8Block32 elsewhere).")
    var head: String = "default"

    @Option(help: "Instruction-set paths: 'best', or 'all' this CPU supports (scalar is slow at 16 rows).")
    var paths: String = "best"

    @Option(help: "Timed steps per configuration (after one warm-up); the best is reported.")
    var repeats: Int = 20

    @Flag(help: "Print one JSON object and nothing else.")
    var json = false

    func run() throws {
        let rowCounts = try rows.split(separator: ",").map { item -> Int in
            guard let r = Int(item), (1...256).contains(r) else { throw ValidationError("--rows: '\(item)' is not 1...256") }
            return r
        }
        func format(_ name: Substring, option: String) throws -> QuantizedMatrix.Format? {
            if name == "f32" { return nil }
            guard let f = QuantizedMatrix.Format(rawValue: String(name)) else {
                throw ValidationError("\(option): '\(name)' is not f32, \(QuantizedMatrix.Format.allCases.map(\.rawValue).joined(separator: ", "))")
            }
            return f
        }
        let projectionFormats = try formats.split(separator: ",").map { try format($0, option: "--formats") }
        let headChoice: QuantizedMatrix.Format?? = head == "default" ? nil : .some(try format(Substring(head), option: "--head"))
        guard ["best", "all"].contains(paths) else { throw ValidationError("--paths must be best or all") }
        guard repeats >= 1, (1...256).contains(threads) else { throw ValidationError("--repeats ≥ 1 and --threads 1...256") }
        let path = try modelOption.resolvedPath()
        let engine = try InferenceEngine(path: path, options: EngineOptions(threads: threads, maxBatchTokens: 64, maxRows: 1, maxSeq: 64,
                                                                           maxLogitRows: 1))
        let kernelPaths = paths == "all" ? DecodeKernelPath.supported.reversed() : [DecodeKernelPath.best]
        var results: [DecodeKernelBenchmark.Result] = []
        for f in projectionFormats {
            let headFormat = headChoice ?? (f == nil ? nil : DecodePrecision.int8.headFormat)
            for kernelPath in (f == nil && headFormat == nil ? [DecodeKernelPath.best] : kernelPaths) {
                let buildStart = DispatchTime.now().uptimeNanoseconds
                let weights = try engine.makeProjectionWeights(format: f, headFormat: headFormat, path: kernelPath)
                let buildSeconds = Double(DispatchTime.now().uptimeNanoseconds - buildStart) * 1e-9
                if !json, weights.copyBytes > 0 {
                    print(String(format: "%@ copies (head %@): %.1f MB, built in %.2f s", f?.rawValue ?? "f32", headFormat?.rawValue ?? "f32",
                                 Double(weights.copyBytes) / 1e6, buildSeconds))
                }
                for r in rowCounts {
                    let result = DecodeKernelBenchmark.run(weights, rows: r, repeats: kernelPath == .scalar ? min(repeats, 2) : repeats)
                    results.append(result)
                    if !json { print(Self.text(result)) }
                }
            }
        }
        let oneThread = MemoryReadProbe.gigabytesPerSecond(threads: 1)
        let allThreads = MemoryReadProbe.gigabytesPerSecond(threads: threads)
        let load = (try? String(contentsOfFile: "/proc/loadavg", encoding: .utf8))?.split(separator: " ").first.map(String.init) ?? "?"
        if json {
            let report = Report(model: URL(fileURLWithPath: path).lastPathComponent, threads: threads,
                                memory_read_gb_per_s_1_thread: oneThread, memory_read_gb_per_s: allThreads, load_average_1min: load,
                                machine: MachineLine(SystemInfo.current()), results: results)
            let encoder = JSONEncoder()
            encoder.outputFormatting = [.sortedKeys]
            print(String(decoding: try encoder.encode(report), as: UTF8.self))
        } else {
            print(String(format: "memory read: %.1f GB/s on 1 thread, %.1f GB/s on %d; load average %@", oneThread, allThreads, threads, load))
            print("machine: \(SystemInfo.current().line)")
        }
    }

    static func text(_ r: DecodeKernelBenchmark.Result) -> String {
        var s = String(format: "%@ (head %@) %@, %d row%@, %d threads: %.3f ms/step, %.1f GB/s, %.0f tokens/s-equivalent, %.0f GFLOP/s",
                       r.format, r.headFormat, r.path, r.rows, r.rows == 1 ? "" : "s", r.threads, r.secondsPerStep * 1e3,
                       r.gigabytesPerSecond, r.tokensPerSecond, r.gflops)
        s += "\n   " + r.parts.map { String(format: "%@ %dx%d×%d %.2f ms %.1f GB/s", $0.name, $0.rows, $0.columns, $0.count, $0.seconds * 1e3, $0.gigabytesPerSecond) }
            .joined(separator: "; ")
        return s
    }

    struct Report: Encodable {
        let model: String
        let threads: Int
        let memory_read_gb_per_s_1_thread: Double
        let memory_read_gb_per_s: Double
        let load_average_1min: String
        let machine: MachineLine
        let results: [DecodeKernelBenchmark.Result]
    }
}
