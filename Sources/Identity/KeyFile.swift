import CSodium
import Foundation
#if canImport(Glibc)
import Glibc
private let posixWrite = Glibc.write
#elseif canImport(Darwin)
import Darwin
private let posixWrite = Darwin.write
#endif

/// Hotkey files: JSON `{"ss58": …, "public_key": hex, "secret_seed": hex}`, mode 0600.
public enum KeyFile {
    /// A key file larger than this is not a key file.
    static let maxBytes = 4096

    /// Writes `hotkey` to a new file at `path`, created with mode 0600 atomically (O_CREAT|O_EXCL),
    /// so there is no moment when the secret is readable by others and an existing file is never
    /// overwritten.
    /// - Throws: `KeyFileError.alreadyExists` or `.cannotWrite`.
    public static func write(_ hotkey: Hotkey, to path: String) throws {
        let json = """
        {
          "ss58": "\(hotkey.ss58)",
          "public_key": "\(hotkey.publicKey.hex)",
          "secret_seed": "\(hotkey.secretSeedHex)"
        }

        """
        let fd = open(path, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0o600)
        if fd < 0 {
            let code = errno
            if code == EEXIST { throw KeyFileError.alreadyExists(path: path) }
            throw KeyFileError.cannotWrite(path: path, reason: String(cString: strerror(code)))
        }
        defer { close(fd) }
        var bytes = Array(json.utf8)
        defer { bytes.withUnsafeMutableBytes { if let p = $0.baseAddress { sodium_memzero(p, $0.count) } } }
        var written = 0
        while written < bytes.count {
            let n = bytes.withUnsafeBytes { posixWrite(fd, $0.baseAddress?.advanced(by: written), $0.count - written) }
            if n < 0 {
                if errno == EINTR { continue }
                let reason = String(cString: strerror(errno))
                unlink(path)
                throw KeyFileError.cannotWrite(path: path, reason: reason)
            }
            written += n
        }
        if fsync(fd) != 0 {
            let reason = String(cString: strerror(errno))
            unlink(path)
            throw KeyFileError.cannotWrite(path: path, reason: reason)
        }
    }

    /// A loaded hotkey and anything about the file its owner should fix.
    public struct Loaded {
        public let hotkey: Hotkey
        /// E.g. the file is readable by group or others.
        public let warnings: [KeyFileWarning]
    }

    /// Reads a key file and checks it: valid JSON with the three fields, 32-byte hex seed and
    /// public key, and the seed derives the stated public key and SS58 address.
    /// - Throws: `KeyFileError`.
    public static func load(path: String) throws -> Loaded {
        var info = stat()
        guard stat(path, &info) == 0 else {
            let code = errno
            if code == ENOENT { throw KeyFileError.notFound(path: path) }
            throw KeyFileError.unreadable(path: path, reason: String(cString: strerror(code)))
        }
        guard Int(info.st_size) <= maxBytes else {
            throw KeyFileError.malformed(path: path, reason: "it is \(info.st_size) bytes; a key file is under \(maxBytes)")
        }
        var warnings = [KeyFileWarning]()
        let mode = UInt32(info.st_mode) & 0o777
        if mode & 0o077 != 0 { warnings.append(.permissive(path: path, mode: mode)) }

        let data: Data
        do {
            data = try Data(contentsOf: URL(fileURLWithPath: path))
        } catch {
            throw KeyFileError.unreadable(path: path, reason: error.localizedDescription)
        }
        guard let object = (try? JSONSerialization.jsonObject(with: data)) as? [String: Any] else {
            throw KeyFileError.malformed(path: path, reason: "it is not a JSON object")
        }
        func string(_ field: String) throws -> String {
            guard let value = object[field] else { throw KeyFileError.missingField(path: path, field: field) }
            guard let s = value as? String else {
                throw KeyFileError.malformed(path: path, reason: "'\(field)' is not a string")
            }
            return s
        }
        func bytes(_ field: String) throws -> [UInt8] {
            let b: [UInt8]
            do { b = try Hex.decode(try string(field)) } catch let e as HexError {
                throw KeyFileError.badHex(path: path, field: field, e)
            }
            guard b.count == 32 else { throw KeyFileError.wrongLength(path: path, field: field, bytes: b.count) }
            return b
        }
        let ss58 = try string("ss58")
        let statedPublic = try bytes("public_key")
        let seed = try bytes("secret_seed")
        let hotkey = try Hotkey(seed: seed)
        guard hotkey.publicKey.bytes == statedPublic else {
            throw KeyFileError.publicKeyMismatch(path: path, stated: Hex.encode(statedPublic), derived: hotkey.publicKey.hex)
        }
        do { _ = try SS58.decode(ss58) } catch let e as SS58Error {
            throw KeyFileError.invalidAddress(path: path, e)
        }
        guard ss58 == hotkey.ss58 else {
            throw KeyFileError.addressMismatch(path: path, stated: ss58, derived: hotkey.ss58)
        }
        return Loaded(hotkey: hotkey, warnings: warnings)
    }
}

/// Something wrong with a key file that does not stop it being used.
public enum KeyFileWarning: CustomStringConvertible, Equatable, Sendable {
    case permissive(path: String, mode: UInt32)

    public var description: String {
        switch self {
        case .permissive(let path, let mode):
            return "key file '\(path)' has mode \(String(mode, radix: 8)), readable beyond its owner; run: chmod 600 '\(path)'"
        }
    }
}

/// Why a key file could not be written or used.
public enum KeyFileError: Error, CustomStringConvertible, Equatable {
    case alreadyExists(path: String)
    case cannotWrite(path: String, reason: String)
    case notFound(path: String)
    case unreadable(path: String, reason: String)
    case malformed(path: String, reason: String)
    case missingField(path: String, field: String)
    case badHex(path: String, field: String, HexError)
    case wrongLength(path: String, field: String, bytes: Int)
    case publicKeyMismatch(path: String, stated: String, derived: String)
    case invalidAddress(path: String, SS58Error)
    case addressMismatch(path: String, stated: String, derived: String)
    case invalidName(String)

    public var description: String {
        switch self {
        case .alreadyExists(let p): return "refusing to overwrite existing key file '\(p)'; choose another path or remove it first"
        case .cannotWrite(let p, let r): return "cannot write key file '\(p)': \(r)"
        case .notFound(let p): return "key file '\(p)' does not exist; create one with: axon keygen --out '\(p)'"
        case .unreadable(let p, let r): return "cannot read key file '\(p)': \(r)"
        case .malformed(let p, let r): return "key file '\(p)' is malformed: \(r) (expected {ss58, public_key, secret_seed})"
        case .missingField(let p, let f): return "key file '\(p)' has no '\(f)' field"
        case .badHex(let p, let f, let e): return "key file '\(p)': '\(f)' is not hex: \(e)"
        case .wrongLength(let p, let f, let n): return "key file '\(p)': '\(f)' has \(n) bytes, expected 32"
        case .publicKeyMismatch(let p, let s, let d):
            return "key file '\(p)': public_key \(s) does not match the key its secret_seed derives (\(d))"
        case .invalidAddress(let p, let e): return "key file '\(p)': ss58 is invalid: \(e)"
        case .addressMismatch(let p, let s, let d):
            return "key file '\(p)': ss58 \(s) does not match the address its secret_seed derives (\(d))"
        case .invalidName(let n): return "key name '\(n)' must be non-empty letters, digits, '-', '_' or '.', not starting with '.'"
        }
    }
}

/// The default key location, `~/.axon/NAME.json`, used when `serve` or `query` get no `--key`.
public enum KeyStore {
    public struct Result {
        public let hotkey: Hotkey
        public let path: String
        /// True when this call generated the key (the caller should say so).
        public let created: Bool
        public let warnings: [KeyFileWarning]
    }

    /// `~/.axon`.
    public static var defaultDirectory: String {
        let home = ProcessInfo.processInfo.environment["HOME"] ?? NSHomeDirectory()
        return home + "/.axon"
    }

    /// Loads `directory/NAME.json`, or generates and writes it (directory mode 0700, file 0600)
    /// when it does not exist. Two processes racing to create it both end up with the same key.
    /// - Throws: `KeyFileError`.
    public static func loadOrCreateDefault(directory: String = KeyStore.defaultDirectory, name: String = "default") throws -> Result {
        let allowed = Set("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-_.")
        guard !name.isEmpty, !name.hasPrefix("."), name.allSatisfy({ allowed.contains($0) }) else {
            throw KeyFileError.invalidName(name)
        }
        let path = directory + "/" + name + ".json"
        if mkdir(directory, 0o700) != 0 && errno != EEXIST {
            throw KeyFileError.cannotWrite(path: path, reason: "cannot create directory '\(directory)': \(String(cString: strerror(errno)))")
        }
        do {
            let loaded = try KeyFile.load(path: path)
            return Result(hotkey: loaded.hotkey, path: path, created: false, warnings: loaded.warnings)
        } catch KeyFileError.notFound {
            let hotkey = Hotkey.generate()
            do {
                try KeyFile.write(hotkey, to: path)
            } catch KeyFileError.alreadyExists {
                let loaded = try KeyFile.load(path: path)   // another process won the race
                return Result(hotkey: loaded.hotkey, path: path, created: false, warnings: loaded.warnings)
            }
            return Result(hotkey: hotkey, path: path, created: true, warnings: [])
        }
    }
}
