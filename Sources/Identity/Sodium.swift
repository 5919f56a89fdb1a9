import CSodium

/// The one place libsodium is initialised and its fixed sizes are named.
enum Sodium {
    static let seedBytes = 32          // crypto_sign_SEEDBYTES
    static let publicKeyBytes = 32     // crypto_sign_PUBLICKEYBYTES
    static let secretKeyBytes = 64     // crypto_sign_SECRETKEYBYTES (seed ‖ public key)
    static let signatureBytes = 64     // crypto_sign_BYTES
    static let sha256Bytes = 32        // crypto_hash_sha256_BYTES

    /// `sodium_init` is idempotent and thread-safe, and Swift runs a static initialiser exactly once.
    /// It fails only when the system has no usable randomness source: nothing an input can cause.
    private static let initialised: Bool = sodium_init() >= 0

    /// Call before any libsodium function.
    static func ensureInitialised() {
        precondition(initialised, "libsodium failed to initialise (sodium_init < 0): no usable randomness source")
    }

    /// Calls `body` with a non-null pointer to `bytes` and their count: libsodium's headers declare
    /// inputs non-null even when empty, and an empty buffer has no base address.
    static func withInput<R>(_ bytes: UnsafeRawBufferPointer, _ body: (UnsafePointer<UInt8>, UInt64) -> R) -> R {
        if let base = bytes.baseAddress {
            return body(base.assumingMemoryBound(to: UInt8.self), UInt64(bytes.count))
        }
        let empty: UInt8 = 0
        return withUnsafePointer(to: empty) { body($0, 0) }
    }

    static func withInput<R>(_ bytes: [UInt8], _ body: (UnsafePointer<UInt8>, UInt64) -> R) -> R {
        bytes.withUnsafeBytes { withInput($0, body) }
    }

    /// A `count`-byte array filled by `body`.
    static func output(count: Int, _ body: (UnsafeMutablePointer<UInt8>) -> Void) -> [UInt8] {
        [UInt8](unsafeUninitializedCapacity: count) { buffer, initialised in
            guard let base = buffer.baseAddress else { initialised = 0; return }
            base.initialize(repeating: 0, count: count)
            body(base)
            initialised = count
        }
    }

    /// SHA-256 of `bytes` (libsodium crypto_hash_sha256).
    static func sha256(_ bytes: UnsafeRawBufferPointer) -> [UInt8] {
        ensureInitialised()
        return output(count: sha256Bytes) { out in
            withInput(bytes) { _ = crypto_hash_sha256(out, $0, $1) }
        }
    }

    /// BLAKE2b with a 64-byte digest (libsodium crypto_generichash, unkeyed) into `digest` (64 bytes).
    static func blake2b512(input: UnsafeBufferPointer<UInt8>, into digest: UnsafeMutableBufferPointer<UInt8>) {
        ensureInitialised()
        precondition(digest.count == 64)
        guard let out = digest.baseAddress else { return }
        withInput(UnsafeRawBufferPointer(input)) { _ = crypto_generichash(out, 64, $0, $1, nil, 0) }
    }
}

/// SHA-256 of a request body as lowercase hex, the last field of the signed message.
public func sha256Hex(_ body: UnsafeRawBufferPointer) -> String {
    Hex.encode(Sodium.sha256(body))
}

/// SHA-256 of a request body as lowercase hex.
public func sha256Hex(_ body: [UInt8]) -> String {
    body.withUnsafeBytes { sha256Hex($0) }
}
