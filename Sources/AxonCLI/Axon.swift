import ArgumentParser

@main
struct Axon: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "axon",
        abstract: "A miner server for Bittensor-style networks: embeddings and next-token distributions from a GGUF model on CPU.",
        subcommands: [
            Serve.self, Query.self, Generate.self,
            Run.self, Bench.self, BenchKernels.self,
            Tokenize.self, Detokenize.self,
            Inspect.self,
            Keygen.self, Score.self, LoadGen.self, Validate.self, MixtureCommand.self,
            PlaygroundCommand.self,
        ]
    )
}
