import AxonClient
import Foundation
import GGUF
import Identity
import Logging
import Mixture
import Server
import TestSupport
import Tokenizer
import Validator
import Wire
import XCTest

/// A fake model whose logits are `FakeBackend`'s times `scale`: experts that disagree (sharper or
/// flatter over the same ranking), so a mixture of them differs from each.
private final class ScaledBackend: InferenceBackend {
    private let fake: FakeBackend
    private let scale: Float
    var modelInfo: ModelInfo { fake.modelInfo }

    init(modelInfo: ModelInfo, scale: Float) {
        fake = FakeBackend(modelInfo: modelInfo)
        self.scale = scale
    }

    func forward(rows: [[Int32]], hidden: Bool, logits: LogitsWanted, body: (BackendOutput) throws -> Void) throws {
        try fake.forward(rows: rows, hidden: hidden, logits: logits) { output in
            let scaled = output.logits.map { $0.map { $0 * scale } }
            try (scaled ?? []).withUnsafeBufferPointer { view in
                try body(BackendOutput(hidden: output.hidden, logits: scaled == nil ? nil : view, logitsWanted: output.logitsWanted))
            }
        }
    }
}

/// An in-process axon on an ephemeral loopback port: a network-space miner, or the mixture.
private final class Axon {
    let key: Hotkey
    let server: AxonServer

    /// `admitting`: check signatures (any correctly signed sender admitted) or, false, `--no-auth`.
    init(seed: UInt8, admitting: Bool = true, build: (ServerConfiguration) throws -> AxonServer) throws {
        key = try Hotkey(seed: [UInt8](repeating: seed, count: 32))
        let store = MetagraphStore(Metagraph.empty())
        var configuration = ServerConfiguration()
        configuration.port = 0
        configuration.drainTimeout = 1
        configuration.hotkey = key.ss58
        configuration.metagraph = store
        if admitting {
            configuration.admission = try Admission(receiver: key.publicKey, policy: AdmissionPolicy(allowUnregistered: true), metagraph: store)
        }
        server = try build(configuration)
        try server.start()
    }

    var endpoint: (host: String, port: Int) { ("127.0.0.1", server.port) }

    func stop() {
        server.shutdown()
        server.waitUntilStopped()
    }

    deinit { stop() }
}

/// What the tests share: the standard tokenizer, the model's shape and tokenizer for the fakes.
private struct Network {
    let standard: NetworkStandardTokenizer
    let space: NetworkTokenSpace
    let info: ModelInfo
    var identity: RelayNetworkIdentity { RelayNetworkIdentity(name: NetworkStandardTokenizer.name, sha256: standard.ranksSHA256, vocabSize: standard.vocabSize) }

    static let shared: Result<Network, Error> = Result {
        let standard = try Tokenizer.networkStandard(ranksPath: TestPaths.repositoryRoot.appendingPathComponent("Models/gpt2.tiktoken").path)
        let file = try GGUFFile(path: TestPaths.defaultModel())
        let tokenizer = try TokenizerLoader.load(gguf: file)
        return Network(standard: standard, space: NetworkTokenSpace(standard: standard, model: tokenizer),
                       info: ModelInfo(gguf: file, tokenizer: tokenizer))
    }

    func miner(seed: UInt8, scale: Float) throws -> Axon {
        try Axon(seed: seed) { configuration in
            var configuration = configuration
            configuration.networkSpace = space
            return try AxonServer(backend: ScaledBackend(modelInfo: info, scale: scale), configuration: configuration, logger: quietLogger)
        }
    }

    /// Two rows of standard ids (the second shorter, left-padded with <|endoftext|> and a length).
    func request(k: Int, dtype: DataType = .float32) -> ForwardRequest {
        let ids = standard.tokenizer.encode("The mixture asks every expert and mixes what comes back before the deadline.",
                                            addSpecial: false, parseSpecial: false)
        let seq = 12
        let first = Array(ids.prefix(seq)), second = [Int32](repeating: NetworkStandardTokenizer.endOfText, count: 4) + Array(ids.dropFirst(3).prefix(seq - 4))
        return ForwardRequest(tokens: Tensor(int32Rows: [first, second]), lengths: [UInt32(seq), UInt32(seq - 4)],
                              synapses: [Synapse(type: .textCausalLMNext, topk: UInt32(k), dtype: dtype)], space: .network)
    }
}

private let quietLogger: Logger = {
    var logger = Logger(label: "axon-mixture-test")
    logger.logLevel = .critical
    return logger
}()

final class MixtureTests: XCTestCase {
    private var directory: URL!

    override func setUpWithError() throws {
        directory = FileManager.default.temporaryDirectory.appendingPathComponent("axon-mixture-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: directory, withIntermediateDirectories: true)
    }

    override func tearDownWithError() throws {
        try? FileManager.default.removeItem(at: directory)
    }

    /// Writes axons.json and weights.json for `experts` (uid, key, host, port, weight, EMA loss).
    private func writeFiles(_ experts: [(uid: Int, hotkey: String, port: Int, weight: Double, ema: Double?)], step: Int = 1) throws -> (endpoints: String, weights: String) {
        let endpoints = experts.map { Endpoint(uid: $0.uid, hotkey: $0.hotkey, host: "127.0.0.1", port: $0.port) }
        let endpointsPath = directory.appendingPathComponent("axons.json").path
        try JSONEncoder().encode(endpoints).write(to: URL(fileURLWithPath: endpointsPath))
        var records: [WeightEntry] = []
        for expert in experts {
            var record = UIDRecord(uid: expert.uid, hotkey: expert.hotkey)
            record.emaLoss = expert.ema
            records.append(WeightEntry(record: record, weight: expert.weight))
        }
        let weightsPath = directory.appendingPathComponent("weights.json").path
        try WeightsFile.writeAtomically(WeightsFile.json(netuid: 1, block: 7, step: step, entries: records), to: weightsPath)
        return (endpointsPath, weightsPath)
    }

    private func mixture(_ network: Network, files: (endpoints: String, weights: String), experts: Int, upstreamMs: Int,
                         seed: UInt8 = 90, admitting: Bool = true, signUpstream: Bool = true) throws -> (Axon, MixtureRelay) {
        var settings = MixtureSettings()
        settings.experts = experts
        settings.upstreamDeadline = Double(upstreamMs) / 1000
        let key = try Hotkey(seed: [UInt8](repeating: seed, count: 32))
        var relay: MixtureRelay?
        let axon = try Axon(seed: seed, admitting: admitting) { configuration in
            let made = try MixtureRelay(network: network.identity, settings: settings, hotkey: signUpstream ? key : nil,
                                        endpointsPath: files.endpoints, weightsPath: files.weights,
                                        metagraph: configuration.metagraph ?? MetagraphStore(Metagraph.empty()), logger: quietLogger)
            relay = made
            return try AxonServer(relay: made, configuration: configuration, logger: quietLogger)
        }
        return (axon, try XCTUnwrap(relay))
    }

    private static func ask(_ axon: Axon, _ request: ForwardRequest, signedBy seed: UInt8? = 7, timeoutMs: UInt32 = 4000) throws -> Response {
        let key = try seed.map { try Hotkey(seed: [UInt8](repeating: $0, count: 32)) }
        let client = try AxonClient(host: axon.endpoint.host, port: axon.endpoint.port, hotkey: key, receiver: axon.key.ss58)
        defer { client.close() }
        return try client.forward(request, timeoutMs: timeoutMs)
    }

    func testMixingWeightsMatchTheReference() throws {
        struct Fixture: Decodable {
            struct Case: Decodable { let ema_losses: [Double], mixing_weights: [Double] }
            let cases: [Case]
        }
        let url = try XCTUnwrap(Bundle.module.url(forResource: "mixing_weights", withExtension: "json", subdirectory: "Fixtures"))
        let fixture = try JSONDecoder().decode(Fixture.self, from: Data(contentsOf: url))
        for reference in fixture.cases {
            let got = ExpertRoster.mixingWeights(emaLosses: reference.ema_losses)
            XCTAssertEqual(got.count, reference.mixing_weights.count)
            // exp of the same float64 differences, then one division: a few ulps (relative).
            for (a, b) in zip(got, reference.mixing_weights) { XCTAssertEqual(a, b, accuracy: 1e-15 * max(b, 1e-300) + 1e-300, "\(reference.ema_losses)") }
        }
    }

    func testTheTopExpertsByWeightAreChosenAndOthersPassedOver() throws {
        let snapshot = WeightsSnapshot(netuid: 1, block: 2, step: 3, weights: [
            .init(uid: 0, hotkey: "a", weight: 0.2, emaLoss: 4, responses: 1),
            .init(uid: 1, hotkey: "b", weight: 0.5, emaLoss: 3, responses: 1),
            .init(uid: 2, hotkey: "c", weight: 0.3, emaLoss: 3.5, responses: 1),
            .init(uid: 3, hotkey: "d", weight: 0, emaLoss: 90, responses: 0),
        ])
        let endpoints = [Endpoint(uid: 0, hotkey: "a", host: "h", port: 1), Endpoint(uid: 1, hotkey: "b", host: "h", port: 2),
                         Endpoint(uid: 2, hotkey: "x", host: "h", port: 3), Endpoint(uid: 3, hotkey: "d", host: "h", port: 4)]
        let roster = ExpertRoster.choose(snapshot, endpoints: endpoints, metagraph: Metagraph.empty(), count: 2)
        XCTAssertEqual(roster.experts.map(\.endpoint.uid), [1, 0], "uid 2's endpoint names another hotkey")
        XCTAssertEqual(roster.skipped.count, 1, "\(roster.skipped)")
        XCTAssertEqual(roster.experts.map(\.mixingWeight), ExpertRoster.mixingWeights(emaLosses: [3, 4]))
    }

    /// The mixture's answer is the reference mixture (PhraseMixture, checked against numpy in
    /// ValidatorTests) of what each expert answers the same request directly, with the weights of
    /// the reference rule: shapes, phrases and probabilities to float32 rounding.
    func testTheMixtureAnswersTheWeightedMixtureOfItsExperts() throws {
        let network = try Network.shared.get()
        let experts = try [network.miner(seed: 41, scale: 1), network.miner(seed: 42, scale: 0.3), network.miner(seed: 43, scale: 2)]
        let emas: [Double] = [3.0, 3.4, 9.0]
        let files = try writeFiles(experts.enumerated().map { index, axon in
            (uid: index, hotkey: axon.key.ss58, port: axon.server.port, weight: [0.5, 0.4, 0.1][index], ema: emas[index])
        })
        let (mixture, _) = try mixture(network, files: files, experts: 2, upstreamMs: 3000)
        let info = try XCTUnwrap(try AxonClient(host: "127.0.0.1", port: mixture.server.port).info().info)
        XCTAssertEqual(info.architecture, "mixture")
        XCTAssertTrue(info.model.contains("uid 0") && info.model.contains("uid 1") && !info.model.contains("uid 2"), info.model)
        XCTAssertEqual(info.networkTokenizerSHA256, network.standard.ranksSHA256)
        XCTAssertEqual(Int(info.networkVocabSize), network.standard.vocabSize)

        for dtype in [DataType.float32, .float16] {
            let k = 16
            let request = network.request(k: k, dtype: dtype)
            let direct = try experts.prefix(2).map { try Self.ask($0, network.request(k: k)) }
            let answers = try direct.map { response -> PhraseAnswer in
                try AnswerGrade.checkedPhrases(response, rows: 2, k: k).get()
            }
            let pis = ExpertRoster.mixingWeights(emaLosses: Array(emas.prefix(2)))
            let response = try Self.ask(mixture, request)
            let got = try AnswerGrade.checkedPhrases(response, rows: 2, k: k).get()
            XCTAssertEqual(response.forward?.results.first?.tensors.first?.dtype, dtype)
            for row in 0..<2 {
                let reference = PhraseMixture.mix(zip(pis, answers).map { (weight: $0, answer: ExpertPhrases($1, row: row)) }, k: k)
                XCTAssertEqual(got.phrases(row: row), reference.phrases, "row \(row) \(dtype)")
                // The answer is the reference rounded once to the wire's float: half an ulp, 2⁻²⁴ (float32)
                // or 2⁻¹¹ (float16) relative, and below the normal range half the subnormal spacing.
                let (relative, absolute) = dtype == .float16 ? (0x1p-11, 0x1p-25) : (0x1p-24, 0x1p-150)
                for (a, b) in zip(got.probabilities[got.span(row: row)], reference.probabilities) {
                    XCTAssertEqual(Double(a), b, accuracy: b * relative + absolute, "row \(row) \(dtype)")
                }
                XCTAssertEqual(Double(got.floor(row: row)), reference.floor, accuracy: reference.floor * relative + absolute)
                // And it differs from each expert's own answer (the experts disagree).
                XCTAssertNotEqual(got.probabilities[got.span(row: row)], answers[0].probabilities[answers[0].span(row: row)])
            }
        }
        // Other synapses are NotImplemented; model space is refused NotImplemented.
        var other = network.request(k: 4)
        other.synapses.append(Synapse(type: .textLastHiddenState))
        let mixed = try Self.ask(mixture, other)
        XCTAssertEqual(mixed.code, .success, mixed.message)
        XCTAssertEqual(mixed.forward?.results.map(\.code), [.success, .notImplemented])
        other.space = .model
        XCTAssertEqual(try Self.ask(mixture, other).code, .notImplemented)
        withExtendedLifetime(experts) {}   // optimized builds may end a local's lifetime at its last use
    }

    /// One expert refuses connections, one accepts and never answers: the answer arrives within the
    /// caller's deadline and is the live expert's alone (renormalised to π = 1).
    func testADeadAndAStalledExpertAreLeftOutWithinTheDeadline() throws {
        let network = try Network.shared.get()
        let live = try network.miner(seed: 51, scale: 1)
        let stalled = try SilentListener()
        let deadKey = try Hotkey(seed: [UInt8](repeating: 52, count: 32)), stalledKey = try Hotkey(seed: [UInt8](repeating: 53, count: 32))
        let files = try writeFiles([(uid: 0, hotkey: deadKey.ss58, port: try closedPort(), weight: 0.4, ema: 2.5),
                                    (uid: 1, hotkey: stalledKey.ss58, port: stalled.port, weight: 0.35, ema: 2.6),
                                    (uid: 2, hotkey: live.key.ss58, port: live.server.port, weight: 0.25, ema: 3.0)])
        let (mixture, relay) = try mixture(network, files: files, experts: 3, upstreamMs: 5000)
        let k = 8
        let alone = try AnswerGrade.checkedPhrases(try Self.ask(live, network.request(k: k)), rows: 2, k: k).get()
        let timeoutMs: UInt32 = 1200
        let started = Date()
        let response = try Self.ask(mixture, network.request(k: k), timeoutMs: timeoutMs)
        let seconds = Date().timeIntervalSince(started)
        XCTAssertLessThan(seconds, Double(timeoutMs) / 1000, "answered within the caller's deadline")
        // The upstream deadline is cut to the caller's less the margin (a tenth): not 5 s.
        XCTAssertGreaterThan(seconds, MixtureSettings().upstreamBudget(left: Double(timeoutMs) / 1000) * 0.9, "it waited for the stalled expert")
        let got = try AnswerGrade.checkedPhrases(response, rows: 2, k: k).get()
        for row in 0..<2 {
            XCTAssertEqual(got.phrases(row: row), alone.phrases(row: row))
            XCTAssertEqual(got.probabilities[got.span(row: row)], alone.probabilities[alone.span(row: row)])
        }
        let outcomes = relay.expertOutcomes
        XCTAssertEqual(outcomes[0], ["Unavailable": 1])
        XCTAssertEqual(outcomes[1], ["Timeout": 1])
        XCTAssertEqual(outcomes[2], ["ok": 1])
        withExtendedLifetime((stalled, live)) {}
    }

    /// Signatures both ways: the mixture admits only signed callers (Unauthenticated otherwise) and
    /// signs what it sends upstream (experts that check signatures answer it); with --no-auth an
    /// unsigned caller is served. An expert asked unsigned refuses, and the mixture says so.
    func testSignaturesAndNoAuth() throws {
        let network = try Network.shared.get()
        let expert = try network.miner(seed: 61, scale: 1)
        let files = try writeFiles([(uid: 0, hotkey: expert.key.ss58, port: expert.server.port, weight: 1, ema: 3)])
        let (checked, _) = try mixture(network, files: files, experts: 1, upstreamMs: 2000, seed: 91)
        XCTAssertEqual(try Self.ask(checked, network.request(k: 4), signedBy: nil).code, .unauthenticated)
        XCTAssertEqual(try Self.ask(checked, network.request(k: 4)).code, .success)
        let (open, _) = try mixture(network, files: files, experts: 1, upstreamMs: 2000, seed: 92, admitting: false)
        XCTAssertEqual(try Self.ask(open, network.request(k: 4), signedBy: nil).code, .success)
        let (unsigned, relay) = try mixture(network, files: files, experts: 1, upstreamMs: 2000, seed: 93, signUpstream: false)
        let refused = try Self.ask(unsigned, network.request(k: 4))
        XCTAssertEqual(refused.code, .unavailable, refused.message)
        XCTAssertTrue(refused.message.contains("Unauthenticated"), refused.message)
        XCTAssertEqual(relay.expertOutcomes[0], ["Unauthenticated": 1])
        withExtendedLifetime(expert) {}
    }

    /// `axon mixture` on the command line: INFO says mixture and names its experts; SIGHUP reloads
    /// weights.json (a broken file keeps the experts in force); --no-auth serves unsigned callers.
    func testTheCommandReloadsItsWeightsOnSIGHUP() throws {
        let network = try Network.shared.get()
        let axons = try [network.miner(seed: 71, scale: 1), network.miner(seed: 72, scale: 0.5)]
        let files = try writeFiles([(uid: 0, hotkey: axons[0].key.ss58, port: axons[0].server.port, weight: 0.7, ema: 3),
                                    (uid: 1, hotkey: axons[1].key.ss58, port: axons[1].server.port, weight: 0.3, ema: 4)])
        let port = try closedPort()
        let process = Process()
        process.executableURL = try MixtureCommandLine.executable()
        process.arguments = ["mixture", "--endpoints", files.endpoints, "--weights", files.weights, "--port", "\(port)",
                             "--experts", "1", "--upstream-deadline-ms", "2000", "--metrics-port", "0", "--no-auth",
                             "--key", try MixtureCommandLine.key(in: directory, seed: 94)]
        process.currentDirectoryURL = TestPaths.repositoryRoot
        process.standardOutput = FileHandle.nullDevice
        process.standardError = FileHandle.nullDevice
        try process.run()
        defer { if process.isRunning { process.terminate(); process.waitUntilExit() } }
        func info() -> InfoResponse? { try? AxonClient(host: "127.0.0.1", port: port).info().info }
        func waitFor(_ what: String, _ condition: (InfoResponse) -> Bool) throws -> InfoResponse {
            let until = Date().addingTimeInterval(20)
            while Date() < until {
                if let current = info(), condition(current) { return current }
                usleep(50_000)
            }
            throw MixtureCommandLine.TimedOut(what: what)
        }
        let first = try waitFor("the mixture to listen") { _ in true }
        XCTAssertEqual(first.architecture, "mixture")
        XCTAssertTrue(first.model.contains("uid 0") && !first.model.contains("uid 1"), first.model)
        let client = try AxonClient(host: "127.0.0.1", port: port)
        XCTAssertEqual(try client.forward(network.request(k: 4), timeoutMs: 3000).code, .success, "unsigned, --no-auth")
        client.close()

        // A broken file: SIGHUP keeps uid 0.
        try Data("{not json".utf8).write(to: URL(fileURLWithPath: files.weights))
        kill(process.processIdentifier, SIGHUP)
        usleep(300_000)
        XCTAssertTrue(try XCTUnwrap(info()).model.contains("uid 0"))
        // The validator now ranks uid 1 first.
        _ = try writeFiles([(uid: 0, hotkey: axons[0].key.ss58, port: axons[0].server.port, weight: 0.2, ema: 5),
                            (uid: 1, hotkey: axons[1].key.ss58, port: axons[1].server.port, weight: 0.8, ema: 3)], step: 2)
        kill(process.processIdentifier, SIGHUP)
        let reloaded = try waitFor("the reload") { $0.model.contains("uid 1") }
        XCTAssertFalse(reloaded.model.contains("uid 0"), reloaded.model)
        process.terminate()
        process.waitUntilExit()
        withExtendedLifetime(axons) {}
    }
}

/// A relay that holds every request until released, recording the order it was handed them in.
private final class HeldRelay: ForwardRelay, @unchecked Sendable {
    let network = RelayNetworkIdentity(name: "gpt2", sha256: String(repeating: "0", count: 64), vocabSize: 50257)
    var modelInfo: ModelInfo { ModelInfo(name: "held", architecture: "mixture", vocabSize: 50257, hiddenSize: 1) }
    private let lock = NSLock()
    private var held: [@Sendable (RelayReply) -> Void] = []
    private(set) var order: [UInt32] = []
    func reload() {}

    func relay(_ forward: RelayedForward, reply: @escaping @Sendable (RelayReply) -> Void) {
        lock.withLock {
            order.append(forward.request.synapses[0].topk)
            held.append(reply)
        }
    }

    var count: Int { lock.withLock { held.count } }

    func releaseAll() {
        while let next = lock.withLock({ held.isEmpty ? nil : held.removeFirst() }) {
            next(.answered(ForwardResponse(results: [SynapseResult(type: .textCausalLMNext, code: .notImplemented)])))
        }
    }
}

final class RelayPriorityTests: XCTestCase {
    /// One relay slot: while it is taken, a registered sender's request queued after an
    /// unregistered one is relayed first (stake priority is the server's, as for a model).
    func testAWaitingStakedRequestIsRelayedFirst() throws {
        let receiver = try Hotkey(seed: [UInt8](repeating: 80, count: 32))
        let staked = try Hotkey(seed: [UInt8](repeating: 81, count: 32)), unstaked = try Hotkey(seed: [UInt8](repeating: 82, count: 32))
        let store = MetagraphStore(try Metagraph(netuid: 1, block: 1, neurons: [Neuron(uid: 0, hotkey: staked.ss58, stake: 100, validatorPermit: true)]))
        var configuration = ServerConfiguration()
        configuration.port = 0
        configuration.drainTimeout = 1
        configuration.hotkey = receiver.ss58
        configuration.metagraph = store
        configuration.maxRelaysInFlight = 1
        configuration.admission = try Admission(receiver: receiver.publicKey, policy: AdmissionPolicy(allowUnregistered: true), metagraph: store)
        let relay = HeldRelay()
        let server = try AxonServer(relay: relay, configuration: configuration, logger: quietLogger)
        try server.start()
        defer { server.shutdown(); server.waitUntilStopped() }
        let rows = Tensor(int32Rows: [[464, 2068, 318]])
        func request(k: UInt32) -> [UInt8] {
            ForwardRequest(tokens: rows, synapses: [Synapse(type: .textCausalLMNext, topk: k)], space: .network).serializedBytes()
        }
        let first = try AxonClient(host: "127.0.0.1", port: server.port, hotkey: unstaked, receiver: receiver.ss58)
        let late = try AxonClient(host: "127.0.0.1", port: server.port, hotkey: unstaked, receiver: receiver.ss58)
        let rich = try AxonClient(host: "127.0.0.1", port: server.port, hotkey: staked, receiver: receiver.ss58)
        defer { first.close(); late.close(); rich.close() }
        let ids = [first.makeID(), late.makeID(), rich.makeID()]
        try first.send(Request(id: ids[0], method: .forward, timeoutMs: 5000, body: request(k: 1)))
        while relay.count < 1 { usleep(1000) }
        try late.send(Request(id: ids[1], method: .forward, timeoutMs: 5000, body: request(k: 2)))
        usleep(100_000)
        try rich.send(Request(id: ids[2], method: .forward, timeoutMs: 5000, body: request(k: 3)))
        usleep(100_000)
        let until = Date().addingTimeInterval(5)
        while relay.order.count < 3, Date() < until {
            relay.releaseAll()
            usleep(2000)
        }
        XCTAssertEqual(relay.order, [1, 3, 2])
        for (client, id) in zip([first, late, rich], ids) { XCTAssertEqual(try client.response(id: id, timeout: 5).code, .success) }
    }
}

/// The `axon` executable built beside the test bundle, and key files for it.
private enum MixtureCommandLine {
    struct TimedOut: Error, CustomStringConvertible {
        let what: String
        var description: String { "timed out after 20 s waiting for \(what)" }
    }

    struct Missing: Error, CustomStringConvertible {
        let path: String
        var description: String { "\(path) is missing: build with `swift build --build-tests`" }
    }

    static func executable() throws -> URL {
        let url = Bundle.module.bundleURL.deletingLastPathComponent().appendingPathComponent("axon")
        guard FileManager.default.isExecutableFile(atPath: url.path) else { throw Missing(path: url.path) }
        return url
    }

    /// A key file for a fixed seed, written as `axon keygen` writes one (mode 0600).
    static func key(in directory: URL, seed: UInt8) throws -> String {
        let path = directory.appendingPathComponent("key\(seed).json").path
        let key = try Hotkey(seed: [UInt8](repeating: seed, count: 32))
        try KeyFile.write(key, to: path)
        return path
    }
}
