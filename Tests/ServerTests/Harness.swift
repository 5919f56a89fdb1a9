import AxonClient
import Foundation
import GGUF
import Logging
import Server
import TestSupport
import Tokenizer
import Wire
import XCTest

/// A server on 127.0.0.1 with an ephemeral port, stopped at the end of the test.
final class Harness {
    let backend: InferenceBackend
    let server: AxonServer
    private var stopped = false

    init(backend: InferenceBackend = FakeBackend(), configure: (inout ServerConfiguration) -> Void = { _ in }) throws {
        var configuration = ServerConfiguration()
        configuration.port = 0
        configuration.drainTimeout = 2
        configure(&configuration)
        var logger = Logger(label: "axon-test")
        logger.logLevel = ProcessInfo.processInfo.environment["AXON_TEST_LOG"] == nil ? .warning : .debug
        self.backend = backend
        server = try AxonServer(backend: backend, configuration: configuration, logger: logger)
        try server.start()
    }

    func client() throws -> AxonClient { try AxonClient(host: "127.0.0.1", port: server.port) }

    func stop() {
        guard !stopped else { return }
        stopped = true
        server.shutdown()
        server.waitUntilStopped()
    }

    deinit { stop() }
}

extension XCTestCase {
    /// A server that lives until this test's teardown. Optimised builds may release a local right
    /// after its last use, and a `Harness` stops its server in deinit, which would cut off requests
    /// still in flight from clients made earlier.
    func startServer(backend: InferenceBackend = FakeBackend(),
                     configure: (inout ServerConfiguration) -> Void = { _ in }) throws -> Harness {
        let harness = try Harness(backend: backend, configure: configure)
        addTeardownBlock { harness.stop() }
        return harness
    }
}

func tokens32(_ rows: [[Int32]]) -> Tensor { Tensor(int32Rows: rows) }

func tokens64(_ rows: [[Int64]]) -> Tensor {
    let flat = rows.flatMap { $0 }
    return Tensor(buffer: flat.withUnsafeBytes { Array($0) }, shape: [Int64(rows.count), Int64(rows.first?.count ?? 0)],
                  dtype: .int64)
}

func floats(_ tensor: Tensor) -> [Float] { tensor.floatValues() ?? [] }

func int32s(_ tensor: Tensor) -> [Int32] { tensor.int32Values() ?? [] }

/// The backend's own outputs for `rows`: hidden `[tokens][hidden]` and all logits `[tokens][vocab]`, per row.
func directOutputs(_ backend: InferenceBackend, rows: [[Int32]]) throws -> (hidden: [[[Float]]], logits: [[[Float]]]) {
    let (h, v) = (backend.modelInfo.hiddenSize, backend.modelInfo.vocabSize)
    var hidden: [[[Float]]] = [], logits: [[[Float]]] = []
    for row in rows {
        try backend.forward(rows: [row], hidden: true, logits: .all) { output in
            guard let hiddenView = output.hidden, let logitView = output.logits else { throw MissingOutput() }
            let hv = Array(hiddenView), lv = Array(logitView)
            hidden.append((0..<row.count).map { Array(hv[($0 * h)..<(($0 + 1) * h)]) })
            logits.append((0..<row.count).map { Array(lv[($0 * v)..<(($0 + 1) * v)]) })
        }
    }
    return (hidden, logits)
}

struct MissingOutput: Error {}

/// Independent top-k reference: full sort by (logit desc, id asc), softmax in Double.
func referenceTopK(_ logits: [Float], k: Int) -> (probs: [Double], ids: [Int32], floor: Double) {
    let maxLogit = Double(logits.max() ?? 0)
    let exps = logits.map { exp(Double($0) - maxLogit) }
    let sum = exps.reduce(0, +)
    let order = logits.indices.sorted { logits[$0] > logits[$1] || (logits[$0] == logits[$1] && $0 < $1) }.prefix(k)
    let probs = order.map { exps[$0] / sum }
    let floor = logits.count > k ? (1 - probs.reduce(0, +)) / Double(logits.count - k) : 0
    return (probs, order.map { Int32($0) }, floor)
}

/// The real engine (default model), loaded once per set of limits for the whole test process.
enum EngineBackends {
    private static var loaded: [[Int]: EngineBackend] = [:]

    static func shared(maxRows: Int, maxSeq: Int, maxBatchTokens: Int) throws -> EngineBackend {
        let key = [maxRows, maxSeq, maxBatchTokens]
        if let backend = loaded[key] { return backend }
        let file = try GGUFFile(path: TestPaths.defaultModel())
        let info = ModelInfo(gguf: file, tokenizer: try Tokenizer(gguf: file))
        let backend = try EngineBackend(file: file, modelInfo: info, threads: 2, maxRows: maxRows, maxSeq: maxSeq,
                                        maxBatchTokens: maxBatchTokens)
        loaded[key] = backend
        return backend
    }
}

/// Two connections fit, a third is closed at accept, and closing one makes room again.
func assertTwoConnectionsFitAndAThirdIsRefused(_ harness: Harness, file: StaticString = #filePath, line: UInt = #line) throws {
    let first = try harness.client(), second = try harness.client()
    XCTAssertEqual(try first.ping().code, .success, file: file, line: line)
    XCTAssertEqual(try second.ping().code, .success, file: file, line: line)
    let third = try harness.client()
    XCTAssertThrowsError(try third.ping(), file: file, line: line) { error in
        guard case ClientError.connectionClosed = error else { return XCTFail("expected a close, got \(error)", file: file, line: line) }
    }
    first.close()
    Thread.sleep(forTimeInterval: 0.1)
    XCTAssertEqual(try harness.client().ping().code, .success, file: file, line: line)
}

/// A blocking TCP socket connected to 127.0.0.1:`port`; `beforeConnect` sets its options.
func loopbackSocket(port: Int, beforeConnect: (Int32) -> Void = { _ in }) throws -> Int32 {
    let fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
    guard fd >= 0 else { throw SocketError(what: "socket") }
    beforeConnect(fd)
    var address = sockaddr_in()
    address.sin_family = sa_family_t(AF_INET)
    address.sin_port = in_port_t(UInt16(port).bigEndian)
    address.sin_addr.s_addr = inet_addr("127.0.0.1")
    let connected = withUnsafePointer(to: &address) {
        $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { connect(fd, $0, socklen_t(MemoryLayout<sockaddr_in>.size)) }
    }
    guard connected == 0 else { close(fd); throw SocketError(what: "connect to port \(port)") }
    return fd
}

/// The network's standard tokenizer (Models/gpt2.tiktoken, fetched by scripts/test) and the network
/// space over the default model's tokenizer, built once for the whole test process.
enum NetworkSpaces {
    private static var standardTokenizer: NetworkStandardTokenizer?
    private static var model: (info: ModelInfo, tokenizer: any TextTokenizer)?
    private static var space: NetworkTokenSpace?

    static func standard() throws -> NetworkStandardTokenizer {
        if let standardTokenizer { return standardTokenizer }
        let loaded = try Tokenizer.networkStandard(ranksPath: TestPaths.repositoryRoot.appendingPathComponent("Models/gpt2.tiktoken").path)
        standardTokenizer = loaded
        return loaded
    }

    /// The default model's INFO fields and tokenizer (for a `FakeBackend` of its shape).
    static func defaultModel() throws -> (info: ModelInfo, tokenizer: any TextTokenizer) {
        if let model { return model }
        let file = try GGUFFile(path: TestPaths.defaultModel())
        let tokenizer = try TokenizerLoader.load(gguf: file)
        let loaded = (ModelInfo(gguf: file, tokenizer: tokenizer), tokenizer)
        model = loaded
        return loaded
    }

    static func overDefaultModel() throws -> NetworkTokenSpace {
        if let space { return space }
        let built = NetworkTokenSpace(standard: try standard(), model: try defaultModel().tokenizer)
        space = built
        return built
    }

    /// GPT-2 ids of `text`.
    static func ids(_ text: String) throws -> [Int32] {
        try standard().tokenizer.encode(text, addSpecial: false, parseSpecial: false)
    }
}

/// Rows of different lengths left-padded to one width with `pad`, and their lengths.
func leftPadded(_ rows: [[Int32]], pad: Int32) -> (tokens: Tensor, lengths: [UInt32]) {
    let width = rows.map(\.count).max() ?? 0
    let padded = rows.map { [Int32](repeating: pad, count: width - $0.count) + $0 }
    return (Tensor(int32Rows: padded), rows.map { UInt32($0.count) })
}
