/// The pre-tokenizers (split rules) this module implements exactly.
public enum PreTokenizerKind: String, Sendable, CaseIterable {
    /// The GPT-2 split regex
    /// `'s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+`.
    case gpt2
    /// Every numeric character is its own piece (HF `Digits(individual_digits: true)`), then
    /// the GPT-2 split regex runs on the text between them.
    case smollm
}

/// Finds the pieces of the split rule over UTF-8 bytes, by hand instead of with a regex
/// engine. Classes come from `UnicodeClasses` with an ASCII fast path. In `smollm` mode a
/// numeric character acts both as its own piece and as the end of the text for the regex
/// (HF applies the regex to each segment between digits separately).
struct SplitScanner {
    let text: UnsafePointer<UInt8>
    let count: Int
    let splitDigits: Bool
    private let classes = UnicodeClasses.shared
    /// The flags of the 128 ASCII scalars, read directly in the runs' fast path.
    private let ascii: UnsafePointer<UInt8>

    /// Returned by `peek` at the end of the text or of a digit-delimited segment.
    static let end: UInt8 = 0x80
    private static let letter = CharClass.letter
    private static let number = CharClass.number
    private static let space = CharClass.whitespace
    private static let word = CharClass.letter | CharClass.number | CharClass.whitespace

    init(text: UnsafePointer<UInt8>, count: Int, kind: PreTokenizerKind) {
        self.text = text
        self.count = count
        self.splitDigits = kind == .smollm
        ascii = classes.blocks + (Int(classes.blockIndex[0]) << 8)
    }

    /// Class flags and byte length of the scalar at `i` (valid UTF-8 is assumed: the input
    /// comes from a Swift String).
    @inline(__always)
    func rawPeek(_ i: Int) -> (flags: UInt8, length: Int) {
        let b0 = text[i]
        if b0 < 0x80 {
            return (classes.blocks[Int(classes.blockIndex[0]) << 8 | Int(b0)], 1)
        }
        var scalar: UInt32
        var length: Int
        if b0 < 0xE0 {
            scalar = UInt32(b0 & 0x1F)
            length = 2
        } else if b0 < 0xF0 {
            scalar = UInt32(b0 & 0x0F)
            length = 3
        } else {
            scalar = UInt32(b0 & 0x07)
            length = 4
        }
        var k = 1
        while k < length {
            scalar = scalar << 6 | UInt32(text[i + k] & 0x3F)
            k += 1
        }
        return (classes.flags(of: scalar), length)
    }

    @inline(__always)
    private func peek(_ i: Int) -> (flags: UInt8, length: Int) {
        if i >= count { return (Self.end, 0) }
        let r = rawPeek(i)
        if splitDigits && r.flags & CharClass.digitSplit != 0 { return (Self.end, r.length) }
        return r
    }

    /// The end of the piece that starts at `i` (`i < count`).
    @inline(__always)
    func pieceEnd(from i: Int) -> Int {
        let b0 = text[i]
        if b0 == 0x27 && i + 1 < count {   // ' : contractions, case-sensitive as in the regex
            let b1 = text[i + 1]
            if b1 == 0x73 || b1 == 0x74 || b1 == 0x6D || b1 == 0x64 { return i + 2 }   // s t m d
            if i + 2 < count {
                let b2 = text[i + 2]
                if (b1 == 0x72 && b2 == 0x65) || (b1 == 0x76 && b2 == 0x65) || (b1 == 0x6C && b2 == 0x6C) {
                    return i + 3   // re ve ll
                }
            }
        }
        if splitDigits {
            let r = rawPeek(i)
            if r.flags & CharClass.digitSplit != 0 { return i + r.length }
        }
        var start = i
        var (flags, length) = peek(i)
        if b0 == 0x20 {
            // ` ?X+`: a single space joins a following letter, number or other run.
            let next = peek(i + 1)
            if next.flags & (Self.end | Self.space) == 0 {
                start = i + 1
                flags = next.flags
                length = next.length
            }
        }
        if flags & Self.space == 0 {
            let cls = flags & (Self.letter | Self.number)
            var j = start + length
            // ASCII bytes are classified inline; `peek` handles the rest (and the end).
            if cls != 0 {
                while j < count {
                    let b = text[j]
                    if b < 0x80 {
                        let f = ascii[Int(b)]
                        if f & cls == 0 || (splitDigits && f & CharClass.digitSplit != 0) { break }
                        j += 1
                    } else {
                        let g = peek(j)
                        if g.flags & cls == 0 || g.flags & Self.end != 0 { break }
                        j += g.length
                    }
                }
            } else {
                while j < count {
                    let b = text[j]
                    if b < 0x80 {
                        if ascii[Int(b)] & Self.word != 0 { break }   // digits to split are numbers
                        j += 1
                    } else {
                        let g = peek(j)
                        if g.flags & (Self.word | Self.end) != 0 { break }
                        j += g.length
                    }
                }
            }
            return j
        }
        // `\s+(?!\S)|\s+`: a whitespace run, minus its last character when a non-space follows
        // (that character then prefixes the next piece), unless the run is one character long.
        var j = i
        var lastStart = i
        while true {
            let g = peek(j)
            if g.flags & Self.end != 0 || g.flags & Self.space == 0 { break }
            lastStart = j
            j += g.length
        }
        if peek(j).flags & Self.end != 0 { return j }
        return lastStart > i ? lastStart : j
    }
}
