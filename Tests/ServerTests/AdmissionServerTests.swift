import AxonClient
import Foundation
import Identity
import Server
import Wire
import XCTest

/// Issue 6's verification table over real TCP: every refusal answers its code, PING and INFO stay open.
final class AdmissionServerTests: XCTestCase {
    /// Fixed keys (seed bytes all equal to n), so failures are reproducible.
    static func key(_ n: UInt8) -> Hotkey {
        // A 32-byte seed always derives a key; a failure here is a libsodium fault, not input.
        guard let hotkey = try? Hotkey(seed: [UInt8](repeating: n, count: 32)) else { preconditionFailure("libsodium seed keypair failed") }
        return hotkey
    }

    let axonKey = key(1)
    let validator = key(2)       // registered, stake 1000, permit
    let smallStake = key(3)      // registered, stake 5, permit
    let noPermit = key(4)        // registered, stake 500, no permit
    let denied = key(5)          // registered, stake 2000, permit, on --deny
    let stranger = key(6)        // not registered

    func metagraph() throws -> MetagraphStore {
        MetagraphStore(try Metagraph(netuid: 7, block: 100, neurons: [
            Neuron(uid: 0, hotkey: validator.ss58, stake: 1000, validatorPermit: true),
            Neuron(uid: 1, hotkey: smallStake.ss58, stake: 5, validatorPermit: true),
            Neuron(uid: 2, hotkey: noPermit.ss58, stake: 500, validatorPermit: false),
            Neuron(uid: 3, hotkey: denied.ss58, stake: 2000, validatorPermit: true),
        ]))
    }

    func harness(_ policy: AdmissionPolicy, backend: FakeBackend = FakeBackend(),
                 configure: (inout ServerConfiguration) -> Void = { _ in }) throws -> Harness {
        let store = try metagraph()
        let admission = try Admission(receiver: axonKey.publicKey, policy: policy, metagraph: store)
        let harness = try startServer(backend: backend) { config in
            config.hotkey = axonKey.ss58
            config.admission = admission
            config.metagraph = store
            configure(&config)
        }
        // Keeps the server alive to the end of the test (an optimised build may release it after
        // its last use, while a request is still in flight).
        addTeardownBlock { harness.stop() }
        return harness
    }

    func client(_ harness: Harness, as sender: Hotkey?, receiver: String? = nil) throws -> AxonClient {
        try AxonClient(host: "127.0.0.1", port: harness.server.port, hotkey: sender, receiver: receiver)
    }

    let body = ForwardRequest(tokens: Tensor(int32Rows: [[5, 6, 7]]), synapses: [Synapse(type: .textCausalLMNext, topk: 2)])

    func forward(_ client: AxonClient) throws -> Response { try client.forward(body, timeoutMs: 5000) }

    func testSignedForwardFromARegisteredSenderSucceeds() throws {
        let h = try harness(AdmissionPolicy())
        let response = try forward(client(h, as: validator))
        XCTAssertEqual(response.code, .success, response.message)
    }

    func testPingAndInfoAreOpenWithoutAuth() throws {
        let h = try harness(AdmissionPolicy())
        let anonymous = try client(h, as: nil)
        XCTAssertEqual(try anonymous.ping().code, .success)
        let info = try anonymous.info()
        XCTAssertEqual(info.code, .success)
        XCTAssertEqual(info.info?.hotkey, axonKey.ss58)
        XCTAssertEqual(info.info?.netuid, 7)
    }

    func testMissingAuthIsUnauthenticated() throws {
        let h = try harness(AdmissionPolicy())
        let response = try forward(client(h, as: nil))
        XCTAssertEqual(response.code, .unauthenticated)
        XCTAssertTrue(response.message.contains("no auth"), response.message)
    }

    func testBadSignatureIsUnauthenticated() throws {
        let h = try harness(AdmissionPolicy())
        let bytes = body.serializedBytes()
        // Signed by the stranger's key but claiming to be the registered validator.
        var auth = SigningSession(hotkey: stranger).auth(receiver: axonKey.ss58, body: bytes)
        auth.hotkey = validator.ss58
        let response = try client(h, as: nil).call(.forward, body: bytes, timeoutMs: 5000, auth: auth)
        XCTAssertEqual(response.code, .unauthenticated)
        XCTAssertTrue(response.message.contains("does not verify"), response.message)
    }

    func testRequestSignedForAnotherReceiverIsUnauthenticated() throws {
        let h = try harness(AdmissionPolicy())
        let response = try forward(client(h, as: validator, receiver: Self.key(9).ss58))
        XCTAssertEqual(response.code, .unauthenticated)
        XCTAssertTrue(response.message.contains(axonKey.ss58), response.message)
    }

    func testTamperedBodyIsUnauthenticated() throws {
        let h = try harness(AdmissionPolicy())
        let signedBody = body.serializedBytes()
        let auth = SigningSession(hotkey: validator).auth(receiver: axonKey.ss58, body: signedBody)
        let tampered = ForwardRequest(tokens: Tensor(int32Rows: [[5, 6, 8]]), synapses: body.synapses).serializedBytes()
        let response = try client(h, as: nil).call(.forward, body: tampered, timeoutMs: 5000, auth: auth)
        XCTAssertEqual(response.code, .unauthenticated)
        XCTAssertTrue(response.message.contains(sha256Hex(tampered)), response.message)
    }

    func testReplayedAndStaleNoncesAreUnauthenticated() throws {
        let h = try harness(AdmissionPolicy())
        let bytes = body.serializedBytes()
        let session = SigningSession(hotkey: validator)
        let older = session.auth(receiver: axonKey.ss58, body: bytes)
        let newer = session.auth(receiver: axonKey.ss58, body: bytes)
        let raw = try client(h, as: nil)
        XCTAssertEqual(try raw.call(.forward, body: bytes, timeoutMs: 5000, auth: newer).code, .success)
        let replay = try raw.call(.forward, body: bytes, timeoutMs: 5000, auth: newer)
        XCTAssertEqual(replay.code, .unauthenticated)
        XCTAssertTrue(replay.message.contains("replay"), replay.message)
        XCTAssertEqual(try raw.call(.forward, body: bytes, timeoutMs: 5000, auth: older).code, .unauthenticated)
    }

    func testUnregisteredSenderIsSenderUnknownUnlessAllowed() throws {
        let strict = try harness(AdmissionPolicy())
        let refused = try forward(client(strict, as: stranger))
        XCTAssertEqual(refused.code, .senderUnknown)
        XCTAssertTrue(refused.message.contains(stranger.ss58), refused.message)
        let open = try harness(AdmissionPolicy(allowUnregistered: true))
        XCTAssertEqual(try forward(client(open, as: stranger)).code, .success)
    }

    func testDenyListMinimumStakeAndPermitAreBlacklisted() throws {
        let h = try harness(AdmissionPolicy(minStake: 10, requireValidatorPermit: true, deny: [denied.ss58]))
        let deniedAnswer = try forward(client(h, as: denied))
        XCTAssertEqual(deniedAnswer.code, .blacklisted)
        XCTAssertTrue(deniedAnswer.message.contains("deny list"), deniedAnswer.message)
        let stakeAnswer = try forward(client(h, as: smallStake))
        XCTAssertEqual(stakeAnswer.code, .blacklisted)
        XCTAssertTrue(stakeAnswer.message.contains("below the minimum 10"), stakeAnswer.message)
        let permitAnswer = try forward(client(h, as: noPermit))
        XCTAssertEqual(permitAnswer.code, .blacklisted)
        XCTAssertTrue(permitAnswer.message.contains("validator permit"), permitAnswer.message)
        XCTAssertEqual(try forward(client(h, as: validator)).code, .success)
    }

    func testOverTheRateLimitIsBackoff() throws {
        // 0.01 requests/s with a burst of 2: the third request within the test is over the limit.
        let h = try harness(AdmissionPolicy(rateLimit: RateLimit(requestsPerSecond: 0.01, burst: 2)))
        let c = try client(h, as: validator)
        XCTAssertEqual(try forward(c).code, .success)
        XCTAssertEqual(try forward(c).code, .success)
        let third = try forward(c)
        XCTAssertEqual(third.code, .backoff)
        XCTAssertTrue(third.message.contains("rate limit"), third.message)
        // Another sender has its own bucket.
        XCTAssertEqual(try forward(client(h, as: smallStake)).code, .success)
    }

    func testNoAdmissionServesUnsignedForward() throws {
        let h = try Harness { $0.hotkey = axonKey.ss58 }
        addTeardownBlock { h.stop() }
        XCTAssertEqual(try forward(client(h, as: nil)).code, .success)
    }

    // MARK: - Metagraph reload (the SIGHUP path)

    func testMetagraphReloadSwapsTheSnapshotAndABadFileKeepsTheOldOne() throws {
        let directory = FileManager.default.temporaryDirectory.appendingPathComponent("axon-reload-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: directory, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(at: directory) }
        let path = directory.appendingPathComponent("metagraph.json").path
        func write(_ text: String) throws { try text.write(toFile: path, atomically: true, encoding: .utf8) }
        try write(#"{"netuid": 3, "block": 10, "neurons": [{"uid": 0, "hotkey": "\#(validator.ss58)", "stake": 1, "validator_permit": true}]}"#)
        let store = try MetagraphStore(path: path)
        let admission = try Admission(receiver: axonKey.publicKey, policy: AdmissionPolicy(), metagraph: store)
        let h = try Harness { config in
            config.hotkey = axonKey.ss58
            config.admission = admission
            config.metagraph = store
            config.metagraphPath = path
        }
        addTeardownBlock { h.stop() }
        let anonymous = try client(h, as: nil)
        XCTAssertEqual(try anonymous.info().info?.uid, -1)
        XCTAssertEqual(try forward(client(h, as: stranger)).code, .senderUnknown)

        try write(#"{"netuid": 3, "block": 11, "neurons": [{"uid": 0, "hotkey": "\#(validator.ss58)", "stake": 1, "validator_permit": true}, {"uid": 42, "hotkey": "\#(axonKey.ss58)", "stake": 0, "validator_permit": false}, {"uid": 5, "hotkey": "\#(stranger.ss58)", "stake": 3, "validator_permit": false}]}"#)
        guard case .success(let reloaded)? = h.server.reloadMetagraph() else { return XCTFail("a good file must reload") }
        XCTAssertEqual(reloaded.block, 11)
        XCTAssertEqual(try anonymous.info().info?.uid, 42)
        XCTAssertEqual(try forward(client(h, as: stranger)).code, .success)

        try write(#"{"netuid": 3, "block": 12, "neurons": [{"uid": 0, "hotkey": "not-an-address", "stake": 1, "validator_permit": true}]}"#)
        guard case .failure(let error)? = h.server.reloadMetagraph() else { return XCTFail("a bad file must be refused") }
        XCTAssertTrue("\(error)".contains("neurons[0]"), "\(error)")
        XCTAssertEqual(store.current.block, 11)
        XCTAssertEqual(try anonymous.info().info?.uid, 42)
        XCTAssertEqual(try forward(client(h, as: stranger)).code, .success)
    }

    // MARK: - Priority and the starvation guard

    /// Signed FORWARD requests from several senders, pipelined on one connection in a known order.
    private func sendSigned(_ raw: AxonClient, _ sender: SigningSession, timeoutMs: UInt32) throws -> UInt64 {
        let bytes = body.serializedBytes()
        let id = raw.makeID()
        try raw.send(Request(id: id, method: .forward, timeoutMs: timeoutMs, body: bytes,
                             auth: sender.auth(receiver: axonKey.ss58, body: bytes)))
        return id
    }

    /// Ids in the order their responses arrive (the worker's completion order on one connection).
    private func arrivalOrder(_ raw: AxonClient, count: Int) throws -> [UInt64] {
        try (0..<count).map { _ in
            let response = try raw.nextResponse(timeout: 20)
            XCTAssertEqual(response.code, .success, response.message)
            return response.id
        }
    }

    func testHigherStakeIsServedBeforeAnEarlierLowerStakeRequest() throws {
        // One request per batch (4-token batches) on a slow backend keeps the queue saturated.
        let h = try harness(AdmissionPolicy(allowUnregistered: true), backend: FakeBackend(computeDelay: 0.2)) {
            $0.maxBatchTokens = 3
        }
        let raw = try client(h, as: nil)
        let high = SigningSession(hotkey: validator), low = SigningSession(hotkey: smallStake)
        let unregistered = SigningSession(hotkey: stranger)
        let blocker = try sendSigned(raw, high, timeoutMs: 10_000)
        Thread.sleep(forTimeInterval: 0.05)   // the worker is now busy with the blocker
        let fromUnregistered = try sendSigned(raw, unregistered, timeoutMs: 10_000)
        let fromLow = try sendSigned(raw, low, timeoutMs: 10_000)
        let fromHigh = try sendSigned(raw, high, timeoutMs: 10_000)
        XCTAssertEqual(try arrivalOrder(raw, count: 4), [blocker, fromHigh, fromLow, fromUnregistered])
    }

    func testStarvationGuardPromotesARequestThatWaitedHalfItsDeadline() throws {
        let h = try harness(AdmissionPolicy(), backend: FakeBackend(computeDelay: 0.4)) { $0.maxBatchTokens = 3 }
        let raw = try client(h, as: nil)
        let high = SigningSession(hotkey: validator), low = SigningSession(hotkey: smallStake)
        let blocker = try sendSigned(raw, high, timeoutMs: 20_000)
        Thread.sleep(forTimeInterval: 0.05)
        // Arrives at ~0.05 s with a 1.2 s deadline: not yet starving when the blocker ends (0.4 s),
        // starving (waited > 0.6 s) when the next high-stake request ends (0.8 s).
        let starved = try sendSigned(raw, low, timeoutMs: 1200)
        let highs = try (0..<4).map { _ in try sendSigned(raw, high, timeoutMs: 20_000) }
        let order = try arrivalOrder(raw, count: 6)
        XCTAssertEqual(order, [blocker, highs[0], starved] + highs[1...])
        XCTAssertGreaterThanOrEqual(h.server.starvationPromotions, 1)
    }

    // MARK: - Issue 10: strings cut at NUL, slots kept for staked senders

    /// A FORWARD frame whose auth fields are raw bytes, appended as field 5 after the rest of the
    /// request (the Swift encoder goes through C strings and cannot write a NUL).
    func rawForwardFrame(id: UInt64, body: [UInt8], hotkey: [UInt8], nonce: UInt64, uuid: [UInt8], signature: [UInt8]) -> [UInt8] {
        func field(_ tag: UInt8, _ bytes: [UInt8], into out: inout [UInt8]) {
            out.append(tag)
            FrameEncoder.appendVarint(UInt64(bytes.count), to: &out)
            out += bytes
        }
        var auth: [UInt8] = []
        field(0x0A, hotkey, into: &auth)
        auth.append(0x10)
        FrameEncoder.appendVarint(nonce, to: &auth)
        field(0x1A, uuid, into: &auth)
        field(0x22, signature, into: &auth)
        var request = Request(id: id, method: .forward, timeoutMs: 5000, body: body).serializedBytes()
        field(0x2A, auth, into: &request)
        return FrameEncoder.frame(request)
    }

    /// A hotkey `ss58\0junk` signed over the text before the NUL was accepted as that hotkey.
    func testAHotkeyWithANULIsRefusedNotCutShort() throws {
        let h = try harness(AdmissionPolicy())
        let raw = try client(h, as: nil)
        let bytes = body.serializedBytes()
        let signed = RequestSignature.sign(hotkey: validator, receiver: axonKey.ss58, nonce: 10, uuid: "nul-test", body: bytes)
        try raw.sendRaw(rawForwardFrame(id: 1, body: bytes, hotkey: Array(validator.ss58.utf8) + [0] + Array("junk".utf8),
                                        nonce: 10, uuid: Array("nul-test".utf8), signature: signed.signature))
        // An unreadable request has no id to answer with: the answer's id is 0.
        let refused = try raw.response(id: 0, timeout: 5)
        XCTAssertEqual(refused.code, .requestDeserializationException, refused.message)
        XCTAssertTrue(refused.message.contains("auth.hotkey") && refused.message.contains("NUL"), refused.message)
        // The same signature with the exact hotkey is valid: only the NUL made the difference.
        try raw.sendRaw(rawForwardFrame(id: 2, body: bytes, hotkey: Array(validator.ss58.utf8), nonce: 10,
                                        uuid: Array("nul-test".utf8), signature: signed.signature))
        XCTAssertEqual(try raw.response(id: 2, timeout: 5).code, .success)
    }

    /// The uuids `abc\0X` and `abc\0Y` were one session `abc`.
    func testUUIDsThatDifferOnlyAfterANULAreRefusedNotMerged() throws {
        let h = try harness(AdmissionPolicy())
        let raw = try client(h, as: nil)
        let bytes = body.serializedBytes()
        for (id, suffix) in [(UInt64(1), "X"), (2, "Y")] {
            let signed = RequestSignature.sign(hotkey: validator, receiver: axonKey.ss58, nonce: 5, uuid: "abc", body: bytes)
            try raw.sendRaw(rawForwardFrame(id: id, body: bytes, hotkey: Array(validator.ss58.utf8), nonce: 5,
                                            uuid: Array("abc".utf8) + [0] + Array(suffix.utf8), signature: signed.signature))
            let refused = try raw.response(id: 0, timeout: 5)
            XCTAssertEqual(refused.code, .requestDeserializationException, "request \(id): \(refused.message)")
            XCTAssertTrue(refused.message.contains("auth.uuid"), refused.message)
        }
    }

    /// With a metagraph, connections without a staked FORWARD may hold only maxConnections −
    /// reserved slots; past that the oldest of them makes room, and a staked one is never evicted.
    func testSlotsAreKeptForStakedSendersWhenAMetagraphIsLoaded() throws {
        let h = try harness(AdmissionPolicy()) { $0.maxConnections = 4; $0.reservedConnections = 2 }
        let first = try client(h, as: nil), second = try client(h, as: nil)
        XCTAssertEqual(try first.ping().code, .success)
        XCTAssertEqual(try second.ping().code, .success)
        let staked = try client(h, as: validator, receiver: axonKey.ss58)
        XCTAssertEqual(try forward(staked).code, .success)
        XCTAssertThrowsError(try first.ping(), "the oldest unstaked connection made room")
        let third = try client(h, as: nil)
        XCTAssertEqual(try third.ping().code, .success)
        let fourth = try client(h, as: nil)
        XCTAssertEqual(try fourth.ping().code, .success)
        XCTAssertThrowsError(try second.ping(), "the next oldest unstaked connection made room")
        XCTAssertEqual(try forward(staked).code, .success, "the staked connection is never evicted")
        XCTAssertEqual(h.server.abuseCounts.evictedConnections, 2)
    }
}
