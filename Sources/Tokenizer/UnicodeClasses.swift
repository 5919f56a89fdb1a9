/// Character classes of the GPT-2 split rule, per Unicode scalar, as bit flags. The data
/// comes from `UnicodeClassTable` (generated from the reference implementation).
enum CharClass {
    static let letter: UInt8 = 1
    static let number: UInt8 = 2
    static let whitespace: UInt8 = 4
    /// Isolated by HF `Digits(individual_digits: true)` (Rust `char::is_numeric`).
    static let digitSplit: UInt8 = 8
}

/// A two-level lookup (scalar >> 8 selects a 256-entry block) built once from the run table.
/// The tables live for the whole process (one shared instance), so the hot loop reads them
/// through plain pointers without reference counting.
struct UnicodeClasses: @unchecked Sendable {
    /// (0x110000 >> 8) block indices.
    let blockIndex: UnsafePointer<UInt16>
    /// Concatenated unique 256-entry blocks of flags.
    let blocks: UnsafePointer<UInt8>

    static let shared = UnicodeClasses()

    private init() {
        var flat = [UInt8](repeating: 0, count: 0x110000)
        // Parse "start:flags" pairs; each run extends to the next start.
        var starts: [Int] = []
        var flags: [UInt8] = []
        starts.reserveCapacity(UnicodeClassTable.runCount)
        for entry in UnicodeClassTable.runs.split(whereSeparator: { $0 == " " || $0 == "\n" }) {
            let parts = entry.split(separator: ":")
            // The table is generated and committed; a malformed entry is a build defect.
            guard parts.count == 2, let s = Int(parts[0], radix: 16), let f = UInt8(parts[1], radix: 16) else {
                preconditionFailure("UnicodeClassTable entry '\(entry)' is malformed: regenerate it")
            }
            starts.append(s)
            flags.append(f)
        }
        for k in 0..<starts.count {
            let end = k + 1 < starts.count ? starts[k + 1] : 0x110000
            for c in starts[k]..<end { flat[c] = flags[k] }
        }
        var index = [UInt16](repeating: 0, count: 0x110000 >> 8)
        var blocks: [UInt8] = []
        var seen: [[UInt8]: UInt16] = [:]
        for b in 0..<(0x110000 >> 8) {
            let block = Array(flat[(b << 8)..<((b + 1) << 8)])
            if let i = seen[block] {
                index[b] = i
            } else {
                let i = UInt16(blocks.count >> 8)
                seen[block] = i
                blocks.append(contentsOf: block)
                index[b] = i
            }
        }
        let indexStorage = UnsafeMutablePointer<UInt16>.allocate(capacity: index.count)
        indexStorage.initialize(from: index, count: index.count)
        let blockStorage = UnsafeMutablePointer<UInt8>.allocate(capacity: blocks.count)
        blockStorage.initialize(from: blocks, count: blocks.count)
        self.blockIndex = UnsafePointer(indexStorage)
        self.blocks = UnsafePointer(blockStorage)
    }

    @inline(__always)
    func flags(of scalar: UInt32) -> UInt8 {
        let block = Int(blockIndex[Int(scalar >> 8)])
        return blocks[(block << 8) | Int(scalar & 0xFF)]
    }
}
