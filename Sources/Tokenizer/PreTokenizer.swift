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

    /// Whether the block kernel (`axon_ascii_piece_starts`) may cut ASCII stretches: the GPT-2
    /// rule on the ASCII classes it assumes (`smollm`'s digit split is not among its rules).
    let readsBlocks: Bool

    init(text: UnsafePointer<UInt8>, count: Int, kind: PreTokenizerKind) {
        self.text = text
        self.count = count
        self.splitDigits = kind == .smollm
        ascii = classes.blocks + (Int(classes.blockIndex[0]) << 8)
        readsBlocks = kind == .gpt2 && Self.asciiClassesMatchBlocks
    }

    /// True when the classes of the 128 ASCII scalars are the ones the block kernel assumes
    /// (`axon_ascii_piece_starts`): A-Z and a-z letters, 0-9 numbers, \t \n \v \f \r and
    /// space whitespace.
    private static let asciiClassesMatchBlocks: Bool = {
        let classes = UnicodeClasses.shared
        return (0..<128).allSatisfy { b -> Bool in
            let byte = UInt8(b)
            let letter = (0x41...0x5A).contains(byte) || (0x61...0x7A).contains(byte)
            let digit = (0x30...0x39).contains(byte)
            let space = (0x09...0x0D).contains(byte) || byte == 0x20
            let expected = (letter ? CharClass.letter : 0) | (digit ? CharClass.number : 0) | (space ? CharClass.whitespace : 0)
            return classes.flags(of: UInt32(b)) & (CharClass.letter | CharClass.number | CharClass.whitespace) == expected
        }
    }()

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

    /// The end of the piece that starts at `i` (`i < count`). Pieces that start with ASCII
    /// take the fast paths below: letter runs (with or without one leading space) a word at a
    /// time, other runs and whitespace runs byte by byte. Contractions, numbers and anything
    /// that starts with a byte >= 0x80 go to `generalPieceEnd`, as do runs that would need it.
    @inline(__always)
    func pieceEnd(from i: Int) -> Int {
        let b0 = text[i]
        guard b0 < 0x80 else { return generalPieceEnd(from: i) }
        let f0 = ascii[Int(b0)]
        if f0 & Self.letter != 0 { return letterRunEnd(from: i + 1) }
        if b0 == 0x20 {
            // ` ?X+`: one space joins a following letter, number or other run.
            guard i + 1 < count else { return i + 1 }
            let b1 = text[i + 1]
            guard b1 < 0x80 else { return generalPieceEnd(from: i) }
            let f1 = ascii[Int(b1)]
            if f1 & Self.letter != 0 { return letterRunEnd(from: i + 2) }
            if f1 & Self.number != 0 { return generalPieceEnd(from: i) }
            if f1 & Self.space == 0 { return otherRunEnd(from: i + 2) }
            return spaceRunEnd(from: i)   // two or more whitespace characters
        }
        if f0 & Self.space != 0 { return spaceRunEnd(from: i) }
        if f0 & Self.number != 0 || b0 == 0x27 { return generalPieceEnd(from: i) }
        return otherRunEnd(from: i + 1)
    }

    /// The whitespace piece at `i`, an ASCII whitespace byte that is not a lone space before
    /// a non-space: `\s+(?!\S)|\s+` keeps a run's last character for the next piece when a
    /// non-space follows and the run is longer than one. A byte >= 0x80 (maybe Unicode
    /// whitespace) anywhere in the run hands the whole piece to `generalPieceEnd`.
    @inline(__always)
    private func spaceRunEnd(from i: Int) -> Int {
        var j = i + 1
        while j < count {
            let b = text[j]
            if b >= 0x80 { return generalPieceEnd(from: i) }
            let f = ascii[Int(b)]
            if f & Self.space == 0 {
                // In smollm mode a digit ends the text the regex sees, so the run is whole.
                if splitDigits && f & CharClass.digitSplit != 0 { return j }
                return j - i > 1 ? j - 1 : j
            }
            j += 1
        }
        return j
    }

    /// The end of a `[^\s\p{L}\p{N}]+` run from `j`.
    @inline(__always)
    private func otherRunEnd(from start: Int) -> Int {
        var j = start
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
        return j
    }

    /// The end of a `\p{L}+` run whose letters so far are ASCII, from `j`: eight bytes at a
    /// time while they are ASCII letters, then byte by byte; a byte >= 0x80 hands over to the
    /// scalar loop, which classifies non-ASCII letters.
    @inline(__always)
    private func letterRunEnd(from start: Int) -> Int {
        var j = start
        let raw = UnsafeRawPointer(text)
        while j + 8 <= count {
            let stop = AsciiWords.nonLetterBytes(UInt64(littleEndian: raw.loadUnaligned(fromByteOffset: j, as: UInt64.self)))
            if stop != 0 {
                j += stop.trailingZeroBitCount >> 3
                return text[j] < 0x80 ? j : runEnd(from: j, cls: Self.letter)
            }
            j += 8
        }
        while j < count {
            let b = text[j]
            if b >= 0x80 { return runEnd(from: j, cls: Self.letter) }
            if ascii[Int(b)] & Self.letter == 0 { break }
            j += 1
        }
        return j
    }

    /// The end of a run of class `cls` (letters or numbers) from `j`, any scalars.
    @inline(__always)
    private func runEnd(from start: Int, cls: UInt8) -> Int {
        var j = start
        // ASCII bytes are classified inline; `peek` handles the rest (and the end).
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
        return j
    }

    /// The length of the contraction (`'s 't 'm 'd`, `'re 've 'll`, case-sensitive as in the
    /// regex) at the apostrophe `text[i]`, or 0.
    @inline(__always)
    func contractionLength(at i: Int) -> Int {
        guard i + 1 < count else { return 0 }
        let b1 = text[i + 1]
        if b1 == 0x73 || b1 == 0x74 || b1 == 0x6D || b1 == 0x64 { return 2 }   // s t m d
        guard i + 2 < count else { return 0 }
        let b2 = text[i + 2]
        if (b1 == 0x72 && b2 == 0x65) || (b1 == 0x76 && b2 == 0x65) || (b1 == 0x6C && b2 == 0x6C) {
            return 3   // re ve ll
        }
        return 0
    }

    /// `pieceEnd` for any piece: contractions, numbers, other runs, whitespace, non-ASCII.
    private func generalPieceEnd(from i: Int) -> Int {
        let b0 = text[i]
        if b0 == 0x27 {
            let n = contractionLength(at: i)
            if n > 0 { return i + n }
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
            let j = start + length
            return cls != 0 ? runEnd(from: j, cls: cls) : otherRunEnd(from: j)
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

/// Byte-parallel tests on eight bytes in one word (SWAR), for the split scanner's ASCII runs.
enum AsciiWords {
    private static let low7: UInt64 = 0x7F7F_7F7F_7F7F_7F7F
    private static let high: UInt64 = 0x8080_8080_8080_8080
    private static let caseBit: UInt64 = 0x2020_2020_2020_2020

    /// The high bit of every byte of `w` (little-endian order) that is not an ASCII letter.
    /// Folding case with 0x20 maps only A-Z into a-z; with the high bits cleared first, the
    /// two additions below cannot carry between bytes.
    @inline(__always)
    static func nonLetterBytes(_ w: UInt64) -> UInt64 {
        let folded = (w & low7) | caseBit
        let atLeastA = folded &+ 0x1F1F_1F1F_1F1F_1F1F        // high bit: folded >= 0x61 ('a')
        let pastZ = folded &+ 0x0505_0505_0505_0505           // high bit: folded >= 0x7B ('z' + 1)
        return ((~atLeastA | pastZ) | w) & high
    }
}
