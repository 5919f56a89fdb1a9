import XCTest
final class GGUFPlaceholderTests: XCTestCase { func testBuilds() {} }
