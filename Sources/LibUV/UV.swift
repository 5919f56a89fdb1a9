// Small Swift types over libuv handles. Each handle's `data` holds a retained reference to its
// Swift owner from `init` until libuv's close callback, so callbacks always find a live object.
// All of these are used on the loop thread only (except `AsyncWakeup.send`). They are `package`:
// the axon's server, the playground's HTTP responder and ServerTests use them, nothing outside.
import CLibUV
import Foundation

/// A failed libuv call: the function and libuv's error name and message.
public struct UVError: Error, CustomStringConvertible {
    public let function: String
    public let code: Int32
    public var description: String {
        "\(function) failed: \(String(cString: uv_err_name(code))) (\(String(cString: uv_strerror(code))))"
    }
}

@discardableResult
package func uvCheck(_ result: Int32, _ function: String) throws -> Int32 {
    if result < 0 { throw UVError(function: function, code: result) }
    return result
}

/// One libuv loop and the buffer that every read on it lands in (reads are handled synchronously).
package final class EventLoop {
    package let loop: UnsafeMutablePointer<uv_loop_t>
    package static let readBufferSize = 256 * 1024
    package let readBuffer: UnsafeMutableRawPointer

    package init() throws {
        loop = .allocate(capacity: 1)
        readBuffer = .allocate(byteCount: Self.readBufferSize, alignment: 16)
        do { try uvCheck(uv_loop_init(loop), "uv_loop_init") } catch {
            loop.deallocate(); readBuffer.deallocate(); throw error
        }
        loop.pointee.data = readBuffer
    }

    /// Runs until no handle is left open.
    package func run() { uv_run(loop, UV_RUN_DEFAULT) }

    /// One iteration without blocking (runs pending close callbacks).
    package func runOnce() { uv_run(loop, UV_RUN_NOWAIT) }

    /// Whether the loop still has active handles or requests.
    package var isAlive: Bool { uv_loop_alive(loop) != 0 }

    deinit {
        uv_loop_close(loop)
        loop.deallocate()
        readBuffer.deallocate()
    }
}

/// The shared part of every handle: memory, the retained owner, and closing.
package class UVHandle {
    package let raw: UnsafeMutableRawPointer
    package private(set) var isClosing = false
    package var handle: UnsafeMutablePointer<uv_handle_t> { raw.assumingMemoryBound(to: uv_handle_t.self) }

    package init(size: Int) {
        raw = UnsafeMutableRawPointer.allocate(byteCount: size, alignment: 16)
        raw.initializeMemory(as: UInt8.self, repeating: 0, count: size)
    }

    /// Call once the uv_*_init succeeded: from now on libuv owns a reference until close.
    package func retainUntilClosed() {
        handle.pointee.data = Unmanaged.passRetained(self).toOpaque()
    }

    package static func owner<T: UVHandle>(_ handle: UnsafeMutableRawPointer?, as type: T.Type) -> T? {
        guard let data = handle?.assumingMemoryBound(to: uv_handle_t.self).pointee.data else { return nil }
        return Unmanaged<T>.fromOpaque(data).takeUnretainedValue()
    }

    /// Runs a `uv_*_start` call after `retainUntilClosed()`; when it fails, closes the handle (libuv's
    /// close callback then drops the retained reference) before rethrowing, so a handle that never
    /// started is neither left in the loop nor leaked.
    package func start(_ result: Int32, _ function: String) throws {
        do { try uvCheck(result, function) } catch {
            close()
            throw error
        }
    }

    package func close() {
        guard !isClosing else { return }
        isClosing = true
        uv_close(handle) { handle in
            guard let data = handle?.pointee.data else { return }
            Unmanaged<UVHandle>.fromOpaque(data).release()
        }
    }

    deinit { raw.deallocate() }
}

/// uv_async: wakes the loop from another thread.
package final class AsyncWakeup: UVHandle {
    private let action: () -> Void

    package init(loop: EventLoop, action: @escaping () -> Void) throws {
        self.action = action
        super.init(size: MemoryLayout<uv_async_t>.size)
        try uvCheck(uv_async_init(loop.loop, raw.assumingMemoryBound(to: uv_async_t.self)) { async in
            UVHandle.owner(UnsafeMutableRawPointer(async), as: AsyncWakeup.self)?.action()
        }, "uv_async_init")
        retainUntilClosed()
    }

    /// Thread-safe; several sends before the loop wakes run the action once.
    package func send() { uv_async_send(raw.assumingMemoryBound(to: uv_async_t.self)) }
}

/// uv_timer: a repeating callback on the loop.
package final class RepeatingTimer: UVHandle {
    private let action: () -> Void

    package init(loop: EventLoop, intervalMs: UInt64, action: @escaping () -> Void) throws {
        self.action = action
        super.init(size: MemoryLayout<uv_timer_t>.size)
        let timer = raw.assumingMemoryBound(to: uv_timer_t.self)
        try uvCheck(uv_timer_init(loop.loop, timer), "uv_timer_init")
        retainUntilClosed()
        try start(uv_timer_start(timer, { timer in
            UVHandle.owner(UnsafeMutableRawPointer(timer), as: RepeatingTimer.self)?.action()
        }, intervalMs, intervalMs), "uv_timer_start")
    }
}

/// uv_signal: a signal delivered on the loop thread.
package final class SignalWatcher: UVHandle {
    private let action: () -> Void

    package init(loop: EventLoop, signal: Int32, action: @escaping () -> Void) throws {
        self.action = action
        super.init(size: MemoryLayout<uv_signal_t>.size)
        let handle = raw.assumingMemoryBound(to: uv_signal_t.self)
        try uvCheck(uv_signal_init(loop.loop, handle), "uv_signal_init")
        retainUntilClosed()
        try start(uv_signal_start(handle, { handle, _ in
            UVHandle.owner(UnsafeMutableRawPointer(handle), as: SignalWatcher.self)?.action()
        }, signal), "uv_signal_start")
    }
}

/// A TCP socket: the listener or one accepted connection.
package final class TCPSocket: UVHandle {
    /// Bytes arrived (a view valid only during the call).
    package var onRead: ((UnsafeRawBufferPointer) -> Void)?
    /// The peer closed, or reading or writing failed.
    package var onEnd: ((Int32) -> Void)?
    /// A queued write finished (its size).
    package var onWriteDone: ((Int) -> Void)?
    /// The listener has a connection to accept.
    package var onConnection: (() -> Void)?

    private var stream: UnsafeMutablePointer<uv_stream_t> { raw.assumingMemoryBound(to: uv_stream_t.self) }
    private var tcp: UnsafeMutablePointer<uv_tcp_t> { raw.assumingMemoryBound(to: uv_tcp_t.self) }
    package private(set) var isReading = false

    package init(loop: EventLoop) throws {
        super.init(size: MemoryLayout<uv_tcp_t>.size)
        try uvCheck(uv_tcp_init(loop.loop, raw.assumingMemoryBound(to: uv_tcp_t.self)), "uv_tcp_init")
        retainUntilClosed()
    }

    /// Binds to an IPv4 or IPv6 address and listens.
    package func listen(host: String, port: Int, backlog: Int32 = 511) throws {
        var storage = sockaddr_storage()
        try withUnsafeMutablePointer(to: &storage) { pointer in
            let address = UnsafeMutableRawPointer(pointer)
            if uv_ip4_addr(host, Int32(port), address.assumingMemoryBound(to: sockaddr_in.self)) != 0 {
                try uvCheck(uv_ip6_addr(host, Int32(port), address.assumingMemoryBound(to: sockaddr_in6.self)),
                            "uv_ip6_addr(\(host))")
            }
            try uvCheck(uv_tcp_bind(tcp, address.assumingMemoryBound(to: sockaddr.self), 0), "uv_tcp_bind(\(host):\(port))")
        }
        try uvCheck(uv_listen(stream, backlog) { server, status in
            guard status >= 0 else { return }
            UVHandle.owner(UnsafeMutableRawPointer(server), as: TCPSocket.self)?.onConnection?()
        }, "uv_listen")
    }

    /// The bound port (after `listen`).
    package func localPort() throws -> Int {
        var storage = sockaddr_storage()
        var length = Int32(MemoryLayout<sockaddr_storage>.size)
        return try withUnsafeMutablePointer(to: &storage) { pointer in
            let address = UnsafeMutableRawPointer(pointer)
            try uvCheck(uv_tcp_getsockname(tcp, address.assumingMemoryBound(to: sockaddr.self), &length), "uv_tcp_getsockname")
            let port = pointer.pointee.ss_family == sa_family_t(AF_INET6)
                ? address.assumingMemoryBound(to: sockaddr_in6.self).pointee.sin6_port
                : address.assumingMemoryBound(to: sockaddr_in.self).pointee.sin_port
            return Int(UInt16(bigEndian: port))
        }
    }

    /// The peer's IP address as text (IPv4 dotted or IPv6), nil when unknown.
    package func peerAddress() -> String? {
        var storage = sockaddr_storage()
        var length = Int32(MemoryLayout<sockaddr_storage>.size)
        return withUnsafeMutablePointer(to: &storage) { pointer -> String? in
            let address = UnsafeMutableRawPointer(pointer)
            guard uv_tcp_getpeername(tcp, address.assumingMemoryBound(to: sockaddr.self), &length) == 0 else { return nil }
            var text = [CChar](repeating: 0, count: 64)
            let status = pointer.pointee.ss_family == sa_family_t(AF_INET6)
                ? uv_ip6_name(address.assumingMemoryBound(to: sockaddr_in6.self), &text, text.count)
                : uv_ip4_name(address.assumingMemoryBound(to: sockaddr_in.self), &text, text.count)
            return status == 0 ? String(decoding: text.prefix { $0 != 0 }.map { UInt8(bitPattern: $0) }, as: UTF8.self) : nil
        }
    }

    /// Accepts a pending connection from this listener into `client`.
    package func accept(into client: TCPSocket) throws {
        try uvCheck(uv_accept(stream, client.stream), "uv_accept")
        uv_tcp_nodelay(client.tcp, 1)
    }

    package func startReading() {
        guard !isReading, !isClosing else { return }
        let started = uv_read_start(stream, { handle, _, buffer in
            let readBuffer = handle?.pointee.loop.pointee.data
            buffer?.pointee = uv_buf_init(readBuffer?.assumingMemoryBound(to: CChar.self), UInt32(EventLoop.readBufferSize))
        }, { stream, count, buffer in
            guard let socket = UVHandle.owner(UnsafeMutableRawPointer(stream), as: TCPSocket.self) else { return }
            if count > 0, let base = buffer?.pointee.base {
                socket.onRead?(UnsafeRawBufferPointer(start: base, count: count))
            } else if count < 0 {
                socket.onEnd?(Int32(count))
            }
        })
        isReading = started == 0
    }

    package func stopReading() {
        guard isReading else { return }
        uv_read_stop(stream)
        isReading = false
    }

    /// Queues `bytes` for writing (copied); `onWriteDone` reports it when done.
    package func write(_ bytes: [UInt8]) {
        guard !isClosing else { return }
        let request = UnsafeMutablePointer<uv_write_t>.allocate(capacity: 1)
        // The size goes in a header before the bytes: libuv clears `bufs` before the callback.
        let header = MemoryLayout<Int>.stride
        let payload = UnsafeMutableRawPointer.allocate(byteCount: header + bytes.count, alignment: 16)
        payload.storeBytes(of: bytes.count, as: Int.self)
        bytes.withUnsafeBytes { source in
            if let base = source.baseAddress { (payload + header).copyMemory(from: base, byteCount: bytes.count) }
        }
        request.pointee.data = payload
        var buffer = uv_buf_init((payload + header).assumingMemoryBound(to: CChar.self), UInt32(bytes.count))
        let result = uv_write(request, stream, &buffer, 1) { request, status in
            guard let request else { return }
            let size = request.pointee.data?.load(as: Int.self) ?? 0
            request.pointee.data?.deallocate()
            let handle = request.pointee.handle
            request.deallocate()
            guard let socket = UVHandle.owner(UnsafeMutableRawPointer(handle), as: TCPSocket.self) else { return }
            socket.onWriteDone?(size)
            if status < 0 { socket.onEnd?(status) }
        }
        if result < 0 {
            payload.deallocate()
            request.deallocate()
            onWriteDone?(bytes.count)
            onEnd?(result)
        }
    }
}
