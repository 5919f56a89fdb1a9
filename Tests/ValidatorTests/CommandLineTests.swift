import Foundation
import TestSupport
import Wire
import XCTest

/// What `axon` prints and returns when things go wrong at run time: the message alone and exit 1
/// (usage mistakes keep ArgumentParser's usage text and 64), with the way out in the message.
final class CommandLineTests: XCTestCase {
    /// An axon refusing every FORWARD with `code` and `message`, and answering INFO with `info`.
    private static func refusing(info: InfoResponse, code: ReturnCode, message: @escaping @Sendable (ForwardRequest) -> String) throws -> MisbehavingAxon {
        try MisbehavingAxon { request in
            switch request.method {
            case .info: return Response(id: request.id, code: .success, info: info)
            case .forward:
                let body = (try? ForwardRequest(serializedBytes: request.body)).map(message) ?? "unreadable body"
                return Response(id: request.id, code: code, message: body)
            default: return Response(id: request.id, code: .success)
            }
        }
    }

    func testAnErrorTheServerReturnsIsPrintedAloneWithExitCode1() throws {
        try AxonCommand.requireBuilt()
        let axon = try Self.refusing(info: try UntrustedAnswerTests.info(), code: .requestShapeException) { _ in "seq 5307 exceeds --max-seq 2048" }
        let run = try AxonCommand.run(["query", "--endpoint", axon.endpoint, "--unsigned", UntrustedAnswerTests.text])
        axon.stop()
        XCTAssertEqual(run.status, 1, run.stderr)
        XCTAssertEqual(run.stderr, "Error: the axon answered FORWARD with RequestShapeException: seq 5307 exceeds --max-seq 2048\n")
        let usage = try AxonCommand.run(["query", "--topk", "0", "x"])
        XCTAssertEqual(usage.status, 64, "a usage mistake keeps exit code 64")
        XCTAssertTrue(usage.stderr.contains("Usage: axon query"), usage.stderr)
    }

    func testATextLongerThanTheAxonTakesSaysHowToFitAndMaxTokensSendsTheLastTokens() throws {
        try AxonCommand.requireBuilt()
        var info = try UntrustedAnswerTests.info()
        info.maxSeq = 3
        // The axon reports the ids it got, so the test sees what --max-tokens sent.
        let axon = try Self.refusing(info: info, code: .unavailable) { body in
            "got \(body.tokens?.shape ?? []) \(body.tokens?.int32Values() ?? [])"
        }
        let tooLong = try AxonCommand.run(["query", "--endpoint", axon.endpoint, "--unsigned", UntrustedAnswerTests.text])
        XCTAssertEqual(tooLong.status, 1, tooLong.stderr)
        XCTAssertTrue(tooLong.stderr.contains("the text is 5 tokens") && tooLong.stderr.contains("--max-tokens 3")
                      && tooLong.stderr.contains("larger --max-seq"), tooLong.stderr)
        let fitted = try AxonCommand.run(["query", "--endpoint", axon.endpoint, "--unsigned", "--max-tokens", "3", UntrustedAnswerTests.text])
        axon.stop()
        // "The capital of France is" is 504 3575 282 4649 314 (`axon tokenize`): the last three.
        XCTAssertTrue(fitted.stderr.contains("got [1, 3] [282, 4649, 314]"), fitted.stderr)
    }

    func testTokenizeTakesTheTextAsAnArgumentAndStripNewlineDropsEchosNewline() throws {
        try AxonCommand.requireBuilt()
        let argument = try AxonCommand.run(["tokenize", UntrustedAnswerTests.text])
        XCTAssertEqual(argument.status, 0, argument.stderr)
        XCTAssertEqual(argument.stdout, "504 3575 282 4649 314\n")
        // What `echo "The capital of France is" | axon tokenize` reads: the newline is token 198 ("Ċ").
        let echoed = try AxonCommand.run(["tokenize"], input: UntrustedAnswerTests.text + "\n")
        XCTAssertEqual(echoed.stdout, "504 3575 282 4649 314 198\n")
        let stripped = try AxonCommand.run(["tokenize", "--strip-newline"], input: UntrustedAnswerTests.text + "\n")
        XCTAssertEqual(stripped.stdout, "504 3575 282 4649 314\n")
    }

    func testKeygenWritesUnderHomeDotAxonAndNeverOverwrites() throws {
        try AxonCommand.requireBuilt()
        let home = FileManager.default.temporaryDirectory.appendingPathComponent("axon-keygen-\(UUID().uuidString)").path
        try FileManager.default.createDirectory(atPath: home, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(atPath: home) }
        let first = try AxonCommand.run(["keygen", "--name", "validator"], home: home, withModel: false)
        XCTAssertEqual(first.status, 0, first.stderr)
        let path = home + "/.axon/validator.json"
        XCTAssertTrue(first.stdout.hasPrefix("wrote \(path) (mode 0600)"), first.stdout)
        let mode = try FileManager.default.attributesOfItem(atPath: path)[.posixPermissions] as? Int
        XCTAssertEqual(mode, 0o600)
        let again = try AxonCommand.run(["keygen", "--name", "validator"], home: home, withModel: false)
        XCTAssertEqual(again.status, 1, "refuses to overwrite: \(again.stderr)")
    }

    func testServeOnATakenPortNamesTheAddressAndSuggestsPort() throws {
        try AxonCommand.requireBuilt()
        let (fd, port) = try loopbackListener()
        defer { close(fd) }
        let run = try AxonCommand.run(["serve", "--fake", "--no-auth", "--port", "\(port)"])
        XCTAssertEqual(run.reason, .exit)
        XCTAssertEqual(run.status, 1, run.stderr)
        XCTAssertTrue(run.stderr.contains("cannot listen on 127.0.0.1:\(port): the address is already in use") && run.stderr.contains("--port"),
                      run.stderr)
        XCTAssertFalse(run.stderr.contains("Usage:"), run.stderr)
    }
}
