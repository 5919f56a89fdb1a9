import Foundation
import TestSupport
import Wire
import XCTest

/// Frames written by Python `protobuf` (scripts/reference/wire_fixtures.py), an encoder
/// independent of protobuf-c, decoded here; and Swift encodings compared with Python's bytes.
final class PythonFixtureTests: XCTestCase {
    private var fixtures: [String: Any] = [:]
    private let decoder = FrameDecoder(maxFrameSize: 16 * 1024 * 1024)

    override func setUpWithError() throws {
        let url = TestPaths.repositoryRoot.appendingPathComponent("Tests/WireTests/Fixtures/wire_fixtures.json")
        fixtures = try XCTUnwrap(JSONSerialization.jsonObject(with: Data(contentsOf: url)) as? [String: Any])
    }

    private func cases(_ key: String) throws -> [[String: Any]] {
        try XCTUnwrap(fixtures[key] as? [[String: Any]])
    }

    private func singleFrame(_ hex: Any?) throws -> [UInt8] {
        var buffer = ByteBuffer(try bytes(hex: hex))
        let frame = try XCTUnwrap(try decoder.decode(&buffer))
        XCTAssertEqual(buffer.readableBytes, 0, "one frame expected")
        return frame
    }

    func testPythonRequestFramesDecodeToWhatPythonEncoded() throws {
        for item in try cases("requests") {
            let name = item["name"] as? String ?? "?"
            let request = try Request(serializedBytes: try singleFrame(item["frame"]))
            XCTAssertEqual(request, try makeRequest(item["request"]), name)
            if let forward = item["forward"] {
                XCTAssertEqual(try ForwardRequest(serializedBytes: request.body), try makeForwardRequest(forward), name)
            }
        }
    }

    func testSwiftEncodesRequestsToTheSameBytesAsPython() throws {
        for item in try cases("requests") where (item["name"] as? String) != "unknown field is skipped" {
            let expected = try makeRequest(item["request"])
            XCTAssertEqual(FrameEncoder.frame(expected.serializedBytes()), try bytes(hex: item["frame"]),
                           item["name"] as? String ?? "?")
        }
    }

    func testManyPythonFramesInOneReadDecodeInOrder() throws {
        var buffer = ByteBuffer(try bytes(hex: fixtures["stream"]))
        var ids: [UInt64] = []
        while let frame = try decoder.decode(&buffer) { ids.append(try Request(serializedBytes: frame).id) }
        XCTAssertEqual(ids, try cases("requests").map { try makeRequest($0["request"]).id })
    }

    func testMalformedRequestsAreRejectedWithATypedError() throws {
        for item in try cases("malformed_requests") {
            let frame = try singleFrame(item["frame"])
            XCTAssertThrowsError(try Request(serializedBytes: frame), item["name"] as? String ?? "?") { error in
                guard case .malformed(let message, let count, _)? = error as? MessageError else {
                    return XCTFail("expected MessageError.malformed, got \(error)")
                }
                XCTAssertEqual(message, "Request")
                XCTAssertEqual(count, frame.count)
            }
        }
    }

    func testMalformedForwardBodyInsideAValidRequestIsRejected() throws {
        let item = try XCTUnwrap(fixtures["malformed_forward_body"] as? [String: Any])
        let request = try Request(serializedBytes: try singleFrame(item["frame"]))
        XCTAssertEqual(request, try makeRequest(item["request"]))
        XCTAssertThrowsError(try ForwardRequest(serializedBytes: request.body)) { error in
            XCTAssertTrue(String(describing: error).contains("ForwardRequest"), "\(error)")
        }
    }

    func testBadFramesAreRejectedBeforeTheirPayload() throws {
        let frames = try XCTUnwrap(fixtures["bad_frames"] as? [String: String])
        var tooLong = ByteBuffer(try bytes(hex: frames["varint longer than 5 bytes"]))
        XCTAssertThrowsError(try decoder.decode(&tooLong)) { XCTAssertEqual($0 as? FrameError, .varintTooLong) }
        var oversize = ByteBuffer(try bytes(hex: frames["frame of 16 MiB plus one byte"]))
        XCTAssertThrowsError(try decoder.decode(&oversize)) {
            XCTAssertEqual($0 as? FrameError, .frameTooLarge(length: 16 * 1024 * 1024 + 1, limit: 16 * 1024 * 1024))
        }
    }

    func testPythonResponsesDecodeToWhatPythonEncoded() throws {
        for item in try cases("responses") {
            let response = try Response(serializedBytes: try singleFrame(item["frame"]))
            XCTAssertEqual(response, try makeResponse(item["response"]), item["name"] as? String ?? "?")
        }
    }

    func testSwiftEncodesResponsesToTheSameBytesAsPython() throws {
        for item in try cases("responses") {
            let response = try makeResponse(item["response"])
            XCTAssertEqual(FrameEncoder.frame(response.serializedBytes()), try bytes(hex: item["frame"]),
                           item["name"] as? String ?? "?")
            XCTAssertEqual(response.serializedFrame(), try bytes(hex: item["frame"]), item["name"] as? String ?? "?")
        }
    }

    func testRequestThatWouldExpandBeyondTheAllocationBudgetIsRejected() throws {
        // 100,000 empty synapses: 2 wire bytes each, but dozens of bytes each as protobuf-c structs.
        var body: [UInt8] = []
        for _ in 0..<100_000 { body += [0x1A, 0x00] }
        XCTAssertThrowsError(try ForwardRequest(serializedBytes: body)) { error in
            XCTAssertNotNil(error as? MessageError)
        }
    }
}

// MARK: - The fixtures' JSON (protobuf's JSON mapping: 64-bit integers as strings, bytes as base64)

private struct FixtureError: Error, CustomStringConvertible {
    let description: String
}

private func bytes(hex: Any?) throws -> [UInt8] {
    guard let text = hex as? String, text.count % 2 == 0 else { throw FixtureError(description: "bad hex \(String(describing: hex))") }
    var result: [UInt8] = []
    var index = text.startIndex
    while index < text.endIndex {
        let next = text.index(index, offsetBy: 2)
        guard let byte = UInt8(text[index..<next], radix: 16) else { throw FixtureError(description: "bad hex \(text)") }
        result.append(byte)
        index = next
    }
    return result
}

private func base64(_ value: Any?) throws -> [UInt8] {
    guard let text = value as? String else { return [] }
    guard let data = Data(base64Encoded: text) else { throw FixtureError(description: "bad base64 \(text)") }
    return [UInt8](data)
}

private func integer<T: FixedWidthInteger>(_ value: Any?, _ type: T.Type = T.self) -> T {
    if let text = value as? String { return T(text) ?? 0 }
    if let number = value as? NSNumber { return T(truncatingIfNeeded: number.int64Value) }
    return 0
}

private func dict(_ value: Any?) -> [String: Any] { value as? [String: Any] ?? [:] }

private func makeRequest(_ value: Any?) throws -> Request {
    let d = dict(value)
    let auth = try (d["auth"] as? [String: Any]).map { a in
        Auth(hotkey: a["hotkey"] as? String ?? "", nonce: integer(a["nonce"]), uuid: a["uuid"] as? String ?? "",
             signature: try base64(a["signature"]))
    }
    return Request(id: integer(d["id"]), method: Method(rawValue: integer(d["method"])),
                   timeoutMs: integer(d["timeout_ms"]), body: try base64(d["body"]), auth: auth)
}

private func makeTensor(_ value: Any?) throws -> Tensor {
    let d = dict(value)
    return Tensor(buffer: try base64(d["buffer"]), shape: (d["shape"] as? [Any] ?? []).map { integer($0) },
                  dtype: DataType(rawValue: integer(d["dtype"])))
}

private func makeForwardRequest(_ value: Any?) throws -> ForwardRequest {
    let d = dict(value)
    return ForwardRequest(
        tokens: try d["tokens"].map(makeTensor),
        lengths: (d["lengths"] as? [Any] ?? []).map { integer($0) },
        synapses: (d["synapses"] as? [Any] ?? []).map { s in
            let s = dict(s)
            return Synapse(type: SynapseType(rawValue: integer(s["type"])), topk: integer(s["topk"]),
                           dtype: DataType(rawValue: integer(s["dtype"])),
                           generation: (s["generation"] as? [String: Any]).map(makeGeneration))
        },
        space: TokenSpace(rawValue: integer(d["space"])))
}

/// Absent keys stay nil: protobuf's JSON mapping lists a proto3 `optional` field exactly when it is present.
private func makeGeneration(_ g: [String: Any]) -> Generation {
    func count(_ key: String) -> UInt32? { g[key].map { integer($0) } }
    func real(_ key: String) -> Float? { (g[key] as? NSNumber).map { $0.floatValue } }
    func flag(_ key: String) -> Bool? { g[key] as? Bool }
    return Generation(numToGenerate: count("num_to_generate"), topk: count("topk"), doSample: flag("do_sample"),
                      topP: real("top_p"), temperature: real("temperature"),
                      repetitionPenalty: real("repetition_penalty"), noRepeatNgramSize: count("no_repeat_ngram_size"),
                      numBeams: count("num_beams"), lengthPenalty: real("length_penalty"),
                      earlyStopping: flag("early_stopping"), seed: g["seed"].map { integer($0) },
                      stopTokens: (g["stop_tokens"] as? [Any] ?? []).map { integer($0) })
}

private func makeResponse(_ value: Any?) throws -> Response {
    let d = dict(value)
    var response = Response(id: integer(d["id"]), code: ReturnCode(rawValue: integer(d["code"])),
                            message: d["message"] as? String ?? "")
    if let t = d["timing"] as? [String: Any] {
        response.timing = Timing(queueUs: integer(t["queue_us"]), computeUs: integer(t["compute_us"]),
                                 batchRows: integer(t["batch_rows"]))
    }
    if let f = d["forward"] as? [String: Any] {
        response.forward = ForwardResponse(results: try (f["results"] as? [Any] ?? []).map { r in
            let r = dict(r)
            return SynapseResult(type: SynapseType(rawValue: integer(r["type"])),
                                 code: ReturnCode(rawValue: integer(r["code"])),
                                 message: r["message"] as? String ?? "",
                                 tensors: try (r["tensors"] as? [Any] ?? []).map(makeTensor))
        })
    }
    if let i = d["info"] as? [String: Any] {
        var info = InfoResponse()
        info.hotkey = i["hotkey"] as? String ?? ""
        info.uid = integer(i["uid"])
        info.netuid = integer(i["netuid"])
        info.model = i["model"] as? String ?? ""
        info.architecture = i["architecture"] as? String ?? ""
        info.vocabSize = integer(i["vocab_size"])
        info.hiddenSize = integer(i["hidden_size"])
        info.networkDim = integer(i["network_dim"])
        info.maxBatch = integer(i["max_batch"])
        info.maxSeq = integer(i["max_seq"])
        info.maxBatchTokens = integer(i["max_batch_tokens"])
        info.tokenizerSHA256 = i["tokenizer_sha256"] as? String ?? ""
        info.version = i["version"] as? String ?? ""
        info.bosID = integer(i["bos_id"])
        info.eosID = integer(i["eos_id"])
        info.padID = integer(i["pad_id"])
        info.networkTokenizer = i["network_tokenizer"] as? String ?? ""
        info.networkTokenizerSHA256 = i["network_tokenizer_sha256"] as? String ?? ""
        info.networkVocabSize = integer(i["network_vocab_size"])
        response.info = info
    }
    return response
}

/// String fields are read exactly or refused: protobuf-c hands strings over NUL-terminated, and
/// reading them with `String(cString:)` cut `ss58\0junk` to `ss58` and made uuids `abc\0X` and
/// `abc\0Y` one session. Frames from Python protobuf (scripts/reference/wire_fixtures.py).
final class StringFieldTests: XCTestCase {
    private func fixtures() throws -> [String: Any] {
        let url = TestPaths.repositoryRoot.appendingPathComponent("Tests/WireTests/Fixtures/wire_fixtures.json")
        return try XCTUnwrap(JSONSerialization.jsonObject(with: Data(contentsOf: url)) as? [String: Any])
    }

    private func payload(_ hex: Any?) throws -> [UInt8] {
        var buffer = ByteBuffer(try bytes(hex: hex))
        return try XCTUnwrap(try FrameDecoder(maxFrameSize: 1 << 20).decode(&buffer))
    }

    private func assertInvalidString<T>(_ item: [String: Any], message: String, _ decode: ([UInt8]) throws -> T) throws {
        let name = item["name"] as? String ?? "?"
        let field = try XCTUnwrap(item["field"] as? String)
        XCTAssertThrowsError(try decode(try payload(item["frame"])), name) { error in
            guard case let .invalidString(decoded, decodedField, _)? = error as? MessageError else {
                return XCTFail("\(name): expected MessageError.invalidString, got \(error)")
            }
            XCTAssertEqual(decoded, message, name)
            XCTAssertEqual(decodedField, field, name)
            XCTAssertTrue("\(error)".contains(field), "\(error)")
        }
    }

    func testRequestStringsHoldingNULOrNonUTF8AreRefusedNamingTheField() throws {
        let cases = try XCTUnwrap(try fixtures()["invalid_string_requests"] as? [[String: Any]])
        XCTAssertEqual(cases.count, 5)
        for item in cases { try assertInvalidString(item, message: "Request") { try Request(serializedBytes: $0) } }
    }

    func testResponseStringsHoldingNULAreRefused() throws {
        let cases = try XCTUnwrap(try fixtures()["invalid_string_responses"] as? [[String: Any]])
        XCTAssertFalse(cases.isEmpty)
        for item in cases { try assertInvalidString(item, message: "Response") { try Response(serializedBytes: $0) } }
    }

    func testStringsWithoutNULStillDecodeExactly() throws {
        let request = Request(id: 3, method: .forward, auth: Auth(hotkey: "5F3sa2", nonce: 1, uuid: "abc-ü", signature: [1]))
        XCTAssertEqual(try Request(serializedBytes: request.serializedBytes()), request)
        XCTAssertEqual(try Request(serializedBytes: Request(id: 4, method: .ping).serializedBytes()).auth, nil)
    }
}
