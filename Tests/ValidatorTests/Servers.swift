import Foundation
import Identity
import Logging
import Server
import TestSupport
import XCTest

/// An in-process axon on 127.0.0.1 with an ephemeral port that admits any correctly signed
/// sender (unregistered allowed), stopped on deinit.
final class LocalAxon {
    let key: Hotkey
    let server: AxonServer

    init(backend: InferenceBackend = FakeBackend(), seed: UInt8,
         configure: (inout ServerConfiguration) -> Void = { _ in }) throws {
        key = try Hotkey(seed: [UInt8](repeating: seed, count: 32))
        let store = MetagraphStore(Metagraph.empty())
        var configuration = ServerConfiguration()
        configuration.port = 0
        configuration.drainTimeout = 2
        configuration.hotkey = key.ss58
        configuration.metagraph = store
        configuration.admission = try Admission(receiver: key.publicKey, policy: AdmissionPolicy(allowUnregistered: true),
                                                metagraph: store)
        configure(&configuration)
        var logger = Logger(label: "axon-validator-test")
        logger.logLevel = .warning
        server = try AxonServer(backend: backend, configuration: configuration, logger: logger)
        try server.start()
    }

    func stop() {
        server.shutdown()
        server.waitUntilStopped()
    }

    deinit { stop() }
}

/// The `axon` executable built beside this test bundle (`swift build --build-tests` builds it).
enum AxonCommand {
    static var executable: URL {
        Bundle.module.bundleURL.deletingLastPathComponent().appendingPathComponent("axon")
    }

    struct Missing: Error, CustomStringConvertible {
        let path: String
        var description: String { "\(path) is missing: build with `swift build --build-tests`" }
    }

    static func requireBuilt() throws {
        guard FileManager.default.isExecutableFile(atPath: executable.path) else { throw Missing(path: executable.path) }
    }

    /// Runs `axon ARGUMENTS --model <default model>` (without `--model` for commands that take none) with HOME at `home` (a temporary directory,
    /// so any default key lands there) and returns how it ended, its stdout and its stderr.
    static func run(_ arguments: [String], home: String = FileManager.default.temporaryDirectory.path, input: String? = nil,
                    withModel: Bool = true) throws -> (reason: Process.TerminationReason, status: Int32, stdout: String, stderr: String) {
        let process = Process()
        process.executableURL = executable
        process.arguments = arguments + (withModel ? ["--model", try TestPaths.defaultModel()] : [])
        var environment = ProcessInfo.processInfo.environment
        environment["HOME"] = home
        process.environment = environment
        let output = Pipe(), errors = Pipe()
        process.standardOutput = output
        process.standardError = errors
        let stdin = Pipe()
        process.standardInput = input == nil ? FileHandle.nullDevice : stdin
        try process.run()
        if let input {
            stdin.fileHandleForWriting.write(Data(input.utf8))
            try stdin.fileHandleForWriting.close()
        }
        let printed = String(decoding: output.fileHandleForReading.readDataToEndOfFile(), as: UTF8.self)
        let complaints = String(decoding: errors.fileHandleForReading.readDataToEndOfFile(), as: UTF8.self)
        process.waitUntilExit()
        return (process.terminationReason, process.terminationStatus, printed, complaints)
    }
}
