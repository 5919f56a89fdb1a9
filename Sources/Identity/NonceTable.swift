/// The last nonce accepted per (sender, uuid), so a replayed or stale request is refused.
///
/// Bounded: once `capacity` sessions are tracked, the least recently used one is forgotten, and a
/// forgotten session accepts any nonce again. Keeping the table large (100,000 by default) and
/// rate-limiting senders makes flushing it to replay an old request slow and visible.
/// Not thread-safe; `Admission` serialises access.
public struct NonceTable {
    struct Session: Hashable {
        let sender: String
        let uuid: String
    }

    public static let defaultCapacity = 100_000
    private var lastSeen: BoundedLRU<Session, UInt64>

    public init(capacity: Int = NonceTable.defaultCapacity) {
        lastSeen = BoundedLRU(capacity: max(1, capacity))
    }

    public var capacity: Int { lastSeen.capacity }
    /// Sessions currently tracked; never above `capacity`.
    public var count: Int { lastSeen.count }

    /// Records `nonce` for (sender, uuid) if it is above the last one seen there.
    /// - Returns: nil when accepted, else the last nonce seen (the request is a replay or stale).
    public mutating func accept(sender: String, uuid: String, nonce: UInt64) -> UInt64? {
        let session = Session(sender: sender, uuid: uuid)
        if let last = lastSeen.get(session), nonce <= last { return last }
        lastSeen.set(session, nonce)
        return nil
    }
}
