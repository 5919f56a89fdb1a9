// `axon playground`'s process: one libuv loop thread for HTTP, worker threads for the questions.
import Foundation
import HTTPResponder
import LibUV

public final class PlaygroundServer: @unchecked Sendable {
    public let api: PlaygroundAPI
    private let host: String
    private let requestedPort: Int
    private let parser: HTTPRequestParser
    private var thread: Thread?
    private var stopWakeup: AsyncWakeup?
    private let started = DispatchSemaphore(value: 0)
    private let stopped = DispatchSemaphore(value: 0)
    private var startError: Error?
    /// The bound port, once `start` returned.
    public private(set) var port = 0

    /// Hosts that only this machine can reach: localhost, ::1, and IPv4 addresses 127.0.0.0/8.
    public static func isLoopback(_ host: String) -> Bool {
        if host == "localhost" || host == "::1" { return true }
        var address = in_addr()
        return inet_pton(AF_INET, host, &address) == 1 && UInt32(bigEndian: address.s_addr) >> 24 == 127
    }

    public init(api: PlaygroundAPI, host: String, port: Int, parser: HTTPRequestParser = HTTPRequestParser()) {
        self.api = api
        self.host = host
        self.requestedPort = port
        self.parser = parser
    }

    /// Binds and starts serving on a thread of its own.
    /// - Throws: `UVError` when the address cannot be bound.
    public func start() throws {
        let thread = Thread { [self] in run() }
        thread.name = "axon-playground-http"
        self.thread = thread
        thread.start()
        started.wait()
        if let startError { throw startError }
    }

    private func run() {
        let loop: EventLoop
        let listener: HTTPListener
        do {
            loop = try EventLoop()
            listener = try HTTPListener(loop: loop, host: host, port: requestedPort, parser: parser) { [api] request, reply in
                api.handle(request, reply: reply)
            }
            stopWakeup = try AsyncWakeup(loop: loop) { [weak self] in
                listener.close()
                self?.stopWakeup?.close()
            }
        } catch {
            startError = error
            started.signal()
            stopped.signal()
            return
        }
        port = listener.port
        started.signal()
        loop.run()
        stopped.signal()
    }

    /// Closes the listener and every connection, and waits for the loop to end.
    public func stop() {
        guard let stopWakeup else { return }
        stopWakeup.send()
        stopped.wait()
        self.stopWakeup = nil
    }

    /// Blocks until the loop ends (after `stop`).
    public func wait() {
        stopped.wait()
        stopped.signal()
    }
}
