#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// The immutable bytes of a GGUF file: a read-only memory map of a path, or an owned copy of an
/// in-memory array. The region stays valid until this object is deallocated.
final class FileBytes: @unchecked Sendable {
    /// The whole file.
    let buffer: UnsafeRawBufferPointer
    private let release: Release

    private enum Release { case none, unmap, deallocate }

    /// Maps `path` read-only.
    /// - Throws: `GGUFError.cannotOpen` or `.cannotMap`, with the system's reason.
    init(mapping path: String) throws {
        let fd = open(path, O_RDONLY)
        guard fd >= 0 else { throw GGUFError.cannotOpen(path: path, reason: Self.errnoText()) }
        defer { close(fd) }
        var info = stat()
        guard fstat(fd, &info) == 0 else { throw GGUFError.cannotOpen(path: path, reason: Self.errnoText()) }
        guard (info.st_mode & S_IFMT) == S_IFREG else {
            throw GGUFError.cannotOpen(path: path, reason: "not a regular file")
        }
        let size = Int(info.st_size)
        if size == 0 {
            // mmap rejects a zero length; an empty buffer makes the parser report a truncated header.
            buffer = UnsafeRawBufferPointer(start: nil, count: 0)
            release = .none
            return
        }
        guard let base = mmap(nil, size, PROT_READ, MAP_PRIVATE, fd, 0), base != MAP_FAILED else {
            throw GGUFError.cannotMap(path: path, reason: Self.errnoText())
        }
        buffer = UnsafeRawBufferPointer(start: base, count: size)
        release = .unmap
    }

    /// Copies `bytes` into storage owned by this object.
    init(copying bytes: [UInt8]) {
        guard !bytes.isEmpty else {
            buffer = UnsafeRawBufferPointer(start: nil, count: 0)
            release = .none
            return
        }
        // 64-byte alignment so that aligned tensor offsets are aligned in memory too, as with mmap.
        let storage = UnsafeMutableRawBufferPointer.allocate(byteCount: bytes.count, alignment: 64)
        storage.copyBytes(from: bytes)
        buffer = UnsafeRawBufferPointer(storage)
        release = .deallocate
    }

    /// Lets the kernel drop the resident pages wholly inside `range` (byte offsets into `buffer`)
    /// of a mapping: a later read faults them back in from the file, so the bytes are unchanged.
    /// An owned copy keeps its memory.
    func dropPages(_ range: Range<Int>) {
        guard case .unmap = release, let base = buffer.baseAddress, range.lowerBound >= 0, range.upperBound <= buffer.count else { return }
        let page = Int(sysconf(Int32(_SC_PAGESIZE)))
        let address = Int(bitPattern: base)
        let first = (address + range.lowerBound + page - 1) / page * page, end = (address + range.upperBound) / page * page
        guard end > first, let start = UnsafeMutableRawPointer(bitPattern: first) else { return }
        _ = madvise(start, end - first, Int32(MADV_DONTNEED))
    }

    deinit {
        switch release {
        case .none: break
        case .unmap: munmap(UnsafeMutableRawPointer(mutating: buffer.baseAddress), buffer.count)
        case .deallocate: buffer.deallocate()
        }
    }

    private static func errnoText() -> String {
        String(cString: strerror(errno))
    }
}
