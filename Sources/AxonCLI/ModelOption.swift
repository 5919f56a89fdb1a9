import ArgumentParser
import Foundation
import GGUF
import Tokenizer

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
        if let found = Self.locate(Self.defaultFileName) { return found }
        throw Failure("The default model \(Self.defaultFileName) was not found (looked in ./Models, the repository's Models/ and /models). Run Models/fetch, or pass --model PATH.")
    }

    /// `name` in ./Models, beside the repository that built this binary, or in /models.
    static func locate(_ name: String) -> String? {
        var candidates = [FileManager.default.currentDirectoryPath + "/Models/" + name]
        // .build/<triple>/release/axon -> repository root is three levels up. The running binary
        // comes from /proc/self/exe: argv[0] is only "axon" when it was found on PATH (scripts/install).
        let running = (try? FileManager.default.destinationOfSymbolicLink(atPath: "/proc/self/exe")) ?? CommandLine.arguments[0]
        let exe = URL(fileURLWithPath: running).resolvingSymlinksInPath()
        var root = exe.deletingLastPathComponent()
        for _ in 0..<3 {
            root = root.deletingLastPathComponent()
            candidates.append(root.path + "/Models/" + name)
        }
        candidates.append("/models/" + name)
        return candidates.first(where: { FileManager.default.fileExists(atPath: $0) })
    }

    /// The model's tokenizer, of whichever family its GGUF names.
    func loadTokenizer() throws -> any TextTokenizer {
        try TokenizerLoader.load(gguf: GGUFFile(path: resolvedPath()))
    }
}

/// `--space model|network`: the model's own token ids, or the network's standard (GPT-2) ones.
enum TokenSpaceOption: String, ExpressibleByArgument, CaseIterable {
    case model, network

    static let networkRanksFileName = "gpt2.tiktoken"

    /// The tokenizer of this space (the network's ranks are found like the default model).
    func tokenizer(_ modelOption: ModelOption) throws -> any TextTokenizer {
        switch self {
        case .model:
            return try modelOption.loadTokenizer()
        case .network:
            return try Self.networkStandard().tokenizer
        }
    }

    /// The network's standard tokenizer with its ranks' digest (found like the default model).
    static func networkStandard() throws -> NetworkStandardTokenizer {
        guard let path = ModelOption.locate(networkRanksFileName) else {
            throw Failure("The network's ranks \(networkRanksFileName) were not found (looked in ./Models, the repository's Models/ and /models). Run Models/fetch gpt2.")
        }
        return try Tokenizer.networkStandard(ranksPath: path)
    }
}
