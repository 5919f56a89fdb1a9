import ArgumentParser
import AxonClient
import Foundation
import Identity
import LibUV
import Playground
import Validator

/// `axon playground`: a web page where a person asks the miners a text and sees each one's answer.
struct PlaygroundCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "playground",
        abstract: "Serve a web page that asks miners a text (next token, generation, embeddings) and shows each one's answer (docs/PLAYGROUND.md).")

    @Option(help: "The miners: a JSON list of {uid, hotkey, host, port}.") var endpoints: String
    @Option(help: "A metagraph snapshot: each endpoint's uid and hotkey are checked against it, and the page shows stakes.")
    var metagraph: String?
    @Option(help: "A mixture axon's HOST:PORT, asked like one more miner.") var mixture: String?
    @Option(help: "The last weights a validator wrote (axon validate --weights-out), shown per UID.") var weights: String?
    @Option(help: "The page's port.") var port = 8080
    @Option(help: "The address to listen on; anything but loopback lets other machines ask with this validator key.")
    var host = "127.0.0.1"
    @OptionGroup var keyOption: KeyOption
    @Flag(help: "Send FORWARD unsigned (for --no-auth axons).") var unsigned = false

    func validate() throws {
        if !(0...65535).contains(port) { throw ValidationError("--port must be in 0...65535, got \(port)") }
        if let mixture { _ = try parsedMixture(mixture) }
    }

    private func parsedMixture(_ text: String) throws -> (host: String, port: Int) {
        do { return try AxonClient.parse(endpoint: text) } catch {
            throw ValidationError("--mixture must be HOST:PORT, got \(text)")
        }
    }

    func run() throws {
        var list = try Endpoints.load(path: endpoints)
        var snapshot: Metagraph?
        if let metagraph {
            let loaded = try Metagraph.load(path: metagraph)
            let (kept, skipped) = Endpoints.registered(list, in: loaded)
            for (endpoint, actual) in skipped {
                FileHandle.standardError.write(Data("warning: endpoint uid \(endpoint.uid) names \(endpoint.hotkey), the metagraph has \(actual) there; skipped\n".utf8))
            }
            guard !kept.isEmpty else { throw Failure("no endpoint in \(endpoints) matches the metagraph \(metagraph)") }
            list = kept
            snapshot = loaded
        }
        let roster = MinerRoster(endpoints: list, metagraph: snapshot, weights: try weights.map(WeightsReader.load),
                                 mixture: try mixture.map(parsedMixture))
        let hotkey = unsigned ? nil : try keyOption.load(defaultName: "default")
        let queries = MinerQueries(roster: roster, hotkey: hotkey, standard: try TokenSpaceOption.networkStandard())
        let server = PlaygroundServer(api: PlaygroundAPI(queries: queries, loopbackOnly: PlaygroundServer.isLoopback(host)), host: host, port: port)
        if !PlaygroundServer.isLoopback(host) {
            FileHandle.standardError.write(Data("warning: --host \(host) is not loopback: anyone who reaches this port can make the miners answer, signed with your validator key\(hotkey.map { " \($0.ss58)" } ?? "")\n".utf8))
        }
        do { try server.start() } catch let error as UVError where error.code == -EADDRINUSE {
            throw Failure("port \(port) on \(host) is taken: pass another --port (0 picks a free one)")
        }
        let shown = host.contains(":") ? "[\(host)]" : host
        print("playground: http://\(shown):\(server.port)/ — \(roster.miners.count) miners\(hotkey.map { ", signing as \($0.ss58)" } ?? ", unsigned")")
        fflush(stdout)
        server.wait()
    }
}
