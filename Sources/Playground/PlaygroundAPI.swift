// The routes: the page (GET /, /app.js, /style.css) and a small JSON API. A question names one
// miner; the page asks each picked miner separately, so each answer shows as it arrives.
//   GET  /api/miners    {"miners": [{id, label, uid, hotkey, address, stake, weight, model, code, code_name, message}], "limits": {…}}
//   POST /api/next      {"miner", "text"}                                     → MinerAnswer with phrases, floor
//   POST /api/generate  {"miner", "text", "temperature", "top_p", "max_tokens"} → MinerAnswer with text, tokens
//   POST /api/embed     {"miner", "text", "text2"}                            → MinerAnswer with cosine, width
// Input mistakes are 400 {"error": …}; more questions in flight than the cap are 429. Bound to
// loopback, a request naming another Host is 403: a page elsewhere cannot reach the playground by
// pointing its own name at 127.0.0.1 (DNS rebinding) and ask with the validator key. A question
// must be application/json, which a page elsewhere cannot send without the browser asking first.
import Foundation
import HTTPResponder
import Wire

public final class PlaygroundAPI: @unchecked Sendable {
    public let queries: MinerQueries
    private let work = DispatchQueue(label: "axon-playground-queries", attributes: .concurrent)
    private let lock = NSLock()
    private var inFlight = 0

    /// Only requests whose Host header is loopback (or absent) are served.
    public let loopbackOnly: Bool

    public init(queries: MinerQueries, loopbackOnly: Bool = true) {
        self.queries = queries
        self.loopbackOnly = loopbackOnly
    }

    /// Whether a Host header ("name", "name:port", "[v6]:port") names this machine's loopback.
    public static func isLoopbackHostHeader(_ value: String) -> Bool {
        var name = Substring(value)
        if name.hasPrefix("["), let close = name.firstIndex(of: "]") {
            name = name[name.index(after: name.startIndex)..<close]
        } else if let colon = name.lastIndex(of: ":"), name.firstIndex(of: ":") == colon {
            name = name[..<colon]
        }
        return PlaygroundServer.isLoopback(name.lowercased())
    }

    private var limits: PlaygroundLimits { queries.limits }

    /// Answers `request` through `reply`, now (the page, input errors) or from a worker thread (questions).
    public func handle(_ request: HTTPRequest, reply: HTTPReply) {
        if loopbackOnly, let host = request.header("host"), !Self.isLoopbackHostHeader(host) {
            return reply.send(.error(.forbidden, "Host '\(host.prefix(80))' is not this machine's loopback: open the page at the address the playground printed"))
        }
        switch (request.method, request.path) {
        case (.get, "/"), (.get, "/index.html"):
            reply.send(HTTPResponse(status: .ok, contentType: "text/html; charset=utf-8", body: Array(PageAssets.html.utf8)))
        case (.get, "/app.js"):
            reply.send(HTTPResponse(status: .ok, contentType: "text/javascript; charset=utf-8", body: Array(PageAssets.script.utf8)))
        case (.get, "/style.css"):
            reply.send(HTTPResponse(status: .ok, contentType: "text/css; charset=utf-8", body: Array(PageAssets.style.utf8)))
        case (.get, "/api/miners"):
            submit(reply) { [self] in .json(minersJSON()) }
        case (.post, "/api/next"), (.post, "/api/generate"), (.post, "/api/embed"):
            do {
                let (question, miner) = try parseQuestion(path: request.path, request: request)
                submit(reply) { [self] in .json(Self.encode(queries.ask(question, miner: miner))) }
            } catch let error as APIError {
                reply.send(.error(error.status, error.description))
            } catch {
                reply.send(.error(.badRequest, "\(error)"))
            }
        case (_, "/"), (_, "/index.html"), (_, "/app.js"), (_, "/style.css"), (_, "/api/miners"):
            reply.send(.error(.methodNotAllowed, "\(request.method.rawValue) \(request.path): use GET"))
        case (_, "/api/next"), (_, "/api/generate"), (_, "/api/embed"):
            reply.send(.error(.methodNotAllowed, "\(request.method.rawValue) \(request.path): use POST"))
        default:
            reply.send(.error(.notFound, "no such page: \(request.path.prefix(100))"))
        }
    }

    /// Runs `job` on a worker thread within the cap on questions in flight, else answers 429.
    private func submit(_ reply: HTTPReply, _ job: @escaping @Sendable () -> HTTPResponse) {
        let admitted = lock.withLock { () -> Bool in
            guard inFlight < limits.maxConcurrentQueries else { return false }
            inFlight += 1
            return true
        }
        guard admitted else {
            return reply.send(.error(.tooManyRequests, "\(limits.maxConcurrentQueries) questions are already in flight; wait for an answer and ask again"))
        }
        work.async { [self] in
            let response = job()
            lock.withLock { inFlight -= 1 }
            reply.send(response)
        }
    }

    /// Questions in flight now.
    public var questionsInFlight: Int { lock.withLock { inFlight } }

    enum APIError: Error, CustomStringConvertible {
        case notJSON(String)
        case unknownMiner(String)
        case invalid(String)

        var status: HTTPStatus {
            switch self {
            case .notJSON, .unknownMiner, .invalid: return .badRequest
            }
        }

        var description: String {
            switch self {
            case .notJSON(let reason): return "the body is not the JSON object this route takes: \(reason)"
            case .unknownMiner(let id): return "no miner '\(id.prefix(40))': pick one of GET /api/miners"
            case .invalid(let reason): return reason
            }
        }
    }

    private struct QuestionBody: Decodable {
        let miner: String
        let text: String
        let text2: String?
        let temperature: Float?
        let top_p: Float?
        let max_tokens: Int?
    }

    func parseQuestion(path: String, request: HTTPRequest) throws -> (Question, Miner) {
        if let type = request.header("content-type"), !type.lowercased().hasPrefix("application/json") {
            throw APIError.notJSON("Content-Type is \(type.prefix(40)), expected application/json")
        }
        let body: QuestionBody
        do { body = try JSONDecoder().decode(QuestionBody.self, from: Data(request.body)) } catch {
            throw APIError.notJSON(Self.decodingReason(error))
        }
        guard let miner = queries.roster.miner(id: body.miner) else { throw APIError.unknownMiner(body.miner) }
        try checkText(body.text, name: "text")
        switch path {
        case "/api/next":
            return (.next(text: body.text), miner)
        case "/api/generate":
            let temperature = body.temperature ?? Generation.Defaults.temperature
            let topP = body.top_p ?? Generation.Defaults.topP
            let maxTokens = body.max_tokens ?? 32
            guard temperature.isFinite, temperature > 0, temperature <= 10 else {
                throw APIError.invalid("temperature must be in (0, 10], got \(temperature)")
            }
            guard topP.isFinite, topP > 0, topP <= 1 else { throw APIError.invalid("top_p must be in (0, 1], got \(topP)") }
            guard (1...limits.maxNewTokens).contains(maxTokens) else {
                throw APIError.invalid("max_tokens must be in 1...\(limits.maxNewTokens), got \(maxTokens)")
            }
            return (.generate(text: body.text, temperature: temperature, topP: topP, maxTokens: maxTokens), miner)
        default:
            guard let other = body.text2 else { throw APIError.invalid("embeddings compare two texts: give text2 too") }
            try checkText(other, name: "text2")
            return (.embed(text: body.text, other: other), miner)
        }
    }

    private func checkText(_ text: String, name: String) throws {
        guard text.utf8.count <= limits.maxTextBytes else {
            throw APIError.invalid("\(name) is \(text.utf8.count) bytes; the playground takes at most \(limits.maxTextBytes)")
        }
        guard !queries.ids(text).isEmpty else { throw APIError.invalid("\(name) is empty: type a text") }
    }

    private static func decodingReason(_ error: Error) -> String {
        switch error {
        case DecodingError.keyNotFound(let key, _): return "\"\(key.stringValue)\" is missing"
        case DecodingError.typeMismatch(_, let context), DecodingError.valueNotFound(_, let context):
            return "\"\(context.codingPath.map(\.stringValue).joined(separator: "."))\" has the wrong type"
        case DecodingError.dataCorrupted: return "it is not valid JSON"
        default: return "\(error)"
        }
    }

    private struct MinerRow: Encodable {
        let id: String, label: String
        let uid: Int?
        let hotkey: String?
        let address: String
        let stake: Double?, weight: Double?
        let model: String?
        let code: Int32, codeName: String, message: String
    }

    private struct MinersPage: Encodable {
        struct Limits: Encodable { let maxTextBytes: Int, maxNewTokens: Int, maxConcurrentQueries: Int, topk: Int }
        let miners: [MinerRow]
        let limits: Limits
    }

    private func minersJSON() -> [UInt8] {
        let miners = queries.roster.miners
        let outcomes = queries.refreshInfo(miners)
        let rows = miners.map { miner -> MinerRow in
            let outcome = outcomes[miner.id]
            let code = outcome?.code ?? .unavailable
            return MinerRow(id: miner.id, label: miner.label, uid: miner.uid, hotkey: miner.hotkey ?? outcome?.info?.hotkey,
                            address: "\(miner.host):\(miner.port)", stake: miner.stake, weight: miner.weight,
                            model: outcome?.info.map(\.model), code: code.rawValue, codeName: code.description,
                            message: outcome?.message ?? "")
        }
        return Self.encode(MinersPage(miners: rows, limits: .init(maxTextBytes: limits.maxTextBytes, maxNewTokens: limits.maxNewTokens,
                                                                  maxConcurrentQueries: limits.maxConcurrentQueries, topk: limits.topk)))
    }

    /// JSON with snake_case keys; every string escaped by JSONEncoder (quotes, controls, "/" too).
    static func encode<T: Encodable>(_ value: T) -> [UInt8] {
        let encoder = JSONEncoder()
        encoder.keyEncodingStrategy = .convertToSnakeCase
        // Non-finite numbers cannot be JSON; the checks above keep them out, this keeps a slip from throwing.
        encoder.nonConformingFloatEncodingStrategy = .convertToString(positiveInfinity: "Infinity", negativeInfinity: "-Infinity", nan: "NaN")
        return (try? encoder.encode(value)).map(Array.init) ?? Array(#"{"error": "the answer could not be encoded"}"#.utf8)
    }
}
