import Foundation
import TestSupport
import Wire

/// A fake axon on 127.0.0.1 that answers every request with whatever `answer` builds: hand-built
/// frames with wrong dtypes, short buffers or absurd shapes, to check that clients treat an
/// axon's answer as untrusted input. One thread accepts; each connection gets a thread.
public final class MisbehavingAxon: @unchecked Sendable {
    public let port: Int
    private let listener: Int32
    private let answer: @Sendable (Request) -> Response
    private let extra: @Sendable (Request) -> [Response]
    private let lock = NSLock()
    private var connections: [Int32] = []
    private let acceptDone = DispatchSemaphore(value: 0)

    /// `answer` gives each request's answer (sent with the request's id); `extra` any answers
    /// sent after it, with the ids they carry.
    public init(answer: @escaping @Sendable (Request) -> Response,
         extra: @escaping @Sendable (Request) -> [Response] = { _ in [] }) throws {
        self.answer = answer
        self.extra = extra
        (listener, port) = try loopbackListener()
        let thread = Thread { [self] in
            acceptLoop()
            acceptDone.signal()
        }
        thread.start()
    }

    public var endpoint: String { "127.0.0.1:\(port)" }

    private func acceptLoop() {
        while true {
            let fd = accept(listener, nil, nil)
            if fd < 0 {
                if errno == EINTR { continue }
                return   // the listener was shut down
            }
            lock.withLock { connections.append(fd) }
            Thread { [self] in serve(fd) }.start()
        }
    }

    /// Reads request frames and writes one answer frame per request until the peer closes.
    private func serve(_ fd: Int32) {
        defer {
            lock.withLock {
                connections.removeAll { $0 == fd }
                Foundation.close(fd)
            }
        }
        let decoder = FrameDecoder(maxFrameSize: 1 << 20)
        var buffer = ByteBuffer()
        var chunk = [UInt8](repeating: 0, count: 64 * 1024)
        while true {
            let count = chunk.withUnsafeMutableBytes { recv(fd, $0.baseAddress, $0.count, 0) }
            if count < 0 && errno == EINTR { continue }
            if count <= 0 { return }
            buffer.append(contentsOf: chunk[0..<count])
            while let frame = try? decoder.decode(&buffer), let request = try? Request(serializedBytes: frame) {
                var response = answer(request)
                response.id = request.id
                let bytes = ([response] + extra(request)).flatMap { FrameEncoder.frame($0.serializedBytes()) }
                var sent = 0
                while sent < bytes.count {
                    let n = bytes.withUnsafeBytes { send(fd, $0.baseAddress.unsafelyUnwrapped + sent, bytes.count - sent, Int32(MSG_NOSIGNAL)) }
                    if n <= 0 { return }
                    sent += n
                }
            }
            buffer.compact()
        }
    }

    private var stopped = false

    public func stop() {
        guard lock.withLock({ let first = !stopped; stopped = true; return first }) else { return }
        shutdown(listener, Int32(SHUT_RDWR))
        Foundation.close(listener)
        acceptDone.wait()
        for fd in lock.withLock({ connections }) { shutdown(fd, Int32(SHUT_RDWR)) }
    }

    deinit { stop() }
}

/// Little-endian buffers for hand-built tensors.
public enum RawBytes {
    public static func float32(_ values: [Float]) -> [UInt8] { values.flatMap { withUnsafeBytes(of: $0.bitPattern.littleEndian, Array.init) } }
    public static func float64(_ values: [Double]) -> [UInt8] { values.flatMap { withUnsafeBytes(of: $0.bitPattern.littleEndian, Array.init) } }
    public static func int32(_ values: [Int32]) -> [UInt8] { values.flatMap { withUnsafeBytes(of: $0.littleEndian, Array.init) } }
}
