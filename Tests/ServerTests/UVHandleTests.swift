import LibUV
import Server
import XCTest

/// libuv handle lifetimes: a handle whose `uv_*_start` fails is closed and released, not leaked.
final class UVHandleTests: XCTestCase {
    private final class Sentinel {}

    func testSignalWatcherWhoseStartFailsIsReleased() throws {
        let loop = try EventLoop()
        weak var captured: Sentinel?
        do {
            let sentinel = Sentinel()
            captured = sentinel
            // Signal 0 makes uv_signal_start fail with EINVAL after uv_signal_init succeeded.
            XCTAssertThrowsError(try SignalWatcher(loop: loop, signal: 0) { _ = sentinel }) { error in
                XCTAssertTrue("\(error)".contains("uv_signal_start"), "\(error)")
            }
        }
        // The close callback runs on the next loop iteration and drops the handle's reference.
        loop.runOnce()
        XCTAssertNil(captured, "the failed watcher (and its action) must be released")
        XCTAssertFalse(loop.isAlive)
    }
}
