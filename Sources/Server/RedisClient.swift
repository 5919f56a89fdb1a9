// One asynchronous Redis connection on the server's libuv loop: hiredis (Debian's libhiredis-dev)
// with its libuv adapter, so a command never blocks the loop. Loop thread only. The C callbacks
// find their client through the context's `data`, a retained `ContextLink` released when hiredis
// frees the context; commands carry only an integer tag, so no Swift object is lent to C per call.
import CHiredis
import CLibUV
import Foundation
import LibUV

/// A Redis reply, copied out of hiredis's reply tree (which hiredis frees after the callback).
enum RedisReply: Equatable {
    case string([UInt8])
    case status(String)
    case error(String)
    case integer(Int64)
    case null
    case array([RedisReply])

    /// Copies `reply`; nesting is bounded by what this client sends (the admission script's flat arrays).
    init(_ reply: UnsafePointer<redisReply>) {
        let r = reply.pointee
        func bytes() -> [UInt8] {
            guard let str = r.str, r.len > 0 else { return [] }
            return Array(UnsafeRawBufferPointer(start: str, count: Int(r.len)))
        }
        switch r.type {
        case REDIS_REPLY_STRING: self = .string(bytes())
        case REDIS_REPLY_STATUS: self = .status(String(decoding: bytes(), as: UTF8.self))
        case REDIS_REPLY_ERROR: self = .error(String(decoding: bytes(), as: UTF8.self))
        case REDIS_REPLY_INTEGER: self = .integer(r.integer)
        case REDIS_REPLY_ARRAY:
            var items: [RedisReply] = []
            if let element = r.element {
                for i in 0..<Int(r.elements) {
                    if let item = element[i] { items.append(RedisReply(UnsafePointer(item))) } else { items.append(.null) }
                }
            }
            self = .array(items)
        default: self = .null
        }
    }

    var text: String? {
        switch self {
        case .string(let b): return String(decoding: b, as: UTF8.self)
        case .status(let s): return s
        default: return nil
        }
    }
}

/// Why a Redis connection could not be opened.
struct RedisConnectError: Error, CustomStringConvertible {
    let description: String
}

/// The bridge from a hiredis context back to its Swift client (weak: a closed client is gone).
private final class ContextLink {
    weak var client: RedisClient?
    /// hiredis reported the connection up; from then on it calls the disconnect callback when it
    /// frees the context, which releases this link.
    var connected = false
    init(_ client: RedisClient) { self.client = client }

    static func from(_ context: UnsafePointer<redisAsyncContext>?) -> Unmanaged<ContextLink>? {
        guard let data = context?.pointee.data else { return nil }
        return Unmanaged<ContextLink>.fromOpaque(data)
    }
}

/// One Redis connection. Replies come back in order on the loop thread; when the connection drops
/// (or `drop()` is called), every pending command's completion gets nil.
final class RedisClient {
    typealias Completion = (RedisReply?) -> Void

    private let loop: EventLoop
    private var context: UnsafeMutablePointer<redisAsyncContext>?
    private var link: Unmanaged<ContextLink>?
    private var pending: [UInt: Completion] = [:]
    private var nextTag: UInt = 1

    /// The connection came up (true) or failed to (false, with hiredis's message).
    var onConnect: ((Bool, String) -> Void)?
    /// An established connection ended (hiredis's message, or "closed").
    var onDisconnect: ((String) -> Void)?

    init(loop: EventLoop) { self.loop = loop }

    /// Commands sent and not answered yet.
    var pendingCount: Int { pending.count }

    /// Whether a context exists (connecting or connected).
    var isOpen: Bool { context != nil }

    /// Whether the connection is up: commands are sent only then, so a connect that fails never
    /// has commands for hiredis to fail after the link is gone.
    private(set) var isConnected = false

    /// Starts a non-blocking connect; `onConnect` reports the outcome. `host` should be an IP
    /// address: hiredis resolves names with a blocking getaddrinfo.
    /// - Throws: `RedisConnectError` when hiredis fails at once (refused on loopback, bad address).
    func connect(host: String, port: Int) throws {
        precondition(context == nil, "RedisClient.connect while a connection is open")
        guard let created = redisAsyncConnect(host, Int32(port)) else {
            throw RedisConnectError(description: "redisAsyncConnect(\(host):\(port)) could not allocate a context")
        }
        if created.pointee.err != 0 {
            let message = created.pointee.errstr.map { String(cString: $0) } ?? "error \(created.pointee.err)"
            redisAsyncFree(created)
            throw RedisConnectError(description: "\(host):\(port): \(message)")
        }
        guard axon_redis_attach_libuv(created, UnsafeMutableRawPointer(loop.loop)) == REDIS_OK else {
            redisAsyncFree(created)
            throw RedisConnectError(description: "cannot attach the Redis connection to the event loop")
        }
        let link = Unmanaged.passRetained(ContextLink(self))
        created.pointee.data = link.toOpaque()
        self.link = link
        context = created
        redisAsyncSetConnectCallback(created) { context, status in
            guard let link = ContextLink.from(context) else { return }
            let owner = link.takeUnretainedValue()
            if status == REDIS_OK {
                owner.connected = true
                owner.client?.connected(true, message: "")
            } else {
                let message = context?.pointee.errstr.map { String(cString: $0) } ?? "connect failed"
                // hiredis frees the context after this callback, without a disconnect callback.
                owner.client?.forget(link)
                owner.client?.connected(false, message: message)
                link.release()
            }
        }
        redisAsyncSetDisconnectCallback(created) { context, status in
            guard let link = ContextLink.from(context) else { return }
            let owner = link.takeUnretainedValue()
            let message = status == REDIS_OK ? "closed" : (context?.pointee.errstr.map { String(cString: $0) } ?? "connection lost")
            owner.client?.forget(link)
            owner.client?.onDisconnect?(message)
            link.release()
        }
    }

    private func connected(_ up: Bool, message: String) {
        isConnected = up
        onConnect?(up, message)
    }

    /// The context `link` belongs to is being freed by hiredis: forget it (if it is still ours).
    private func forget(_ link: Unmanaged<ContextLink>) {
        guard self.link?.toOpaque() == link.toOpaque() else { return }
        self.link = nil
        context = nil
        isConnected = false
    }

    /// Sends one command (binary-safe arguments). Returns false when there is no connection.
    @discardableResult
    func send(_ arguments: [[UInt8]], completion: @escaping Completion) -> Bool {
        guard let context, isConnected else { return false }
        let tag = nextTag
        nextTag &+= 1
        pending[tag] = completion
        let lengths = arguments.map(\.count)
        // hiredis copies the arguments into its output buffer before returning.
        let copies = arguments.map { argument -> UnsafeMutablePointer<CChar> in
            let copy = UnsafeMutablePointer<CChar>.allocate(capacity: max(1, argument.count))
            argument.withUnsafeBytes { raw in
                if let base = raw.baseAddress { UnsafeMutableRawPointer(copy).copyMemory(from: base, byteCount: argument.count) }
            }
            return copy
        }
        defer { copies.forEach { $0.deallocate() } }
        var pointers: [UnsafePointer<CChar>?] = copies.map { UnsafePointer($0) }
        let status = redisAsyncCommandArgv(context, { context, reply, privdata in
            let tag = UInt(bitPattern: privdata)
            guard let link = ContextLink.from(UnsafePointer(context)), let client = link.takeUnretainedValue().client else { return }
            let copied = reply.map { RedisReply(UnsafePointer($0.assumingMemoryBound(to: redisReply.self))) }
            client.pending.removeValue(forKey: tag)?(copied)
        }, UnsafeMutableRawPointer(bitPattern: tag), Int32(arguments.count), &pointers, lengths)
        if status != REDIS_OK {
            pending[tag] = nil
            return false
        }
        return true
    }

    @discardableResult
    func send(_ arguments: [String], completion: @escaping Completion) -> Bool {
        send(arguments.map { Array($0.utf8) }, completion: completion)
    }

    /// Closes the connection now: pending completions get nil. No `onDisconnect` follows.
    func drop() {
        guard let context, let link else { return }
        let wasConnected = link.takeUnretainedValue().connected
        link.takeUnretainedValue().client = nil
        self.context = nil
        self.link = nil
        isConnected = false
        let orphans = pending
        pending = [:]
        redisAsyncFree(context)
        // A context that never connected is freed without the disconnect callback.
        if !wasConnected { link.release() }
        for (_, completion) in orphans.sorted(by: { $0.key < $1.key }) { completion(nil) }
    }

    deinit { drop() }
}
