/// The authentication a request carries (the wire's `Request.auth`), in plain Swift types.
public struct AuthFields: Sendable, Equatable {
    /// The sender's hotkey, SS58.
    public var hotkey: String
    /// Strictly increasing per (hotkey, uuid).
    public var nonce: UInt64
    /// Identifies the client session.
    public var uuid: String
    /// ed25519 over `RequestSignature.message(...)`, 64 bytes.
    public var signature: [UInt8]

    public init(hotkey: String, nonce: UInt64, uuid: String, signature: [UInt8]) {
        self.hotkey = hotkey
        self.nonce = nonce
        self.uuid = uuid
        self.signature = signature
    }
}

/// The signature contract: ed25519 over the UTF-8 bytes of
/// `"{nonce}.{sender_ss58}.{receiver_ss58}.{uuid}.{sha256_hex(body)}"`, where `body` is
/// `Request.body` exactly as sent and the nonce is in decimal.
public enum RequestSignature {
    /// The exact bytes that are signed.
    public static func message(nonce: UInt64, sender: String, receiver: String, uuid: String,
                               bodySHA256Hex: String) -> [UInt8] {
        Array("\(nonce).\(sender).\(receiver).\(uuid).\(bodySHA256Hex)".utf8)
    }

    /// Signs a request from `hotkey` to `receiver` (SS58) and returns the fields for `Request.auth`.
    public static func sign(hotkey: Hotkey, receiver: String, nonce: UInt64, uuid: String,
                            body: UnsafeRawBufferPointer) -> AuthFields {
        let m = message(nonce: nonce, sender: hotkey.ss58, receiver: receiver, uuid: uuid,
                        bodySHA256Hex: sha256Hex(body))
        return AuthFields(hotkey: hotkey.ss58, nonce: nonce, uuid: uuid, signature: hotkey.sign(m))
    }

    public static func sign(hotkey: Hotkey, receiver: String, nonce: UInt64, uuid: String,
                            body: [UInt8]) -> AuthFields {
        body.withUnsafeBytes { sign(hotkey: hotkey, receiver: receiver, nonce: nonce, uuid: uuid, body: $0) }
    }

    /// Whether `auth` is a valid signature by `auth.hotkey` of a request to `receiver` with `body`.
    /// False also when `auth.hotkey` is not a valid SS58 address.
    public static func verify(_ auth: AuthFields, receiver: String, body: UnsafeRawBufferPointer) -> Bool {
        guard let sender = try? SS58.decode(auth.hotkey) else { return false }
        return verify(auth, sender: sender, receiver: receiver, bodySHA256Hex: sha256Hex(body))
    }

    public static func verify(_ auth: AuthFields, receiver: String, body: [UInt8]) -> Bool {
        body.withUnsafeBytes { verify(auth, receiver: receiver, body: $0) }
    }

    static func verify(_ auth: AuthFields, sender: PublicKey, receiver: String, bodySHA256Hex: String) -> Bool {
        let m = message(nonce: auth.nonce, sender: auth.hotkey, receiver: receiver, uuid: auth.uuid,
                        bodySHA256Hex: bodySHA256Hex)
        return sender.verify(signature: auth.signature, message: m)
    }
}
