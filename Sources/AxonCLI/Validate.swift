import ArgumentParser
import Dispatch
import Foundation
import Identity
import Validator

/// `axon validate`: Bittensor's validator loop (docs/VALIDATING.md). The loop is Validator's
/// `ValidationLoop`; this command reads the files, prints a line a step and writes the outputs.
struct Validate: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Run the validator's loop: score a metagraph's axons on a corpus and write the weights set_weights would submit.",
        discussion: """
        Each step samples --batch windows of --seq + 8 standard (GPT-2) tokens from the corpus and sends the \
        first --seq of each, in network space, as TEXT_CAUSAL_LM_NEXT with --topk, to the next --uids-per-step \
        UIDs of a rotating random permutation of the metagraph. Each answer is scored by Bittensor's phrase \
        cross-entropy against the 8 held-out tokens; a timeout, an error code or a malformed answer (wrong shapes, \
        probabilities outside [0, 1], sums above 1 + 1e-6, phrase ids >= 50257) counts as the worst loss, \
        -log(1e-40) = 92.1, and is recorded per UID. Weights are exp(-EMA loss), normalised, with the lowest \
        --exclude-quantile set to 0 and no weight above --max-weight (docs/VALIDATING.md). After every step \
        --weights-out is rewritten atomically. Ctrl-C stops after the current step.

        The defaults are sized for CPU miners. Bittensor v3's validators used batch \(ValidationSettings.bittensorV3.batch), \
        sequence \(ValidationSettings.bittensorV3.seq), \(ValidationSettings.bittensorV3.uidsPerStep) UIDs a step \
        and a \(Int(ValidationSettings.bittensorV3.deadlineSeconds)) s deadline: \
        --batch 32 --seq 256 --uids-per-step 20 --deadline-ms 12000.
        """)
    @OptionGroup var keyOption: KeyOption
    @Option(help: "The metagraph snapshot: {netuid, block, neurons: [{uid, hotkey, stake, validator_permit}]}.") var metagraph: String
    @Option(help: "JSON list of {uid, hotkey, host, port}; entries whose uid and hotkey the metagraph does not register are skipped.")
    var endpoints: String
    @Option(parsing: .upToNextOption, help: "Text files, or JSONL (.jsonl, .ndjson) with a \"text\" field per line.") var corpus: [String]
    @Option(help: "Steps to run.") var steps: Int
    @Option(help: "Where to write the weights after every step (atomically).") var weightsOut: String
    @Option(help: "Windows (rows) per step.") var batch = ValidationSettings().batch
    @Option(help: "Standard tokens sent per window (8 more are held out and scored).") var seq = ValidationSettings().seq
    @Option(help: "UIDs queried per step.") var uidsPerStep = ValidationSettings().uidsPerStep
    @Option(help: "Phrases each answer lists.") var topk = ValidationSettings().topk
    @Option(help: "Milliseconds each UID gets to answer a step.") var deadlineMs = Int(ValidationSettings().deadline * 1000)
    @Option(help: "The EMA's weight on each new loss.") var ema = ValidationSettings().ema
    @Option(help: "This lowest fraction of the scored UIDs (by EMA loss) gets weight 0.") var excludeQuantile = ValidationSettings().excludeQuantile
    @Option(help: "The largest weight any UID may get (the rest is shared out in proportion).") var maxWeight = ValidationSettings().maxWeight
    @Option(help: "Seed of the windows and of the UID permutation.") var seed: UInt64 = ValidationSettings().seed
    @Option(help: "Append one row per UID queried per step: step,uid,hotkey,outcome,loss,ema_loss,weight,latency_ms.") var logCsv: String?
    @Flag(help: "Send unsigned requests (for --no-auth axons).") var unsigned = false

    func validate() throws {
        if steps < 1 { throw ValidationError("--steps must be at least 1, got \(steps)") }
        if corpus.isEmpty { throw ValidationError("give at least one --corpus file") }
        if deadlineMs < 1 { throw ValidationError("--deadline-ms must be at least 1, got \(deadlineMs)") }
    }

    func run() throws {
        let graph = try Metagraph.load(path: metagraph)
        let (neurons, skipped) = Endpoints.registered(try Endpoints.load(path: endpoints), in: graph)
        for (endpoint, actual) in skipped {
            FileHandle.standardError.write(Data("warning: endpoint uid \(endpoint.uid) names \(endpoint.hotkey), the metagraph has \(actual) there; skipped\n".utf8))
        }
        let standard = try TokenSpaceOption.networkStandard()
        let tokens = standard.tokenizer.encode(try Corpus.text(paths: corpus), addSpecial: false, parseSpecial: false)
        var settings = ValidationSettings()
        settings.batch = batch; settings.seq = seq; settings.uidsPerStep = uidsPerStep; settings.topk = topk
        settings.deadline = Double(deadlineMs) / 1000; settings.ema = ema
        settings.excludeQuantile = excludeQuantile; settings.maxWeight = maxWeight; settings.seed = seed
        let hotkey = unsigned ? nil : try keyOption.load(defaultName: "default")
        let loop = try ValidationLoop(settings: settings, netuid: graph.netuid, block: graph.block, neurons: neurons, tokens: tokens,
                                      transport: FanOutTransport(hotkey: hotkey))
        let csv = try logCsv.map { try StepCSV(path: $0) }
        print("validating \(neurons.count) UIDs of netuid \(graph.netuid) (block \(graph.block)) on \(tokens.count) standard tokens: "
              + "\(batch) x \(seq)+8 a step, \(min(uidsPerStep, neurons.count)) UIDs a step, deadline \(deadlineMs) ms")
        let interrupt = Interrupt()
        for _ in 0..<steps {
            let report = loop.runStep()
            let entries = loop.weights()
            try WeightsFile.writeAtomically(WeightsFile.json(netuid: graph.netuid, block: graph.block, step: report.step, entries: entries),
                                            to: weightsOut)
            try csv?.append(report, entries: entries)
            print(Self.line(report, entries: entries))
            fflush(stdout)
            if interrupt.received {
                print("interrupted: stopped after step \(report.step); \(weightsOut) holds its weights")
                break
            }
        }
    }

    /// One line a step: outcomes, the step's mean loss over scored answers, the leader, time.
    static func line(_ report: StepReport, entries: [WeightEntry]) -> String {
        var counts: [String: Int] = [:]
        var scored: [Double] = []
        for answer in report.answers {
            switch answer.grade {
            case .scored(let loss): counts["ok", default: 0] += 1; scored.append(loss)
            case .failed(let failure, _): counts[failure.key, default: 0] += 1
            }
        }
        let outcomes = counts.sorted { ($0.key == "ok" ? 0 : 1, $0.key) < ($1.key == "ok" ? 0 : 1, $1.key) }
            .map { "\($0.value) \($0.key)" }.joined(separator: ", ")
        let mean = scored.isEmpty ? "-" : String(format: "%.4f", scored.reduce(0, +) / Double(scored.count))
        let top = entries.max { $0.weight < $1.weight }
        let leader = top.map { String(format: "uid %d weight %.3f ema %.4f", $0.record.uid, $0.weight, $0.record.emaLoss ?? .nan) } ?? "-"
        return String(format: "step %d  %d UIDs: %@  mean loss %@  top %@  %.0f ms", report.step, report.answers.count, outcomes,
                      mean, leader, report.seconds * 1000)
    }
}

/// The per-step CSV (`--log-csv`) that scripts/plot-validation draws.
private final class StepCSV {
    private let handle: FileHandle

    init(path: String) throws {
        let fresh = !FileManager.default.fileExists(atPath: path)
        if fresh { FileManager.default.createFile(atPath: path, contents: nil) }
        guard let handle = FileHandle(forWritingAtPath: path) else { throw Failure("--log-csv \(path) cannot be opened for writing") }
        handle.seekToEndOfFile()
        self.handle = handle
        if fresh { handle.write(Data("step,uid,hotkey,outcome,loss,ema_loss,weight,latency_ms\n".utf8)) }
    }

    func append(_ report: StepReport, entries: [WeightEntry]) throws {
        let byUID = Dictionary(uniqueKeysWithValues: entries.map { ($0.record.uid, $0) })
        var rows = ""
        for answer in report.answers {
            let entry = byUID[answer.uid]
            let outcome = answer.grade.failure?.key ?? "ok"
            rows += "\(report.step),\(answer.uid),\(entry?.record.hotkey ?? ""),\(outcome),\(answer.grade.loss),"
                + "\(entry?.record.emaLoss.map { "\($0)" } ?? ""),\(entry?.weight ?? 0),\(String(format: "%.1f", answer.latency * 1000))\n"
        }
        handle.write(Data(rows.utf8))
    }

    deinit { handle.closeFile() }
}

/// SIGINT (Ctrl-C) noticed without stopping the process: the loop finishes its step, then stops.
private final class Interrupt: @unchecked Sendable {
    private let source: DispatchSourceSignal
    private let lock = NSLock()
    private var seen = false

    init() {
        signal(SIGINT, SIG_IGN)
        source = DispatchSource.makeSignalSource(signal: SIGINT, queue: .global())
        source.setEventHandler { [unowned self] in
            self.lock.withLock { self.seen = true }
            FileHandle.standardError.write(Data("interrupt: stopping after this step\n".utf8))
        }
        source.resume()
    }

    var received: Bool { lock.withLock { seen } }
}
