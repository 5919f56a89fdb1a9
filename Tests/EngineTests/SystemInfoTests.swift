import Engine
import XCTest

/// `SystemInfo` reads /proc/cpuinfo flags (the kernel's names for CPUID bits) and OpenBLAS's answers.
final class SystemInfoTests: XCTestCase {
    /// First-processor blocks in /proc/cpuinfo's format; the flag lists are trimmed to the vector ones.
    private static let zen3 = """
        processor\t: 0
        vendor_id\t: AuthenticAMD
        model name\t: AMD EPYC 7B13 64-Core Processor
        flags\t\t: fpu sse sse2 sse3 ssse3 fma sse4_1 sse4_2 avx f16c avx2 sha_ni

        processor\t: 1
        model name\t: should not be read
        """
    private static let zen5 = """
        processor\t: 0
        model name\t: AMD EPYC 9R45
        flags\t\t: sse3 fma avx avx2 avx512f avx512dq avx512cd avx512bw avx512vl avx512_bf16 avx512_vnni
        """
    private static let xeonAMX = """
        processor\t: 0
        model name\t: Intel(R) Xeon(R) Processor
        flags\t\t: sse3 fma avx avx2 avx512f avx512dq avx512cd avx512bw avx512vl avx_vnni avx512_bf16 avx512_vnni amx_bf16 avx512_fp16 amx_tile amx_int8
        """

    private func info(_ cpuinfo: String, core: String, environment: [String: String] = [:]) -> SystemInfo {
        SystemInfo(cpuinfo: cpuinfo, openBLASConfig: "OpenBLAS 0.3.21 NO_LAPACKE DYNAMIC_ARCH NO_AFFINITY \(core) MAX_THREADS=64",
                   openBLASCore: core, blasThreads: 2, logicalCPUs: 2, environment: environment)
    }

    func testVectorExtensionsComeFromTheFirstProcessorsFlags() {
        XCTAssertEqual(info(Self.zen3, core: "Zen").cpuModel, "AMD EPYC 7B13 64-Core Processor")
        XCTAssertEqual(info(Self.zen3, core: "Zen").vectorISA, ["AVX2", "FMA"])
        XCTAssertEqual(info(Self.zen5, core: "Cooperlake").vectorISA, ["AVX2", "FMA", "AVX-512F", "AVX-512 VNNI", "AVX-512 BF16"])
        XCTAssertEqual(info(Self.xeonAMX, core: "Prescott").vectorISA,
                       ["AVX2", "FMA", "AVX-512F", "AVX-512 VNNI", "AVX-512 BF16", "AMX-BF16", "AMX-INT8"])
        XCTAssertEqual(info(Self.zen3, core: "Zen").openBLASVersion, "0.3.21")
        // CPUID lists AMX but the kernel does not enable tile state (this project's VM): say so.
        let disabled = SystemInfo(cpuinfo: Self.xeonAMX, openBLASConfig: "OpenBLAS 0.3.21", openBLASCore: "Cooperlake",
                                  blasThreads: 2, logicalCPUs: 2, environment: [:], amxEnabledByOS: false)
        XCTAssertEqual(disabled.vectorISA, ["AVX2", "FMA", "AVX-512F", "AVX-512 VNNI", "AVX-512 BF16", "AMX (not enabled by the OS)"])
    }

    func testAKernelCoreOlderThanTheCPUIsFlaggedAndAnEqualOneIsNot() {
        // The Zen 5 machine: OPENBLAS_CORETYPE=Haswell pins 256-bit kernels on an AVX-512 CPU.
        let pinned = info(Self.zen5, core: "Haswell", environment: ["OPENBLAS_CORETYPE": "Haswell", "OPENBLAS_L2_SIZE": "512", "HOME": "/"])
        XCTAssertEqual(pinned.fastestCore, "Cooperlake")
        XCTAssertTrue(pinned.coreIsSlowerThanCPU)
        XCTAssertEqual(pinned.blasEnvironment, ["OPENBLAS_CORETYPE": "Haswell", "OPENBLAS_L2_SIZE": "512"])
        XCTAssertTrue(pinned.line.contains("core Haswell (OPENBLAS_CORETYPE=Haswell OPENBLAS_L2_SIZE=512)"), pinned.line)
        // OpenBLAS 0.3.21 does not know this Xeon's model and falls back to Prescott (SSE3).
        XCTAssertTrue(info(Self.xeonAMX, core: "Prescott").coreIsSlowerThanCPU)
        XCTAssertTrue(info(Self.xeonAMX, core: "Prescott").line.contains("core Prescott (auto-detected)"))
        // Same kernel generation: SkylakeX and Cooperlake share their sgemm; Zen runs Haswell kernels.
        XCTAssertFalse(info(Self.xeonAMX, core: "SkylakeX").coreIsSlowerThanCPU)
        XCTAssertFalse(info(Self.zen5, core: "Cooperlake").coreIsSlowerThanCPU)
        XCTAssertEqual(info(Self.zen3, core: "Zen").fastestCore, "Haswell")
        XCTAssertFalse(info(Self.zen3, core: "Zen").coreIsSlowerThanCPU)
        // A name this table does not know, or no flags at all, never warns.
        XCTAssertFalse(info(Self.zen5, core: "FutureCore").coreIsSlowerThanCPU)
        XCTAssertFalse(info("", core: "Prescott").coreIsSlowerThanCPU)
        XCTAssertEqual(info("", core: "Prescott").cpuModel, "unknown")
    }

    func testTheLoadedOpenBLASAnswers() {
        let current = SystemInfo.current()
        XCTAssertFalse(current.openBLASCore.isEmpty)
        XCTAssertTrue(current.openBLASConfig.hasPrefix("OpenBLAS "), current.openBLASConfig)
        XCTAssertGreaterThanOrEqual(current.blasThreads, 1)
        print("machine: \(current.line)")
    }

    func testTheSgemmProbeRestoresOpenBLASsThreadCount() {
        let before = SystemInfo.current().blasThreads
        XCTAssertGreaterThan(SgemmProbe.gflops([SgemmProbe.Shape(m: 8, n: 16, k: 32)], threads: 1, rounds: 1), 0)
        XCTAssertEqual(SystemInfo.current().blasThreads, before)
    }
}
