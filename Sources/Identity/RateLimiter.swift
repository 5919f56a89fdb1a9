#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// A point on a monotonic clock, in nanoseconds. Tests build these directly, so time-based
/// behaviour is deterministic; the server passes `MonotonicTime.now()`.
public struct MonotonicTime: Comparable, Sendable {
    public var nanoseconds: UInt64

    public init(nanoseconds: UInt64) { self.nanoseconds = nanoseconds }

    /// `s` seconds after the clock's origin; negative or NaN clamp to 0.
    public static func seconds(_ s: Double) -> MonotonicTime {
        let ns = s * 1e9
        guard ns > 0 else { return MonotonicTime(nanoseconds: 0) }
        return MonotonicTime(nanoseconds: ns < 1.8e19 ? UInt64(ns) : UInt64.max)
    }

    /// CLOCK_MONOTONIC.
    public static func now() -> MonotonicTime {
        var ts = timespec()
        clock_gettime(CLOCK_MONOTONIC, &ts)
        return MonotonicTime(nanoseconds: UInt64(ts.tv_sec) * 1_000_000_000 + UInt64(ts.tv_nsec))
    }

    public static func < (a: MonotonicTime, b: MonotonicTime) -> Bool { a.nanoseconds < b.nanoseconds }

    /// Seconds from `earlier` to self, 0 if `earlier` is later.
    func seconds(since earlier: MonotonicTime) -> Double {
        nanoseconds > earlier.nanoseconds ? Double(nanoseconds - earlier.nanoseconds) / 1e9 : 0
    }
}

/// A per-hotkey token bucket rate: `requestsPerSecond` sustained, `burst` at once.
public struct RateLimit: Sendable, Equatable {
    public var requestsPerSecond: Double
    public var burst: Double

    public init(requestsPerSecond: Double, burst: Double) {
        self.requestsPerSecond = requestsPerSecond
        self.burst = burst
    }
}

/// Token buckets per hotkey, in a bounded LRU table: a forgotten hotkey starts again with a full
/// bucket, which is the generous direction. Not thread-safe; `Admission` serialises access.
public struct RateLimiter {
    struct Bucket {
        var tokens: Double
        var updated: MonotonicTime
    }

    public let limit: RateLimit
    private var buckets: BoundedLRU<String, Bucket>

    public init(limit: RateLimit, capacity: Int) {
        self.limit = limit
        buckets = BoundedLRU(capacity: max(1, capacity))
    }

    /// Hotkeys currently tracked; never above the capacity.
    public var count: Int { buckets.count }

    /// Takes one token from `hotkey`'s bucket at `now`.
    /// - Returns: true if one was available.
    public mutating func take(hotkey: String, now: MonotonicTime) -> Bool {
        var bucket = buckets.get(hotkey) ?? Bucket(tokens: limit.burst, updated: now)
        bucket.tokens = min(limit.burst, bucket.tokens + now.seconds(since: bucket.updated) * limit.requestsPerSecond)
        bucket.updated = max(bucket.updated, now)
        let allowed = bucket.tokens >= 1
        if allowed { bucket.tokens -= 1 }
        buckets.set(hotkey, bucket)
        return allowed
    }
}
