// The inference side: a priority queue of FORWARD jobs, a queue of generation jobs, and the one
// worker thread that runs FORWARDs in dynamic batches and generations in engine steps (DecodeLoop),
// taking turns, and hands finished response frames back to the loop.
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
    /// Unique per server: the loop matches completions to the job it is still waiting for.
    let jobID: UInt64
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
    let jobID: UInt64
    let connectionID: UInt64
    let requestID: UInt64
    let code: ReturnCode
    let frame: [UInt8]
    let arrival: UInt64
    let tokens: Int
}

/// What `Scheduler.submit` did with a job.
enum SubmitOutcome: Equatable {
    case queued
    /// The queue already holds `maxQueue` jobs, or the scheduler is stopping (answer Backoff).
    case full
    /// Even started at once the job would finish after its deadline (answer Timeout now).
    case doomed(estimateUs: UInt64, leftUs: UInt64, tokensPerSecond: Double)
}

/// The best rate (per second) seen over the last `capacity` real measurements younger than
/// `maxAgeNs`; `seed` while fewer than `minSamples` are. The best rather than an average, so a
/// refusal means the work is doomed even at the fastest the engine has recently been; at least
/// three, so one cold batch (page faults on the weights, first-use buffers: 20× slower seen here)
/// is never the whole evidence; and samples age out, so a slow spell is forgotten even when it made
/// the server refuse everything big since.
struct RateWindow {
    static let capacity = 16
    static let minSamples = 3
    static let maxAgeNs: UInt64 = 300_000_000_000
    let seed: Double
    private var samples: [(rate: Double, at: UInt64)] = []
    private var next = 0

    init(seed: Double) { self.seed = seed }

    func rate(now: UInt64) -> Double {
        let fresh = samples.filter { now - min(now, $0.at) <= Self.maxAgeNs }
        guard fresh.count >= Self.minSamples else { return seed }
        return fresh.map(\.rate).max() ?? seed
    }

    mutating func observe(_ rate: Double, at time: UInt64) {
        if samples.count < Self.capacity {
            samples.append((rate, time))
        } else {
            samples[next] = (rate, time)
            next = (next + 1) % Self.capacity
        }
    }
}

/// The cost of a job, estimated from what real batches achieved (docs/PROTOCOL.md, "Deadlines"):
/// cost = tokens / T + response bytes / E, with T the engine's tokens per second over batches of at
/// least `minObservedTokens` tokens (smaller ones are dominated by fixed overhead) and E the response
/// bytes encoded per second over answers of at least 64 KiB, each a `RateWindow`.
struct CostModel {
    /// Seeds above what a CPU engine reaches, so before any measurement only work that is doomed
    /// even at that speed is refused (e.g. 4,096 tokens in 1 ms would need 4.1 M tokens/s).
    static let seedTokensPerSecond = 1_000_000.0
    static let seedEncodeBytesPerSecond = 4e9
    static let minObservedTokens = 32

    /// The rates at one moment, to price several jobs with.
    struct Rates {
        let tokensPerSecond: Double
        let encodeBytesPerSecond: Double

        func estimateNs(_ job: ForwardJob) -> UInt64 {
            UInt64((Double(job.forward.tokenCount) / tokensPerSecond
                    + Double(job.forward.responseBytes) / encodeBytesPerSecond) * 1e9)
        }
    }

    private var compute = RateWindow(seed: seedTokensPerSecond)
    private var encode = RateWindow(seed: seedEncodeBytesPerSecond)

    func rates(now: UInt64) -> Rates {
        Rates(tokensPerSecond: compute.rate(now: now), encodeBytesPerSecond: encode.rate(now: now))
    }

    mutating func observeCompute(tokens: Int, ns: UInt64, at time: UInt64) {
        guard tokens >= Self.minObservedTokens, ns > 0 else { return }
        compute.observe(Double(tokens) * 1e9 / Double(ns), at: time)
    }

    mutating func observeEncode(bytes: Int, ns: UInt64, at time: UInt64) {
        guard bytes >= 64 * 1024, ns > 0 else { return }
        encode.observe(Double(bytes) * 1e9 / Double(ns), at: time)
    }
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
    /// The running generations (worker thread only); nil when the backend does not generate.
    private let decode: DecodeLoop?

    private let condition = NSCondition()
    private var queue: [ForwardJob] = []
    private var busy = false
    /// When the running batch is estimated to end (for the cost of the work ahead of a new job).
    private var busyUntil: UInt64 = 0
    private var promotions = 0
    private var stopping = false
    private var costs = CostModel()
    private var thread: Thread?
    /// Generation jobs waiting for the engine (for KV cache space or sequence slots), in
    /// (priority, arrival) order.
    private var generationQueue: [GenerationJob] = []
    /// Generations running, as of the worker's last step (for `isIdle` and the gauges).
    private var runningGenerations = 0
    /// Rows of running generations past their prompt, as of the last step.
    private var decodingRows = 0
    /// The worker's last turn was a generation step: a queued FORWARD batch goes next.
    private var lastTurnWasStep = false
    /// How long the last generation step took (the cost of the step ahead of a new FORWARD).
    private var lastStepNs: UInt64 = 0
    /// The most recent finished generations' timings (`recentGenerations`).
    private var records: [GenerationRecord] = []
    private var nextRecord = 0
    static let recordCapacity = 1024

    /// `deliver` is called on the worker thread with each finished response, and must not assume
    /// its receiver outlives the worker (the server passes a closure holding it weakly).
    init(backend: InferenceBackend, encoder: SynapseEncoder, maxQueue: Int, maxBatchRows: Int, maxBatchTokens: Int,
         decode: DecodeLoop? = nil, deliver: @escaping ([Completion]) -> Void) {
        self.backend = backend
        self.encoder = encoder
        self.maxQueue = maxQueue
        self.maxBatchRows = maxBatchRows
        self.maxBatchTokens = maxBatchTokens
        self.decode = decode
        self.deliver = deliver
    }

    func start() {
        let thread = Thread { [self] in workerLoop() }
        thread.name = "axon-worker"
        thread.stackSize = 8 << 20
        self.thread = thread
        thread.start()
    }

    /// Stops the worker after its current batch and drops the queued jobs. Does not wait: the
    /// server answers every job it still waits for itself (Unavailable) and ignores late completions.
    func stop() {
        condition.lock()
        stopping = true
        queue.removeAll()
        generationQueue.removeAll()
        condition.broadcast()
        condition.unlock()
    }

    /// Queues a job unless the queue is full or the job cannot meet its deadline even if it ran
    /// after the work already ahead of it (estimated with the measured throughput).
    func submit(_ job: ForwardJob) -> SubmitOutcome {
        condition.lock()
        defer { condition.unlock() }
        guard queue.count + generationQueue.count < maxQueue, !stopping else { return .full }
        let now = monotonicNanoseconds()
        var index = queue.count
        while index > 0, queue[index - 1].priority < job.priority { index -= 1 }
        let rates = costs.rates(now: now)
        // While generations run, the worker alternates: a generation step before each batch ahead.
        let steps = runningGenerations > 0 ? UInt64(index + 1) * lastStepNs : 0
        let ahead = queue[..<index].reduce(busy ? busyUntil - min(busyUntil, now) : 0) { $0 + rates.estimateNs($1) } + steps
        let finish = now + ahead + rates.estimateNs(job)
        if finish > job.deadline {
            return .doomed(estimateUs: (finish - now) / 1000, leftUs: (job.deadline - min(job.deadline, now)) / 1000,
                           tokensPerSecond: rates.tokensPerSecond)
        }
        queue.insert(job, at: index)
        condition.signal()
        return .queued
    }

    /// Jobs waiting: FORWARDs and generations not yet started.
    var depth: Int { condition.lock(); defer { condition.unlock() }; return queue.count + generationQueue.count }
    /// Jobs the starvation guard has served ahead of a waiting higher-priority job so far.
    var promotionCount: Int { condition.lock(); defer { condition.unlock() }; return promotions }
    var isIdle: Bool {
        condition.lock(); defer { condition.unlock() }
        return queue.isEmpty && !busy && generationQueue.isEmpty && runningGenerations == 0
    }
    /// The throughput estimate the scheduler refuses doomed work with (tokens per second).
    var estimatedTokensPerSecond: Double { condition.lock(); defer { condition.unlock() }; return costs.rates(now: monotonicNanoseconds()).tokensPerSecond }

    /// The worker: FORWARD batches and generation steps take turns while both have work (see
    /// docs/PROTOCOL.md, "Server model"); a FORWARD batch taken while generations run holds at most
    /// `stepTokens` tokens (or its first job), so neither kind waits for more than one turn of the other.
    private func workerLoop() {
        while true {
            condition.lock()
            while queue.isEmpty && generationQueue.isEmpty && runningGenerations == 0 && !stopping { condition.wait() }
            if stopping {
                condition.unlock()
                decode?.removeAll()
                publishGenerationState()
                return
            }
            let now = monotonicNanoseconds()
            let early = admitGenerations(now: now)
            let generating = !(decode?.isEmpty ?? true)
            let forwardTurn = !queue.isEmpty && (!generating || lastTurnWasStep)
            var batch: [ForwardJob] = []
            if forwardTurn {
                batch = takeBatch(tokenLimit: generating ? (decode?.stepTokens ?? maxBatchTokens) : maxBatchTokens)
                let rates = costs.rates(now: now)
                busyUntil = now + batch.reduce(0) { $0 + rates.estimateNs($1) }
            } else if generating {
                busyUntil = now + lastStepNs
            } else {
                // Only generations that cannot start yet: answer those that gave up, or sleep until one may.
                if early.isEmpty, let wake = generationQueue.map(\.waitUntil).min() {
                    _ = condition.wait(until: Date(timeIntervalSinceNow: Double(wake - min(wake, now)) / 1e9 + 0.001))
                }
                condition.unlock()
                deliver(early)
                continue
            }
            busy = true
            condition.unlock()
            deliver(early)
            if forwardTurn {
                run(batch)
            } else if generating {
                runStep()
            }
            condition.lock()
            busy = false
            lastTurnWasStep = !forwardTurn && generating
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

    /// Jobs in serving order that fit together in `tokenLimit` tokens (the first job always does,
    /// up to `maxBatchTokens`) and `maxBatchRows`. A job needing
    /// every position's logits joins only a batch that computes them anyway. Called with the lock held.
    private func takeBatch(tokenLimit: Int) -> [ForwardJob] {
        var batch: [ForwardJob] = []
        var tokens = 0, rows = 0
        var remaining: [ForwardJob] = []
        remaining.reserveCapacity(queue.count)
        let now = monotonicNanoseconds()
        for job in servingOrder(now: now) {
            let fits = (batch.isEmpty || tokens + job.forward.tokenCount <= tokenLimit)
                && tokens + job.forward.tokenCount <= maxBatchTokens && rows + job.forward.batch <= maxBatchRows
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
        Completion(jobID: job.jobID, connectionID: job.connectionID, requestID: job.requestID, code: response.code,
                   frame: response.serializedFrame(), arrival: job.arrival,
                   tokens: response.code == .success ? job.forward.tokenCount : 0)
    }

    private func timeout(_ job: ForwardJob, _ message: String) -> Completion {
        frame(job, Response(id: job.requestID, code: .timeout, message: message))
    }

    /// Runs one batch and delivers each job's response as soon as it is encoded. A job is answered
    /// Timeout, without compute, when its deadline has passed or the estimate says the batch up to
    /// it would end after the deadline; and after compute when its response is ready too late.
    private func run(_ batch: [ForwardJob]) {
        var early: [Completion] = []
        var live: [ForwardJob] = []
        let start = monotonicNanoseconds()
        let model = condition.withLock { costs.rates(now: start) }
        var cumulative: UInt64 = 0
        for job in batch where !job.cancellation.isCancelled {
            let cost = model.estimateNs(job)
            if start > job.deadline {
                early.append(timeout(job, "deadline passed after \((start - job.arrival) / 1000) µs in the queue, before compute started"))
            } else if start + cumulative + cost > job.deadline {
                early.append(timeout(job, "would finish about \((cumulative + cost) / 1000) µs from now at the measured "
                    + "\(Int(model.tokensPerSecond)) tokens/s, after its deadline (\((job.deadline - start) / 1000) µs left)"))
            } else {
                cumulative += cost
                live.append(job)
            }
        }
        // metrics: every job taken waited from its arrival until now.
        let queuedSeconds = Double(batch.reduce(UInt64(0)) { $0 + (start - min(start, $1.arrival)) }) / 1e9
        deliver(early)
        guard !live.isEmpty else {
            metrics?.queued(seconds: queuedSeconds)
            return
        }

        var rows: [[Int32]] = []
        var placements: [[RowPlacement]] = []
        var tokenOffset = 0, selectedOffset = 0
        for job in live {
            placements.append(job.forward.rows.map { row in
                defer { tokenOffset += row.count; selectedOffset += min(2, row.count) }
                if row.isEmpty {
                    return RowPlacement(backendRow: nil, tokenOffset: tokenOffset, length: 0, selectedOffset: selectedOffset)
                }
                rows.append(row)
                return RowPlacement(backendRow: rows.count - 1, tokenOffset: tokenOffset, length: row.count,
                                    selectedOffset: selectedOffset)
            })
        }
        let wantsHidden = live.contains { $0.forward.wantsHidden }
        let logits = live.map(\.forward.logits).max() ?? .none
        let batchRows = UInt32(rows.count)
        var answered = 0
        var computed: UInt64 = 0   // metrics: when the backend's outputs were ready
        do {
            try backend.forward(rows: rows, hidden: wantsHidden, logits: logits) { output in
                computed = monotonicNanoseconds()
                condition.withLock { costs.observeCompute(tokens: tokenOffset, ns: computed - start, at: computed) }
                for (index, job) in live.enumerated() {
                    defer { answered += 1 }
                    let encodeStart = monotonicNanoseconds()
                    if job.cancellation.isCancelled { continue }
                    if encodeStart > job.deadline {
                        deliver([timeout(job, "the batch's compute ended \((encodeStart - job.deadline) / 1000) µs after the deadline")])
                        continue
                    }
                    let results = encoder.encode(job.forward, placements: placements[index], output: output)
                    let encoded = monotonicNanoseconds()
                    // Honest timing: compute_us is the engine's time for the batch plus this job's own encoding.
                    let timing = Timing(queueUs: UInt32(clamping: (start - job.arrival) / 1000),
                                        computeUs: UInt32(clamping: (computed - start + encoded - encodeStart) / 1000),
                                        batchRows: batchRows)
                    let completion = frame(job, Response(id: job.requestID, code: .success, timing: timing,
                                                         forward: ForwardResponse(results: results)))
                    let ready = monotonicNanoseconds()
                    condition.withLock { costs.observeEncode(bytes: completion.frame.count, ns: ready - encodeStart, at: ready) }
                    if ready > job.deadline {
                        deliver([timeout(job, "the response was ready \((ready - job.deadline) / 1000) µs after the deadline")])
                    } else {
                        deliver([completion])
                    }
                }
            }
        } catch {
            deliver(live.dropFirst(answered).map { job in
                frame(job, Response(id: job.requestID, code: .unknownException, message: "the engine failed on this batch: \(error)"))
            })
        }
        let end = monotonicNanoseconds()
        if computed == 0 { computed = end }
        metrics?.ranBatch(rows: rows.count, seconds: [.queue: queuedSeconds, .compute: Double(computed - start) / 1e9,
                                                      .encode: Double(end - computed) / 1e9])
    }
}

// MARK: - Generation

/// What the generation side holds, as of the worker's last step.
public struct GenerationStatus: Sendable, Equatable {
    /// Generations waiting to start (for KV cache space, sequence slots, or the worker).
    public var waiting: Int
    /// Generations running.
    public var running: Int
    /// Rows of running generations whose prompt is in the cache (each decodes every step).
    public var decodingRows: Int
}

/// When one finished generation's phases happened (monotonic nanoseconds), for `axon bench --decode`.
public struct GenerationRecord: Sendable {
    public let requestID: UInt64
    public let arrival: UInt64
    /// Its first engine step.
    public let started: UInt64
    /// Its first token was chosen.
    public let firstToken: UInt64
    public let finished: UInt64
    /// Tokens chosen (one per live sequence per step).
    public let generatedTokens: Int
}

extension Scheduler {
    /// Queues a generation unless the queue is full, or even its prompt cannot be read by its
    /// deadline at the measured throughput.
    func submitGeneration(_ job: GenerationJob) -> SubmitOutcome {
        condition.lock()
        defer { condition.unlock() }
        guard queue.count + generationQueue.count < maxQueue, !stopping, decode != nil else { return .full }
        let now = monotonicNanoseconds()
        let rates = costs.rates(now: now)
        let prefillNs = UInt64(Double(job.generation.promptTokens) / rates.tokensPerSecond * 1e9)
        if now + prefillNs > job.deadline {
            return .doomed(estimateUs: prefillNs / 1000, leftUs: (job.deadline - min(job.deadline, now)) / 1000,
                           tokensPerSecond: rates.tokensPerSecond)
        }
        var index = generationQueue.count
        while index > 0, generationQueue[index - 1].priority < job.priority { index -= 1 }
        generationQueue.insert(job, at: index)
        condition.signal()
        return .queued
    }

    var generationStatus: GenerationStatus {
        condition.withLock { GenerationStatus(waiting: generationQueue.count, running: runningGenerations, decodingRows: decodingRows) }
    }

    /// The finished generations' timings, oldest first (at most the last 1,024).
    var recentGenerations: [GenerationRecord] {
        condition.withLock { Array(records[nextRecord...] + records[..<nextRecord]) }
    }

    /// Starts every waiting generation that fits, in serving order (starving first, then
    /// priority, then arrival; a job that does not fit lets smaller ones behind it start), and
    /// answers those cancelled, past their deadline, or past their wait. Called with the lock held.
    fileprivate func admitGenerations(now: UInt64) -> [Completion] {
        guard let decode, !generationQueue.isEmpty else { return [] }
        var answers: [Completion] = []
        var waiting: [GenerationJob] = []
        let starving = generationQueue.filter { now - min(now, $0.arrival) >= ($0.deadline - $0.arrival) / 2 }
        let order = starving.isEmpty ? generationQueue
            : starving.sorted { $0.arrival < $1.arrival } + generationQueue.filter { now - min(now, $0.arrival) < ($0.deadline - $0.arrival) / 2 }
        var started = 0
        for job in order {
            if job.cancellation.isCancelled { continue }
            if now > job.deadline {
                answers.append(generationAnswer(job, Response(id: job.requestID, code: .timeout,
                    message: "deadline passed after \((now - job.arrival) / 1000) µs waiting for the engine, before generation started")))
            } else if decode.fits(job) {
                do {
                    let generation = try decode.admit(job, now: now)
                    started += 1
                    if generation.isFinished {   // nothing to generate: every synapse failed or every row is empty
                        decode.remove(generation)
                        answers.append(finishedAnswer(generation, now: now))
                    }
                } catch {
                    answers.append(generationAnswer(job, Response(id: job.requestID, code: .unknownException,
                                                                  message: "the engine could not start the generation: \(error)")))
                }
            } else if now >= job.waitUntil {
                let usage = decode.backend.kvUsage
                answers.append(generationAnswer(job, Response(id: job.requestID, code: .backoff,
                    message: "the KV cache is full: \(mebibytes(decode.reservedBytes)) of \(mebibytes(decode.backend.kvCapacityBytes)) MiB "
                        + "and \(decode.reservedSequences) of \(decode.maxSequences) sequences are held by \(decode.active.count) running "
                        + "generations (\(mebibytes(usage.usedBytes)) MiB in use), this one needs \(mebibytes(job.generation.kvBytes)) MiB and "
                        + "\(job.generation.sequences) sequence slot\(job.generation.sequences == 1 ? "" : "s"); retry later")))
            } else {
                waiting.append(job)
            }
        }
        generationQueue = waiting.sorted { $0.priority != $1.priority ? $0.priority > $1.priority : $0.arrival < $1.arrival }
        if started > 0 || !answers.isEmpty { publishGenerationStateLocked() }
        return answers
    }

    /// One generation step: drops cancelled generations, answers those past their deadline
    /// (Timeout, nothing partial), runs the step, answers the finished and the failed.
    fileprivate func runStep() {
        guard let decode else { return }
        var answers: [Completion] = []
        let now = monotonicNanoseconds()
        for generation in decode.active {
            if generation.job.cancellation.isCancelled {
                decode.remove(generation)
            } else if now > generation.job.deadline {
                decode.remove(generation)
                let done = generation.rows.filter(\.finished).count
                answers.append(generationAnswer(generation.job, Response(id: generation.job.requestID, code: .timeout,
                    message: "the deadline passed \((now - generation.job.deadline) / 1000) µs ago with \(done) of \(generation.rows.count) rows "
                        + "finished (\(generation.generated) tokens generated); nothing partial is returned")))
            }
        }
        let report = decode.step(now: now)
        let end = monotonicNanoseconds()
        for (generation, message) in report.failed {
            answers.append(generationAnswer(generation.job, Response(id: generation.job.requestID, code: .unknownException, message: message)))
        }
        for generation in report.finished {
            answers.append(finishedAnswer(generation, now: end))
        }
        condition.withLock {
            if report.entries > 0 { lastStepNs = end - now }
            for generation in report.finished {
                let record = GenerationRecord(requestID: generation.job.requestID, arrival: generation.job.arrival,
                                              started: generation.admitted, firstToken: generation.firstToken ?? end,
                                              finished: end, generatedTokens: generation.generated)
                if records.count < Self.recordCapacity { records.append(record) } else {
                    records[nextRecord] = record
                    nextRecord = (nextRecord + 1) % Self.recordCapacity
                }
            }
            publishGenerationStateLocked()
        }
        metrics?.ranStep(generatedTokens: report.generatedTokens, seconds: report.seconds)
        deliver(answers)
    }

    /// A finished generation's answer: each synapse's ids and lengths, or its own failure.
    private func finishedAnswer(_ generation: ActiveGeneration, now: UInt64) -> Completion {
        let job = generation.job
        if now > job.deadline {
            return generationAnswer(job, Response(id: job.requestID, code: .timeout,
                message: "the generation finished \((now - job.deadline) / 1000) µs after its deadline; nothing is returned"))
        }
        let results = job.generation.synapses.enumerated().map { index, synapse -> SynapseResult in
            switch job.generation.plans[index] {
            case .failure(let refusal):
                return SynapseResult(type: synapse.type, code: refusal.code, message: refusal.message)
            case .success:
                let ids = job.generation.answerIDs(synapse: index, generation.outputs(synapse: index))
                return SynapseResult(type: synapse.type, code: .success, tensors: Seq2SeqEncoding.tensors(ids))
            }
        }
        let timing = Timing(queueUs: UInt32(clamping: (generation.admitted - min(generation.admitted, job.arrival)) / 1000),
                            computeUs: UInt32(clamping: (now - min(now, generation.admitted)) / 1000),
                            batchRows: UInt32(clamping: generation.mostStepRows))
        let response = Response(id: job.requestID, code: .success, timing: timing, forward: ForwardResponse(results: results))
        let generatedRows = generation.rows.reduce(0) { $0 + $1.decoder.output.count }
        return generationAnswer(job, response, tokens: job.generation.promptTokens + generatedRows)
    }

    private func generationAnswer(_ job: GenerationJob, _ response: Response, tokens: Int = 0) -> Completion {
        Completion(jobID: job.jobID, connectionID: job.connectionID, requestID: job.requestID, code: response.code,
                   frame: response.serializedFrame(), arrival: job.arrival, tokens: response.code == .success ? tokens : 0)
    }

    /// Publishes what the generations hold (for `isIdle` and the gauges). Worker thread.
    fileprivate func publishGenerationState() {
        condition.withLock { publishGenerationStateLocked() }
    }

    private func publishGenerationStateLocked() {
        guard let decode else { return }
        runningGenerations = decode.active.count
        decodingRows = decode.active.reduce(0) { $0 + $1.rows.filter(\.isDecoding).count }
        let usage = decode.backend.kvUsage
        metrics?.generationState(activeSequences: usage.sequences, kvCacheBytes: usage.usedBytes)
    }
}
