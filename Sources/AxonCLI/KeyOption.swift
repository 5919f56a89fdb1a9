import ArgumentParser
import Foundation
import Identity

/// `--key FILE` for the commands that sign (query, score, loadgen) or are signed to (serve).
struct KeyOption: ParsableArguments {
    @Option(name: .long, help: "Hotkey file written by `axon keygen` (default: ~/.axon/<name>.json, created on first use).")
    var key: String?

    /// The hotkey from `--key`, else the default key `name` under ~/.axon (created and announced on
    /// stderr the first time). Key-file warnings (a readable mode) go to stderr too.
    func load(defaultName: String) throws -> Hotkey { try loadWithPath(defaultName: defaultName).hotkey }

    /// The hotkey and the file it came from.
    func loadWithPath(defaultName: String) throws -> (hotkey: Hotkey, path: String) {
        if let key {
            let loaded = try KeyFile.load(path: key)
            for warning in loaded.warnings { FileHandle.standardError.write(Data("warning: \(warning)\n".utf8)) }
            return (loaded.hotkey, key)
        }
        let result = try KeyStore.loadOrCreateDefault(name: defaultName)
        for warning in result.warnings { FileHandle.standardError.write(Data("warning: \(warning)\n".utf8)) }
        if result.created {
            FileHandle.standardError.write(Data("created a new hotkey \(result.hotkey.ss58) in \(result.path) (no --key given)\n".utf8))
        }
        return (result.hotkey, result.path)
    }
}
