import ArgumentParser
import Foundation
import Identity

/// `axon keygen`: a new ed25519 hotkey in a mode-0600 JSON file, by default under ~/.axon (mode
/// 0700), away from any checkout, so a secret seed is never one `git add .` from being published.
struct Keygen: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Generate an ed25519 hotkey and write it as JSON {ss58, public_key, secret_seed} (mode 0600).",
        discussion: """
        Writes ~/.axon/NAME.json (--name, default "default": the key `query`, `score` and `loadgen` sign with \
        when given no --key; `serve` uses "miner"). Refuses to overwrite an existing file. Other commands take \
        it with --key FILE.
        """
    )

    @Option(help: "Key name: writes ~/.axon/NAME.json.") var name = "default"
    @Option(name: .long, help: "Write to this path instead (must not exist; keep it out of any repository).")
    var out: String?

    func validate() throws {
        if out != nil && name != "default" { throw ValidationError("give --name or --out, not both") }
        if name.isEmpty || name.hasPrefix(".") || name.contains("/") {
            throw ValidationError("--name must be a plain file name (no '/', not starting with '.'), got '\(name)'")
        }
    }

    func run() throws {
        let path: String
        if let out {
            path = out
        } else {
            let directory = KeyStore.defaultDirectory
            if mkdir(directory, 0o700) != 0 && errno != EEXIST {
                throw Failure("cannot create \(directory): \(String(cString: strerror(errno)))")
            }
            path = directory + "/" + name + ".json"
        }
        let hotkey = Hotkey.generate()
        try KeyFile.write(hotkey, to: path)   // KeyFileError prints as "Error: refusing to overwrite …"
        print("wrote \(path) (mode 0600)")
        print("hotkey \(hotkey.ss58)")
    }
}
