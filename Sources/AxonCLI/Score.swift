import ArgumentParser

struct Score: ParsableCommand {
    static let configuration = CommandConfiguration(abstract: "(not yet implemented)")

    func run() throws {
        throw ValidationError("axon score is not implemented yet")
    }
}
