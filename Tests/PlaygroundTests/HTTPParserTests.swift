@testable import Playground
import XCTest

final class HTTPParserTests: XCTestCase {
    func testPlaceholder() {}
}
