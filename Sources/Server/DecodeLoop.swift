// Iteration-level generation: the running generations, and the one engine step that advances all
// of them (every decoding sequence by one token, plus prefill chunks of prompts under the step's
// token budget). Worker thread only; the Scheduler decides when a step runs (docs/PROTOCOL.md,
// "Server model").
import Foundation
import Identity
import Sampling
import Wire

/// A TEXT_SEQ_2_SEQ request, waiting for the engine or running.
struct GenerationJob {
    let jobID: UInt64
    let connectionID: UInt64
    let requestID: UInt64
    let arrival: UInt64
    let deadline: UInt64
    /// Until when it may wait for KV cache space or sequence slots; past it, it is answered Backoff.
    let waitUntil: UInt64
    let priority: AdmissionPriority
    let generation: ValidatedGeneration
    let cancellation: CancellationFlag
}

/// One beam after a step: it continues beam `parent`'s sequence with `token`.
struct BeamContinuation: Equatable {
    let parent: Int
    let token: Int32
}

/// Chooses one row's tokens from the logits of its live sequences: greedy or sampling (one
/// sequence) or beam search (several, forked from the prompt's).
protocol RowDecoder {
    /// `logits` holds one row of `vocab` next-token logits per live beam, beam i's at row i (a
    /// single row right after the prompt); the decoder may overwrite them.
    /// - Returns: the beams to run next; empty once the row is finished.
    /// - Throws: when no token can be chosen (the generation fails).
    mutating func advance(_ logits: UnsafeMutableBufferPointer<Float>, vocab: Int) throws -> [BeamContinuation]
    /// The generated ids (final once finished; for streaming decoders, final as they come).
    var output: [Int32] { get }
    /// The token the last `advance` chose, when each chosen token is final at once (it can be shown
    /// while the row goes on); nil for beam search.
    var streamedToken: Int32? { get }
}

/// One row of one TEXT_SEQ_2_SEQ synapse: its prompt, its sequences and its decoder.
final class GenerationRow {
    let synapse: Int
    let row: Int
    let prompt: [Int32]
    /// Prompt positions already in the cache.
    var prefilled = 0
    /// The live sequences, one per beam (one during prefill).
    var sequences: [SequenceHandle] = []
    /// The token each sequence appends at the next step.
    var feed: [Int32] = []
    var decoder: any RowDecoder
    var finished = false
    /// Set by a step that consumed logits: the beams to run next.
    fileprivate var continuations: [BeamContinuation]?

    init(synapse: Int, row: Int, prompt: [Int32], decoder: any RowDecoder) {
        self.synapse = synapse
        self.row = row
        self.prompt = prompt
        self.decoder = decoder
    }

    var isDecoding: Bool { !finished && prefilled == prompt.count }
}

/// A generation the engine is running.
final class ActiveGeneration {
    let job: GenerationJob
    let rows: [GenerationRow]
    let admitted: UInt64
    /// When its first token was chosen (time to first token).
    var firstToken: UInt64?
    /// Tokens chosen so far (one per live sequence per step that consumed logits).
    var generated = 0
    /// Most step rows it took part in.
    var mostStepRows = 0
    /// Called after each step with each streaming row's new token (row index among `rows`).
    var onToken: ((Int, Int32) -> Void)?

    init(job: GenerationJob, rows: [GenerationRow], admitted: UInt64) {
        self.job = job
        self.rows = rows
        self.admitted = admitted
    }

    var isFinished: Bool { rows.allSatisfy(\.finished) }

    /// Each synapse's outputs, one per request row (empty for empty rows and failed synapses).
    func outputs(synapse: Int) -> [[Int32]] {
        var result = Array(repeating: [Int32](), count: job.generation.batch)
        for row in rows where row.synapse == synapse { result[row.row] = row.decoder.output }
        return result
    }
}

/// What one step did.
struct StepReport {
    var entries = 0
    var tokens = 0
    var generatedTokens = 0
    var seconds = 0.0
    /// Generations whose every row finished (removed from the loop, cache released).
    var finished: [ActiveGeneration] = []
    /// Generations the backend failed on (removed, cache released), with the error.
    var failed: [(ActiveGeneration, String)] = []
}

/// The running generations and their reservations. Worker thread only.
final class DecodeLoop {
    let backend: GenerationBackend
    /// Tokens one step runs at most: every decoding sequence's one, then prefill chunks.
    let stepTokens: Int
    /// Sequences held at once at most (within the backend's).
    let maxSequences: Int
    private(set) var active: [ActiveGeneration] = []
    /// KV bytes and sequences reserved by the running generations (their worst case).
    private(set) var reservedBytes = 0
    private(set) var reservedSequences = 0
    /// The samplers' vocabulary-sized buffers, shared by every row (one thread).
    private lazy var scratch = SamplingScratch(vocabSize: backend.modelInfo.vocabSize)

    init(backend: GenerationBackend, stepTokens: Int, maxSequences: Int) {
        self.backend = backend
        self.stepTokens = stepTokens
        self.maxSequences = maxSequences
    }

    var isEmpty: Bool { active.isEmpty }

    /// Whether the job's reservation fits beside the running ones now.
    func fits(_ job: GenerationJob) -> Bool {
        reservedBytes + job.generation.kvBytes <= backend.kvCapacityBytes
            && reservedSequences + job.generation.sequences <= maxSequences
    }

    /// Starts a job: a sequence for every row that generates, and its reservation.
    /// - Throws: what the backend throws when it has no sequence left (nothing is kept then).
    @discardableResult
    func admit(_ job: GenerationJob, now: UInt64) throws -> ActiveGeneration {
        var rows: [GenerationRow] = []
        for (synapse, plan) in job.generation.plans.enumerated() {
            guard case .success(let parameters) = plan else { continue }
            for (index, prompt) in job.generation.rows.enumerated() {
                let limit = job.generation.limits[synapse][index]
                guard limit > 0 else { continue }
                rows.append(GenerationRow(synapse: synapse, row: index, prompt: prompt,
                                          decoder: try makeRowDecoder(parameters, prompt: prompt, limit: limit, row: index, scratch: scratch)))
            }
        }
        do {
            for row in rows { row.sequences = [try backend.newSequence()] }
        } catch {
            for row in rows { row.sequences.forEach(backend.release) }
            throw error
        }
        let generation = ActiveGeneration(job: job, rows: rows, admitted: now)
        active.append(generation)
        reservedBytes += job.generation.kvBytes
        reservedSequences += job.generation.sequences
        return generation
    }

    /// Ends a running generation (finished, timed out, cancelled, failed): its cache is freed now.
    func remove(_ generation: ActiveGeneration) {
        guard let index = active.firstIndex(where: { $0 === generation }) else { return }
        active.remove(at: index)
        for row in generation.rows {
            row.sequences.forEach(backend.release)
            row.sequences = []
            row.feed = []
        }
        reservedBytes -= generation.job.generation.kvBytes
        reservedSequences -= generation.job.generation.sequences
    }

    func removeAll() {
        for generation in active { remove(generation) }
    }

    /// The order prefill chunks are handed out in: generations that waited half their deadline
    /// first (oldest first), then stake priority, then arrival (as FORWARD jobs are served).
    private func prefillOrder(now: UInt64) -> [ActiveGeneration] {
        func starving(_ g: ActiveGeneration) -> Bool {
            now - min(now, g.job.arrival) >= (g.job.deadline - min(g.job.deadline, g.job.arrival)) / 2
        }
        return active.sorted { a, b in
            let (sa, sb) = (starving(a), starving(b))
            if sa != sb { return sa }
            if sa { return a.job.arrival < b.job.arrival }
            if a.job.priority != b.job.priority { return a.job.priority > b.job.priority }
            return a.job.arrival < b.job.arrival
        }
    }

    /// One engine step over every running generation (see the file comment).
    func step(now: UInt64) -> StepReport {
        var report = StepReport()
        // (row, generation, tokens taken from the prompt or nil for a decode entry, beam)
        var entries: [StepEntry] = []
        var targets: [(row: GenerationRow, owner: ActiveGeneration, prefill: Int?)] = []
        for generation in active {
            for row in generation.rows where row.isDecoding {
                for (beam, sequence) in row.sequences.enumerated() {
                    entries.append(StepEntry(sequence: sequence, tokens: row.feed[beam...beam]))
                    if beam == 0 { targets.append((row, generation, nil)) }
                }
            }
        }
        var budget = stepTokens - entries.count
        prefill: for generation in prefillOrder(now: now) {
            for row in generation.rows where !row.finished && row.prefilled < row.prompt.count {
                guard budget > 0, entries.count < backend.maxStepRows else { break prefill }
                let chunk = min(row.prompt.count - row.prefilled, budget)
                entries.append(StepEntry(sequence: row.sequences[0], tokens: row.prompt[row.prefilled..<(row.prefilled + chunk)]))
                targets.append((row, generation, chunk))
                budget -= chunk
            }
        }
        guard !entries.isEmpty else { return report }
        report.entries = entries.count
        report.tokens = entries.reduce(0) { $0 + $1.tokens.count }
        let participants = Set(targets.map { ObjectIdentifier($0.owner) })
        var undecidable: [(ActiveGeneration, String)] = []
        let start = monotonicNanoseconds()
        do {
            try backend.step(entries) { logits in
                let vocab = logits.count / entries.count
                var entry = 0
                for target in targets {
                    let row = target.row
                    let width = target.prefill == nil ? row.sequences.count : 1
                    defer { entry += width }
                    if let chunk = target.prefill, row.prefilled + chunk < row.prompt.count { continue }
                    let rows = UnsafeMutableBufferPointer(rebasing: logits[(entry * vocab)..<((entry + width) * vocab)])
                    do { row.continuations = try row.decoder.advance(rows, vocab: vocab) } catch {
                        undecidable.append((target.owner, "no token could be chosen for row \(row.row): \(error)"))
                        row.continuations = nil
                        continue
                    }
                    target.owner.generated += width
                    report.generatedTokens += width
                }
            }
        } catch {
            let message = "the engine failed on a generation step: \(error)"
            for generation in active where participants.contains(ObjectIdentifier(generation)) {
                report.failed.append((generation, message))
            }
            for (generation, _) in report.failed { remove(generation) }
            for target in targets { target.row.continuations = nil }
            return report
        }
        let end = monotonicNanoseconds()
        report.seconds = Double(end - start) / 1e9
        for generation in active where participants.contains(ObjectIdentifier(generation)) {
            generation.mostStepRows = max(generation.mostStepRows, entries.count)
        }
        var broken = undecidable
        for target in targets {
            let row = target.row
            if let chunk = target.prefill { row.prefilled += chunk }
            guard let continuations = row.continuations else { continue }
            row.continuations = nil
            if target.owner.firstToken == nil { target.owner.firstToken = end }
            if target.owner.onToken != nil, let token = row.decoder.streamedToken, let index = target.owner.rows.firstIndex(where: { $0 === row }) {
                target.owner.onToken?(index, token)
            }
            if continuations.isEmpty {
                row.finished = true
                row.sequences.forEach(backend.release)
                row.sequences = []
                row.feed = []
            } else {
                do { try regroup(row, continuations) } catch {
                    broken.append((target.owner, "the engine could not fork a beam: \(error)"))
                }
            }
        }
        for (generation, message) in broken where active.contains(where: { $0 === generation }) {
            report.failed.append((generation, message))
            remove(generation)
        }
        for generation in active where generation.isFinished { report.finished.append(generation) }
        for generation in report.finished { remove(generation) }
        return report
    }

    /// Gives each new beam a sequence: the first child of a parent takes the parent's sequence,
    /// further children fork it (sharing its cache), and parents without children are released
    /// first, so the row never holds more sequences than beams.
    private func regroup(_ row: GenerationRow, _ continuations: [BeamContinuation]) throws {
        let old = row.sequences
        var taken = Set<Int>()
        var next: [SequenceHandle?] = continuations.map { continuation in
            taken.insert(continuation.parent).inserted ? old[continuation.parent] : nil
        }
        for (index, sequence) in old.enumerated() where !taken.contains(index) { backend.release(sequence) }
        row.sequences = next.compactMap { $0 }
        for (index, continuation) in continuations.enumerated() where next[index] == nil {
            let forked = try backend.fork(old[continuation.parent])
            next[index] = forked
            row.sequences.append(forked)
        }
        row.sequences = next.compactMap { $0 }
        row.feed = continuations.map(\.token)
    }
}
