import ArgumentParser

struct LoadGen: ParsableCommand {
    static let configuration = CommandConfiguration(abstract: "(not yet implemented)")

    func run() throws {
        throw ValidationError("axon loadgen is not implemented yet")
    }
}
