/// A runtime failure of a command (the server refused, a file is unreadable, the axon answered
/// something unusable): ArgumentParser prints its message alone and exits 1. `ValidationError`
/// stays for usage mistakes, which print the usage text and exit 64.
struct Failure: Error, CustomStringConvertible {
    let description: String
    init(_ description: String) { self.description = description }
}
