import ArgumentParser

struct Keygen: ParsableCommand {
    static let configuration = CommandConfiguration(abstract: "(not yet implemented)")

    func run() throws {
        throw ValidationError("axon keygen is not implemented yet")
    }
}
