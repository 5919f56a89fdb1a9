import Foundation
import HTTPResponder
import Identity
import Playground
import TestSupport
import Tokenizer
import Validator
import Wire
import XCTest

/// The playground's JSON API over HTTP against in-process fake axons: a well-behaved one that
/// checks every FORWARD's signature (so answers prove the validator key signed them), a
/// misbehaving one (absurd shapes), a slow one, and a closed port.
final class PlaygroundAPITests: XCTestCase {
    private static let standard: NetworkStandardTokenizer? = try? Tokenizer.networkStandard(
        ranksPath: TestPaths.repositoryRoot.appendingPathComponent("Models/gpt2.tiktoken").path)
    private static let minerKey = try! Hotkey(seed: [UInt8](repeating: 7, count: 32))
    private static let validatorKey = try! Hotkey(seed: [UInt8](repeating: 9, count: 32))
    /// What the well-behaved fake generates: markup that must stay text.
    static let payload = "<script>alert(1)</script><img src=x onerror=\"x()\"> & done"
    static let phrases = [" Paris", " the", " a", " London", " Lyon", " not", " one", " in", " France", " known"]
    static let probabilities: [Float] = [0.5, 0.2, 0.1, 0.05, 0.04, 0.03, 0.02, 0.01, 0.005, 0.001]
    static let width = 4

    private func standard() throws -> NetworkStandardTokenizer {
        try XCTUnwrap(Self.standard, "Models/gpt2.tiktoken is missing: Models/fetch gpt2")
    }

    private func info(_ standard: NetworkStandardTokenizer) -> InfoResponse {
        var info = InfoResponse()
        info.hotkey = Self.minerKey.ss58
        info.model = "fake"; info.architecture = "none"
        info.vocabSize = 50257; info.hiddenSize = UInt32(Self.width); info.networkDim = UInt32(Self.width)
        info.maxBatch = 4; info.maxSeq = 512; info.maxBatchTokens = 2048
        info.networkTokenizer = NetworkStandardTokenizer.name
        info.networkTokenizerSHA256 = standard.ranksSHA256
        info.networkVocabSize = UInt32(standard.vocabSize)
        return info
    }

    /// The hidden state of `row` at `position` that the fake answers: distinct per position, so
    /// the playground's mean over a row's valid positions is what the cosine sees.
    static func hidden(row: Int, position: Int) -> [Float] {
        row == 0 ? [1, Float(position), 0, 2] : [Float(position % 2), 1, 3, 0]
    }

    /// Answers INFO, and FORWARDs whose signature verifies for the miner's hotkey.
    private func goodAxon(_ standard: NetworkStandardTokenizer, delay: Double = 0) throws -> MisbehavingAxon {
        let info = info(standard)
        let phraseIDs = Self.phrases.map { standard.tokenizer.encode($0, addSpecial: false, parseSpecial: false) }
        let generated = standard.tokenizer.encode(Self.payload, addSpecial: false, parseSpecial: false) + [NetworkStandardTokenizer.endOfText]
        return try MisbehavingAxon { request in
            guard request.method == .forward else { return Response(id: request.id, code: .success, info: info) }
            if delay > 0 { Thread.sleep(forTimeInterval: delay) }
            guard let auth = request.auth,
                  RequestSignature.verify(AuthFields(hotkey: auth.hotkey, nonce: auth.nonce, uuid: auth.uuid, signature: auth.signature),
                                          receiver: Self.minerKey.ss58, body: request.body),
                  auth.hotkey == Self.validatorKey.ss58 else {
                return Response(id: request.id, code: .unauthenticated, message: "bad signature")
            }
            guard let forward = try? ForwardRequest(serializedBytes: request.body), let synapse = forward.synapses.first,
                  forward.space == .network, let shape = forward.tokens?.shape, shape.count == 2 else {
                return Response(id: request.id, code: .invalidRequest, message: "not a network-space FORWARD")
            }
            let result: SynapseResult
            switch synapse.type {
            case .textCausalLMNext:
                let k = Int(synapse.topk)
                let widest = phraseIDs.map(\.count).max() ?? 1
                let padded = phraseIDs.prefix(k).flatMap { $0 + Array(repeating: -1, count: widest - $0.count) }
                result = SynapseResult(type: synapse.type, code: .success, tensors: [
                    Tensor(buffer: RawBytes.float32(Array(Self.probabilities.prefix(k))), shape: [1, Int64(k)], dtype: .float32),
                    Tensor(buffer: RawBytes.int32(padded), shape: [1, Int64(k), Int64(widest)], dtype: .int32),
                    Tensor(buffer: RawBytes.float32([0.044 / 50247]), shape: [1], dtype: .float32)])
            case .textSeq2Seq:
                result = SynapseResult(type: synapse.type, code: .success, tensors: [
                    Tensor(int32Rows: [generated]), Tensor(buffer: RawBytes.int32([Int32(generated.count)]), shape: [1], dtype: .int32)])
            default:
                let positions = Int(shape[1])
                var values: [Float] = []
                for row in 0..<Int(shape[0]) {
                    let valid = Int(forward.lengths[row])
                    for position in 0..<positions {
                        values += position >= positions - valid ? Self.hidden(row: row, position: position) : [Float](repeating: 0, count: Self.width)
                    }
                }
                result = SynapseResult(type: synapse.type, code: .success, tensors: [
                    Tensor(buffer: RawBytes.float32(values), shape: [shape[0], shape[1], Int64(Self.width)], dtype: .float32)])
            }
            return Response(id: request.id, code: .success, forward: ForwardResponse(results: [result]))
        }
    }

    /// Answers INFO honestly and every FORWARD with a billion-wide tensor of 12 bytes.
    private func absurdAxon(_ standard: NetworkStandardTokenizer) throws -> MisbehavingAxon {
        let info = info(standard)
        return try MisbehavingAxon { request in
            guard request.method == .forward, let forward = try? ForwardRequest(serializedBytes: request.body),
                  let type = forward.synapses.first?.type else { return Response(id: request.id, code: .success, info: info) }
            let absurd = Tensor(buffer: RawBytes.float32([1, 2, 3]), shape: [1, 1_000_000_000, 1 << 40], dtype: .float32)
            return Response(id: request.id, code: .success,
                            forward: ForwardResponse(results: [SynapseResult(type: type, code: .success, tensors: [absurd, absurd, absurd])]))
        }
    }

    private struct Playground {
        let server: PlaygroundServer
        let axons: [MisbehavingAxon]
        func stop() {
            server.stop()
            axons.forEach { $0.stop() }
        }
    }

    private func start(limits: PlaygroundLimits = PlaygroundLimits(), slow: Bool = false) throws -> Playground {
        let standard = try standard()
        let good = try goodAxon(standard, delay: slow ? 1.5 : 0)
        let absurd = try absurdAxon(standard)
        let closed = try loopbackListener()
        close(closed.fd)
        let miner = Self.minerKey.ss58
        let roster = MinerRoster(endpoints: [Endpoint(uid: 0, hotkey: miner, host: "127.0.0.1", port: good.port),
                                             Endpoint(uid: 1, hotkey: miner, host: "127.0.0.1", port: absurd.port),
                                             Endpoint(uid: 2, hotkey: miner, host: "127.0.0.1", port: closed.port)],
                                 metagraph: try Metagraph(netuid: 1, block: 1, neurons: [
                                     Neuron(uid: 0, hotkey: miner, stake: 1500, validatorPermit: false)]),
                                 weights: [0: 0.75], mixture: ("127.0.0.1", good.port))
        let queries = MinerQueries(roster: roster, hotkey: Self.validatorKey, standard: standard, limits: limits)
        let server = PlaygroundServer(api: PlaygroundAPI(queries: queries), host: "127.0.0.1", port: 0)
        try server.start()
        return Playground(server: server, axons: [good, absurd])
    }

    /// One HTTP exchange on a fresh connection: the status, the raw header and the body.
    private func exchange(_ port: Int, _ raw: [UInt8]) throws -> (status: Int, header: String, body: [UInt8]) {
        let fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
        defer { close(fd) }
        var address = sockaddr_in()
        address.sin_family = sa_family_t(AF_INET)
        address.sin_addr.s_addr = inet_addr("127.0.0.1")
        address.sin_port = UInt16(port).bigEndian
        let connected = withUnsafePointer(to: &address) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { connect(fd, $0, socklen_t(MemoryLayout<sockaddr_in>.size)) }
        }
        guard connected == 0 else { throw SocketFailure(call: "connect", code: errno) }
        var timeout = timeval(tv_sec: 30, tv_usec: 0)
        setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &timeout, socklen_t(MemoryLayout<timeval>.size))
        var sent = 0
        while sent < raw.count {
            let n = raw.withUnsafeBytes { send(fd, $0.baseAddress! + sent, raw.count - sent, Int32(MSG_NOSIGNAL)) }
            guard n > 0 else { throw SocketFailure(call: "send", code: errno) }
            sent += n
        }
        var received: [UInt8] = []
        var chunk = [UInt8](repeating: 0, count: 65536)
        while true {
            let n = chunk.withUnsafeMutableBytes { recv(fd, $0.baseAddress, $0.count, 0) }
            if n <= 0 { break }
            received += chunk[0..<n]
        }
        let text = String(decoding: received, as: UTF8.self)
        guard let split = received.firstRange(of: Array("\r\n\r\n".utf8)), text.hasPrefix("HTTP/1.1 "),
              let status = Int(text.dropFirst(9).prefix(3)) else { throw SocketFailure(call: "no HTTP answer: \(text.prefix(100))", code: 0) }
        return (status, String(decoding: received[..<split.lowerBound], as: UTF8.self), Array(received[split.upperBound...]))
    }

    private func post(_ port: Int, _ path: String, _ json: String, contentType: String = "application/json",
                      host: String = "127.0.0.1") throws -> (status: Int, header: String, body: [UInt8]) {
        try exchange(port, Array("POST \(path) HTTP/1.1\r\nHost: \(host)\r\nContent-Type: \(contentType)\r\nContent-Length: \(json.utf8.count)\r\n\r\n\(json)".utf8))
    }

    private func get(_ port: Int, _ path: String, host: String = "127.0.0.1") throws -> (status: Int, header: String, body: [UInt8]) {
        try exchange(port, Array("GET \(path) HTTP/1.1\r\nHost: \(host)\r\n\r\n".utf8))
    }

    private func object(_ body: [UInt8]) throws -> [String: Any] {
        try XCTUnwrap(JSONSerialization.jsonObject(with: Data(body)) as? [String: Any], String(decoding: body, as: UTF8.self))
    }

    func testThePageAndItsAssetsAreServedWithTheirTypes() throws {
        let playground = try start()
        defer { playground.stop() }
        let port = playground.server.port
        for (path, type, says) in [("/", "text/html", "<form id=\"ask\""), ("/app.js", "text/javascript", "textContent"),
                                   ("/style.css", "text/css", ".bar-row")] {
            let answer = try get(port, path)
            XCTAssertEqual(answer.status, 200, path)
            XCTAssertTrue(answer.header.contains("Content-Type: \(type)"), answer.header)
            XCTAssertTrue(String(decoding: answer.body, as: UTF8.self).contains(says), path)
        }
        // The script never hands miner data to innerHTML (or any other markup sink).
        for sink in ["innerHTML", "outerHTML", "insertAdjacentHTML", "document.write", "eval("] {
            XCTAssertFalse(PageAssets.script.contains(sink), sink)
        }
    }

    func testMinersAreListedWithWeightAndEachOnesINFOCode() throws {
        let playground = try start()
        defer { playground.stop() }
        let miners = try XCTUnwrap(object(get(playground.server.port, "/api/miners").body)["miners"] as? [[String: Any]])
        XCTAssertEqual(miners.map { $0["id"] as? String }, ["uid-0", "uid-1", "uid-2", "mixture"])
        XCTAssertEqual(miners.map { $0["code"] as? Int }, [1, 1, 4, 1])
        XCTAssertEqual(miners[0]["weight"] as? Double, 0.75)
        XCTAssertEqual(miners[0]["stake"] as? Double, 1500)
        XCTAssertNil(miners[1]["stake"], "UID 1 is not in the metagraph")
        XCTAssertEqual(miners[3]["hotkey"] as? String, Self.minerKey.ss58, "the mixture's hotkey comes from its INFO")
        XCTAssertTrue((miners[2]["message"] as? String ?? "").contains("unreachable"), "\(miners[2])")
    }

    func testNextPhrasesAreTheMinersOwnDecodedFromStandardIds() throws {
        let playground = try start()
        defer { playground.stop() }
        for miner in ["uid-0", "mixture"] {
            let answer = try object(post(playground.server.port, "/api/next", #"{"miner": "\#(miner)", "text": "The capital of France is"}"#).body)
            XCTAssertEqual(answer["code"] as? Int, 1, "\(answer)")
            let phrases = try XCTUnwrap(answer["phrases"] as? [[String: Any]])
            XCTAssertEqual(phrases.map { $0["text"] as? String }, Self.phrases)
            // Float32 values through JSON: the shortest text that reads back as the same Float.
            XCTAssertEqual(phrases.map { Float(($0["probability"] as? Double) ?? -1) }, Self.probabilities)
            XCTAssertNotNil(answer["latency_ms"] as? Double)
        }
    }

    func testAGeneratedScriptTagComesBackAsEscapedJSONText() throws {
        let playground = try start()
        defer { playground.stop() }
        let answer = try post(playground.server.port, "/api/generate",
                              #"{"miner": "uid-0", "text": "Once", "temperature": 0.7, "top_p": 0.9, "max_tokens": 64}"#)
        let body = String(decoding: answer.body, as: UTF8.self)
        XCTAssertFalse(body.contains("</script>"), "the closing tag must be escaped in JSON: \(body)")
        let json = try object(answer.body)
        XCTAssertEqual(json["code"] as? Int, 1, body)
        XCTAssertEqual(json["text"] as? String, Self.payload, "the eos is dropped, the text is the miner's exactly")
        XCTAssertTrue(answer.header.contains("application/json"), answer.header)
    }

    func testEmbeddingsAreTheCosineOfEachTextsMeanHiddenState() throws {
        let playground = try start()
        defer { playground.stop() }
        let standard = try standard()
        let (first, second) = ("one two three four five", "six")
        let answer = try object(post(playground.server.port, "/api/embed", #"{"miner": "uid-0", "text": "\#(first)", "text2": "\#(second)"}"#).body)
        XCTAssertEqual(answer["code"] as? Int, 1, "\(answer)")
        // The reference: the means over each row's valid (last) positions, in Double.
        let lengths = [first, second].map { standard.tokenizer.encode($0, addSpecial: false, parseSpecial: false).count }
        let positions = lengths.max()!
        let means = (0..<2).map { row -> [Double] in
            let valid = (positions - lengths[row])..<positions
            return (0..<Self.width).map { index in valid.reduce(0) { $0 + Double(Self.hidden(row: row, position: $1)[index]) } / Double(valid.count) }
        }
        let dot = zip(means[0], means[1]).reduce(0) { $0 + $1.0 * $1.1 }
        let expected = dot / (sqrt(means[0].reduce(0) { $0 + $1 * $1 }) * sqrt(means[1].reduce(0) { $0 + $1 * $1 }))
        // The same Double arithmetic on the same float32 values, summed in the same order.
        XCTAssertEqual(try XCTUnwrap(answer["cosine"] as? Double), expected, accuracy: 1e-12)
        XCTAssertEqual(answer["width"] as? Int, Self.width)
    }

    func testAbsurdShapesAndUnreachableMinersAreCodesWithMessagesAndThePlaygroundGoesOn() throws {
        let playground = try start()
        defer { playground.stop() }
        let port = playground.server.port
        for path in ["/api/next", "/api/generate", "/api/embed"] {
            let absurd = try object(post(port, path, #"{"miner": "uid-1", "text": "x", "text2": "y"}"#).body)
            XCTAssertEqual(absurd["code"] as? Int, Int(ReturnCode.invalidResponse.rawValue), "\(path): \(absurd)")
            XCTAssertTrue((absurd["message"] as? String ?? "").contains("malformed"), "\(path): \(absurd)")
            let closed = try object(post(port, path, #"{"miner": "uid-2", "text": "x", "text2": "y"}"#).body)
            XCTAssertEqual(closed["code"] as? Int, Int(ReturnCode.unavailable.rawValue), "\(path): \(closed)")
            XCTAssertFalse((closed["message"] as? String ?? "").isEmpty)
        }
        XCTAssertEqual(try object(post(port, "/api/next", #"{"miner": "uid-0", "text": "x"}"#).body)["code"] as? Int, 1)
    }

    func testInputMistakesAreRefusedWithTheirStatus() throws {
        var limits = PlaygroundLimits()
        limits.maxTextBytes = 100
        let playground = try start(limits: limits)
        defer { playground.stop() }
        let port = playground.server.port
        let long = String(repeating: "a", count: 101)
        let cases: [(name: String, answer: () throws -> (status: Int, header: String, body: [UInt8]), status: Int, says: String)] = [
            ("a text over the cap", { try self.post(port, "/api/next", #"{"miner": "uid-0", "text": "\#(long)"}"#) }, 400, "at most 100"),
            ("an empty text", { try self.post(port, "/api/next", #"{"miner": "uid-0", "text": ""}"#) }, 400, "empty"),
            ("an unknown miner", { try self.post(port, "/api/next", #"{"miner": "uid-9", "text": "x"}"#) }, 400, "no miner"),
            ("not JSON", { try self.post(port, "/api/next", "text=x") }, 400, "not valid JSON"),
            ("a form post", { try self.post(port, "/api/next", #"{"miner": "uid-0", "text": "x"}"#, contentType: "text/plain") }, 400,
             "application/json"),
            ("no second text", { try self.post(port, "/api/embed", #"{"miner": "uid-0", "text": "x"}"#) }, 400, "text2"),
            ("a zero temperature", { try self.post(port, "/api/generate", #"{"miner": "uid-0", "text": "x", "temperature": 0}"#) }, 400,
             "temperature"),
            ("too many tokens", { try self.post(port, "/api/generate", #"{"miner": "uid-0", "text": "x", "max_tokens": 100000}"#) }, 400,
             "max_tokens"),
            ("a GET of a question", { try self.get(port, "/api/next") }, 405, "use POST"),
            ("an unknown page", { try self.get(port, "/etc/passwd") }, 404, "no such page"),
            ("another site's Host", { try self.get(port, "/api/miners", host: "evil.example:8080") }, 403, "loopback"),
            ("a body over the cap", { try self.exchange(port, Array("POST /api/next HTTP/1.1\r\nContent-Length: 70000\r\n\r\n".utf8)) }, 413,
             "exceeds"),
        ]
        for test in cases {
            let answer = try test.answer()
            XCTAssertEqual(answer.status, test.status, "\(test.name): \(String(decoding: answer.body, as: UTF8.self))")
            XCTAssertTrue((try object(answer.body)["error"] as? String ?? "").contains(test.says),
                          "\(test.name): \(String(decoding: answer.body, as: UTF8.self))")
        }
    }

    func testQuestionsBeyondTheCapAreRefusedUntilOneIsAnswered() throws {
        var limits = PlaygroundLimits()
        limits.maxConcurrentQueries = 1
        let playground = try start(limits: limits, slow: true)
        defer { playground.stop() }
        let port = playground.server.port
        _ = try post(port, "/api/next", #"{"miner": "uid-1", "text": "x"}"#)   // INFO of the slow axon's peers is quick
        let first = DispatchSemaphore(value: 0)
        final class Code: @unchecked Sendable { var value: Int? }   // written before `first` signals, read after
        let firstCode = Code()
        DispatchQueue.global().async {
            firstCode.value = (try? self.object(self.post(port, "/api/next", #"{"miner": "uid-0", "text": "x"}"#).body))?["code"] as? Int
            first.signal()
        }
        let deadline = Date(timeIntervalSinceNow: 5)
        while playground.server.api.questionsInFlight == 0 && Date() < deadline { Thread.sleep(forTimeInterval: 0.01) }
        let refused = try post(port, "/api/next", #"{"miner": "uid-0", "text": "x"}"#)
        XCTAssertEqual(refused.status, 429, String(decoding: refused.body, as: UTF8.self))
        first.wait()
        XCTAssertEqual(firstCode.value, 1)
        XCTAssertEqual(try object(post(port, "/api/next", #"{"miner": "uid-0", "text": "x"}"#).body)["code"] as? Int, 1)
    }

    func testTheHostHeaderMayNameOnlyLoopback() {
        for host in ["127.0.0.1", "127.0.0.1:8080", "localhost:8080", "LOCALHOST", "[::1]:8080", "::1"] {
            XCTAssertTrue(PlaygroundAPI.isLoopbackHostHeader(host), host)
        }
        for host in ["evil.example", "127.0.0.1.evil.example:80", "[::2]:8080", "10.0.0.1", "localhost.evil:80"] {
            XCTAssertFalse(PlaygroundAPI.isLoopbackHostHeader(host), host)
        }
    }
}
