import HTTPResponder
import XCTest

/// The playground's HTTP/1.x parser: complete requests only, within its limits, and a typed error
/// with its status for every rule a request breaks.
final class HTTPParserTests: XCTestCase {
    private let parser = HTTPRequestParser(maxHeaderBytes: 1024, maxBodyBytes: 64)

    private func bytes(_ text: String) -> [UInt8] { Array(text.utf8) }

    func testAGetParsesWithItsPathHeadersAndNoQuery() throws {
        let request = try XCTUnwrap(parser.parse(bytes("GET /api/miners?x=1 HTTP/1.1\r\nHost: 127.0.0.1:8080\r\nX-Thing:  a b \r\n\r\n")))
        XCTAssertEqual(request.method, .get)
        XCTAssertEqual(request.path, "/api/miners")
        XCTAssertEqual(request.header("HOST"), "127.0.0.1:8080")
        XCTAssertEqual(request.header("x-thing"), "a b")
        XCTAssertEqual(request.body, [])
    }

    func testAPostFedOneByteAtATimeIsIncompleteUntilItsLastBodyByte() throws {
        let text = bytes("POST /api/next HTTP/1.1\r\nContent-Type: application/json\r\nContent-Length: 13\r\n\r\n{\"miner\":\"x\"}")
        for end in 0..<text.count {
            XCTAssertNil(try parser.parse(Array(text[..<end])), "complete after \(end) of \(text.count) bytes")
        }
        let request = try XCTUnwrap(parser.parse(text))
        XCTAssertEqual(request.method, .post)
        XCTAssertEqual(String(decoding: request.body, as: UTF8.self), "{\"miner\":\"x\"}")
    }

    func testBytesAfterTheBodyAreNotPartOfTheRequest() throws {
        let request = try XCTUnwrap(parser.parse(bytes("POST /a HTTP/1.0\nContent-Length: 2\n\nokGET /b HTTP/1.1\r\n\r\n")))
        XCTAssertEqual(request.body, bytes("ok"))
        XCTAssertEqual(request.path, "/a")
    }

    func testEachBrokenRuleIsItsOwnErrorAndStatus() {
        let cases: [(name: String, request: String, error: HTTPRequestError, status: HTTPStatus)] = [
            ("a PUT", "PUT / HTTP/1.1\r\n\r\n", .methodNotAllowed("PUT"), .methodNotAllowed),
            ("HTTP/2", "GET / HTTP/2.0\r\n\r\n", .unsupportedVersion("HTTP/2.0"), .versionNotSupported),
            ("no version", "GET /\r\n\r\n", .malformedRequestLine, .badRequest),
            ("a target without /", "GET index.html HTTP/1.1\r\n\r\n", .malformedRequestLine, .badRequest),
            ("a lowercase method", "get / HTTP/1.1\r\n\r\n", .malformedRequestLine, .badRequest),
            ("a header without a colon", "GET / HTTP/1.1\r\nHost\r\n\r\n", .malformedHeader("Host"), .badRequest),
            ("a header name with a space", "GET / HTTP/1.1\r\nBad Name: x\r\n\r\n", .malformedHeader("Bad Name: x"), .badRequest),
            ("a POST without a length", "POST /api/next HTTP/1.1\r\n\r\n", .lengthRequired, .lengthRequired),
            ("a negative length", "POST / HTTP/1.1\r\nContent-Length: -1\r\n\r\n", .badContentLength("-1"), .badRequest),
            ("a list of lengths", "POST / HTTP/1.1\r\nContent-Length: 1, 2\r\n\r\n", .badContentLength("1, 2"), .badRequest),
            ("two lengths that differ", "POST / HTTP/1.1\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\n",
             .badContentLength("1,2"), .badRequest),
            ("a length past Int", "POST / HTTP/1.1\r\nContent-Length: 99999999999999999999999\r\n\r\n",
             .badContentLength("99999999999999999999999"), .badRequest),
            ("a body over the limit", "POST / HTTP/1.1\r\nContent-Length: 65\r\n\r\n", .bodyTooLarge(length: 65, limit: 64), .payloadTooLarge),
            ("chunked", "POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n", .transferEncodingUnsupported("chunked"), .notImplemented),
        ]
        for test in cases {
            XCTAssertThrowsError(try parser.parse(bytes(test.request)), test.name) { error in
                XCTAssertEqual(error as? HTTPRequestError, test.error, test.name)
                XCTAssertEqual((error as? HTTPRequestError)?.status, test.status, test.name)
            }
        }
    }

    func testAHeaderThatNeverEndsIsRefusedOnceItPassesTheLimit() throws {
        // 19 bytes of request line and header name, then value bytes up to exactly the limit.
        let endless = bytes("GET / HTTP/1.1\r\nX: " + String(repeating: "a", count: 1024 - 19))
        XCTAssertEqual(endless.count, 1024)
        XCTAssertNil(try parser.parse(endless))
        XCTAssertThrowsError(try parser.parse(endless + bytes("a"))) {
            XCTAssertEqual($0 as? HTTPRequestError, .headerTooLarge(limit: 1024))
        }
        // A header that ends past the limit is refused too, even though it is complete.
        XCTAssertThrowsError(try parser.parse(endless + bytes("\r\n\r\n"))) {
            XCTAssertEqual($0 as? HTTPRequestError, .headerTooLarge(limit: 1024))
        }
    }

    func testAResponseCarriesItsLengthAndKeepsThePageToItsOwnScripts() {
        let response = HTTPResponse.error(.tooManyRequests, "busy \"now\"")
        let text = String(decoding: response.serialized(), as: UTF8.self)
        let parts = text.components(separatedBy: "\r\n\r\n")
        XCTAssertTrue(text.hasPrefix("HTTP/1.1 429 Too Many Requests\r\n"), text)
        XCTAssertTrue(text.contains("\r\nContent-Length: \(response.body.count)\r\n"), text)
        XCTAssertTrue(text.contains("script-src 'self'") && text.contains("X-Content-Type-Options: nosniff"), text)
        XCTAssertEqual(try JSONSerialization.jsonObject(with: Data(parts[1].utf8)) as? [String: String], ["error": "busy \"now\""])
    }
}
