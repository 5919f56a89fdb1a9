import ArgumentParser

struct Bench: ParsableCommand {
    static let configuration = CommandConfiguration(abstract: "(not yet implemented)")
    @OptionGroup var modelOption: ModelOption

    func run() throws {
        throw ValidationError("axon bench is not implemented yet")
    }
}
