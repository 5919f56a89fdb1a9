/// Who may send FORWARD requests to this axon, and how often.
///
/// `allow` exempts a hotkey from the registration, stake and permit rules (not from
/// authentication or the rate limit); `deny` beats `allow`. An unregistered sender admitted by
/// `allowUnregistered` counts as stake 0 without a validator permit, so the stake and permit
/// rules still apply to it.
public struct AdmissionPolicy: Sendable, Equatable {
    /// Senders with less stake are blacklisted.
    public var minStake: Double
    public var requireValidatorPermit: Bool
    /// SS58 hotkeys always refused.
    public var deny: Set<String>
    /// SS58 hotkeys exempt from the registration, stake and permit rules.
    public var allow: Set<String>
    /// Admit senders absent from the metagraph (at the lowest priority) instead of `senderUnknown`.
    public var allowUnregistered: Bool
    /// Per-hotkey token bucket; nil for no limit.
    public var rateLimit: RateLimit?
    /// Trusted senders the nonce table remembers (LRU; see `NonceTable`).
    public var nonceCapacity: Int
    /// Sessions (uuids) the nonce table remembers per sender, so one sender cannot flush others.
    public var noncesPerSender: Int
    /// Hotkeys the rate limiter remembers (LRU).
    public var rateTableCapacity: Int

    /// The longest uuid accepted, which bounds the nonce table's memory.
    public static let maxUUIDBytes = 128

    public init(minStake: Double = 0, requireValidatorPermit: Bool = false, deny: Set<String> = [],
                allow: Set<String> = [], allowUnregistered: Bool = false, rateLimit: RateLimit? = nil,
                nonceCapacity: Int = NonceTable.defaultCapacity, rateTableCapacity: Int = 100_000,
                noncesPerSender: Int = NonceTable.defaultSessionsPerSender) {
        self.minStake = minStake
        self.requireValidatorPermit = requireValidatorPermit
        self.deny = deny
        self.allow = allow
        self.allowUnregistered = allowUnregistered
        self.rateLimit = rateLimit
        self.nonceCapacity = nonceCapacity
        self.noncesPerSender = noncesPerSender
        self.rateTableCapacity = rateTableCapacity
    }

    /// - Throws: `AdmissionPolicyError` for an invalid hotkey in a list, a negative or non-finite
    ///   minimum stake, a non-positive rate or a burst below 1, or a capacity below 1.
    public func validate() throws {
        for (list, keys) in [("deny", deny), ("allow", allow)] {
            for key in keys.sorted() {
                do { _ = try SS58.decode(key) } catch let e as SS58Error {
                    throw AdmissionPolicyError.invalidHotkey(list: list, e)
                }
            }
        }
        guard minStake.isFinite && minStake >= 0 else { throw AdmissionPolicyError.invalidMinStake(minStake) }
        if let r = rateLimit {
            guard r.requestsPerSecond.isFinite && r.requestsPerSecond > 0 && r.burst.isFinite && r.burst >= 1 else {
                throw AdmissionPolicyError.invalidRateLimit(r)
            }
        }
        guard nonceCapacity >= 1 && nonceCapacity <= Int(Int32.max) else {
            throw AdmissionPolicyError.invalidCapacity(name: "nonce table", nonceCapacity)
        }
        guard noncesPerSender >= 1 && noncesPerSender <= 1 << 20 else {
            throw AdmissionPolicyError.invalidCapacity(name: "nonce sessions per sender", noncesPerSender)
        }
        guard rateTableCapacity >= 1 && rateTableCapacity <= Int(Int32.max) else {
            throw AdmissionPolicyError.invalidCapacity(name: "rate-limit table", rateTableCapacity)
        }
    }
}

public enum AdmissionPolicyError: Error, CustomStringConvertible, Equatable {
    case invalidHotkey(list: String, SS58Error)
    case invalidMinStake(Double)
    case invalidRateLimit(RateLimit)
    case invalidCapacity(name: String, Int)

    public var description: String {
        switch self {
        case .invalidHotkey(let list, let e): return "--\(list): \(e)"
        case .invalidMinStake(let s): return "--min-stake \(s): must be a finite number ≥ 0"
        case .invalidRateLimit(let r):
            return "rate limit \(r.requestsPerSecond)/s with burst \(r.burst): the rate must be > 0 and the burst ≥ 1"
        case .invalidCapacity(let name, let n): return "\(name) capacity \(n): must be in 1...\(Int32.max)"
        }
    }
}
