// Counts of what abusive or broken clients cause, and the rate-limited info-level summary of them:
// under a flood the debug log is off and one line per event would be a flood of its own.
import Foundation
import Logging
import Prometheus

/// Totals since start of refusals that point at abuse (public through `AxonServer.abuseCounts`).
public struct AbuseCounts: Sendable, Equatable, CustomStringConvertible {
    /// Connections closed at accept: `--max-connections` or `--max-connections-per-ip` reached.
    public var refusedConnections = 0
    /// Of those, refused by `--max-connections-per-ip`.
    public var refusedPerIP = 0
    /// Connections closed to make room for a new one (the oldest without an admitted FORWARD).
    public var evictedConnections = 0
    /// Connections closed because no FORWARD was admitted within `--idle-timeout` of accept.
    public var expiredUnproven = 0
    /// Frames that could not be read: a bad length prefix, or bytes that are not a Request.
    public var badFrames = 0
    /// Answers Backoff (queue full or rate limit) and Unauthenticated.
    public var backoffs = 0
    public var unauthenticated = 0

    public var isZero: Bool { self == AbuseCounts() }

    static func - (a: AbuseCounts, b: AbuseCounts) -> AbuseCounts {
        AbuseCounts(refusedConnections: a.refusedConnections - b.refusedConnections, refusedPerIP: a.refusedPerIP - b.refusedPerIP,
                    evictedConnections: a.evictedConnections - b.evictedConnections,
                    expiredUnproven: a.expiredUnproven - b.expiredUnproven, badFrames: a.badFrames - b.badFrames,
                    backoffs: a.backoffs - b.backoffs, unauthenticated: a.unauthenticated - b.unauthenticated)
    }

    public var description: String {
        "\(refusedConnections) refused connections (\(refusedPerIP) over the per-IP cap), \(evictedConnections) evicted, "
            + "\(expiredUnproven) closed without an admitted FORWARD, \(badFrames) bad frames, \(backoffs) Backoff, "
            + "\(unauthenticated) Unauthenticated"
    }
}

/// Thread-safe abuse counters with a summary logged at most once per interval, and only when
/// something happened in it; also exported as `axon_abuse_total{kind}` on the metrics page.
final class AbuseLog: @unchecked Sendable {
    /// The Prometheus `kind` label of each count.
    static let kinds: [(String, KeyPath<AbuseCounts, Int>)] = [
        ("refused_connection", \.refusedConnections), ("refused_per_ip", \.refusedPerIP),
        ("evicted_connection", \.evictedConnections), ("expired_unproven", \.expiredUnproven),
        ("bad_frame", \.badFrames), ("backoff", \.backoffs), ("unauthenticated", \.unauthenticated),
    ]

    private let lock = NSLock()
    private var counts = AbuseCounts()
    private var lastLogged = AbuseCounts()
    private var lastLogTime: UInt64
    private let intervalNs: UInt64
    private let exported: [(KeyPath<AbuseCounts, Int>, Counter)]

    init(interval: Double, now: UInt64, registry: PrometheusCollectorRegistry) {
        intervalNs = UInt64(max(0.001, interval) * 1e9)
        lastLogTime = now
        let descriptor = MetricNameDescriptor(metricName: "axon_abuse_total", unitName: "",
                                              helpText: "Refusals that point at abuse, by kind (summarised in the log every 10 s).")
        exported = Self.kinds.map { kind, path in (path, registry.makeCounter(descriptor: descriptor, labels: [("kind", kind)])) }
    }

    var snapshot: AbuseCounts { lock.withLock { counts } }

    func count(_ change: (inout AbuseCounts) -> Void) {
        let (before, after) = lock.withLock { () -> (AbuseCounts, AbuseCounts) in
            let before = counts
            change(&counts)
            return (before, counts)
        }
        for (path, counter) in exported where after[keyPath: path] > before[keyPath: path] {
            counter.increment(by: Int64(after[keyPath: path] - before[keyPath: path]))
        }
    }

    /// Logs what happened since the last summary, if the interval has passed and anything did.
    func summarize(now: UInt64, logger: Logger) {
        let delta: AbuseCounts? = lock.withLock {
            guard now - lastLogTime >= intervalNs else { return nil }
            defer { lastLogged = counts; lastLogTime = now }
            return counts - lastLogged
        }
        guard let delta, !delta.isZero else { return }
        logger.info("in the last \(String(format: "%.0f", Double(intervalNs) / 1e9)) s: \(delta)")
    }
}
