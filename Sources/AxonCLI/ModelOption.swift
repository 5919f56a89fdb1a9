import ArgumentParser
import Foundation

/// `--model PATH`, shared by every subcommand. Without it the default model is located.
struct ModelOption: ParsableArguments {
    @Option(name: .long, help: "Path to a GGUF model file (default: the fetched SmolLM2-135M-Instruct Q4_1).")
    var model: String?

    static let defaultFileName = "SmolLM2-135M-Instruct.Q4_1.gguf"

    /// The model path to open: `--model`, else `$AXON_MODEL`, else the default model in
    /// `./Models`, beside the repository that built this binary, or `/models` (containers).
    func resolvedPath() throws -> String {
        if let model { return model }
        let env = ProcessInfo.processInfo.environment
        if let path = env["AXON_MODEL"], !path.isEmpty { return path }
        var candidates = [FileManager.default.currentDirectoryPath + "/Models/" + Self.defaultFileName]
        // .build/<triple>/release/axon -> repository root is three levels up. The running binary
        // comes from /proc/self/exe: argv[0] is only "axon" when it was found on PATH (scripts/install).
        let running = (try? FileManager.default.destinationOfSymbolicLink(atPath: "/proc/self/exe")) ?? CommandLine.arguments[0]
        let exe = URL(fileURLWithPath: running).resolvingSymlinksInPath()
        var root = exe.deletingLastPathComponent()
        for _ in 0..<3 {
            root = root.deletingLastPathComponent()
            candidates.append(root.path + "/Models/" + Self.defaultFileName)
        }
        candidates.append("/models/" + Self.defaultFileName)
        if let found = candidates.first(where: { FileManager.default.fileExists(atPath: $0) }) {
            return found
        }
        throw Failure("The default model \(Self.defaultFileName) was not found (looked in ./Models, the repository's Models/ and /models). Run Models/fetch, or pass --model PATH.")
    }
}
