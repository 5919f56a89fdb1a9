import Foundation
import Wire

/// A snapshot of the server's counters (printed on SIGUSR1).
public struct ServerCounters: Sendable, CustomStringConvertible {
    /// Every answered frame (PING, INFO, FORWARD and refusals) by code.
    public var requestsByCode: [ReturnCode: Int] = [:]
    /// FORWARD answers, whatever the code (`axon_total_forward`).
    public var forwardRequests = 0
    /// Tokens computed for successful FORWARDs.
    public var tokens = 0
    public var queueDepth = 0
    public var openConnections = 0
    /// Connections closed at accept because --max-connections were open.
    public var refusedConnections = 0
    /// FORWARD latency percentiles (arrival to response queued), in milliseconds, over the most
    /// recent FORWARD answers. PING and INFO are left out: they take microseconds and would hide
    /// the engine's latency.
    public var latencyP50Ms = 0.0
    public var latencyP90Ms = 0.0
    public var latencyP99Ms = 0.0

    public var totalRequests: Int { requestsByCode.values.reduce(0, +) }

    public var description: String {
        let codes = requestsByCode.sorted { $0.key.rawValue < $1.key.rawValue }.map { "\($0.key)=\($0.value)" }
        return "requests \(totalRequests) [\(codes.joined(separator: " "))], forwards \(forwardRequests), tokens \(tokens), "
            + "queue \(queueDepth), connections \(openConnections) (refused \(refusedConnections)), FORWARD latency ms p50 "
            + String(format: "%.2f p90 %.2f p99 %.2f", latencyP50Ms, latencyP90Ms, latencyP99Ms)
    }
}

/// Thread-safe counters: the SIGUSR1 snapshot, with FORWARD latencies kept in a fixed ring (no
/// growth over a long run), and the Prometheus registry (`metrics`) fed from the same calls.
final class CounterStore: @unchecked Sendable {
    private let lock = NSLock()
    private var counters = ServerCounters()
    private var latenciesUs = [UInt32](repeating: 0, count: 16_384)
    private var latencyCount = 0
    let metrics = ServerMetrics()

    /// A FORWARD's answer.
    func record(code: ReturnCode, latencyNs: UInt64, tokens: Int) {
        record(method: .forward, code: code, latencyNs: latencyNs, tokens: tokens)
    }

    /// Any answered frame; `.unspecified` for frames that did not decode. Only FORWARDs enter the
    /// latency percentiles and histogram.
    func record(method: Method, code: ReturnCode, latencyNs: UInt64, tokens: Int) {
        lock.withLock {
            counters.requestsByCode[code, default: 0] += 1
            counters.tokens += tokens
            if method == .forward {
                counters.forwardRequests += 1
                latenciesUs[latencyCount % latenciesUs.count] = UInt32(clamping: latencyNs / 1000)
                latencyCount += 1
            }
        }
        metrics.answered(method: method, code: code, latencyNs: latencyNs, tokens: tokens)
    }

    func refusedConnection() {
        lock.withLock { counters.refusedConnections += 1 }
        metrics.refusedConnection()
    }

    func snapshot(queueDepth: Int, openConnections: Int) -> ServerCounters {
        lock.withLock {
            var result = counters
            result.queueDepth = queueDepth
            result.openConnections = openConnections
            let recent = latenciesUs.prefix(min(latencyCount, latenciesUs.count)).sorted()
            let recentMs = recent.map { Double($0) / 1000 }
            result.latencyP50Ms = percentile(recentMs, 0.5)
            result.latencyP90Ms = percentile(recentMs, 0.9)
            result.latencyP99Ms = percentile(recentMs, 0.99)
            return result
        }
    }
}

/// The element at index ⌊p·n⌋ (clamped) of an ascending array, or 0 when it is empty: the latency
/// percentile the server's counters and `axon loadgen` both report.
public func percentile(_ sorted: [Double], _ p: Double) -> Double {
    sorted.isEmpty ? 0 : sorted[min(sorted.count - 1, Int(p * Double(sorted.count)))]
}
