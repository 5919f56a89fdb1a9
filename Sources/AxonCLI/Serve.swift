import ArgumentParser

struct Serve: ParsableCommand {
    static let configuration = CommandConfiguration(abstract: "(not yet implemented)")
    @OptionGroup var modelOption: ModelOption

    func run() throws {
        throw ValidationError("axon serve is not implemented yet")
    }
}
