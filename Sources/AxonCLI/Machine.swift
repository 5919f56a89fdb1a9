import Engine
import Foundation

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
            lines.append("  note: \(openBLASCore) kernels are an older generation than this CPU runs; OPENBLAS_CORETYPE=\(fastestCore) selects faster ones; meanwhile the f32 products run on oneDNN's sgemm (F32GEMM)")
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
