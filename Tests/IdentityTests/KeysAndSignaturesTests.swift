import Identity
import XCTest

/// Keys, SS58 and the signature contract against the PyNaCl/hashlib reference fixtures.
final class KeysAndSignaturesTests: XCTestCase {
    var fixtures: ReferenceFixtures!

    override func setUpWithError() throws {
        fixtures = try ReferenceFixtures.load()
    }

    func testPublishedPublicKeyEncodesToItsKnownAddress() throws {
        let key = try PublicKey(bytes: try Hex.decode(fixtures.published.public_key))
        XCTAssertEqual(key.ss58, fixtures.published.ss58)
        XCTAssertEqual(try SS58.decode(fixtures.published.ss58), key)
    }

    func testSeedsDeriveTheReferencePublicKeysAndAddresses() throws {
        for entry in [fixtures.fixed, fixtures.receiver] + fixtures.keys {
            let hotkey = try Hotkey(seed: try Hex.decode(entry.seed))
            XCTAssertEqual(hotkey.publicKey.hex, entry.public_key, "seed \(entry.seed)")
            XCTAssertEqual(hotkey.ss58, entry.ss58, "seed \(entry.seed)")
            XCTAssertEqual(hotkey.secretSeedHex, entry.seed)
            XCTAssertEqual(try SS58.decode(entry.ss58).hex, entry.public_key)
        }
    }

    func testSignaturesMatchTheReferenceByteForByte() throws {
        let hotkey = try Hotkey(seed: try Hex.decode(fixtures.fixed.seed))
        for entry in fixtures.signatures {
            let nonce = try XCTUnwrap(UInt64(entry.nonce))
            let body = try Hex.decode(entry.body)
            XCTAssertEqual(sha256Hex(body), entry.body_sha256)
            let message = RequestSignature.message(nonce: nonce, sender: entry.sender, receiver: entry.receiver,
                                                   uuid: entry.uuid, bodySHA256Hex: sha256Hex(body))
            XCTAssertEqual(String(decoding: message, as: UTF8.self), entry.message)
            let auth = RequestSignature.sign(hotkey: hotkey, receiver: entry.receiver, nonce: nonce, uuid: entry.uuid, body: body)
            XCTAssertEqual(auth.hotkey, entry.sender)
            XCTAssertEqual(Hex.encode(auth.signature), entry.signature, "nonce \(entry.nonce)")
        }
    }

    func testReferenceSignaturesVerifyAndAlteredOnesDoNot() throws {
        for entry in fixtures.signatures {
            let nonce = try XCTUnwrap(UInt64(entry.nonce))
            let body = try Hex.decode(entry.body)
            let auth = AuthFields(hotkey: entry.sender, nonce: nonce, uuid: entry.uuid, signature: try Hex.decode(entry.signature))
            XCTAssertTrue(RequestSignature.verify(auth, receiver: entry.receiver, body: body))
            XCTAssertFalse(RequestSignature.verify(auth, receiver: fixtures.fixed.ss58, body: body), "wrong receiver")
            XCTAssertFalse(RequestSignature.verify(auth, receiver: entry.receiver, body: body + [0]), "altered body")
            var later = auth
            later.nonce = nonce &+ 1
            XCTAssertFalse(RequestSignature.verify(later, receiver: entry.receiver, body: body), "altered nonce")
            var flipped = auth
            flipped.signature[5] ^= 1
            XCTAssertFalse(RequestSignature.verify(flipped, receiver: entry.receiver, body: body), "altered signature")
        }
    }

    func testInvalidAddressesAreRejectedWithTheirOwnError() throws {
        XCTAssertEqual(fixtures.invalid_addresses.count, 9)
        for entry in fixtures.invalid_addresses {
            XCTAssertThrowsError(try SS58.decode(entry.address), entry.address) { error in
                guard let error = error as? SS58Error else { return XCTFail("untyped error \(error)") }
                let kind: String
                switch error {
                case .badChecksum: kind = "badChecksum"
                case .wrongPrefix: kind = "wrongPrefix"
                case .invalidCharacter: kind = "invalidCharacter"
                case .wrongLength: kind = "wrongLength"
                }
                XCTAssertEqual(kind, entry.error, "\(entry.address): \(error)")
                XCTAssertTrue(error.description.contains("'\(entry.address)'"), error.description)
            }
        }
    }

    func testAVeryLongAddressIsRejectedAsTooLong() {
        let address = String(repeating: "z", count: 10_000)
        XCTAssertThrowsError(try SS58.decode(address)) { error in
            XCTAssertEqual(error as? SS58Error, .wrongLength(address: address, decodedBytes: nil))
        }
    }

    func testNonASCIICharacterIsNamedByItsByte() {
        XCTAssertThrowsError(try SS58.decode("5Ew8fKVS9Dé")) { error in
            XCTAssertEqual(error as? SS58Error, .invalidCharacter(address: "5Ew8fKVS9Dé", position: 10, character: "byte 0xc3"))
        }
    }

    func testWrongLengthSeedAndPublicKeyAreTypedErrors() {
        XCTAssertThrowsError(try Hotkey(seed: [1, 2, 3])) { error in
            XCTAssertEqual(error as? KeyError, .wrongLength(what: "secret seed", observed: 3, expected: 32))
        }
        XCTAssertThrowsError(try PublicKey(bytes: [UInt8](repeating: 0, count: 33))) { error in
            XCTAssertEqual(error as? KeyError, .wrongLength(what: "public key", observed: 33, expected: 32))
        }
    }

    func testGeneratedKeysAreDistinctAndSignVerifiably() {
        let a = Hotkey.generate(), b = Hotkey.generate()
        XCTAssertNotEqual(a.publicKey, b.publicKey)
        let message = Array("hello".utf8)
        XCTAssertTrue(a.publicKey.verify(signature: a.sign(message), message: message))
        XCTAssertFalse(b.publicKey.verify(signature: a.sign(message), message: message))
        XCTAssertFalse(a.publicKey.verify(signature: [1, 2], message: message))
    }

    func testHexRejectsOddLengthAndBadCharacters() {
        XCTAssertThrowsError(try Hex.decode("abc")) { XCTAssertEqual($0 as? HexError, .oddLength(3)) }
        XCTAssertThrowsError(try Hex.decode("0g")) { XCTAssertEqual($0 as? HexError, .invalidCharacter(position: 1)) }
        XCTAssertEqual(try Hex.decode("00FFaB"), [0, 255, 171])
    }
}
