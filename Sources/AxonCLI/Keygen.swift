import ArgumentParser
import Identity

/// `axon keygen --out FILE`: a new ed25519 hotkey in a mode-0600 JSON file.
struct Keygen: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Generate an ed25519 hotkey and write it as JSON {ss58, public_key, secret_seed} (mode 0600).",
        discussion: "Refuses to overwrite an existing file. Serve and query use it with --key FILE."
    )

    @Option(name: .long, help: "Where to write the key file (must not exist).")
    var out: String

    func run() throws {
        let hotkey = Hotkey.generate()
        try KeyFile.write(hotkey, to: out)   // KeyFileError prints as "Error: refusing to overwrite …"
        print("wrote \(out) (mode 0600)")
        print("hotkey \(hotkey.ss58)")
    }
}
