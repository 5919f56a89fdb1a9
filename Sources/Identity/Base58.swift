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

    /// Decodes at most `maxBytes` bytes; longer input stops early with `.tooLong`, so a hostile
    /// string costs O(maxBytes) per character, not O(length²).
    enum DecodeFailure: Error { case invalidCharacter(position: Int, byte: UInt8), tooLong }

    /// 58⁵ < 2³²: five digits at a time fit one multiply-add over 32-bit limbs.
    private static let powers: [UInt64] = [1, 58, 3364, 195_112, 11_316_496, 656_356_768]

    static func decode(_ text: String.UTF8View, maxBytes: Int) throws -> [UInt8] {
        let limbCapacity = maxBytes / 4 + 2
        return try withUnsafeTemporaryAllocation(of: UInt32.self, capacity: limbCapacity) { limbs in
            var used = 0          // limbs in use, least significant first
            var zeros = 0         // leading '1's: leading zero bytes
            var leading = true
            var group: UInt64 = 0, groupDigits = 0

            func flush() throws {
                var carry = group
                let multiplier = powers[groupDigits]
                for j in 0..<used {
                    let t = UInt64(limbs[j]) * multiplier + carry
                    limbs[j] = UInt32(truncatingIfNeeded: t)
                    carry = t >> 32
                }
                while carry > 0 {
                    guard used < limbCapacity else { throw DecodeFailure.tooLong }
                    limbs[used] = UInt32(truncatingIfNeeded: carry)
                    used += 1
                    carry >>= 32
                }
                group = 0
                groupDigits = 0
            }

            for (position, c) in text.enumerated() {
                let value = digitValues[Int(c)]
                if value == 0xFF { throw DecodeFailure.invalidCharacter(position: position, byte: c) }
                if leading {
                    if value == 0 {
                        zeros += 1
                        if zeros > maxBytes { throw DecodeFailure.tooLong }
                        continue
                    }
                    leading = false
                }
                group = group * 58 + UInt64(value)
                groupDigits += 1
                if groupDigits == 5 { try flush() }
            }
            if groupDigits > 0 { try flush() }

            // Bytes of the number without leading zeros, most significant first, after `zeros` zero bytes.
            let top = used > 0 ? (UInt32.bitWidth - limbs[used - 1].leadingZeroBitCount + 7) / 8 : 0
            let significant = used > 0 ? (used - 1) * 4 + top : 0
            let total = zeros + significant
            guard total <= maxBytes else { throw DecodeFailure.tooLong }
            return [UInt8](unsafeUninitializedCapacity: total) { out, count in
                for i in 0..<zeros { out[i] = 0 }
                for k in 0..<significant {
                    let bit = (significant - 1 - k) * 8   // bit offset of byte k from the least significant end
                    out[zeros + k] = UInt8(truncatingIfNeeded: limbs[bit / 32] >> UInt32(bit % 32))
                }
                count = total
            }
        }
    }
}
