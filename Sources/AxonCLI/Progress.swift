import Foundation

/// One line of progress on stderr for long commands (loadgen, score, bench), redrawn in place
/// with a carriage return at most every 0.1 s. It draws only when stderr is a terminal and the
/// command was not asked for machine-readable output, so pipes, logs and `--json` stay clean.
final class Progress: @unchecked Sendable {
    private let label: String
    private let unit: String
    private let total: Int
    private let enabled: Bool
    private let lock = NSLock()
    private let started = Date()
    private var done = 0
    private var lastDraw = Date.distantPast
    private var drawnWidth = 0

    /// Redraws are rate-limited to this interval (a terminal cannot show more, and each costs a write).
    static let interval = 0.1

    /// Whether progress would be drawn at all: stderr is a terminal that can return the carriage.
    static var terminalAvailable: Bool {
        isatty(STDERR_FILENO) == 1 && ProcessInfo.processInfo.environment["TERM"] != "dumb"
    }

    /// `total` is the count of `unit`s (e.g. "responses") `advance` reaches at the end; `quiet`
    /// (for `--json`) turns drawing off.
    init(_ label: String, total: Int, unit: String, quiet: Bool = false) {
        self.label = label
        self.unit = unit
        self.total = max(total, 1)
        enabled = !quiet && Self.terminalAvailable
    }

    /// Counts `count` more units done (any thread) and redraws if the last draw is old enough.
    func advance(by count: Int = 1, detail: String = "") {
        update(detail: detail) { $0 += count }
    }

    /// Sets the count done (any thread).
    func set(_ value: Int, detail: String = "") {
        update(detail: detail) { $0 = value }
    }

    private func update(detail: String, _ change: (inout Int) -> Void) {
        guard enabled else { return }
        lock.lock()
        defer { lock.unlock() }
        change(&done)
        let now = Date()
        guard now.timeIntervalSince(lastDraw) >= Self.interval || done >= total else { return }
        lastDraw = now
        let elapsed = now.timeIntervalSince(started)
        let fraction = Double(min(done, total)) / Double(total)
        var line = "\(label): \(done)/\(total) \(unit) (\(Int(fraction * 100))%), \(String(format: "%.0f", elapsed)) s"
        if done > 0 && done < total {
            line += String(format: ", about %.0f s left", elapsed / Double(done) * Double(total - done))
        }
        if !detail.isEmpty { line += ", " + detail }
        draw(line)
    }

    /// Clears the line, so what the command prints next starts on a clean one; a later
    /// `advance` draws it again at once.
    func finish() {
        guard enabled else { return }
        lock.lock()
        defer { lock.unlock() }
        draw("")
        lastDraw = .distantPast
    }

    /// Called with `lock` held. Pads over the previous line's tail instead of using terminal codes.
    private func draw(_ line: String) {
        let padding = String(repeating: " ", count: max(0, drawnWidth - line.count))
        FileHandle.standardError.write(Data(("\r" + line + padding + (line.isEmpty ? "\r" : "")).utf8))
        drawnWidth = line.count
    }
}
