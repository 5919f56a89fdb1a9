/// A map with a fixed capacity that evicts its least recently used entry: O(1) lookup, update
/// and eviction, and storage that never grows past `capacity` entries. Entries live in parallel
/// arrays linked by index (no per-entry allocation); not thread-safe.
struct BoundedLRU<Key: Hashable, Value> {
    let capacity: Int
    private var slots: [Key: Int32] = [:]
    private var keys: [Key] = []
    private var values: [Value] = []
    private var prev: [Int32] = []
    private var next: [Int32] = []
    private var head: Int32 = -1   // most recently used
    private var tail: Int32 = -1   // least recently used

    init(capacity: Int) {
        precondition(capacity > 0 && capacity <= Int(Int32.max), "LRU capacity must be in 1...Int32.max")
        self.capacity = capacity
    }

    var count: Int { keys.count }

    /// The value for `key`, marking it most recently used.
    mutating func get(_ key: Key) -> Value? {
        guard let slot = slots[key] else { return nil }
        moveToFront(slot)
        return values[Int(slot)]
    }

    /// Stores `value` for `key` as the most recently used entry, evicting the least recently used
    /// one when full.
    /// - Returns: the entry evicted to make room, if any.
    @discardableResult
    mutating func set(_ key: Key, _ value: Value) -> (key: Key, value: Value)? {
        if let slot = slots[key] {
            values[Int(slot)] = value
            moveToFront(slot)
            return nil
        }
        var evicted: (key: Key, value: Value)?
        let slot: Int32
        if keys.count < capacity {
            slot = Int32(keys.count)
            keys.append(key)
            values.append(value)
            prev.append(-1)
            next.append(-1)
        } else {
            slot = tail
            unlink(slot)
            evicted = (keys[Int(slot)], values[Int(slot)])
            slots[keys[Int(slot)]] = nil
            keys[Int(slot)] = key
            values[Int(slot)] = value
        }
        slots[key] = slot
        linkAtFront(slot)
        return evicted
    }

    private mutating func moveToFront(_ slot: Int32) {
        guard slot != head else { return }
        unlink(slot)
        linkAtFront(slot)
    }

    private mutating func unlink(_ slot: Int32) {
        let p = prev[Int(slot)], n = next[Int(slot)]
        if p >= 0 { next[Int(p)] = n } else { head = n }
        if n >= 0 { prev[Int(n)] = p } else { tail = p }
        prev[Int(slot)] = -1
        next[Int(slot)] = -1
    }

    private mutating func linkAtFront(_ slot: Int32) {
        next[Int(slot)] = head
        prev[Int(slot)] = -1
        if head >= 0 { prev[Int(head)] = slot }
        head = slot
        if tail < 0 { tail = slot }
    }
}
