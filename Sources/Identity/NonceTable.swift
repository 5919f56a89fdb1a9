/// The last nonce accepted per (sender, uuid), so a replayed or stale request is refused.
///
/// Bounded per sender, so one sender cannot flush another's entries: each sender keeps at most
/// `sessionsPerSender` uuids (its own least recently used uuid is forgotten first), and senders are
/// kept in two LRU pools, `capacity` trusted senders (registered or allow-listed) and
/// `capacity / 8` untrusted ones (admitted unregistered). A sender flooding distinct uuids only
/// evicts its own sessions; a flood of fresh unregistered keys only evicts other unregistered
/// senders. Trusted senders are bounded by the metagraph (or the allow list), so with the default
/// capacity no flood can evict them. A forgotten session accepts any nonce again.
///
/// Memory: at most `(capacity + capacity / 8) × sessionsPerSender` sessions, each a sender key
/// and a uuid of at most `AdmissionPolicy.maxUUIDBytes` bytes.
/// Not thread-safe; `Admission` serialises access.
public struct NonceTable {
    /// One sender's sessions: uuid → last nonce (a class, so updating it in place does not copy).
    private final class Sessions {
        var lastSeen: BoundedLRU<String, UInt64>
        init(capacity: Int) { lastSeen = BoundedLRU(capacity: capacity) }
    }

    public static let defaultCapacity = 100_000
    public static let defaultSessionsPerSender = 8

    public let capacity: Int
    public let sessionsPerSender: Int
    private var trusted: BoundedLRU<String, Sessions>
    private var untrusted: BoundedLRU<String, Sessions>
    /// Sessions currently tracked.
    public private(set) var count = 0

    /// - Parameters:
    ///   - capacity: trusted senders remembered (untrusted: an eighth of it, at least 1).
    ///   - sessionsPerSender: uuids remembered per sender.
    public init(capacity: Int = NonceTable.defaultCapacity, sessionsPerSender: Int = NonceTable.defaultSessionsPerSender) {
        self.capacity = max(1, capacity)
        self.sessionsPerSender = max(1, sessionsPerSender)
        trusted = BoundedLRU(capacity: self.capacity)
        untrusted = BoundedLRU(capacity: max(1, self.capacity / 8))
    }

    /// Records `nonce` for (sender, uuid) if it is above the last one seen there.
    /// - Parameter trusted: the sender is registered or allow-listed (see the type's description).
    /// - Returns: nil when accepted, else the last nonce seen (the request is a replay or stale).
    public mutating func accept(sender: String, uuid: String, nonce: UInt64, trusted isTrusted: Bool = true) -> UInt64? {
        let sessions: Sessions
        if let known = isTrusted ? trusted.get(sender) : untrusted.get(sender) {
            sessions = known
        } else {
            sessions = Sessions(capacity: sessionsPerSender)
            let evicted = isTrusted ? trusted.set(sender, sessions) : untrusted.set(sender, sessions)
            count -= evicted?.value.lastSeen.count ?? 0
        }
        if let last = sessions.lastSeen.get(uuid), nonce <= last { return last }
        let before = sessions.lastSeen.count
        sessions.lastSeen.set(uuid, nonce)
        count += sessions.lastSeen.count - before
        return nil
    }
}
