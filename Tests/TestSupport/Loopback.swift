// Loopback sockets for tests: a port nothing listens on, and a listener that never answers.
import Foundation

/// A port on 127.0.0.1 where nothing listens (bound, then closed).
public func closedPort() throws -> Int {
    let listener = try SilentListener()
    let port = listener.port
    listener.close()
    return port
}

/// A socket call that failed, with its errno.
public struct SocketFailure: Error, CustomStringConvertible {
    public let call: String
    public let code: Int32
    public var description: String { "\(call): \(String(cString: strerror(code)))" }
    public init(call: String, code: Int32) { self.call = call; self.code = code }
}

/// A TCP socket listening on 127.0.0.1 at an ephemeral port.
public func loopbackListener() throws -> (fd: Int32, port: Int) {
    let fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
    guard fd >= 0 else { throw SocketFailure(call: "socket", code: errno) }
    var address = sockaddr_in()
    address.sin_family = sa_family_t(AF_INET)
    address.sin_addr.s_addr = inet_addr("127.0.0.1")
    address.sin_port = 0
    var length = socklen_t(MemoryLayout<sockaddr_in>.size)
    let bound = withUnsafeMutablePointer(to: &address) {
        $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { pointer -> Bool in
            bind(fd, pointer, length) == 0 && listen(fd, 16) == 0 && getsockname(fd, pointer, &length) == 0
        }
    }
    guard bound else {
        let code = errno
        Foundation.close(fd)
        throw SocketFailure(call: "bind/listen", code: code)
    }
    return (fd, Int(UInt16(bigEndian: address.sin_port)))
}

/// A TCP listener that never accepts: connects complete in the kernel's backlog, nothing answers.
public final class SilentListener {
    private var fd: Int32
    public let port: Int

    public init() throws {
        (fd, port) = try loopbackListener()
    }

    public func close() {
        if fd >= 0 { Foundation.close(fd) }
        fd = -1
    }

    deinit { close() }
}

