/// Bitcoin-alphabet base58 (no check bytes), the text layer of SS58.
enum Base58 {
    static let alphabet = Array("123456789ABCDEFGHJKLMNPQRSTUVWXYZabcdefghijkmnopqrstuvwxyz".utf8)

    /// Digit value of each ASCII byte, or 0xFF for bytes outside the alphabet.
    private static let digitValues: [UInt8] = {
        var table = [UInt8](repeating: 0xFF, count: 256)
        for (value, c) in alphabet.enumerated() { table[Int(c)] = UInt8(value) }
        return table
    }()

    static func encode(_ bytes: [UInt8]) -> String {
        let zeros = bytes.prefix(while: { $0 == 0 }).count
        // Base-58 digits, least significant first; log(256)/log(58) < 1.37.
        var digits = [UInt8]()
        digits.reserveCapacity(bytes.count * 137 / 100 + 1)
        for byte in bytes.dropFirst(zeros) {
            var carry = Int(byte)
            for j in digits.indices {
                carry += Int(digits[j]) << 8
                digits[j] = UInt8(carry % 58)
                carry /= 58
            }
            while carry > 0 {
                digits.append(UInt8(carry % 58))
                carry /= 58
            }
        }
        var out = [UInt8](repeating: alphabet[0], count: zeros)
        out.reserveCapacity(zeros + digits.count)
        for d in digits.reversed() { out.append(alphabet[Int(d)]) }
        return String(decoding: out, as: UTF8.self)
    }

    /// Decodes at most `maxBytes` bytes; longer input stops early with `.tooLong` so a hostile
    /// string costs O(maxBytes) per character, not O(length²).
    enum DecodeFailure: Error { case invalidCharacter(position: Int, byte: UInt8), tooLong }

    static func decode(_ text: Substring.UTF8View, maxBytes: Int) throws -> [UInt8] {
        let chars = Array(text)
        let zeros = chars.prefix(while: { $0 == alphabet[0] }).count
        if zeros > maxBytes { throw DecodeFailure.tooLong }
        var bytes = [UInt8]()   // least significant first
        bytes.reserveCapacity(maxBytes)
        for (position, c) in chars.enumerated() {
            let value = digitValues[Int(c)]
            if value == 0xFF { throw DecodeFailure.invalidCharacter(position: position, byte: c) }
            if position < zeros { continue }
            var carry = Int(value)
            for j in bytes.indices {
                carry += Int(bytes[j]) * 58
                bytes[j] = UInt8(carry & 0xFF)
                carry >>= 8
            }
            while carry > 0 {
                bytes.append(UInt8(carry & 0xFF))
                carry >>= 8
            }
            if zeros + bytes.count > maxBytes { throw DecodeFailure.tooLong }
        }
        return [UInt8](repeating: 0, count: zeros) + bytes.reversed()
    }
}
