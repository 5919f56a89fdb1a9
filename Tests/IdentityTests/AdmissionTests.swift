import Foundation
import Identity
import XCTest

/// Every row of the FORWARD verification table, through `Admission.admit`.
final class AdmissionTests: XCTestCase {
    var sender: Hotkey!          // registered, stake 10, validator permit
    var lowStake: Hotkey!        // registered, stake 1, no permit
    var stranger: Hotkey!        // not in the metagraph
    var receiver: Hotkey!        // this axon
    var metagraph: MetagraphStore!
    let body: [UInt8] = Array("a serialized ForwardRequest".utf8)
    let start = MonotonicTime.seconds(1000)

    override func setUpWithError() throws {
        let fixtures = try ReferenceFixtures.load()
        sender = try Hotkey(seed: try Hex.decode(fixtures.fixed.seed))
        receiver = try Hotkey(seed: try Hex.decode(fixtures.receiver.seed))
        lowStake = try Hotkey(seed: [UInt8](repeating: 7, count: 32))
        stranger = try Hotkey(seed: [UInt8](repeating: 9, count: 32))
        metagraph = MetagraphStore(try Metagraph(netuid: 1, block: 10, neurons: [
            Neuron(uid: 0, hotkey: receiver.ss58, stake: 0, validatorPermit: false),
            Neuron(uid: 1, hotkey: sender.ss58, stake: 10, validatorPermit: true),
            Neuron(uid: 2, hotkey: lowStake.ss58, stake: 1, validatorPermit: false),
        ]))
    }

    private func admission(_ policy: AdmissionPolicy = AdmissionPolicy()) throws -> Admission {
        try Admission(receiver: receiver.publicKey, policy: policy, metagraph: metagraph)
    }

    private func signed(by key: Hotkey? = nil, nonce: UInt64 = 1, uuid: String = "session-1", body: [UInt8]? = nil,
                        receiver: String? = nil) -> AuthFields {
        RequestSignature.sign(hotkey: key ?? sender, receiver: receiver ?? self.receiver.ss58, nonce: nonce, uuid: uuid,
                              body: body ?? self.body)
    }

    private func rejection(_ decision: AdmissionDecision, file: StaticString = #filePath, line: UInt = #line) -> AdmissionRejection? {
        guard case .rejected(let r) = decision else { XCTFail("admitted, expected a rejection", file: file, line: line); return nil }
        return r
    }

    func testASignedRequestFromAStakedSenderIsAdmittedAtItsStake() throws {
        let decision = try admission().admit(auth: signed(), body: body, now: start)
        XCTAssertEqual(decision, .admitted(priority: .registered(stake: 10), unregistered: false))
    }

    func testMissingAuthIsUnauthenticated() throws {
        let r = rejection(try admission().admit(auth: nil, body: body, now: start))
        XCTAssertEqual(r, .unauthenticated(.missingAuth))
    }

    func testBadSignatureIsUnauthenticated() throws {
        var auth = signed()
        auth.signature[0] ^= 0x40
        let r = rejection(try admission().admit(auth: auth, body: body, now: start))
        XCTAssertEqual(r, .unauthenticated(.badSignature(sender: sender.ss58, receiver: receiver.ss58, bodySHA256: sha256Hex(body))))
        // Signed by another key while claiming the sender's hotkey.
        var impostor = signed(by: stranger)
        impostor.hotkey = sender.ss58
        guard case .unauthenticated(.badSignature)? = rejection(try admission().admit(auth: impostor, body: body, now: start)) else {
            return XCTFail("impostor not refused as a bad signature")
        }
    }

    func testARequestSignedForAnotherReceiverIsUnauthenticated() throws {
        let auth = signed(receiver: lowStake.ss58)
        let r = rejection(try admission().admit(auth: auth, body: body, now: start))
        XCTAssertEqual(r, .unauthenticated(.badSignature(sender: sender.ss58, receiver: receiver.ss58, bodySHA256: sha256Hex(body))))
        XCTAssertTrue(r?.description.contains("another receiver than \(receiver.ss58)") ?? false)
    }

    func testATamperedBodyIsUnauthenticated() throws {
        let auth = signed()
        var tampered = body
        tampered[3] ^= 1
        let r = rejection(try admission().admit(auth: auth, body: tampered, now: start))
        XCTAssertEqual(r, .unauthenticated(.badSignature(sender: sender.ss58, receiver: receiver.ss58, bodySHA256: sha256Hex(tampered))))
        XCTAssertTrue(r?.description.contains("body was altered") ?? false)
    }

    func testAReplayedOrStaleNonceIsUnauthenticated() throws {
        let a = try admission()
        XCTAssertEqual(a.admit(auth: signed(nonce: 5), body: body, now: start), .admitted(priority: .registered(stake: 10), unregistered: false))
        XCTAssertEqual(rejection(a.admit(auth: signed(nonce: 5), body: body, now: start)),
                       .unauthenticated(.staleNonce(sender: sender.ss58, uuid: "session-1", nonce: 5, lastSeen: 5)))
        XCTAssertEqual(rejection(a.admit(auth: signed(nonce: 4), body: body, now: start)),
                       .unauthenticated(.staleNonce(sender: sender.ss58, uuid: "session-1", nonce: 4, lastSeen: 5)))
        // Another session of the same sender has its own sequence; the first moves on.
        XCTAssertEqual(a.admit(auth: signed(nonce: 1, uuid: "session-2"), body: body, now: start), .admitted(priority: .registered(stake: 10), unregistered: false))
        XCTAssertEqual(a.admit(auth: signed(nonce: 6), body: body, now: start), .admitted(priority: .registered(stake: 10), unregistered: false))
    }

    /// The flush through admission, with real signatures: the flooding key is registered and signs
    /// each request validly, over an empty body (the server would answer EmptyRequest). The table is
    /// small so the flood crosses its bounds many times over.
    func testAFloodOfValidlySignedRequestsFromAnotherSenderCannotFlushAReplayedNonce() throws {
        let a = try admission(AdmissionPolicy(nonceCapacity: 4, noncesPerSender: 2))
        let admitted = AdmissionDecision.admitted(priority: .registered(stake: 10), unregistered: false)
        let captured = signed(nonce: 77, uuid: "validator-session")
        XCTAssertEqual(a.admit(auth: captured, body: body, now: start), admitted)
        guard case .unauthenticated(.staleNonce)? = rejection(a.admit(auth: captured, body: body, now: start)) else { return XCTFail() }
        for i in 0..<200 {
            let flood = signed(by: lowStake, nonce: UInt64(i + 1), uuid: "flood-\(i)", body: [])
            XCTAssertEqual(a.admit(auth: flood, body: [], now: start), .admitted(priority: .registered(stake: 1), unregistered: false))
        }
        XCTAssertLessThanOrEqual(a.trackedSessions, 1 + 2)
        XCTAssertEqual(rejection(a.admit(auth: captured, body: body, now: start)),
                       .unauthenticated(.staleNonce(sender: sender.ss58, uuid: "validator-session", nonce: 77, lastSeen: 77)))
    }

    func testAForgedRequestCannotBurnTheSendersNonce() throws {
        let a = try admission()
        var forged = signed(nonce: 100)
        forged.signature[10] ^= 1
        guard case .unauthenticated(.badSignature)? = rejection(a.admit(auth: forged, body: body, now: start)) else { return XCTFail() }
        XCTAssertEqual(a.trackedSessions, 0)
        XCTAssertEqual(a.admit(auth: signed(nonce: 2), body: body, now: start), .admitted(priority: .registered(stake: 10), unregistered: false))
    }

    func testMalformedAuthFieldsAreUnauthenticatedWithTheirOwnReason() throws {
        let a = try admission()
        var shortSignature = signed()
        shortSignature.signature.removeLast()
        XCTAssertEqual(rejection(a.admit(auth: shortSignature, body: body, now: start)), .unauthenticated(.malformedSignature(bytes: 63)))
        let noSession = signed(uuid: "")
        XCTAssertEqual(rejection(a.admit(auth: noSession, body: body, now: start)), .unauthenticated(.malformedUUID(bytes: 0)))
        let longSession = signed(uuid: String(repeating: "u", count: AdmissionPolicy.maxUUIDBytes + 1))
        XCTAssertEqual(rejection(a.admit(auth: longSession, body: body, now: start)), .unauthenticated(.malformedUUID(bytes: 129)))
        var badHotkey = signed()
        badHotkey.hotkey = "5Ew8fKVS9D0htJo"
        guard case .unauthenticated(.malformedSender(.invalidCharacter))? = rejection(a.admit(auth: badHotkey, body: body, now: start)) else {
            return XCTFail()
        }
    }

    func testAnUnregisteredSenderIsUnknownUnlessUnregisteredSendersAreAllowed() throws {
        let auth = signed(by: stranger)
        XCTAssertEqual(rejection(try admission().admit(auth: auth, body: body, now: start)), .senderUnknown(hotkey: stranger.ss58))
        let open = try admission(AdmissionPolicy(allowUnregistered: true))
        XCTAssertEqual(open.admit(auth: auth, body: body, now: start), .admitted(priority: .unregistered, unregistered: true))
    }

    func testBlacklistRulesNameTheRuleThatMatched() throws {
        let deny = try admission(AdmissionPolicy(deny: [sender.ss58], allow: [sender.ss58]))
        XCTAssertEqual(rejection(deny.admit(auth: signed(), body: body, now: start)), .blacklisted(hotkey: sender.ss58, .denied))

        let minStake = try admission(AdmissionPolicy(minStake: 5))
        XCTAssertEqual(rejection(minStake.admit(auth: signed(by: lowStake), body: body, now: start)),
                       .blacklisted(hotkey: lowStake.ss58, .belowMinStake(stake: 1, minimum: 5)))
        XCTAssertEqual(minStake.admit(auth: signed(), body: body, now: start), .admitted(priority: .registered(stake: 10), unregistered: false))

        let permit = try admission(AdmissionPolicy(requireValidatorPermit: true))
        XCTAssertEqual(rejection(permit.admit(auth: signed(by: lowStake), body: body, now: start)),
                       .blacklisted(hotkey: lowStake.ss58, .noValidatorPermit))

        // Unregistered senders count as stake 0 without a permit.
        let both = try admission(AdmissionPolicy(minStake: 0.5, allowUnregistered: true))
        XCTAssertEqual(rejection(both.admit(auth: signed(by: stranger), body: body, now: start)),
                       .blacklisted(hotkey: stranger.ss58, .belowMinStake(stake: 0, minimum: 0.5)))
    }

    func testTheAllowListExemptsFromRegistrationStakeAndPermitButNotFromAuthentication() throws {
        let a = try admission(AdmissionPolicy(minStake: 5, requireValidatorPermit: true, allow: [lowStake.ss58, stranger.ss58]))
        XCTAssertEqual(a.admit(auth: signed(by: lowStake), body: body, now: start), .admitted(priority: .registered(stake: 1), unregistered: false))
        XCTAssertEqual(a.admit(auth: signed(by: stranger), body: body, now: start), .admitted(priority: .unregistered, unregistered: true))
        var forged = signed(by: stranger, nonce: 2)
        forged.signature[1] ^= 1
        guard case .unauthenticated(.badSignature)? = rejection(a.admit(auth: forged, body: body, now: start)) else { return XCTFail() }
    }

    func testOverTheRateLimitIsBackoffUntilTokensRefill() throws {
        let limit = RateLimit(requestsPerSecond: 2, burst: 3)
        let a = try admission(AdmissionPolicy(rateLimit: limit))
        var nonce: UInt64 = 0
        func send(at t: Double, by key: Hotkey? = nil) -> AdmissionDecision {
            nonce += 1
            return a.admit(auth: signed(by: key, nonce: nonce), body: body, now: .seconds(t))
        }
        for _ in 0..<3 { XCTAssertEqual(send(at: 1000), .admitted(priority: .registered(stake: 10), unregistered: false)) }
        XCTAssertEqual(rejection(send(at: 1000)), .rateLimited(hotkey: sender.ss58, limit))
        // Another sender has its own bucket.
        XCTAssertEqual(send(at: 1000, by: lowStake), .admitted(priority: .registered(stake: 1), unregistered: false))
        // 0.25 s refills half a token: still refused. 0.5 s refills one.
        XCTAssertEqual(rejection(send(at: 1000.25)), .rateLimited(hotkey: sender.ss58, limit))
        XCTAssertEqual(send(at: 1000.5), .admitted(priority: .registered(stake: 10), unregistered: false))
        XCTAssertEqual(rejection(send(at: 1000.5)), .rateLimited(hotkey: sender.ss58, limit))
        // A long pause refills only up to the burst.
        for _ in 0..<3 { XCTAssertEqual(send(at: 2000), .admitted(priority: .registered(stake: 10), unregistered: false)) }
        XCTAssertEqual(rejection(send(at: 2000)), .rateLimited(hotkey: sender.ss58, limit))
        // A clock that steps backwards refills nothing.
        XCTAssertEqual(rejection(send(at: 1500)), .rateLimited(hotkey: sender.ss58, limit))
    }

    func testAReplayCannotDrainTheSendersRateLimit() throws {
        let a = try admission(AdmissionPolicy(rateLimit: RateLimit(requestsPerSecond: 1, burst: 2)))
        let auth = signed(nonce: 1)
        XCTAssertEqual(a.admit(auth: auth, body: body, now: start), .admitted(priority: .registered(stake: 10), unregistered: false))
        for _ in 0..<5 {
            guard case .unauthenticated(.staleNonce)? = rejection(a.admit(auth: auth, body: body, now: start)) else { return XCTFail() }
        }
        XCTAssertEqual(a.admit(auth: signed(nonce: 2), body: body, now: start), .admitted(priority: .registered(stake: 10), unregistered: false))
    }

    func testCheapRefusalsComeBeforeTheSignatureCheck() throws {
        // A forged request from an unknown or denied hotkey is refused by the table lookup, and
        // reported as such, without the signature being examined.
        var forged = signed(by: stranger)
        forged.signature = [UInt8](repeating: 0, count: 64)
        XCTAssertEqual(rejection(try admission().admit(auth: forged, body: body, now: start)), .senderUnknown(hotkey: stranger.ss58))
        XCTAssertEqual(rejection(try admission(AdmissionPolicy(deny: [stranger.ss58], allowUnregistered: true)).admit(auth: forged, body: body, now: start)),
                       .blacklisted(hotkey: stranger.ss58, .denied))
    }

    func testAReplayRacingOnManyThreadsIsAdmittedExactlyOnce() throws {
        let a = try admission()
        let auth = signed(nonce: 42)
        let body = self.body
        let lock = NSLock()
        var admitted = 0, stale = 0
        DispatchQueue.concurrentPerform(iterations: 64) { _ in
            let decision = a.admit(auth: auth, body: body, now: .now())
            lock.lock()
            defer { lock.unlock() }
            if case .admitted = decision { admitted += 1 }
            if case .rejected(.unauthenticated(.staleNonce)) = decision { stale += 1 }
        }
        XCTAssertEqual(admitted, 1)
        XCTAssertEqual(stale, 63)
    }

    func testPriorityOrdersByStakeWithUnregisteredLast() {
        let order: [AdmissionPriority] = [.registered(stake: 100), .registered(stake: 5), .registered(stake: 0), .unregistered]
        XCTAssertEqual(order.shuffled().sorted(by: >), order)
        XCTAssertTrue(AdmissionPriority.unregistered < .registered(stake: 0))
    }

    func testOwnUIDFollowsTheMetagraph() throws {
        let a = try admission()
        XCTAssertEqual(a.ownUID, 0)
        metagraph.replace(with: try Metagraph(netuid: 1, block: 11, neurons: [Neuron(uid: 0, hotkey: sender.ss58, stake: 1, validatorPermit: true)]))
        XCTAssertEqual(a.ownUID, -1)
    }

    func testInvalidPoliciesAreRefused() {
        func refused(_ policy: AdmissionPolicy) -> AdmissionPolicyError? {
            do { _ = try admission(policy); return nil } catch { return error as? AdmissionPolicyError }
        }
        guard case .invalidHotkey(list: "deny", _)? = refused(AdmissionPolicy(deny: ["nope"])) else { return XCTFail() }
        guard case .invalidHotkey(list: "allow", _)? = refused(AdmissionPolicy(allow: ["nope"])) else { return XCTFail() }
        XCTAssertEqual(refused(AdmissionPolicy(minStake: -1)), .invalidMinStake(-1))
        XCTAssertEqual(refused(AdmissionPolicy(rateLimit: RateLimit(requestsPerSecond: 0, burst: 1))),
                       .invalidRateLimit(RateLimit(requestsPerSecond: 0, burst: 1)))
        XCTAssertEqual(refused(AdmissionPolicy(rateLimit: RateLimit(requestsPerSecond: 1, burst: 0.5))),
                       .invalidRateLimit(RateLimit(requestsPerSecond: 1, burst: 0.5)))
        XCTAssertEqual(refused(AdmissionPolicy(nonceCapacity: 0)), .invalidCapacity(name: "nonce table", 0))
    }
}
