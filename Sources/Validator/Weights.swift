// What the validator's loop remembers of each UID (an EMA of its loss, its answers and failures),
// the weights it derives from that, and `weights.json`, written atomically after every step.
import Foundation

/// One UID's record.
public struct UIDRecord: Sendable, Equatable {
    public var uid: Int
    public var hotkey: String
    /// The exponential moving average of the UID's step losses; nil until it was first queried.
    public var emaLoss: Double?
    /// Answers that were scored (well-formed, code Success).
    public var responses = 0
    /// Failures by `AnswerFailure.key`.
    public var failures: [String: Int] = [:]

    public init(uid: Int, hotkey: String) { self.uid = uid; self.hotkey = hotkey }
}

/// The records of every UID the loop queries, and the EMA rule.
public struct Ledger: Sendable {
    /// The EMA's weight on the newest loss: ema ← (1 − α)·ema + α·loss, and ema = loss at a UID's
    /// first step (no prior to pull it toward).
    public let alpha: Double
    /// By UID, ascending.
    public private(set) var records: [UIDRecord]
    private let indexByUID: [Int: Int]

    public init(alpha: Double, neurons: [(uid: Int, hotkey: String)]) {
        self.alpha = alpha
        records = neurons.sorted { $0.uid < $1.uid }.map { UIDRecord(uid: $0.uid, hotkey: $0.hotkey) }
        indexByUID = Dictionary(uniqueKeysWithValues: records.enumerated().map { ($1.uid, $0) })
    }

    public func record(uid: Int) -> UIDRecord? { indexByUID[uid].map { records[$0] } }

    /// Folds one step's grade into the UID's record (a failure counts as the worst loss).
    public mutating func add(_ grade: AnswerGrade, uid: Int) {
        guard let index = indexByUID[uid] else { return }
        let loss = grade.loss
        records[index].emaLoss = records[index].emaLoss.map { (1 - alpha) * $0 + alpha * loss } ?? loss
        if let failure = grade.failure {
            records[index].failures[failure.key, default: 0] += 1
        } else {
            records[index].responses += 1
        }
    }
}

/// The weight function (docs/VALIDATING.md, "Weights"):
/// 1. each UID with an EMA scores s = exp(−ema_loss), the geometric-mean probability its answers
///    gave the held-out phrases (a UID never queried scores 0);
/// 2. the ⌊q·n⌋ worst of the n scored UIDs (highest EMA; ties: the higher UID) score 0;
/// 3. w = s / Σs (all 0 when Σs = 0);
/// 4. no weight exceeds `maxWeight`: weights above it are set to it and the rest of the mass is
///    shared among the others in proportion to s, until none exceeds it. When even equal shares
///    would exceed it (maxWeight × nonzero UIDs < 1) the weights are equal over the nonzero UIDs.
public enum WeightFunction {
    public static func weights(emaLosses: [Double?], excludeQuantile q: Double, maxWeight: Double) -> [Double] {
        var scores = emaLosses.map { $0.map { exp(-$0) } ?? 0 }
        let scored = emaLosses.indices.filter { emaLosses[$0] != nil }
        let excluded = Int((q * Double(scored.count)).rounded(.down))
        // Worst first: the highest EMA, and of equal EMAs the later index.
        let worstFirst = scored.sorted { a, b in
            let (x, y) = (emaLosses[a] ?? 0, emaLosses[b] ?? 0)
            return x != y ? x > y : a > b
        }
        for index in worstFirst.prefix(excluded) { scores[index] = 0 }
        let total = scores.reduce(0, +)
        guard total > 0 else { return scores.map { _ in 0 } }
        let nonzero = scores.indices.filter { scores[$0] > 0 }
        if maxWeight * Double(nonzero.count) < 1 {
            return scores.map { $0 > 0 ? 1 / Double(nonzero.count) : 0 }
        }
        var capped = Set<Int>()
        var weights = scores.map { $0 / total }
        while true {
            let free = nonzero.filter { !capped.contains($0) }
            let freeScore = free.reduce(0) { $0 + scores[$1] }
            let freeMass = 1 - maxWeight * Double(capped.count)
            for index in free { weights[index] = freeMass * scores[index] / freeScore }
            for index in capped { weights[index] = maxWeight }
            let over = free.filter { weights[$0] > maxWeight }
            if over.isEmpty { return weights }
            capped.formUnion(over)
        }
    }
}

/// One entry of `weights.json`.
public struct WeightEntry: Sendable, Equatable {
    public var record: UIDRecord
    public var weight: Double
    public init(record: UIDRecord, weight: Double) { self.record = record; self.weight = weight }
}

public enum WeightsFileError: Error, CustomStringConvertible, Equatable {
    case writeFailed(path: String, reason: String)
    case unreadable(path: String, reason: String)
    case malformed(path: String, reason: String)
    public var description: String {
        switch self {
        case let .writeFailed(path, reason): return "cannot write the weights file '\(path)': \(reason)"
        case let .unreadable(path, reason): return "cannot read the weights file '\(path)': \(reason)"
        case let .malformed(path, reason):
            return "the weights file '\(path)' is not axon validate's {netuid, block, step, weights: [{uid, hotkey, weight, ema_loss, …}]}: \(reason)"
        }
    }
}

/// A `weights.json` as read back (the mixture axon chooses and weighs its experts by it).
public struct WeightsSnapshot: Sendable, Equatable, Decodable {
    public struct Entry: Sendable, Equatable, Decodable {
        public var uid: Int
        public var hotkey: String
        public var weight: Double
        /// nil for a UID not scored yet.
        public var emaLoss: Double?
        public var responses: Int

        enum CodingKeys: String, CodingKey { case uid, hotkey, weight, emaLoss = "ema_loss", responses }

        public init(uid: Int, hotkey: String, weight: Double, emaLoss: Double?, responses: Int) {
            self.uid = uid; self.hotkey = hotkey; self.weight = weight; self.emaLoss = emaLoss; self.responses = responses
        }
    }
    public var netuid: UInt32
    public var block: UInt64
    public var step: Int
    public var weights: [Entry]

    public init(netuid: UInt32, block: UInt64, step: Int, weights: [Entry]) {
        self.netuid = netuid; self.block = block; self.step = step; self.weights = weights
    }
}

/// `weights.json`: what `set_weights` would submit, in the shape
/// `{"netuid":…, "block":…, "step":…, "weights":[{"uid":…, "hotkey":…, "weight":…, "ema_loss":…, "responses":…, "failures":{code: count}}]}`.
public enum WeightsFile {
    public static func json(netuid: UInt32, block: UInt64, step: Int, entries: [WeightEntry]) -> String {
        let rows = entries.map { entry -> String in
            let r = entry.record
            let failures = r.failures.sorted { $0.key < $1.key }.map { "\(quoted($0.key)): \($0.value)" }.joined(separator: ", ")
            return "    {\"uid\": \(r.uid), \"hotkey\": \(quoted(r.hotkey)), \"weight\": \(number(entry.weight)), "
                + "\"ema_loss\": \(r.emaLoss.map(number) ?? "null"), \"responses\": \(r.responses), \"failures\": {\(failures)}}"
        }
        return "{\"netuid\": \(netuid), \"block\": \(block), \"step\": \(step), \"weights\": [\n" + rows.joined(separator: ",\n") + "\n]}\n"
    }

    /// Reads a file `json` wrote. Files are at most 64 MiB (16,384 UIDs take about 3 MB).
    /// - Throws: `WeightsFileError.unreadable` or `.malformed`.
    public static func read(path: String) throws -> WeightsSnapshot {
        let read: Data?
        do { read = try BoundedFile.read(path, maxBytes: 64 << 20) } catch {
            throw WeightsFileError.unreadable(path: path, reason: error.localizedDescription)
        }
        guard let data = read else { throw WeightsFileError.malformed(path: path, reason: "larger than 64 MiB") }
        do { return try JSONDecoder().decode(WeightsSnapshot.self, from: data) } catch {
            throw WeightsFileError.malformed(path: path, reason: "\(error)")
        }
    }

    /// A finite double as JSON (Swift's shortest round-tripping form); non-finite as null.
    private static func number(_ value: Double) -> String { value.isFinite ? "\(value)" : "null" }

    private static func quoted(_ text: String) -> String {
        var out = "\""
        for scalar in text.unicodeScalars {
            switch scalar {
            case "\"": out += "\\\""
            case "\\": out += "\\\\"
            case _ where scalar.value < 0x20: out += String(format: "\\u%04x", scalar.value)
            default: out.unicodeScalars.append(scalar)
            }
        }
        return out + "\""
    }

    /// Replaces `path` with `contents` atomically: written to a temporary file beside it, flushed
    /// to disk, then renamed over it, so a reader (or a crash, or Ctrl-C) sees the old file or the
    /// new one, never a torn one.
    /// - Throws: `WeightsFileError.writeFailed`.
    public static func writeAtomically(_ contents: String, to path: String) throws {
        let url = URL(fileURLWithPath: path)
        let temporary = url.deletingLastPathComponent()
            .appendingPathComponent(".\(url.lastPathComponent).\(getpid()).tmp").path
        let fd = open(temporary, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0o644)
        guard fd >= 0 else { throw WeightsFileError.writeFailed(path: path, reason: "\(temporary): \(String(cString: strerror(errno)))") }
        let bytes = Array(contents.utf8)
        var written = 0
        while written < bytes.count {
            let n = bytes.withUnsafeBytes { Foundation.write(fd, $0.baseAddress.unsafelyUnwrapped + written, bytes.count - written) }
            if n < 0 && errno == EINTR { continue }
            guard n > 0 else {
                let reason = String(cString: strerror(errno))
                close(fd); unlink(temporary)
                throw WeightsFileError.writeFailed(path: path, reason: reason)
            }
            written += n
        }
        let synced = fsync(fd) == 0
        let reason = String(cString: strerror(errno))
        close(fd)
        guard synced else { unlink(temporary); throw WeightsFileError.writeFailed(path: path, reason: "fsync: \(reason)") }
        guard rename(temporary, path) == 0 else {
            let reason = String(cString: strerror(errno))
            unlink(temporary)
            throw WeightsFileError.writeFailed(path: path, reason: "rename: \(reason)")
        }
    }
}
