/// SS58 addresses with network prefix 42 (the generic Substrate prefix Bittensor uses):
/// `base58(0x2A ‖ public key ‖ checksum)`, where the checksum is the first two bytes of
/// `blake2b-512("SS58PRE" ‖ 0x2A ‖ public key)`.
public enum SS58 {
    public static let networkPrefix: UInt8 = 42
    /// prefix (1) + public key (32) + checksum (2).
    static let decodedLength = 35
    private static let checksumContext = Array("SS58PRE".utf8)

    /// The address of `publicKey`.
    public static func encode(_ publicKey: PublicKey) -> String {
        var payload = [networkPrefix]
        payload += publicKey.bytes
        let sum = checksum(payload[...])
        payload += [sum.0, sum.1]
        return Base58.encode(payload)
    }

    /// The public key an address names, after checking alphabet, length, prefix and checksum.
    /// - Throws: `SS58Error`.
    public static func decode(_ address: String) throws -> PublicKey {
        let bytes: [UInt8]
        do {
            // One byte of slack so an over-long address reports its length, not a generic failure.
            bytes = try Base58.decode(address.utf8, maxBytes: decodedLength + 1)
        } catch Base58.DecodeFailure.invalidCharacter(let position, let byte) {
            let character = byte < 0x80 ? String(UnicodeScalar(byte)) : "byte 0x" + Hex.encode([byte])
            throw SS58Error.invalidCharacter(address: address, position: position, character: character)
        } catch {
            throw SS58Error.wrongLength(address: address, decodedBytes: nil)
        }
        guard bytes.count == decodedLength else {
            throw SS58Error.wrongLength(address: address, decodedBytes: bytes.count)
        }
        guard bytes[0] == networkPrefix else {
            throw SS58Error.wrongPrefix(address: address, prefix: bytes[0])
        }
        guard checksum(bytes[0..<33]) == (bytes[33], bytes[34]) else {
            throw SS58Error.badChecksum(address: address)
        }
        return PublicKey(validatedBytes: Array(bytes[1..<33]))
    }

    /// Whether `address` is a well-formed prefix-42 address.
    public static func isValid(_ address: String) -> Bool {
        (try? decode(address)) != nil
    }

    /// The first two bytes of blake2b-512("SS58PRE" ‖ payload). Runs once per metagraph neuron,
    /// so it works in stack buffers rather than allocating.
    private static func checksum(_ payload: ArraySlice<UInt8>) -> (UInt8, UInt8) {
        let inputCount = checksumContext.count + payload.count
        return withUnsafeTemporaryAllocation(of: UInt8.self, capacity: inputCount + 64) { buffer in
            let input = UnsafeMutableBufferPointer(rebasing: buffer[0..<inputCount])
            _ = input.initialize(from: checksumContext)
            _ = UnsafeMutableBufferPointer(rebasing: input[checksumContext.count...]).initialize(from: payload)
            let digest = UnsafeMutableBufferPointer(rebasing: buffer[inputCount...])
            Sodium.blake2b512(input: UnsafeBufferPointer(input), into: digest)
            return (digest[0], digest[1])
        }
    }
}

/// Why a string is not a prefix-42 SS58 address.
public enum SS58Error: Error, CustomStringConvertible, Equatable {
    case invalidCharacter(address: String, position: Int, character: String)
    /// `decodedBytes` is nil when the address is far too long to decode.
    case wrongLength(address: String, decodedBytes: Int?)
    case wrongPrefix(address: String, prefix: UInt8)
    case badChecksum(address: String)

    public var description: String {
        switch self {
        case .invalidCharacter(let a, let p, let c):
            return "SS58 address '\(a)' has '\(c)' at position \(p), which is not in the base58 alphabet (no 0, O, I or l)"
        case .wrongLength(let a, let n?):
            return "SS58 address '\(a)' decodes to \(n) bytes, expected 35 (prefix, 32-byte public key, 2-byte checksum)"
        case .wrongLength(let a, nil):
            return "SS58 address '\(a)' is too long (\(a.utf8.count) characters; a prefix-42 address has 47 or 48)"
        case .wrongPrefix(let a, let p):
            return "SS58 address '\(a)' has network prefix \(p), expected 42 (generic Substrate, as Bittensor uses)"
        case .badChecksum(let a):
            return "SS58 address '\(a)' has a bad checksum (mistyped or corrupted)"
        }
    }
}
