// The seam between the server and something that answers FORWARDs by asking elsewhere (the
// mixture axon, issue 15): the server keeps framing, admission, signatures, stake priority,
// deadlines and metrics; a relay gets each validated network-space request and answers it later,
// from any thread, so the loop and no worker ever waits on another machine.
import Foundation
import Identity
import Wire

/// What INFO reports about the network token space a relay serves (fields 17–19).
public struct RelayNetworkIdentity: Sendable, Equatable {
    public var name: String
    public var sha256: String
    public var vocabSize: Int

    public init(name: String, sha256: String, vocabSize: Int) {
        self.name = name; self.sha256 = sha256; self.vocabSize = vocabSize
    }
}

/// A FORWARD that passed the server's checks, handed to a relay: network space, ids below the
/// network vocabulary, within --max-batch, --max-seq and --max-batch-tokens.
public struct RelayedForward: Sendable {
    /// The request as sent (tokens, lengths, synapses, space NETWORK).
    public let request: ForwardRequest
    public let batch: Int
    public let seq: Int
    /// Each row's valid network ids (left padding removed).
    public let rows: [[Int32]]
    /// When the caller stops waiting, in `CLOCK_MONOTONIC` nanoseconds.
    public let deadline: UInt64
    /// The sender's admission priority (stake), for relays that order their own work.
    public let priority: AdmissionPriority

    /// Seconds until `deadline` (0 once past it).
    public var secondsLeft: Double {
        let now = monotonicNanoseconds()
        return now >= deadline ? 0 : Double(deadline - now) / 1e9
    }
}

/// A relay's answer to one FORWARD.
public enum RelayReply: Sendable {
    /// Success, with one result per synapse asked (each with its own code).
    case answered(ForwardResponse)
    /// The whole request failed with `code`.
    case refused(ReturnCode, String)
}

/// Answers validated FORWARDs asynchronously. `relay` must return at once and call `reply` exactly
/// once, from any thread, before the request's deadline when it can (the server writes whatever
/// arrives; the caller may have stopped waiting).
public protocol ForwardRelay: AnyObject, Sendable {
    /// INFO's model fields, read for every INFO (a relay may change what it reports, e.g. on reload).
    var modelInfo: ModelInfo { get }
    var network: RelayNetworkIdentity { get }
    func relay(_ forward: RelayedForward, reply: @escaping @Sendable (RelayReply) -> Void)
    /// Called on SIGHUP (after the metagraph reload), from the loop thread: must not block long.
    func reload()
}

/// One relayed FORWARD waiting or in flight.
struct RelayJob {
    let jobID: UInt64
    let connectionID: UInt64
    let requestID: UInt64
    let arrival: UInt64
    let forward: RelayedForward
    let cancellation: CancellationFlag
    var priority: AdmissionPriority { forward.priority }
}

/// Stake priority for relays: at most `maxInFlight` relayed at once; the rest wait, highest
/// priority first and in arrival order among equals, up to `maxQueue`. A job whose caller is gone
/// or whose deadline passed while it waited is answered without being relayed.
final class RelayQueue: @unchecked Sendable {
    private let relay: ForwardRelay
    private let maxInFlight: Int
    private let maxQueue: Int
    private let deliver: ([Completion]) -> Void
    private let lock = NSLock()
    private var waiting: [RelayJob] = []
    private var inFlight = 0
    private var stopping = false

    init(relay: ForwardRelay, maxInFlight: Int, maxQueue: Int, deliver: @escaping ([Completion]) -> Void) {
        self.relay = relay
        self.maxInFlight = maxInFlight
        self.maxQueue = maxQueue
        self.deliver = deliver
    }

    func submit(_ job: RelayJob) -> SubmitOutcome {
        let queued = lock.withLock { () -> Bool in
            guard !stopping, waiting.count < maxQueue else { return false }
            var index = waiting.count
            while index > 0, waiting[index - 1].priority < job.priority { index -= 1 }
            waiting.insert(job, at: index)
            return true
        }
        guard queued else { return .full }
        startWaiting()
        return .queued
    }

    var depth: Int { lock.withLock { waiting.count } }
    var isIdle: Bool { lock.withLock { waiting.isEmpty && inFlight == 0 } }

    func stop() { lock.withLock { stopping = true; waiting.removeAll() } }

    /// Starts waiting jobs while slots are free (outside the lock: a relay may answer at once).
    private func startWaiting() {
        while true {
            let next = lock.withLock { () -> RelayJob? in
                guard !stopping, inFlight < maxInFlight, !waiting.isEmpty else { return nil }
                inFlight += 1
                return waiting.removeFirst()
            }
            guard let job = next else { return }
            let started = monotonicNanoseconds()
            if job.cancellation.isCancelled {
                finish(job, started: started, .refused(.unavailable, "the connection closed before the request was relayed"))
            } else if started >= job.forward.deadline {
                finish(job, started: started, .refused(.timeout, "the deadline passed while the request waited for a relay slot (\(maxInFlight) in flight)"))
            } else {
                relay.relay(job.forward) { [self] reply in finish(job, started: started, reply) }
            }
        }
    }

    private func finish(_ job: RelayJob, started: UInt64, _ reply: RelayReply) {
        let now = monotonicNanoseconds()
        let timing = Timing(queueUs: UInt32(clamping: (started - min(started, job.arrival)) / 1000),
                            computeUs: UInt32(clamping: (now - min(now, started)) / 1000), batchRows: UInt32(clamping: job.forward.batch))
        let response: Response
        switch reply {
        case .answered(let forward): response = Response(id: job.requestID, code: .success, timing: timing, forward: forward)
        case let .refused(code, message): response = Response(id: job.requestID, code: code, message: message, timing: timing)
        }
        let tokens = response.code == .success ? job.forward.rows.reduce(0) { $0 + $1.count } : 0
        deliver([Completion(jobID: job.jobID, connectionID: job.connectionID, requestID: job.requestID, code: response.code,
                            frame: response.serializedFrame(), arrival: job.arrival, tokens: tokens)])
        lock.withLock { inFlight -= 1 }
        startWaiting()
    }
}
