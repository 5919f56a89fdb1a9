import Identity
import XCTest

final class BoundedTablesTests: XCTestCase {
    func testNoncesMustStrictlyIncreasePerSession() {
        var table = NonceTable(capacity: 10)
        XCTAssertNil(table.accept(sender: "a", uuid: "s", nonce: 0))
        XCTAssertEqual(table.accept(sender: "a", uuid: "s", nonce: 0), 0)
        XCTAssertNil(table.accept(sender: "a", uuid: "s", nonce: 7))
        XCTAssertEqual(table.accept(sender: "a", uuid: "s", nonce: 3), 7)
        XCTAssertNil(table.accept(sender: "a", uuid: "t", nonce: 1))
        XCTAssertNil(table.accept(sender: "b", uuid: "s", nonce: 1))
        XCTAssertNil(table.accept(sender: "a", uuid: "s", nonce: .max))
        XCTAssertEqual(table.accept(sender: "a", uuid: "s", nonce: .max), .max)
    }

    func testTheNonceTableNeverGrowsPastItsBoundAndForgetsTheLeastRecentlyUsed() {
        let capacity = 1000
        var table = NonceTable(capacity: capacity)
        XCTAssertNil(table.accept(sender: "keep", uuid: "s", nonce: 50))
        for i in 0..<(capacity * 5) {
            XCTAssertNil(table.accept(sender: "sender-\(i)", uuid: "s", nonce: 1))
            if i % 100 == 0 { XCTAssertEqual(table.accept(sender: "keep", uuid: "s", nonce: 50), 50) }   // touched: stays
            XCTAssertLessThanOrEqual(table.count, capacity)
        }
        XCTAssertEqual(table.count, capacity)
        XCTAssertEqual(table.accept(sender: "keep", uuid: "s", nonce: 50), 50, "a recently used session survives")
        XCTAssertEqual(table.accept(sender: "sender-\(capacity * 5 - 1)", uuid: "s", nonce: 1), 1, "the newest survives")
        XCTAssertNil(table.accept(sender: "sender-0", uuid: "s", nonce: 1), "the oldest was forgotten")
    }

    func testTheDefaultNonceTableHoldsOneHundredThousandSenders() {
        var table = NonceTable()
        XCTAssertEqual(table.capacity, 100_000)
        for i in 0..<100_050 { _ = table.accept(sender: String(i), uuid: "s", nonce: 1) }
        XCTAssertEqual(table.count, 100_000)
    }

    /// Issue 10's nonce flush: one key sent 100,001 requests with distinct uuids and evicted every
    /// other entry, so a captured request refused as a replay was then accepted.
    func testAReplayRefusedBeforeAFloodFromAnotherSenderIsStillRefusedAfterIt() {
        var table = NonceTable()
        XCTAssertNil(table.accept(sender: "victim", uuid: "session", nonce: 42))
        XCTAssertEqual(table.accept(sender: "victim", uuid: "session", nonce: 42), 42)
        for i in 0..<100_001 { XCTAssertNil(table.accept(sender: "flooder", uuid: "uuid-\(i)", nonce: 1)) }
        XCTAssertEqual(table.accept(sender: "victim", uuid: "session", nonce: 42), 42, "the replay is still refused")
        // The flooder's own table is what it churned: bounded, its latest uuid kept, its first forgotten.
        XCTAssertEqual(table.count, 1 + table.sessionsPerSender)
        XCTAssertEqual(table.accept(sender: "flooder", uuid: "uuid-100000", nonce: 1), 1)
        XCTAssertNil(table.accept(sender: "flooder", uuid: "uuid-0", nonce: 1))
    }

    func testAFloodOfFreshUntrustedSendersCannotEvictATrustedOne() {
        var table = NonceTable(capacity: 64)
        XCTAssertNil(table.accept(sender: "registered", uuid: "s", nonce: 9, trusted: true))
        for i in 0..<10_000 { XCTAssertNil(table.accept(sender: "minted-\(i)", uuid: "s", nonce: 1, trusted: false)) }
        XCTAssertEqual(table.accept(sender: "registered", uuid: "s", nonce: 9, trusted: true), 9)
        XCTAssertEqual(table.count, 1 + 64 / 8, "untrusted senders use their own pool of capacity / 8")
    }

    func testTheRateLimiterTableIsBounded() {
        var limiter = RateLimiter(limit: RateLimit(requestsPerSecond: 1, burst: 1), capacity: 16)
        for i in 0..<100 { XCTAssertTrue(limiter.take(hotkey: "k\(i)", now: .seconds(1))) }
        XCTAssertEqual(limiter.count, 16)
        XCTAssertFalse(limiter.take(hotkey: "k99", now: .seconds(1)))
    }
}
