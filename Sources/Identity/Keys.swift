import CSodium

/// An ed25519 public key: a hotkey's public half, which names it on the network.
public struct PublicKey: Hashable, Sendable, CustomStringConvertible {
    /// Exactly 32 bytes.
    public let bytes: [UInt8]

    /// - Throws: `KeyError.wrongLength` unless `bytes` has 32 bytes.
    public init(bytes: [UInt8]) throws {
        guard bytes.count == Sodium.publicKeyBytes else {
            throw KeyError.wrongLength(what: "public key", observed: bytes.count, expected: Sodium.publicKeyBytes)
        }
        self.bytes = bytes
    }

    init(validatedBytes: [UInt8]) { self.bytes = validatedBytes }

    /// The key's SS58 address (prefix 42).
    public var ss58: String { SS58.encode(self) }

    public var hex: String { Hex.encode(bytes) }

    public var description: String { ss58 }

    /// Whether `signature` is this key's ed25519 signature of `message`.
    public func verify(signature: [UInt8], message: [UInt8]) -> Bool {
        guard signature.count == Sodium.signatureBytes else { return false }
        Sodium.ensureInitialised()
        return Sodium.withInput(signature) { s, _ in
            Sodium.withInput(message) { m, mCount in
                Sodium.withInput(bytes) { k, _ in crypto_sign_verify_detached(s, m, mCount, k) == 0 }
            }
        }
    }
}

/// An ed25519 signing key (a hotkey's secret half). The 64-byte libsodium secret key lives in
/// memory this object owns and is zeroed when it is released; it is never copied into an Array
/// except by `secretSeedHex`, which exists to write key files.
public final class Hotkey: @unchecked Sendable {
    public let publicKey: PublicKey
    private let secret: UnsafeMutablePointer<UInt8>   // seed ‖ public key, Sodium.secretKeyBytes

    /// The keypair derived from a 32-byte seed (deterministic).
    /// - Throws: `KeyError.wrongLength` unless `seed` has 32 bytes.
    public init(seed: [UInt8]) throws {
        guard seed.count == Sodium.seedBytes else {
            throw KeyError.wrongLength(what: "secret seed", observed: seed.count, expected: Sodium.seedBytes)
        }
        Sodium.ensureInitialised()
        let secretKey = UnsafeMutablePointer<UInt8>.allocate(capacity: Sodium.secretKeyBytes)
        let pk = Sodium.output(count: Sodium.publicKeyBytes) { p in
            Sodium.withInput(seed) { s, _ in _ = crypto_sign_seed_keypair(p, secretKey, s) }
        }
        secret = secretKey
        publicKey = PublicKey(validatedBytes: pk)
    }

    /// A fresh keypair from libsodium's CSPRNG.
    public static func generate() -> Hotkey {
        Sodium.ensureInitialised()
        var seed = Sodium.output(count: Sodium.seedBytes) { randombytes_buf($0, Sodium.seedBytes) }
        defer { seed.withUnsafeMutableBytes { if let p = $0.baseAddress { sodium_memzero(p, $0.count) } } }
        // A 32-byte seed cannot fail the length check.
        guard let key = try? Hotkey(seed: seed) else { preconditionFailure("32-byte seed rejected") }
        return key
    }

    deinit {
        sodium_memzero(secret, Sodium.secretKeyBytes)
        secret.deallocate()
    }

    /// The key's SS58 address.
    public var ss58: String { publicKey.ss58 }

    /// The 32-byte seed as hex, for writing a key file. Handle with care.
    public var secretSeedHex: String {
        Hex.encode(UnsafeBufferPointer(start: secret, count: Sodium.seedBytes))
    }

    /// The detached ed25519 signature (64 bytes) of `message`. Deterministic.
    public func sign(_ message: [UInt8]) -> [UInt8] {
        Sodium.output(count: Sodium.signatureBytes) { s in
            Sodium.withInput(message) { m, count in _ = crypto_sign_detached(s, nil, m, count, secret) }
        }
    }
}

public enum KeyError: Error, CustomStringConvertible, Equatable {
    case wrongLength(what: String, observed: Int, expected: Int)

    public var description: String {
        switch self {
        case .wrongLength(let what, let observed, let expected):
            return "\(what) has \(observed) bytes, expected \(expected)"
        }
    }
}
