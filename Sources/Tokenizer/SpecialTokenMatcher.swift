/// Finds special tokens in UTF-8 text, leftmost first and longest at a given position (the
/// rule of HF's added-token matcher). Candidates are bucketed by first byte and tried longest
/// first, so the scan is linear in the text for a fixed token set.
struct SpecialTokenMatcher: Sendable {
    private let byFirstByte: [[(text: [UInt8], id: Int32)]]
    let isEmpty: Bool

    init(_ tokens: [(text: [UInt8], id: Int32)]) {
        var buckets = [[(text: [UInt8], id: Int32)]](repeating: [], count: 256)
        for t in tokens where !t.text.isEmpty { buckets[Int(t.text[0])].append(t) }
        for b in 0..<256 { buckets[b].sort { $0.text.count > $1.text.count } }
        byFirstByte = buckets
        isEmpty = tokens.isEmpty
    }

    /// Calls `body(start, end, id)` for each match, in order, without overlaps.
    func forEachMatch(in text: UnsafePointer<UInt8>, count: Int, _ body: (Int, Int, Int32) -> Void) {
        var i = 0
        while i < count {
            let bucket = byFirstByte[Int(text[i])]
            var matched = false
            for candidate in bucket where candidate.text.count <= count - i {
                var k = 1
                while k < candidate.text.count && candidate.text[k] == text[i + k] { k += 1 }
                if k == candidate.text.count {
                    body(i, i + k, candidate.id)
                    i += k
                    matched = true
                    break
                }
            }
            if !matched { i += 1 }
        }
    }
}
