import ArgumentParser

struct Tokenize: ParsableCommand {
    static let configuration = CommandConfiguration(abstract: "(not yet implemented)")
    @OptionGroup var modelOption: ModelOption

    func run() throws {
        throw ValidationError("axon tokenize is not implemented yet")
    }
}
