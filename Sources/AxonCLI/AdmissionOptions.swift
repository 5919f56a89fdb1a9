import ArgumentParser
import Foundation
import Identity
import Logging
import Server

/// `serve`'s admission flags, shown with `--key` under one help heading ("IDENTITY AND ADMISSION").
struct AdmissionOptions: ParsableArguments {
    @Option(help: "Metagraph snapshot JSON {netuid, block, neurons: [{uid, hotkey, stake, validator_permit}]}; SIGHUP reloads it. Without it, unregistered senders are admitted (local development).")
    var metagraph: String?
    @Option(help: "Blacklist senders with less stake.") var minStake = 0.0
    @Flag(help: "Blacklist senders without a validator permit.") var requireValidatorPermit = false
    @Option(help: "Always refuse this hotkey (SS58; repeatable).") var deny: [String] = []
    @Option(help: "Exempt this hotkey from the registration, stake and permit rules (SS58; repeatable).") var allow: [String] = []
    @Flag(help: "Admit senders absent from the metagraph, after every registered one.") var allowUnregistered = false
    @Option(help: "Per-hotkey rate limit, N or N/s (requests per second).") var rateLimit: String?
    @Option(help: "Per-hotkey burst for --rate-limit (default: the rate, at least 1).") var rateBurst: Double?
    @Flag(help: "Serve FORWARD without checking signatures or admission (local benchmarking only).") var noAuth = false
    @Option(help: ArgumentHelp("Share replay checks and rate limits with the other replicas of this hotkey in Redis (docs/SCALE.md). Without it they live in this process.",
                               valueName: "redis://HOST:PORT[/DB]"))
    var state: String?
    @Option(help: "With --state, while Redis is unreachable: closed answers FORWARD Unavailable; local decides with this replica's own tables (logged once, counted in axon_state_fallback_total).")
    var stateFallback: StateFallback = .closed

    enum StateFallback: String, ExpressibleByArgument, CaseIterable {
        case closed, local
    }

    func validate() throws {
        if rateLimit != nil && parsedRate == nil { throw ValidationError("--rate-limit must be N or N/s with N > 0, got \(rateLimit ?? "")") }
        if rateBurst != nil && rateLimit == nil { throw ValidationError("--rate-burst needs --rate-limit") }
        if let state {
            do { _ = try RedisEndpoint(url: state) } catch { throw ValidationError("\(error)") }
            if noAuth { throw ValidationError("--state shares admission state, and --no-auth turns admission off; pass one of them") }
        }
        if stateFallback != .closed && state == nil { throw ValidationError("--state-fallback needs --state") }
    }

    /// `--rate-limit N` or `N/s`, in requests per second.
    private var parsedRate: Double? {
        guard let text = rateLimit?.trimmingCharacters(in: .whitespaces) else { return nil }
        let number = text.hasSuffix("/s") ? String(text.dropLast(2)) : text
        guard let rate = Double(number), rate.isFinite, rate > 0 else { return nil }
        return rate
    }

    /// The identity half of the configuration: this axon's hotkey, the metagraph and the admission
    /// policy. Without --metagraph the local-development default applies (unregistered senders
    /// admitted) and is logged, so the README's serve + query work with no other step.
    func configure(_ config: inout ServerConfiguration, keyOption: KeyOption, logger: Logger) throws {
        let (hotkey, keyPath) = try keyOption.loadWithPath(defaultName: "miner")
        config.hotkey = hotkey.ss58
        logger.info("hotkey \(hotkey.ss58) from \(keyPath)")
        let store: MetagraphStore
        if let metagraph {
            store = try MetagraphStore(path: metagraph)
            config.metagraphPath = metagraph
            let current = store.current
            logger.info("metagraph \(metagraph): netuid \(current.netuid), block \(current.block), \(current.neurons.count) neurons; this axon's uid \(current.uid(of: hotkey.ss58)) (SIGHUP reloads)")
        } else {
            store = MetagraphStore(Metagraph.empty())
            if !noAuth {
                logger.notice("no --metagraph: local development mode, every correctly signed sender is admitted as unregistered (pass --metagraph FILE to serve a subnet)")
            }
        }
        config.metagraph = store
        if noAuth {
            logger.warning("--no-auth: FORWARD requests are served without signature, nonce, blacklist or rate checks; use it for local benchmarking only")
            return
        }
        let rate = parsedRate.map { RateLimit(requestsPerSecond: $0, burst: rateBurst ?? max(1, $0)) }
        let policy = AdmissionPolicy(minStake: minStake, requireValidatorPermit: requireValidatorPermit, deny: Set(deny),
                                     allow: Set(allow), allowUnregistered: allowUnregistered || metagraph == nil, rateLimit: rate)
        config.admission = try Admission(receiver: hotkey.publicKey, policy: policy, metagraph: store)
        if let state {
            var shared = SharedStateConfiguration(endpoint: try RedisEndpoint(url: state))
            shared.fallbackLocal = stateFallback == .local
            config.sharedState = shared
            logger.info("admission state: shared in \(shared.endpoint) (keys \(shared.keyPrefix):\(hotkey.ss58):…), \(shared.fallbackLocal ? "local tables while it is unreachable" : "FORWARD fails closed while it is unreachable")")
        }
    }
}
