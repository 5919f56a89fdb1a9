// The inference side: a priority queue of FORWARD jobs and the one worker thread that runs them in
// dynamic batches and hands finished response frames back to the loop.
import Foundation
import Identity
import Wire

/// Monotonic nanoseconds.
func monotonicNanoseconds() -> UInt64 {
    var time = timespec()
    clock_gettime(CLOCK_MONOTONIC, &time)
    return UInt64(time.tv_sec) * 1_000_000_000 + UInt64(time.tv_nsec)
}

/// Set by the loop when a connection closes, read by the worker to skip its queued work.
final class CancellationFlag: @unchecked Sendable {
    private let lock = NSLock()
    private var cancelled = false
    var isCancelled: Bool { lock.withLock { cancelled } }
    func cancel() { lock.withLock { cancelled = true } }
}

struct ForwardJob {
    let connectionID: UInt64
    let requestID: UInt64
    let arrival: UInt64
    let deadline: UInt64
    /// Higher runs first (stake; unregistered senders last); equal priorities run in arrival order.
    let priority: AdmissionPriority
    let forward: ValidatedForward
    let cancellation: CancellationFlag
}

/// A response frame ready for the loop to write.
struct Completion {
    let connectionID: UInt64
    let requestID: UInt64
    let code: ReturnCode
    let frame: [UInt8]
    let arrival: UInt64
    let tokens: Int
}

final class Scheduler: @unchecked Sendable {
    private let backend: InferenceBackend
    private let encoder: SynapseEncoder
    private let maxQueue: Int
    private let maxBatchRows: Int
    private let maxBatchTokens: Int
    private let deliver: ([Completion]) -> Void
    /// Where batches and phase times are counted (set once, before `start`).
    var metrics: ServerMetrics?

    private let condition = NSCondition()
    private var queue: [ForwardJob] = []
    private var busy = false
    private var promotions = 0
    private var stopping = false
    private var thread: Thread?
    private let finished = DispatchSemaphore(value: 0)

    init(backend: InferenceBackend, encoder: SynapseEncoder, maxQueue: Int, maxBatchRows: Int, maxBatchTokens: Int,
         deliver: @escaping ([Completion]) -> Void) {
        self.backend = backend
        self.encoder = encoder
        self.maxQueue = maxQueue
        self.maxBatchRows = maxBatchRows
        self.maxBatchTokens = maxBatchTokens
        self.deliver = deliver
    }

    func start() {
        let thread = Thread { [self] in
            workerLoop()
            finished.signal()
        }
        thread.name = "axon-worker"
        thread.stackSize = 8 << 20
        self.thread = thread
        thread.start()
    }

    /// Stops the worker after its current batch; queued jobs are dropped. Waits up to `timeout` seconds.
    func stop(timeout: Double) {
        condition.lock()
        stopping = true
        queue.removeAll()
        condition.broadcast()
        condition.unlock()
        if thread != nil { _ = finished.wait(timeout: .now() + timeout) }
    }

    /// Queues a job; false when the queue already holds `maxQueue` jobs (answer Backoff).
    func submit(_ job: ForwardJob) -> Bool {
        condition.lock()
        defer { condition.unlock() }
        guard queue.count < maxQueue, !stopping else { return false }
        var index = queue.count
        while index > 0, queue[index - 1].priority < job.priority { index -= 1 }
        queue.insert(job, at: index)
        condition.signal()
        return true
    }

    var depth: Int { condition.lock(); defer { condition.unlock() }; return queue.count }
    /// Jobs the starvation guard has served ahead of a waiting higher-priority job so far.
    var promotionCount: Int { condition.lock(); defer { condition.unlock() }; return promotions }
    var isIdle: Bool { condition.lock(); defer { condition.unlock() }; return queue.isEmpty && !busy }

    private func workerLoop() {
        while true {
            condition.lock()
            while queue.isEmpty && !stopping { condition.wait() }
            if stopping { condition.unlock(); return }
            let batch = takeBatch()
            busy = true
            condition.unlock()
            deliver(run(batch))
            condition.lock()
            busy = false
            condition.unlock()
        }
    }

    /// Whether `job` has waited at least half its deadline (the starvation guard's threshold).
    private static func isStarving(_ job: ForwardJob, now: UInt64) -> Bool {
        now - min(now, job.arrival) >= (job.deadline - job.arrival) / 2
    }

    /// The order jobs are considered in: the starvation guard first promotes every job that has
    /// waited at least half its deadline (oldest first), so a steady stream of high-stake requests
    /// cannot starve a low-stake one; then the queue's own (priority, arrival) order.
    private func servingOrder(now: UInt64) -> [ForwardJob] {
        let starving = queue.filter { Self.isStarving($0, now: now) }
        guard !starving.isEmpty else { return queue }
        return starving.sorted { $0.arrival < $1.arrival } + queue.filter { !Self.isStarving($0, now: now) }
    }

    /// Jobs in serving order that fit together in `maxBatchTokens` and `maxBatchRows`. A job needing
    /// every position's logits joins only a batch that computes them anyway. Called with the lock held.
    private func takeBatch() -> [ForwardJob] {
        var batch: [ForwardJob] = []
        var tokens = 0, rows = 0
        var remaining: [ForwardJob] = []
        remaining.reserveCapacity(queue.count)
        let now = monotonicNanoseconds()
        for job in servingOrder(now: now) {
            let fits = tokens + job.forward.tokenCount <= maxBatchTokens && rows + job.forward.batch <= maxBatchRows
            let compatible = batch.isEmpty || job.forward.logits != .all || batch[0].forward.logits == .all
            if fits && compatible {
                batch.append(job)
                tokens += job.forward.tokenCount
                rows += job.forward.batch
            } else {
                remaining.append(job)
            }
        }
        // Promoted: a starving job taken while a higher-priority one waits.
        if let waiting = remaining.map(\.priority).max() {
            promotions += batch.filter { Self.isStarving($0, now: now) && $0.priority < waiting }.count
        }
        // `remaining` keeps the serving order; restore (priority, arrival) for the jobs left.
        queue = remaining.sorted { $0.priority != $1.priority ? $0.priority > $1.priority : $0.arrival < $1.arrival }
        return batch
    }

    private func frame(_ job: ForwardJob, _ response: Response) -> Completion {
        Completion(connectionID: job.connectionID, requestID: job.requestID, code: response.code,
                   frame: response.serializedFrame(), arrival: job.arrival,
                   tokens: response.code == .success ? job.forward.tokenCount : 0)
    }

    private func run(_ batch: [ForwardJob]) -> [Completion] {
        var completions: [Completion] = []
        var live: [ForwardJob] = []
        let start = monotonicNanoseconds()
        for job in batch where !job.cancellation.isCancelled {
            if start > job.deadline {
                let waited = (start - job.arrival) / 1000
                completions.append(frame(job, Response(id: job.requestID, code: .timeout,
                    message: "deadline passed after \(waited) µs in the queue, before compute started")))
            } else {
                live.append(job)
            }
        }
        // metrics: every job taken waited from its arrival until now.
        let queuedSeconds = Double(batch.reduce(UInt64(0)) { $0 + (start - min(start, $1.arrival)) }) / 1e9
        guard !live.isEmpty else {
            metrics?.queued(seconds: queuedSeconds)
            return completions
        }

        var rows: [[Int32]] = []
        var placements: [[RowPlacement]] = []
        var tokenOffset = 0
        for job in live {
            placements.append(job.forward.rows.map { row in
                defer { tokenOffset += row.count }
                if row.isEmpty { return RowPlacement(backendRow: nil, tokenOffset: tokenOffset, length: 0) }
                rows.append(row)
                return RowPlacement(backendRow: rows.count - 1, tokenOffset: tokenOffset, length: row.count)
            })
        }
        let wantsHidden = live.contains { $0.forward.wantsHidden }
        let logits = live.map(\.forward.logits).max() ?? .none
        let batchRows = UInt32(rows.count)
        let answeredBeforeCompute = completions.count
        var computed: UInt64 = 0   // metrics: when the backend's outputs were ready
        do {
            try backend.forward(rows: rows, hidden: wantsHidden, logits: logits) { output in
                computed = monotonicNanoseconds()
                for (index, job) in live.enumerated() {
                    let results = encoder.encode(job.forward, placements: placements[index], output: output)
                    let timing = Timing(queueUs: UInt32(clamping: (start - job.arrival) / 1000),
                                        computeUs: UInt32(clamping: (computed - start) / 1000), batchRows: batchRows)
                    completions.append(frame(job, Response(id: job.requestID, code: .success, timing: timing,
                                                           forward: ForwardResponse(results: results))))
                }
            }
        } catch {
            completions.removeLast(completions.count - answeredBeforeCompute)
            for job in live {
                completions.append(frame(job, Response(id: job.requestID, code: .unknownException,
                                                       message: "the engine failed on this batch: \(error)")))
            }
        }
        let end = monotonicNanoseconds()
        if computed == 0 { computed = end }
        metrics?.ranBatch(rows: rows.count, seconds: [.queue: queuedSeconds, .compute: Double(computed - start) / 1e9,
                                                      .encode: Double(end - computed) / 1e9])
        return completions
    }
}
