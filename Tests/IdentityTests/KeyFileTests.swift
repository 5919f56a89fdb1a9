import Foundation
import Identity
import XCTest

final class KeyFileTests: XCTestCase {
    var directory: String!
    var fixtures: ReferenceFixtures!

    override func setUpWithError() throws {
        fixtures = try ReferenceFixtures.load()
        directory = NSTemporaryDirectory() + "axon-keyfile-\(UUID().uuidString)"
        try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: false)
    }

    override func tearDownWithError() throws {
        try? FileManager.default.removeItem(atPath: directory)
    }

    private func mode(_ path: String) throws -> Int {
        let attributes = try FileManager.default.attributesOfItem(atPath: path)
        return try XCTUnwrap(attributes[.posixPermissions] as? NSNumber).intValue
    }

    private func writeJSON(_ object: [String: String], mode: Int = 0o600) throws -> String {
        let path = directory + "/key-\(UUID().uuidString).json"
        try JSONSerialization.data(withJSONObject: object).write(to: URL(fileURLWithPath: path))
        try FileManager.default.setAttributes([.posixPermissions: mode], ofItemAtPath: path)
        return path
    }

    private var fixedKeyObject: [String: String] {
        ["ss58": fixtures.fixed.ss58, "public_key": fixtures.fixed.public_key, "secret_seed": fixtures.fixed.seed]
    }

    func testWrittenKeyFileHasMode0600AndTheReferenceFields() throws {
        let path = directory + "/hotkey.json"
        let hotkey = try Hotkey(seed: try Hex.decode(fixtures.fixed.seed))
        try KeyFile.write(hotkey, to: path)
        XCTAssertEqual(try mode(path), 0o600)
        let object = try XCTUnwrap(JSONSerialization.jsonObject(with: Data(contentsOf: URL(fileURLWithPath: path))) as? [String: String])
        XCTAssertEqual(object, fixedKeyObject)
        let loaded = try KeyFile.load(path: path)
        XCTAssertEqual(loaded.hotkey.ss58, fixtures.fixed.ss58)
        XCTAssertEqual(loaded.warnings, [])
    }

    func testWritingRefusesToOverwriteAnExistingFile() throws {
        let path = directory + "/hotkey.json"
        try Data("precious".utf8).write(to: URL(fileURLWithPath: path))
        XCTAssertThrowsError(try KeyFile.write(Hotkey.generate(), to: path)) { error in
            XCTAssertEqual(error as? KeyFileError, .alreadyExists(path: path))
        }
        XCTAssertEqual(try String(contentsOfFile: path, encoding: .utf8), "precious")
    }

    func testWritingIntoAMissingDirectoryIsATypedError() {
        let path = directory + "/missing/hotkey.json"
        XCTAssertThrowsError(try KeyFile.write(Hotkey.generate(), to: path)) { error in
            guard case .cannotWrite(path, _)? = error as? KeyFileError else { return XCTFail("\(error)") }
        }
    }

    func testAKeyFileReadableByOthersLoadsWithAWarning() throws {
        let path = try writeJSON(fixedKeyObject, mode: 0o644)
        let loaded = try KeyFile.load(path: path)
        XCTAssertEqual(loaded.hotkey.ss58, fixtures.fixed.ss58)
        XCTAssertEqual(loaded.warnings, [.permissive(path: path, mode: 0o644)])
        XCTAssertTrue(loaded.warnings[0].description.contains("chmod 600"))
    }

    func testEachKeyFileDefectIsATypedError() throws {
        var wrongPublic = fixedKeyObject
        wrongPublic["public_key"] = fixtures.receiver.public_key
        var wrongAddress = fixedKeyObject
        wrongAddress["ss58"] = fixtures.receiver.ss58
        var invalidAddress = fixedKeyObject
        invalidAddress["ss58"] = fixtures.invalid_addresses[0].address
        var badHex = fixedKeyObject
        badHex["secret_seed"] = "zz" + fixtures.fixed.seed.dropFirst(2)
        var shortSeed = fixedKeyObject
        shortSeed["secret_seed"] = String(fixtures.fixed.seed.prefix(62))
        var missing = fixedKeyObject
        missing["secret_seed"] = nil

        func expect(_ object: [String: String], _ check: (KeyFileError, String) -> Bool) throws {
            let path = try writeJSON(object)
            XCTAssertThrowsError(try KeyFile.load(path: path)) { error in
                guard let error = error as? KeyFileError else { return XCTFail("untyped \(error)") }
                XCTAssertTrue(check(error, path), "\(error)")
            }
        }
        try expect(wrongPublic) { e, p in e == .publicKeyMismatch(path: p, stated: self.fixtures.receiver.public_key, derived: self.fixtures.fixed.public_key) }
        try expect(wrongAddress) { e, p in e == .addressMismatch(path: p, stated: self.fixtures.receiver.ss58, derived: self.fixtures.fixed.ss58) }
        try expect(invalidAddress) { e, p in if case .invalidAddress(p, .badChecksum) = e { return true } else { return false } }
        try expect(badHex) { e, p in e == .badHex(path: p, field: "secret_seed", .invalidCharacter(position: 0)) }
        try expect(shortSeed) { e, p in e == .wrongLength(path: p, field: "secret_seed", bytes: 31) }
        try expect(missing) { e, p in e == .missingField(path: p, field: "secret_seed") }

        let notJSON = directory + "/garbage.json"
        try Data("not json".utf8).write(to: URL(fileURLWithPath: notJSON))
        XCTAssertThrowsError(try KeyFile.load(path: notJSON)) { error in
            guard case .malformed(notJSON, _)? = error as? KeyFileError else { return XCTFail("\(error)") }
        }
        XCTAssertThrowsError(try KeyFile.load(path: directory + "/absent.json")) { error in
            XCTAssertEqual(error as? KeyFileError, .notFound(path: self.directory + "/absent.json"))
        }
    }

    func testKeyStoreCreatesOnFirstUseThenLoadsTheSameKey() throws {
        let store = directory + "/dot-axon"
        let first = try KeyStore.loadOrCreateDefault(directory: store, name: "default")
        XCTAssertTrue(first.created)
        XCTAssertEqual(first.path, store + "/default.json")
        XCTAssertEqual(try mode(first.path), 0o600)
        XCTAssertEqual(try mode(store), 0o700)
        let second = try KeyStore.loadOrCreateDefault(directory: store, name: "default")
        XCTAssertFalse(second.created)
        XCTAssertEqual(second.hotkey.publicKey, first.hotkey.publicKey)
        XCTAssertThrowsError(try KeyStore.loadOrCreateDefault(directory: store, name: "../escape")) { error in
            XCTAssertEqual(error as? KeyFileError, .invalidName("../escape"))
        }
    }
}
