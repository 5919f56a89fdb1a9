import XCTest
final class IdentityPlaceholderTests: XCTestCase { func testBuilds() {} }
