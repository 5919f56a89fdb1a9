import ArgumentParser
import Logging

/// `--log-level` of the commands that run a server (serve, mixture): stderr, one level for all labels.
enum ServerLogging {
    static func check(level: String) throws {
        if Logger.Level(rawValue: level) == nil { throw ValidationError("--log-level \(level) is not one of trace, debug, info, warning, error") }
    }

    /// Bootstraps logging once per process and returns the command's logger.
    static func start(level name: String, label: String) -> Logger {
        let level = Logger.Level(rawValue: name) ?? .info
        LoggingSystem.bootstrap { label in
            var handler = StreamLogHandler.standardError(label: label)
            handler.logLevel = level
            return handler
        }
        return Logger(label: label)
    }
}
