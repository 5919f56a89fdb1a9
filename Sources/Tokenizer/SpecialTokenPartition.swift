#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// llama.cpp's special-token partition (`tokenizer_st_partition`), exactly: special tokens are
/// taken one at a time, longest text first, and each claims its leftmost non-overlapping
/// occurrences in the text that earlier (longer) tokens left unclaimed. This differs from
/// leftmost-longest matching when occurrences overlap (in "<<s>>" with tokens "<s>" and "<<",
/// the longer claims first wherever it is).
///
/// Tokens of equal length keep id order; llama.cpp's `std::sort` leaves their order
/// unspecified, which matters only for two equal-length tokens whose occurrences overlap.
///
/// Speed: one pass over the text with a byte trie finds which special tokens occur at all;
/// only those run llama.cpp's per-token pass, so the cost does not grow with the thousands of
/// special tokens a vocabulary may have.
struct SpecialTokenPartition: Sendable {
    /// Special tokens in claim order (longest first): bytes, id, and whether they are matched
    /// without `parseSpecial` (user-defined ones are; control and unknown ones are not).
    private let texts: [[UInt8]]
    private let ids: [Int32]
    private let alwaysMatched: [Bool]

    // Byte trie over `texts`: root children dense, the rest as (byte, child) lists.
    private let root: [Int32]          // 256 entries, -1 = none
    private let childStart: [Int32]    // per node, into childBytes/childNodes
    private let childCount: [Int32]
    private let childBytes: [UInt8]
    private let childNodes: [Int32]
    private let terminal: [Int32]      // per node: index into `texts`, or -1

    let isEmpty: Bool
    let hasAlwaysMatched: Bool

    /// A piece of the partitioned text: raw bytes `start..<end` (id -1) or one special token.
    struct Segment {
        var start: Int
        var end: Int
        var id: Int32
    }

    init(_ tokens: [(text: [UInt8], id: Int32, always: Bool)]) {
        let ordered = tokens.filter { !$0.text.isEmpty }.enumerated()
            .sorted { ($0.element.text.count, -$0.offset) > ($1.element.text.count, -$1.offset) }
            .map(\.element)
        texts = ordered.map(\.text)
        ids = ordered.map(\.id)
        alwaysMatched = ordered.map(\.always)
        isEmpty = ordered.isEmpty
        hasAlwaysMatched = alwaysMatched.contains(true)

        // Build the trie with per-node dictionaries, then flatten.
        var children: [[UInt8: Int32]] = [[:]]
        var term: [Int32] = [-1]
        for (k, t) in texts.enumerated() {
            var node = 0
            for b in t {
                if let c = children[node][b] {
                    node = Int(c)
                } else {
                    children.append([:])
                    term.append(-1)
                    let c = Int32(children.count - 1)
                    children[node][b] = c
                    node = Int(c)
                }
            }
            if term[node] < 0 { term[node] = Int32(k) }   // duplicates: the first in claim order
        }
        var rootTable = [Int32](repeating: -1, count: 256)
        for (b, c) in children[0] { rootTable[Int(b)] = c }
        var starts: [Int32] = [], counts: [Int32] = [], bytes: [UInt8] = [], nodes: [Int32] = []
        for node in children {
            starts.append(Int32(bytes.count))
            counts.append(Int32(node.count))
            for (b, c) in node.sorted(by: { $0.key < $1.key }) {
                bytes.append(b)
                nodes.append(c)
            }
        }
        root = rootTable
        childStart = starts
        childCount = counts
        childBytes = bytes
        childNodes = nodes
        terminal = term
    }

    /// Splits `text[0..<count]` into raw and special segments, in order, into `segments`.
    func partition(_ text: UnsafePointer<UInt8>, count: Int, parseSpecial: Bool, into segments: inout [Segment]) {
        segments.removeAll(keepingCapacity: true)
        guard count > 0 else { return }
        segments.append(Segment(start: 0, end: count, id: -1))
        guard !isEmpty, parseSpecial || hasAlwaysMatched else { return }
        let present = occurring(text, count: count, parseSpecial: parseSpecial)
        guard !present.isEmpty else { return }
        var next: [Segment] = []
        next.reserveCapacity(segments.count)
        for k in present {
            let token = texts[k]
            let id = ids[k]
            next.removeAll(keepingCapacity: true)
            token.withUnsafeBufferPointer { t in
                for s in segments {
                    guard s.id < 0 else { next.append(s); continue }
                    var from = s.start
                    while let m = Self.find(t, in: text, from: from, end: s.end) {
                        if m > from { next.append(Segment(start: from, end: m, id: -1)) }
                        next.append(Segment(start: m, end: m + t.count, id: id))
                        from = m + t.count
                    }
                    if from < s.end { next.append(Segment(start: from, end: s.end, id: -1)) }
                }
            }
            swap(&segments, &next)
        }
    }

    /// Indices (claim order, ascending) of the special tokens that occur somewhere in the text.
    private func occurring(_ text: UnsafePointer<UInt8>, count: Int, parseSpecial: Bool) -> [Int] {
        var seen = [Bool](repeating: false, count: texts.count)
        var any = false
        root.withUnsafeBufferPointer { root in
            for i in 0..<count {
                var node = Int(root[Int(text[i])])
                var j = i + 1
                while node >= 0 {
                    let k = Int(terminal[node])
                    if k >= 0 && (parseSpecial || alwaysMatched[k]) {
                        seen[k] = true
                        any = true
                    }
                    guard j < count else { break }
                    node = child(of: node, byte: text[j])
                    j += 1
                }
            }
        }
        guard any else { return [] }
        return seen.indices.filter { seen[$0] }
    }

    @inline(__always)
    private func child(of node: Int, byte: UInt8) -> Int {
        let start = Int(childStart[node])
        let end = start + Int(childCount[node])
        var k = start
        while k < end {
            if childBytes[k] == byte { return Int(childNodes[k]) }
            k += 1
        }
        return -1
    }

    /// The first occurrence of `t` starting at or after `from` and ending by `end`: `memchr`
    /// (vectorized) to the first byte, then a compare. These passes scan the text once per token.
    @inline(__always)
    private static func find(_ t: UnsafeBufferPointer<UInt8>, in text: UnsafePointer<UInt8>, from: Int, end: Int) -> Int? {
        let n = t.count
        guard n > 0, let needle = t.baseAddress else { return nil }
        var i = from
        while end - i >= n {
            guard let hit = memchr(text + i, Int32(needle[0]), end - i - n + 1) else { return nil }
            let p = UnsafeRawPointer(hit).assumingMemoryBound(to: UInt8.self)
            // Most hits of a frequent first byte (a space) fail on the second byte: test it inline.
            if n == 1 || (p[1] == needle[1] && (n == 2 || memcmp(p + 2, needle + 2, n - 2) == 0)) { return p - text }
            i = p - text + 1
        }
        return nil
    }
}
