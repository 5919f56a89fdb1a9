import XCTest
import Tokenizer
final class SmokeTests: XCTestCase { func testNothing() {} }
