import ArgumentParser

struct Inspect: ParsableCommand {
    static let configuration = CommandConfiguration(abstract: "(not yet implemented)")
    @OptionGroup var modelOption: ModelOption

    func run() throws {
        throw ValidationError("axon inspect is not implemented yet")
    }
}
