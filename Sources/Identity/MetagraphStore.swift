import Foundation

/// The current metagraph snapshot, shared between the server's threads. `reload` parses and
/// validates a new file first and swaps it in only when it is good, so readers always see a
/// whole, valid snapshot, and a bad file keeps the old one.
public final class MetagraphStore: @unchecked Sendable {
    private let lock = NSLock()
    private var snapshot: Metagraph

    public init(_ metagraph: Metagraph) {
        snapshot = metagraph
    }

    /// Loads the initial snapshot from `path`.
    /// - Throws: `MetagraphError`.
    public convenience init(path: String) throws {
        self.init(try Metagraph.load(path: path))
    }

    /// The snapshot in force (a value: later reloads do not change it).
    public var current: Metagraph {
        lock.lock()
        defer { lock.unlock() }
        return snapshot
    }

    /// Replaces the snapshot with the file at `path` if it loads and validates.
    /// - Returns: the new snapshot, or why it was refused (the old snapshot stays in force).
    @discardableResult
    public func reload(path: String) -> Result<Metagraph, MetagraphError> {
        let loaded: Metagraph
        do {
            loaded = try Metagraph.load(path: path)
        } catch let error as MetagraphError {
            return .failure(error)
        } catch {
            return .failure(.unreadable(path: path, reason: "\(error)"))
        }
        replace(with: loaded)
        return .success(loaded)
    }

    /// Swaps in an already validated snapshot.
    public func replace(with metagraph: Metagraph) {
        lock.lock()
        snapshot = metagraph
        lock.unlock()
    }
}
