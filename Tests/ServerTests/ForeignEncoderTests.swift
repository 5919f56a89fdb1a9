import AxonClient
import Foundation
import Server
import TestSupport
import Wire
import XCTest

/// Frames written by Python `protobuf` (Tests/WireTests/Fixtures, scripts/reference/wire_fixtures.py)
/// sent to the server over TCP: an encoder independent of protobuf-c drives the whole path.
final class ForeignEncoderTests: XCTestCase {
    func testPythonEncodedFramesAreServed() throws {
        let url = TestPaths.repositoryRoot.appendingPathComponent("Tests/WireTests/Fixtures/wire_fixtures.json")
        let fixtures = try XCTUnwrap(JSONSerialization.jsonObject(with: Data(contentsOf: url)) as? [String: Any])
        let requests = try XCTUnwrap(fixtures["requests"] as? [[String: Any]])
        func frame(_ name: String) throws -> [UInt8] {
            let hex = try XCTUnwrap(requests.first { $0["name"] as? String == name }?["frame"] as? String)
            return stride(from: 0, to: hex.count, by: 2).compactMap {
                let start = hex.index(hex.startIndex, offsetBy: $0)
                return UInt8(hex[start..<hex.index(start, offsetBy: 2)], radix: 16)
            }
        }
        let harness = try startServer(backend: FakeBackend(vocabSize: 50_000, hiddenSize: 16))
        let client = try harness.client()

        try client.sendRaw(try frame("ping"))
        XCTAssertEqual(try client.response(id: 1, timeout: 5).code, .success)

        try client.sendRaw(try frame("unknown method"))
        XCTAssertEqual(try client.response(id: 9, timeout: 5).code, .notImplemented)

        // Two rows, left-padded (lengths 3 and 2), hidden FLOAT16, causal top-5, next top-4096.
        try client.sendRaw(try frame("forward int32 left-padded with three synapses"))
        let forward = try client.response(id: 300, timeout: 10)
        XCTAssertEqual(forward.code, .success, forward.message)
        let results = try XCTUnwrap(forward.forward?.results)
        XCTAssertEqual(results.map(\.code), [.success, .success, .success])
        XCTAssertEqual(results[0].tensors.map(\.shape), [[2, 3, 16]])
        XCTAssertEqual(results[0].tensors.map(\.dtype), [.float16])
        XCTAssertEqual(results[1].tensors.map(\.shape), [[2, 3, 5], [2, 3, 5], [2, 3]])
        XCTAssertEqual(results[2].tensors.map(\.shape), [[2, 4096], [2, 4096], [2]])
        // Row 1's first position is padding: zeros.
        XCTAssertEqual(Array(floats(results[0].tensors[0])[48..<64]), Array(repeating: 0, count: 16))

        try client.sendRaw(try frame("forward int64"))
        XCTAssertEqual(try client.response(id: 1 << 40, timeout: 10).code, .success)
    }
}
