import ArgumentParser

struct Detokenize: ParsableCommand {
    static let configuration = CommandConfiguration(abstract: "(not yet implemented)")
    @OptionGroup var modelOption: ModelOption

    func run() throws {
        throw ValidationError("axon detokenize is not implemented yet")
    }
}
