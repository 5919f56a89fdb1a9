import Foundation
import Identity
import XCTest

/// A valid address for neuron `i` (any 32 bytes make an SS58 address; no keypair needed).
func syntheticHotkey(_ i: Int) -> String {
    var bytes = [UInt8](repeating: 0xA5, count: 32)
    withUnsafeBytes(of: UInt64(i).littleEndian) { bytes.replaceSubrange(0..<8, with: $0) }
    return (try? PublicKey(bytes: bytes).ss58) ?? ""
}

/// Metagraph JSON with `count` neurons: uid i, stake i/2, a permit on every fourth.
func syntheticMetagraphJSON(count: Int, netuid: Int = 3, block: Int = 4_200_000) -> Data {
    var text = "{\"netuid\": \(netuid), \"block\": \(block), \"neurons\": ["
    for i in 0..<count {
        if i > 0 { text += "," }
        text += "\n {\"uid\": \(i), \"hotkey\": \"\(syntheticHotkey(i))\", \"stake\": \(Double(i) / 2), \"validator_permit\": \(i % 4 == 0)}"
    }
    return Data((text + "\n]}\n").utf8)
}

final class MetagraphTests: XCTestCase {
    var directory: String!

    override func setUpWithError() throws {
        directory = NSTemporaryDirectory() + "axon-metagraph-\(UUID().uuidString)"
        try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: false)
    }

    override func tearDownWithError() throws {
        try? FileManager.default.removeItem(atPath: directory)
    }

    private func write(_ data: Data, _ name: String) throws -> String {
        let path = directory + "/" + name
        try data.write(to: URL(fileURLWithPath: path))
        return path
    }

    private func neuronJSON(uid: String = "0", hotkey: String? = nil, stake: String = "1.5", permit: String = "true") -> String {
        "{\"uid\": \(uid), \"hotkey\": \"\(hotkey ?? syntheticHotkey(0))\", \"stake\": \(stake), \"validator_permit\": \(permit)}"
    }

    private func expectError(_ json: String, file: StaticString = #filePath, line: UInt = #line,
                             _ check: (MetagraphError) -> Bool) {
        XCTAssertThrowsError(try Metagraph(json: Data(json.utf8)), file: file, line: line) { error in
            guard let error = error as? MetagraphError else { return XCTFail("untyped \(error)", file: file, line: line) }
            XCTAssertTrue(check(error), "\(error)", file: file, line: line)
        }
    }

    func testMaximumSizeMetagraphLoadsAndLooksUpEveryHotkey() throws {
        let count = Metagraph.maxNeurons
        let path = try write(syntheticMetagraphJSON(count: count), "large.json")
        let metagraph = try Metagraph.load(path: path)
        XCTAssertEqual(metagraph.neurons.count, count)
        XCTAssertEqual(metagraph.netuid, 3)
        XCTAssertEqual(metagraph.block, 4_200_000)
        for i in stride(from: 0, to: count, by: 97) {
            let neuron = try XCTUnwrap(metagraph.neuron(hotkey: syntheticHotkey(i)))
            XCTAssertEqual(neuron, Neuron(uid: i, hotkey: syntheticHotkey(i), stake: Double(i) / 2, validatorPermit: i % 4 == 0))
            XCTAssertEqual(metagraph.uid(of: syntheticHotkey(i)), Int32(i))
        }
        XCTAssertEqual(metagraph.uid(of: syntheticHotkey(count)), -1)
    }

    func testTooManyNeuronsIsRefused() {
        expectError(String(decoding: syntheticMetagraphJSON(count: Metagraph.maxNeurons + 1), as: UTF8.self)) {
            $0 == .tooManyNeurons(count: Metagraph.maxNeurons + 1, max: Metagraph.maxNeurons)
        }
    }

    func testTopLevelDefectsAreTypedErrors() {
        expectError("{\"netuid\": 1") { if case .notJSON = $0 { return true } else { return false } }
        expectError("[1, 2]") { $0 == .wrongType(field: "(root)", expected: "an object") }
        expectError("{\"block\": 1, \"neurons\": []}") { $0 == .missingField("netuid") }
        expectError("{\"netuid\": 1, \"neurons\": []}") { $0 == .missingField("block") }
        expectError("{\"netuid\": 1, \"block\": 1}") { $0 == .missingField("neurons") }
        expectError("{\"netuid\": -1, \"block\": 1, \"neurons\": []}") { if case .wrongType("netuid", _) = $0 { return true } else { return false } }
        expectError("{\"netuid\": 1, \"block\": 1.5, \"neurons\": []}") { if case .wrongType("block", _) = $0 { return true } else { return false } }
        expectError("{\"netuid\": 1, \"block\": 1, \"neurons\": {}}") { $0 == .wrongType(field: "neurons", expected: "an array") }
    }

    func testNeuronDefectsNameTheNeuron() {
        func graph(_ neurons: String...) -> String {
            "{\"netuid\": 1, \"block\": 7, \"neurons\": [\(neurons.joined(separator: ","))]}"
        }
        let good = neuronJSON()
        expectError(graph(good, "3")) { $0 == .neuronWrongType(index: 1, field: "(entry)", expected: "an object") }
        expectError(graph(good, "{\"uid\": 1, \"stake\": 1, \"validator_permit\": false}")) {
            $0 == .neuronMissingField(index: 1, field: "hotkey")
        }
        expectError(graph(neuronJSON(uid: "\"0\""))) { $0 == .neuronWrongType(index: 0, field: "uid", expected: "an integer") }
        expectError(graph(neuronJSON(uid: "1.5"))) { $0 == .neuronWrongType(index: 0, field: "uid", expected: "an integer") }
        expectError(graph(neuronJSON(stake: "\"a lot\""))) { $0 == .neuronWrongType(index: 0, field: "stake", expected: "a number") }
        expectError(graph(neuronJSON(permit: "1"))) {
            $0 == .neuronWrongType(index: 0, field: "validator_permit", expected: "true or false")
        }
        expectError(graph(neuronJSON(uid: "16384"))) { $0 == .uidOutOfRange(index: 0, uid: 16384, max: 16384) }
        expectError(graph(neuronJSON(uid: "-2"))) { $0 == .uidOutOfRange(index: 0, uid: -2, max: 16384) }
        expectError(graph(good, neuronJSON(uid: "0", hotkey: syntheticHotkey(1)))) { $0 == .duplicateUID(uid: 0, firstIndex: 0, index: 1) }
        expectError(graph(good, neuronJSON(uid: "1"))) { $0 == .duplicateHotkey(hotkey: syntheticHotkey(0), uid: 1, firstUID: 0) }
        expectError(graph(neuronJSON(uid: "5", hotkey: "5notanaddress"))) {
            if case .invalidHotkey(index: 0, uid: 5, _) = $0 { return true } else { return false }
        }
        expectError(graph(neuronJSON(stake: "-0.5"))) { $0 == .invalidStake(index: 0, uid: 0, stake: -0.5) }
        expectError(graph(neuronJSON(stake: "1e400"))) {
            if case .invalidStake(index: 0, uid: 0, _) = $0 { return true }
            if case .notJSON = $0 { return true }   // some parsers refuse out-of-range numbers outright
            return false
        }
    }

    func testEscapesUnknownFieldsAndWhitespaceAreReadAsJSON() throws {
        let hotkey = syntheticHotkey(5)
        let escaped = "\\u00" + Hex.encode(Array(hotkey.utf8.prefix(1))) + hotkey.dropFirst()
        let json = """
        {"comment": "caf\\u00e9 \\ud83d\\ude00 \\"q\\" \\n", "extra": [{"a": [1, -2.5e3, null, true]}, {}],
         "netuid": 7, "block": 1.2e3,
         "neurons": [ {"uid": 5.0, "coldkey": {"x": []}, "hotkey": "\(escaped)", "stake": 0, "validator_permit": false} ] }
        """
        let metagraph = try Metagraph(json: Data(json.utf8))
        XCTAssertEqual(metagraph.netuid, 7)
        XCTAssertEqual(metagraph.block, 1200)
        XCTAssertEqual(metagraph.neurons, [Neuron(uid: 5, hotkey: hotkey, stake: 0, validatorPermit: false)])
    }

    func testMalformedJSONIsRefusedWithItsOffset() {
        let cases = [
            "{\"netuid\": 01, \"block\": 1, \"neurons\": []}",
            "{\"netuid\": 1, \"block\": 1, \"neurons\": []} trailing",
            "{\"netuid\": 1, \"block\": 1, \"neurons\": [],}",
            "{\"netuid\": 1, \"block\": 1, \"neurons\": [], \"x\": \"\\q\"}",
            "{\"netuid\": 1, \"block\": 1, \"neurons\": [], \"x\": \"\\ud800\"}",
            "{\"netuid\": 1, \"block\": 1, \"neurons\": [], \"x\": tru}",
            "{\"netuid\": 1, \"block\": 1, \"neurons\": [], \"x\": " + String(repeating: "[", count: 100) + String(repeating: "]", count: 100) + "}",
            "",
        ]
        for json in cases {
            expectError(json) { error in
                guard case .notJSON(let reason) = error else { return false }
                return reason.hasPrefix("at byte ")
            }
        }
    }

    func testValidatedConstructionRejectsNonFiniteStake() {
        XCTAssertThrowsError(try Metagraph(netuid: 1, block: 1, neurons: [
            Neuron(uid: 2, hotkey: syntheticHotkey(2), stake: .nan, validatorPermit: false),
        ])) { error in
            guard case .invalidStake(index: 0, uid: 2, _)? = error as? MetagraphError else { return XCTFail("\(error)") }
        }
    }

    func testUnreadableFileIsATypedError() {
        XCTAssertThrowsError(try Metagraph.load(path: directory + "/absent.json")) { error in
            guard case .unreadable(path: self.directory + "/absent.json", _)? = error as? MetagraphError else { return XCTFail("\(error)") }
        }
    }

    func testReloadSwapsInAGoodFileAndKeepsTheOldSnapshotOnABadOne() throws {
        let first = try write(syntheticMetagraphJSON(count: 4, block: 100), "first.json")
        let second = try write(syntheticMetagraphJSON(count: 8, block: 200), "second.json")
        let bad = try write(Data("{\"netuid\": 3, \"block\": 300, \"neurons\": [{\"uid\": 0}]}".utf8), "bad.json")
        let store = try MetagraphStore(path: first)
        XCTAssertEqual(store.current.block, 100)
        let held = store.current

        guard case .success(let reloaded) = store.reload(path: second) else { return XCTFail("good reload failed") }
        XCTAssertEqual(reloaded.block, 200)
        XCTAssertEqual(store.current.block, 200)
        XCTAssertEqual(store.current.uid(of: syntheticHotkey(7)), 7)
        XCTAssertEqual(held.block, 100, "a snapshot already handed out does not change")

        guard case .failure(let error) = store.reload(path: bad) else { return XCTFail("bad reload succeeded") }
        XCTAssertEqual(error, .neuronMissingField(index: 0, field: "hotkey"))
        XCTAssertEqual(store.current.block, 200)
        XCTAssertEqual(store.current.neurons.count, 8)

        guard case .failure(.unreadable) = store.reload(path: directory + "/gone.json") else { return XCTFail("missing file reloaded") }
        XCTAssertEqual(store.current.block, 200)
    }

    func testReadersDuringReloadsAlwaysSeeAWholeSnapshot() throws {
        let small = try write(syntheticMetagraphJSON(count: 2, block: 1), "small.json")
        let large = try write(syntheticMetagraphJSON(count: 64, block: 2), "large.json")
        let store = try MetagraphStore(path: small)
        let done = DispatchSemaphore(value: 0)
        DispatchQueue.global().async {
            for i in 0..<50 { store.reload(path: i % 2 == 0 ? large : small) }
            done.signal()
        }
        for _ in 0..<5000 {
            let snapshot = store.current
            XCTAssertEqual(snapshot.neurons.count, snapshot.block == 1 ? 2 : 64)
        }
        done.wait()
    }
}
