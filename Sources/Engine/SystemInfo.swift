import CBLAS
import Foundation

/// The machine the engine runs on: the CPU, its vector instruction sets, and the OpenBLAS build and
/// kernel core in use. `axon inspect --system`, `serve`'s start-up log, `bench --json` and
/// Benchmarks/RESULTS.md all print `line`.
public struct SystemInfo: Sendable, Equatable {
    /// `model name` from /proc/cpuinfo ("unknown" where unavailable).
    public let cpuModel: String
    /// The vector extensions present, in `VectorExtension.all` order (e.g. "AVX2", "AVX-512F", "AMX-BF16").
    public let vectorISA: [String]
    public let logicalCPUs: Int
    /// `openblas_get_config()`, e.g. "OpenBLAS 0.3.21 NO_LAPACKE DYNAMIC_ARCH NO_AFFINITY Prescott MAX_THREADS=64".
    public let openBLASConfig: String
    /// The version word of `openBLASConfig`, e.g. "0.3.21".
    public let openBLASVersion: String
    /// `openblas_get_corename()`: the kernel family OpenBLAS picked (or was told to pick), e.g. "Haswell".
    public let openBLASCore: String
    /// `openblas_get_num_threads()` at the time of the call (the engine sets it to its thread count).
    public let blasThreads: Int
    /// The OPENBLAS_* variables that steer kernel choice, as this process's environment sets them.
    public let blasEnvironment: [String: String]
    /// The fastest OpenBLAS core whose instructions this CPU has (nil when the flags are unknown).
    public let fastestCore: String?

    /// Reads /proc/cpuinfo and asks the loaded OpenBLAS.
    public static func current(environment: [String: String] = ProcessInfo.processInfo.environment) -> SystemInfo {
        let cpuinfo = (try? String(contentsOfFile: "/proc/cpuinfo", encoding: .utf8)) ?? ""
        let config = openblas_get_config().map { String(cString: $0) } ?? "OpenBLAS ?"
        let core = openblas_get_corename().map { String(cString: $0) } ?? "unknown"
        let amx = axon_amx_state_supported()
        return SystemInfo(cpuinfo: cpuinfo, openBLASConfig: config, openBLASCore: core,
                          blasThreads: Int(openblas_get_num_threads()),
                          logicalCPUs: ProcessInfo.processInfo.activeProcessorCount, environment: environment,
                          amxEnabledByOS: amx < 0 ? nil : amx == 1)
    }

    /// Builds the description from a /proc/cpuinfo text and OpenBLAS's answers (testable without either).
    /// - Parameter amxEnabledByOS: whether the kernel enables AMX tile state (nil: unknown). When it
    ///   does not, the CPU's AMX flags are reported as one "AMX (not enabled by the OS)".
    public init(cpuinfo: String, openBLASConfig: String, openBLASCore: String, blasThreads: Int,
                logicalCPUs: Int, environment: [String: String], amxEnabledByOS: Bool? = nil) {
        let fields = Self.firstProcessor(cpuinfo)
        cpuModel = fields["model name"] ?? "unknown"
        let flags = Set((fields["flags"] ?? "").split(separator: " ").map(String.init))
        var isa = VectorExtension.all.filter { flags.isSuperset(of: $0.flags) }.map(\.name)
        if amxEnabledByOS == false, isa.contains(where: { $0.hasPrefix("AMX") }) {
            isa = isa.filter { !$0.hasPrefix("AMX") } + ["AMX (not enabled by the OS)"]
        }
        vectorISA = isa
        self.logicalCPUs = logicalCPUs
        self.openBLASConfig = openBLASConfig
        let words = openBLASConfig.split(separator: " ")
        openBLASVersion = words.count > 1 && words[0] == "OpenBLAS" ? String(words[1]) : "?"
        self.openBLASCore = openBLASCore
        self.blasThreads = blasThreads
        blasEnvironment = environment.filter { Self.blasVariables.contains($0.key) }
        fastestCore = flags.isEmpty ? nil : BLASCore.all.first { flags.isSuperset(of: $0.flags) }?.name
    }

    /// The variables that change which kernels OpenBLAS runs, or how it blocks them.
    public static let blasVariables: Set<String> = ["OPENBLAS_CORETYPE", "OPENBLAS_L2_SIZE", "OPENBLAS_VERBOSE"]

    /// One line: CPU, ISA, OpenBLAS version, core (and the variables that chose it), threads.
    public var line: String {
        var core = "core \(openBLASCore)"
        let pinned = blasEnvironment.filter { $0.key != "OPENBLAS_VERBOSE" }.sorted { $0.key < $1.key }
        core += pinned.isEmpty ? " (auto-detected)" : " (" + pinned.map { "\($0.key)=\($0.value)" }.joined(separator: " ") + ")"
        return "\(cpuModel), \(logicalCPUs) CPUs, \(vectorISA.isEmpty ? "no AVX" : vectorISA.joined(separator: " ")); "
            + "OpenBLAS \(openBLASVersion) \(core), \(blasThreads) threads"
    }

    /// True when OpenBLAS runs an older kernel generation than the CPU supports: for sgemm that
    /// means narrower vectors (SSE or AVX2 kernels on an AVX-512 CPU). Unknown core names never count.
    public var coreIsSlowerThanCPU: Bool {
        guard let current = BLASCore.generation(of: openBLASCore),
              let best = fastestCore.flatMap(BLASCore.generation(of:)) else { return false }
        return current < best
    }

    private static func firstProcessor(_ cpuinfo: String) -> [String: String] {
        var fields: [String: String] = [:]
        for line in cpuinfo.split(separator: "\n", omittingEmptySubsequences: false) {
            if line.isEmpty, !fields.isEmpty { break }   // a blank line ends the first processor
            guard let colon = line.firstIndex(of: ":") else { continue }
            let key = line[..<colon].trimmingCharacters(in: .whitespaces)
            if fields[key] == nil { fields[key] = line[line.index(after: colon)...].trimmingCharacters(in: .whitespaces) }
        }
        return fields
    }
}

/// A vector extension as `SystemInfo` reports it, and the /proc/cpuinfo flags that mean it.
public struct VectorExtension: Sendable {
    public let name: String
    public let flags: Set<String>

    public static let all: [VectorExtension] = [
        VectorExtension(name: "AVX2", flags: ["avx2"]),
        VectorExtension(name: "FMA", flags: ["fma"]),
        VectorExtension(name: "AVX-512F", flags: ["avx512f"]),
        VectorExtension(name: "AVX-512 VNNI", flags: ["avx512_vnni"]),
        VectorExtension(name: "AVX-512 BF16", flags: ["avx512_bf16"]),
        VectorExtension(name: "AMX-BF16", flags: ["amx_bf16", "amx_tile"]),
        VectorExtension(name: "AMX-INT8", flags: ["amx_int8", "amx_tile"]),
    ]
}

/// OpenBLAS's x86-64 cores (the names `openblas_get_corename` returns and OPENBLAS_CORETYPE takes),
/// grouped by the vector width of their sgemm kernels, fastest first, with the flags each needs.
struct BLASCore {
    let name: String
    let generation: Int
    let flags: Set<String>

    private static let avx512: Set<String> = ["avx512f", "avx512cd", "avx512bw", "avx512dq", "avx512vl"]
    /// First match wins when choosing the fastest core for a CPU: Cooperlake before SkylakeX (same
    /// sgemm, plus BF16 kernels); SapphireRapids is not listed as a choice because 0.3.21 (Debian 12)
    /// does not build it and maps the name to Cooperlake, but it is known as a current core.
    static let all: [BLASCore] = [
        BLASCore(name: "Cooperlake", generation: 3, flags: avx512.union(["avx512_bf16"])),
        BLASCore(name: "SkylakeX", generation: 3, flags: avx512),
        BLASCore(name: "Haswell", generation: 2, flags: ["avx2", "fma"]),
        BLASCore(name: "Sandybridge", generation: 1, flags: ["avx"]),
        BLASCore(name: "Prescott", generation: 0, flags: ["sse3"]),
    ]

    /// Cores OpenBLAS may report that are not offered as a choice above, by generation.
    private static let others: [String: Int] = [
        "sapphirerapids": 3, "zen": 2, "excavator": 1, "steamroller": 1, "piledriver": 1, "bulldozer": 1,
        "nehalem": 0, "dunnington": 0, "penryn": 0, "core2": 0, "atom": 0, "barcelona": 0, "opteron_sse3": 0,
        "opteron": 0, "bobcat": 0, "nano": 0,
    ]

    static func generation(of core: String) -> Int? {
        let key = core.lowercased()
        return all.first { $0.name.lowercased() == key }?.generation ?? others[key]
    }
}
