import Foundation

/// Why a request failed authentication (all map to `Unauthenticated`).
public enum AuthFailure: Equatable, Sendable {
    case missingAuth
    case malformedSender(SS58Error)
    case malformedSignature(bytes: Int)
    case malformedUUID(bytes: Int)
    /// The signature does not verify over the message this axon reconstructs. A wrong key, a
    /// request signed for another receiver and a body altered in transit look the same here: the
    /// wire carries neither the receiver nor the body digest, only the signature over both.
    case badSignature(sender: String, receiver: String, bodySHA256: String)
    /// Not above the last nonce accepted for (sender, uuid): a replay or a stale request.
    case staleNonce(sender: String, uuid: String, nonce: UInt64, lastSeen: UInt64)
}

/// Which blacklist rule refused a sender.
public enum BlacklistRule: Equatable, Sendable {
    case denied
    case belowMinStake(stake: Double, minimum: Double)
    case noValidatorPermit
}

/// Why a request was refused. The server maps these to return codes:
/// `unauthenticated` → Unauthenticated (23), `senderUnknown` → SenderUnknown (21),
/// `blacklisted` → Blacklisted (25), `rateLimited` → Backoff (3).
public enum AdmissionRejection: Error, CustomStringConvertible, Equatable, Sendable {
    case unauthenticated(AuthFailure)
    case senderUnknown(hotkey: String)
    case blacklisted(hotkey: String, BlacklistRule)
    case rateLimited(hotkey: String, RateLimit)

    public var description: String {
        switch self {
        case .unauthenticated(let failure):
            switch failure {
            case .missingAuth: return "unauthenticated: the request carries no auth (hotkey, nonce, uuid, signature)"
            case .malformedSender(let e): return "unauthenticated: auth.hotkey is not a valid sender: \(e)"
            case .malformedSignature(let n): return "unauthenticated: auth.signature has \(n) bytes, expected 64 (ed25519)"
            case .malformedUUID(let n):
                return "unauthenticated: auth.uuid has \(n) bytes, expected 1...\(AdmissionPolicy.maxUUIDBytes)"
            case .badSignature(let sender, let receiver, let digest):
                return "unauthenticated: the signature does not verify for sender \(sender) over "
                    + "'{nonce}.\(sender).\(receiver).{uuid}.\(digest)': the key does not match the hotkey, "
                    + "the request was signed for another receiver than \(receiver), or the body was altered (its sha256 here is \(digest))"
            case .staleNonce(let sender, let uuid, let nonce, let last):
                return "unauthenticated: nonce \(nonce) is not above \(last), the last accepted from \(sender) in session \(uuid) (a replay or stale request)"
            }
        case .senderUnknown(let hotkey):
            return "sender \(hotkey) is not registered in the metagraph"
        case .blacklisted(let hotkey, let rule):
            switch rule {
            case .denied: return "blacklisted: \(hotkey) is on this axon's deny list"
            case .belowMinStake(let stake, let minimum): return "blacklisted: \(hotkey) has stake \(stake), below the minimum \(minimum)"
            case .noValidatorPermit: return "blacklisted: \(hotkey) has no validator permit, which this axon requires"
            }
        case .rateLimited(let hotkey, let limit):
            return "backoff: \(hotkey) is over its rate limit of \(limit.requestsPerSecond) requests/s (burst \(limit.burst))"
        }
    }
}

/// The order in which admitted requests are served: registered senders by stake, higher first;
/// unregistered senders (when allowed) after every registered one.
public struct AdmissionPriority: Comparable, Sendable {
    public let registered: Bool
    public let stake: Double

    public static let unregistered = AdmissionPriority(registered: false, stake: 0)

    public static func registered(stake: Double) -> AdmissionPriority {
        AdmissionPriority(registered: true, stake: stake)
    }

    /// `a < b` means `a` is served after `b`.
    public static func < (a: AdmissionPriority, b: AdmissionPriority) -> Bool {
        if a.registered != b.registered { return !a.registered }
        return a.stake < b.stake
    }
}

public enum AdmissionDecision: Equatable, Sendable {
    case admitted(priority: AdmissionPriority, unregistered: Bool)
    case rejected(AdmissionRejection)
}

/// A request whose auth, sender and signature passed, waiting for the replay check and the
/// token bucket (`AdmissionState`).
public struct AdmissionStateQuery: Equatable, Sendable {
    public let sender: String
    public let uuid: String
    public let nonce: UInt64
    /// Registered or allow-listed (see `NonceTable`).
    public let trusted: Bool
    /// The sender's stake when it is registered, nil when admitted unregistered.
    public let registeredStake: Double?
}

/// What `Admission.screen` found: a decision already, or the state check still to make.
public enum AdmissionStep: Equatable, Sendable {
    case decided(AdmissionDecision)
    case needsState(AdmissionStateQuery)
}

/// Decides whether a FORWARD request may be served. Thread-safe; one per axon.
///
/// Check order, cheapest first, and so that nothing a forger sends changes state:
/// 1. auth present and well-formed (uuid length, 64-byte signature, SS58 hotkey) — Unauthenticated
/// 2. deny list — Blacklisted
/// 3. registration in the metagraph, unless allow-listed or `allowUnregistered` — SenderUnknown
/// 4. minimum stake, validator permit, unless allow-listed — Blacklisted
/// 5. ed25519 signature over `nonce.sender.receiver.uuid.sha256(body)` — Unauthenticated
/// 6. nonce above the last for (sender, uuid), then recorded — Unauthenticated. Nonce state is
///    bounded per sender (`NonceTable`), so recording the nonce of a request whose body the
///    server then refuses (EmptyRequest, a bad shape) costs only that sender's own entries: a
///    flood of such requests cannot evict another sender's, and its replays are refused too.
/// 7. the sender's token bucket — Backoff
/// Steps 1–4 are table lookups and refuse without touching the nonce table or a bucket. The
/// signature is checked before the nonce is recorded, so a forged request cannot burn a
/// legitimate sender's nonce; the nonce before the rate limit, so a replay cannot drain its bucket.
public final class Admission: @unchecked Sendable {
    /// This axon's hotkey (SS58): the receiver every signature must name.
    public let receiver: String
    public let policy: AdmissionPolicy
    public let metagraph: MetagraphStore

    /// Replay and rate-limit state: in this process by default, or shared between replicas.
    public let state: AdmissionState

    /// - Parameter state: where nonces and buckets live; nil keeps them in this process.
    /// - Throws: `AdmissionPolicyError` if the policy is invalid.
    public init(receiver: PublicKey, policy: AdmissionPolicy, metagraph: MetagraphStore,
                state: AdmissionState? = nil) throws {
        try policy.validate()
        self.receiver = receiver.ss58
        self.policy = policy
        self.metagraph = metagraph
        self.state = state ?? LocalAdmissionState(policy: policy)
    }

    /// This axon's UID in the current metagraph, -1 when not registered.
    public var ownUID: Int32 { metagraph.current.uid(of: receiver) }

    /// Sessions the nonce table tracks now (bounded as `NonceTable` describes).
    public var trackedSessions: Int { state.trackedSessions }

    /// Decides on one request. `body` is `Request.body` exactly as received.
    public func admit(auth: AuthFields?, body: UnsafeRawBufferPointer, now: MonotonicTime) -> AdmissionDecision {
        switch screen(auth: auth, body: body) {
        case .decided(let decision):
            return decision
        case .needsState(let query):
            return decide(query, state.check(sender: query.sender, uuid: query.uuid, nonce: query.nonce, trusted: query.trusted,
                                             limit: policy.rateLimit, now: now))
        }
    }

    /// Steps 1–5, which need no state: a refusal, or the query for the state check (steps 6–7).
    /// A server whose state is shared (issue 16) asks it asynchronously, then calls `decide`.
    public func screen(auth: AuthFields?, body: UnsafeRawBufferPointer) -> AdmissionStep {
        guard let auth else { return .decided(.rejected(.unauthenticated(.missingAuth))) }
        let uuidBytes = auth.uuid.utf8.count
        guard uuidBytes >= 1 && uuidBytes <= AdmissionPolicy.maxUUIDBytes else {
            return .decided(.rejected(.unauthenticated(.malformedUUID(bytes: uuidBytes))))
        }
        guard auth.signature.count == 64 else {
            return .decided(.rejected(.unauthenticated(.malformedSignature(bytes: auth.signature.count))))
        }
        let sender: PublicKey
        do { sender = try SS58.decode(auth.hotkey) } catch let e as SS58Error {
            return .decided(.rejected(.unauthenticated(.malformedSender(e))))
        } catch {
            return .decided(.rejected(.unauthenticated(.malformedSender(.wrongLength(address: auth.hotkey, decodedBytes: nil)))))
        }

        if policy.deny.contains(auth.hotkey) { return .decided(.rejected(.blacklisted(hotkey: auth.hotkey, .denied))) }
        let neuron = metagraph.current.neuron(hotkey: auth.hotkey)
        if !policy.allow.contains(auth.hotkey) {
            if neuron == nil && !policy.allowUnregistered { return .decided(.rejected(.senderUnknown(hotkey: auth.hotkey))) }
            let stake = neuron?.stake ?? 0
            if stake < policy.minStake {
                return .decided(.rejected(.blacklisted(hotkey: auth.hotkey, .belowMinStake(stake: stake, minimum: policy.minStake))))
            }
            if policy.requireValidatorPermit && !(neuron?.validatorPermit ?? false) {
                return .decided(.rejected(.blacklisted(hotkey: auth.hotkey, .noValidatorPermit)))
            }
        }

        let digest = sha256Hex(body)
        guard RequestSignature.verify(auth, sender: sender, receiver: receiver, bodySHA256Hex: digest) else {
            return .decided(.rejected(.unauthenticated(.badSignature(sender: auth.hotkey, receiver: receiver, bodySHA256: digest))))
        }

        // Registered and allow-listed senders are bounded by the metagraph and the operator; their
        // nonces live apart from unregistered ones, which anyone can mint (see NonceTable).
        let trusted = neuron != nil || policy.allow.contains(auth.hotkey)
        return .needsState(AdmissionStateQuery(sender: auth.hotkey, uuid: auth.uuid, nonce: auth.nonce, trusted: trusted,
                                               registeredStake: neuron?.stake))
    }

    /// Steps 6–7's outcome for a query `screen` returned.
    public func decide(_ query: AdmissionStateQuery, _ verdict: AdmissionStateVerdict) -> AdmissionDecision {
        switch verdict {
        case .staleNonce(let last):
            return .rejected(.unauthenticated(.staleNonce(sender: query.sender, uuid: query.uuid, nonce: query.nonce, lastSeen: last)))
        case .rateLimited:
            if let limit = policy.rateLimit { return .rejected(.rateLimited(hotkey: query.sender, limit)) }
        case .accepted:
            break
        }
        if let stake = query.registeredStake { return .admitted(priority: .registered(stake: stake), unregistered: false) }
        return .admitted(priority: .unregistered, unregistered: true)
    }

    public func admit(auth: AuthFields?, body: [UInt8], now: MonotonicTime) -> AdmissionDecision {
        body.withUnsafeBytes { admit(auth: auth, body: $0, now: now) }
    }
}
