// The client's half of the signature contract (docs/PROTOCOL.md, "Signatures").
import Foundation
import Identity
import Wire

/// One signed client session: a hotkey, a uuid naming the session, and nonces that strictly
/// increase. Thread-safe. Receivers remember the last nonce per (hotkey, uuid), so requests of one
/// session must reach each receiver in nonce order: `AxonClient` signs and sends under one lock.
public final class SigningSession: @unchecked Sendable {
    public let hotkey: Hotkey
    /// Names the session (1...128 bytes); a fresh random UUID by default.
    public let uuid: String
    private let lock = NSLock()
    private var lastNonce: UInt64 = 0

    public init(hotkey: Hotkey, uuid: String = UUID().uuidString.lowercased()) {
        self.hotkey = hotkey
        self.uuid = uuid
    }

    /// The next nonce: wall-clock nanoseconds, or one above the last if the clock has not moved on
    /// (or stepped back). Time-based, so a restarted client reusing a uuid still moves forward.
    public func nextNonce() -> UInt64 {
        var now = timespec()
        clock_gettime(CLOCK_REALTIME, &now)
        let clock = UInt64(max(0, now.tv_sec)) &* 1_000_000_000 &+ UInt64(max(0, now.tv_nsec))
        return lock.withLock {
            lastNonce = max(clock, lastNonce + 1)
            return lastNonce
        }
    }

    /// `Request.auth` for a request to `receiver` (SS58) carrying `body` exactly as it will be sent.
    public func auth(receiver: String, body: [UInt8]) -> Auth {
        let fields = RequestSignature.sign(hotkey: hotkey, receiver: receiver, nonce: nextNonce(), uuid: uuid, body: body)
        return Auth(hotkey: fields.hotkey, nonce: fields.nonce, uuid: fields.uuid, signature: fields.signature)
    }
}
