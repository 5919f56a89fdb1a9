import Foundation
import TestSupport
import XCTest

/// Tests/IdentityTests/Fixtures/identity_fixtures.json, written by scripts/reference/identity_fixtures.py
/// (PyNaCl for ed25519, hashlib.blake2b + base58 for SS58).
struct ReferenceFixtures: Decodable {
    struct Key: Decodable {
        let seed: String
        let public_key: String
        let ss58: String
    }
    struct Published: Decodable {
        let public_key: String
        let ss58: String
    }
    struct Signature: Decodable {
        let nonce: String
        let sender: String
        let receiver: String
        let uuid: String
        let body: String
        let body_sha256: String
        let message: String
        let signature: String
    }
    struct InvalidAddress: Decodable {
        let address: String
        let error: String
    }

    let published: Published
    let fixed: Key
    let receiver: Key
    let keys: [Key]
    let signatures: [Signature]
    let invalid_addresses: [InvalidAddress]

    static func load() throws -> ReferenceFixtures {
        let url = TestPaths.repositoryRoot.appendingPathComponent("Tests/IdentityTests/Fixtures/identity_fixtures.json")
        return try JSONDecoder().decode(ReferenceFixtures.self, from: Data(contentsOf: url))
    }
}
