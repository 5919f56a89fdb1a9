import Foundation

/// What the shared part of admission (replay check, then token bucket) decided for one request
/// whose signature already verified.
public enum AdmissionStateVerdict: Equatable, Sendable {
    case accepted
    /// Not above `lastSeen`, the last nonce accepted for (sender, uuid): a replay or stale request.
    case staleNonce(lastSeen: UInt64)
    /// The nonce was recorded, but the sender's bucket was empty.
    case rateLimited
}

/// The state admission keeps across requests: the last nonce per (sender, uuid) and a token
/// bucket per sender. It is a seam so replicas of one UID can share it (issue 16: in a store
/// such as Redis, behind one atomic check-and-set); `LocalAdmissionState` keeps it in this
/// process, which is the default and the behaviour of a single axon.
///
/// The check is one operation on purpose: the nonce is recorded before the bucket is charged, so
/// a replay cannot drain a bucket, and a shared store must do both atomically or two replicas
/// could each accept the same request.
public protocol AdmissionState: AnyObject, Sendable {
    /// Records `nonce` for (sender, uuid) if it is above the last one, then takes one token from
    /// the sender's bucket at `now` (when `limit` is set).
    /// - Parameter trusted: the sender is registered or allow-listed (see `NonceTable`).
    func check(sender: String, uuid: String, nonce: UInt64, trusted: Bool,
               limit: RateLimit?, now: MonotonicTime) -> AdmissionStateVerdict

    /// Sessions the replay table tracks now, for INFO and metrics (-1 when the store does not say).
    var trackedSessions: Int { get }
}

/// Admission state in this process: a bounded `NonceTable` and `RateLimiter` under one lock.
public final class LocalAdmissionState: AdmissionState, @unchecked Sendable {
    private let lock = NSLock()
    private var nonces: NonceTable
    private var rateLimiter: RateLimiter?

    public init(policy: AdmissionPolicy) {
        nonces = NonceTable(capacity: policy.nonceCapacity, sessionsPerSender: policy.noncesPerSender)
        rateLimiter = policy.rateLimit.map { RateLimiter(limit: $0, capacity: policy.rateTableCapacity) }
    }

    public func check(sender: String, uuid: String, nonce: UInt64, trusted: Bool,
                      limit: RateLimit?, now: MonotonicTime) -> AdmissionStateVerdict {
        lock.lock()
        defer { lock.unlock() }
        if let last = nonces.accept(sender: sender, uuid: uuid, nonce: nonce, trusted: trusted) {
            return .staleNonce(lastSeen: last)
        }
        // The bucket's limit is the policy's, fixed at init; `limit` matters to shared stores,
        // which are handed it per request.
        if rateLimiter?.take(hotkey: sender, now: now) == false { return .rateLimited }
        return .accepted
    }

    public var trackedSessions: Int {
        lock.lock()
        defer { lock.unlock() }
        return nonces.count
    }
}
