import Engine
import Foundation
import GGUF

/// The machine facts the CLI prints (`inspect --system`, `serve`, `bench --json`), and the check
/// that OpenBLAS is not running a slower kernel core than the CPU supports.
enum Machine {
    /// The model's own matrix shapes for the sgemm probe: every 2-D weight of its first block, as
    /// the engine multiplies it (`tokens` rows against [out][in]).
    static func probeShapes(_ file: GGUFFile, tokens: Int = 128) -> [SgemmProbe.Shape] {
        file.tensors.filter { $0.name.hasPrefix("blk.0.") && $0.dims.count == 2 }
            .map { SgemmProbe.Shape(m: tokens, n: $0.dims[1], k: $0.dims[0]) }
    }

    /// The `--sgemm-probe` argument for `shapes`: "MxNxK,MxNxK".
    static func argument(_ shapes: [SgemmProbe.Shape]) -> String {
        shapes.map { "\($0.m)x\($0.n)x\($0.k)" }.joined(separator: ",")
    }

    static func parse(_ argument: String) -> [SgemmProbe.Shape]? {
        let shapes = argument.split(separator: ",").map { item -> SgemmProbe.Shape? in
            let v = item.split(separator: "x").compactMap { Int($0) }
            guard v.count == 3, v.allSatisfy({ $0 > 0 && $0 <= 1 << 16 }) else { return nil }
            return SgemmProbe.Shape(m: v[0], n: v[1], k: v[2])
        }
        guard !shapes.isEmpty, shapes.allSatisfy({ $0 != nil }) else { return nil }
        return shapes.compactMap { $0 }
    }

    /// What `inspect --sgemm-probe` prints: the core that ran and its rate.
    struct ProbeResult: Codable {
        let core: String
        let gflops: Double
    }

    /// When OpenBLAS runs a slower core than `info.fastestCore`, one line saying so with the measured
    /// factor: sgemm on the model's shapes here, against a child `axon inspect --sgemm-probe` run with
    /// OPENBLAS_CORETYPE set to the fastest core and OPENBLAS_L2_SIZE removed. Nil when the core
    /// is already the fastest generation. This process's environment is left as it is.
    static func slowCoreWarning(_ info: SystemInfo, file: GGUFFile, threads: Int) -> String? {
        guard info.coreIsSlowerThanCPU, let fastest = info.fastestCore else { return nil }
        let shapes = probeShapes(file)
        let here = SgemmProbe.gflops(shapes, threads: threads)
        var environment = ProcessInfo.processInfo.environment
        for name in SystemInfo.blasVariables { environment[name] = nil }
        environment["OPENBLAS_CORETYPE"] = fastest
        let pinned = info.blasEnvironment["OPENBLAS_CORETYPE"].map { "OPENBLAS_CORETYPE=\($0)" } ?? "auto-detected"
        var line = "OpenBLAS runs the \(info.openBLASCore) core (\(pinned)) but this CPU supports \(fastest): "
        guard let other = probeInChild(shapes: shapes, threads: threads, environment: environment), other.gflops > 0 else {
            return line + "sgemm on this model's shapes runs at \(Int(here)) GFLOP/s here (the comparison run failed); the environment is left as it is"
        }
        line += String(format: "sgemm on this model's shapes measured %.1f× faster with OPENBLAS_CORETYPE=%@ and OPENBLAS_L2_SIZE unset (%.0f vs %.0f GFLOP/s); the environment is left as it is",
                       other.gflops / max(here, 1e-9), other.core, other.gflops, here)
        return line
    }

    private static func probeInChild(shapes: [SgemmProbe.Shape], threads: Int, environment: [String: String]) -> ProbeResult? {
        guard let executable = Bundle.main.executableURL else { return nil }
        let process = Process()
        process.executableURL = executable
        process.arguments = ["inspect", "--sgemm-probe", argument(shapes), "--probe-threads", "\(threads)"]
        process.environment = environment
        let output = Pipe()
        process.standardOutput = output
        process.standardError = FileHandle.nullDevice
        do { try process.run() } catch { return nil }
        let data = output.fileHandleForReading.readDataToEndOfFile()
        process.waitUntilExit()
        guard process.terminationStatus == 0 else { return nil }
        return try? JSONDecoder().decode(ProbeResult.self, from: data)
    }
}

extension SystemInfo {
    /// `inspect --system`'s text.
    var text: String {
        var lines = [
            "machine: \(line)",
            "  cpu: \(cpuModel), \(logicalCPUs) logical CPUs",
            "  vector ISA: \(vectorISA.isEmpty ? "none of AVX2, AVX-512, AMX" : vectorISA.joined(separator: ", "))",
            "  OpenBLAS: \(openBLASConfig)",
            "  kernel core: \(openBLASCore)" + (fastestCore.map { "; the fastest this CPU supports: \($0)" } ?? ""),
            "  threads: \(blasThreads) (OpenBLAS)",
        ]
        for (key, value) in blasEnvironment.sorted(by: { $0.key < $1.key }) { lines.append("  environment: \(key)=\(value)") }
        if coreIsSlowerThanCPU, let fastestCore {
            lines.append("  note: \(openBLASCore) kernels are an older generation than this CPU runs; OPENBLAS_CORETYPE=\(fastestCore) selects faster ones (`axon serve` measures the factor)")
        }
        return lines.joined(separator: "\n")
    }
}

/// `SystemInfo` with its one-line summary, as `inspect --system --json` and `bench --json` print it.
struct MachineLine: Codable {
    let line: String
    let cpu: String
    let vector_isa: [String]
    let logical_cpus: Int
    let openblas_version: String
    let openblas_config: String
    let openblas_core: String
    let openblas_threads: Int
    let openblas_environment: [String: String]
    let fastest_core: String?
    let core_slower_than_cpu: Bool

    init(_ info: SystemInfo) {
        line = info.line
        cpu = info.cpuModel
        vector_isa = info.vectorISA
        logical_cpus = info.logicalCPUs
        openblas_version = info.openBLASVersion
        openblas_config = info.openBLASConfig
        openblas_core = info.openBLASCore
        openblas_threads = info.blasThreads
        openblas_environment = info.blasEnvironment
        fastest_core = info.fastestCore
        core_slower_than_cpu = info.coreIsSlowerThanCPU
    }
}
