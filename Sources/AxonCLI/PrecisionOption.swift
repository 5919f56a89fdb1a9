import ArgumentParser
import Engine

/// `--precision f32|int8`, shared by the commands that load an engine (`serve`, `run`, `bench`,
/// `generate`): the projections' precision on prefill (docs/ENGINE.md, "int8 prefill"). Without it
/// the engine runs `EnginePrecision.preferred` (f32: the measurements behind it are in its comment).
struct PrecisionOption: ParsableArguments {
    @Option(help: "Projections on prefill: f32 (sgemm: OpenBLAS, or oneDNN's when OpenBLAS runs an older core than the CPU has; the exact reference path) or int8 (W8A8 on oneDNN's VNNI GEMM). Default: f32. int8 is about twice as fast on a VNNI CPU, but a run of control tokens still lands far off f32 (docs/ENGINE.md, \"Default\"); logged at start-up.")
    var precision: EnginePrecision?

    func validate() throws {
        if precision == .int8, !EnginePrecision.int8Available {
            throw ValidationError("--precision int8 needs AVX2 (x86-64-v3), which this CPU lacks; use --precision f32")
        }
    }

    /// What the engine runs: as asked, else the CPU's preferred precision.
    var resolved: EnginePrecision { precision ?? .preferred }

    /// The start-up log line: what runs and why.
    var startupLine: String { EnginePrecision.startupLine(resolved, requested: precision) }

    /// That line and the f32 products' library (`F32GEMM`), one per line, for the commands that
    /// write them to stderr.
    func startupLines(f32GEMM: F32GEMM, requested: F32GEMM? = nil) -> String {
        startupLine + "\n" + F32GEMM.startupLine(f32GEMM, requested: requested) + "\n"
    }
}

extension EnginePrecision: ExpressibleByArgument {}
extension F32GEMM: ExpressibleByArgument {}
