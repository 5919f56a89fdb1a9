import Foundation
import Identity
import XCTest

/// The `AdmissionState` seam: replicas sharing one state behave as one axon, and whatever a
/// state decides is what admission reports.
final class AdmissionStateTests: XCTestCase {
    var sender: Hotkey!
    var receiver: Hotkey!
    var metagraph: MetagraphStore!
    let body: [UInt8] = Array("a serialized ForwardRequest".utf8)
    let start = MonotonicTime.seconds(1000)
    let admittedAtStake = AdmissionDecision.admitted(priority: .registered(stake: 10), unregistered: false)

    override func setUpWithError() throws {
        sender = try Hotkey(seed: [UInt8](repeating: 3, count: 32))
        receiver = try Hotkey(seed: [UInt8](repeating: 5, count: 32))
        metagraph = MetagraphStore(try Metagraph(netuid: 1, block: 10, neurons: [
            Neuron(uid: 0, hotkey: receiver.ss58, stake: 0, validatorPermit: false),
            Neuron(uid: 1, hotkey: sender.ss58, stake: 10, validatorPermit: true),
        ]))
    }

    private func signed(nonce: UInt64) -> AuthFields {
        RequestSignature.sign(hotkey: sender, receiver: receiver.ss58, nonce: nonce, uuid: "session-1", body: body)
    }

    func testReplicasSharingOneStateRefuseAReplayAcceptedByTheOther() throws {
        let policy = AdmissionPolicy()
        let shared = LocalAdmissionState(policy: policy)
        let a = try Admission(receiver: receiver.publicKey, policy: policy, metagraph: metagraph, state: shared)
        let b = try Admission(receiver: receiver.publicKey, policy: policy, metagraph: metagraph, state: shared)
        let auth = signed(nonce: 7)
        XCTAssertEqual(a.admit(auth: auth, body: body, now: start), admittedAtStake)
        XCTAssertEqual(b.admit(auth: auth, body: body, now: start),
                       .rejected(.unauthenticated(.staleNonce(sender: sender.ss58, uuid: "session-1", nonce: 7, lastSeen: 7))))
        // Without sharing, each replica has its own table and the replay would pass: the reason for the seam.
        let c = try Admission(receiver: receiver.publicKey, policy: policy, metagraph: metagraph)
        XCTAssertEqual(c.admit(auth: auth, body: body, now: start), admittedAtStake)
    }

    func testReplicasSharingOneStateShareTheRateLimit() throws {
        let limit = RateLimit(requestsPerSecond: 1, burst: 3)
        let policy = AdmissionPolicy(rateLimit: limit)
        let shared = LocalAdmissionState(policy: policy)
        let replicas = try (0..<3).map { _ in
            try Admission(receiver: receiver.publicKey, policy: policy, metagraph: metagraph, state: shared)
        }
        // Burst 3 in total across the replicas, not 3 each.
        var decisions: [AdmissionDecision] = []
        for nonce in 1...6 { decisions.append(replicas[Int(nonce) % 3].admit(auth: signed(nonce: UInt64(nonce)), body: body, now: start)) }
        XCTAssertEqual(decisions.filter { $0 == admittedAtStake }.count, 3)
        XCTAssertEqual(decisions.filter { $0 == .rejected(.rateLimited(hotkey: sender.ss58, limit)) }.count, 3)
    }

    /// A state that answers a fixed verdict and records what it was asked.
    private final class FixedState: AdmissionState, @unchecked Sendable {
        let verdict: AdmissionStateVerdict
        var asked: [(sender: String, uuid: String, nonce: UInt64, trusted: Bool, limit: RateLimit?)] = []
        init(_ verdict: AdmissionStateVerdict) { self.verdict = verdict }
        func check(sender: String, uuid: String, nonce: UInt64, trusted: Bool,
                   limit: RateLimit?, now: MonotonicTime) -> AdmissionStateVerdict {
            asked.append((sender, uuid, nonce, trusted, limit))
            return verdict
        }
        var trackedSessions: Int { -1 }
    }

    func testTheStatesVerdictIsWhatAdmissionReports() throws {
        let limit = RateLimit(requestsPerSecond: 4, burst: 8)
        let policy = AdmissionPolicy(rateLimit: limit)
        let cases: [(AdmissionStateVerdict, AdmissionDecision)] = [
            (.accepted, admittedAtStake),
            (.staleNonce(lastSeen: 9), .rejected(.unauthenticated(.staleNonce(sender: sender.ss58, uuid: "session-1", nonce: 2, lastSeen: 9)))),
            (.rateLimited, .rejected(.rateLimited(hotkey: sender.ss58, limit))),
        ]
        for (verdict, expected) in cases {
            let state = FixedState(verdict)
            let a = try Admission(receiver: receiver.publicKey, policy: policy, metagraph: metagraph, state: state)
            XCTAssertEqual(a.admit(auth: signed(nonce: 2), body: body, now: start), expected)
            XCTAssertEqual(state.asked.count, 1)
            XCTAssertEqual(state.asked.first?.sender, sender.ss58)
            XCTAssertEqual(state.asked.first?.nonce, 2)
            XCTAssertEqual(state.asked.first?.trusted, true)
            XCTAssertEqual(state.asked.first?.limit, limit)
            XCTAssertEqual(a.trackedSessions, -1)
        }
        // A forged request never reaches the state.
        let state = FixedState(.accepted)
        let a = try Admission(receiver: receiver.publicKey, policy: policy, metagraph: metagraph, state: state)
        var forged = signed(nonce: 3)
        forged.signature[0] ^= 1
        guard case .rejected(.unauthenticated(.badSignature)) = a.admit(auth: forged, body: body, now: start) else { return XCTFail() }
        XCTAssertTrue(state.asked.isEmpty)
    }
}
