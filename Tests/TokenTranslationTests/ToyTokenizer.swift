import TokenTranslation

/// A tokenizer small enough to reason about: every single byte is a token, plus the given words;
/// encoding takes the longest token matching at each byte (deterministic and total on bytes, and
/// its tokens spell their input, which is all `ByteTokenizer` asks).
struct ToyTokenizer: ByteTokenizer {
    let words: [[UInt8]]
    let controls: Int

    /// Ids: 0..<256 the bytes, then `words`, then `controls` tokens without text (the first is eos).
    init(words: [String], controls: Int = 1) {
        self.words = words.map { Array($0.utf8) }
        self.controls = controls
    }

    var vocabSize: Int { 256 + words.count + controls }
    var eos: Int32 { Int32(256 + words.count) }

    func id(_ word: String) -> Int32 {
        let bytes = Array(word.utf8)
        if bytes.count == 1 { return Int32(bytes[0]) }
        return Int32(256 + words.firstIndex(of: bytes)!)
    }

    func encode(bytes: [UInt8]) -> [Int32] {
        var out: [Int32] = []
        var i = 0
        while i < bytes.count {
            var best: (id: Int32, length: Int) = (Int32(bytes[i]), 1)
            for (index, word) in words.enumerated() where word.count > best.length && bytes[i...].starts(with: word) {
                best = (Int32(256 + index), word.count)
            }
            out.append(best.id)
            i += best.length
        }
        return out
    }

    func textBytes(of id: Int32) -> [UInt8]? {
        guard id >= 0, Int(id) < vocabSize else { return nil }
        if id < 256 { return [UInt8(id)] }
        let index = Int(id) - 256
        return index < words.count ? words[index] : nil
    }
}
