/// The GPT-2 byte-level alphabet: every byte maps to one printable Unicode scalar so that any
/// byte string becomes a string of vocabulary characters. Bytes 0x21–0x7E, 0xA1–0xAC and
/// 0xAE–0xFF map to themselves; the other 68 map in order to U+0100 + n.
enum ByteLevel {
    /// Scalar value for each byte.
    static let scalarForByte: [UInt32] = {
        var table = [UInt32](repeating: 0, count: 256)
        var next: UInt32 = 0x100
        for b in 0..<256 {
            if (0x21...0x7E).contains(b) || (0xA1...0xAC).contains(b) || (0xAE...0xFF).contains(b) {
                table[b] = UInt32(b)
            } else {
                table[b] = next
                next += 1
            }
        }
        return table
    }()

    /// Inverse of `scalarForByte`, or nil for scalars outside the alphabet.
    static func byte(forScalar scalar: UInt32) -> UInt8? {
        if scalar < 0x100 {
            let b = Int(scalar)
            if (0x21...0x7E).contains(b) || (0xA1...0xAC).contains(b) || (0xAE...0xFF).contains(b) {
                return UInt8(b)
            }
            return nil
        }
        guard scalar < 0x100 + 68 else { return nil }
        var n: UInt32 = 0x100
        for b in 0..<256 where scalarForByte[b] >= 0x100 {
            if n == scalar { return UInt8(b) }
            n += 1
        }
        return nil
    }

    /// The byte-level spelling of raw bytes, e.g. " the" -> "Ġthe".
    static func encode<S: Sequence>(_ bytes: S) -> String where S.Element == UInt8 {
        var s = String.UnicodeScalarView()
        for b in bytes {
            if let u = Unicode.Scalar(scalarForByte[Int(b)]) { s.append(u) }
        }
        return String(s)
    }

    /// The raw bytes behind a byte-level token text. Scalars outside the alphabet (possible only
    /// in hand-made vocabularies) are kept as their own UTF-8 bytes.
    static func decode(_ text: String) -> [UInt8] {
        var out: [UInt8] = []
        out.reserveCapacity(text.utf8.count)
        for u in text.unicodeScalars {
            if let b = byte(forScalar: u.value) {
                out.append(b)
            } else {
                out.append(contentsOf: Array(String(u).utf8))
            }
        }
        return out
    }
}
