// Translation between the network's standard token space and the model's: rows of network ids in,
// model ids to run out, and the model's next-token distributions back as distributions over network
// tokens and phrases. docs/PROTOCOL.md ("Token spaces") describes the algorithm; in short:
//  - a model token's *phrase* is the network tokenization of the bytes it adds to the text;
//  - a row whose text may end inside what the model would read as one token is *healed*: the
//    model's last token is backed off, and the continuations consistent with the bytes after the
//    backed-off boundary are kept and renormalised.

/// A distribution over phrases (sequences of network ids), as TEXT_CAUSAL_LM_NEXT answers it.
public struct PhraseDistribution: Equatable, Sendable {
    /// Descending.
    public var probabilities: [Float]
    /// `phrases[c]` is the network ids of candidate c.
    public var phrases: [[Int32]]
    /// (1 − Σ probabilities) / (network vocabulary − k), the probability of each phrase not listed
    /// (k as asked: fewer than k phrases may exist, and an answer pads them with probability 0).
    public var floor: Float
}

/// A distribution over the next network token, top-k.
public struct NetworkTokenDistribution: Equatable, Sendable {
    public var probabilities: [Float]
    public var ids: [Int32]
    public var floor: Float
}

/// Translates between one model's token space and the network's. Immutable; build once per model.
public final class TokenSpaceTranslator: @unchecked Sendable {
    public let network: any ByteTokenizer
    public let model: any ByteTokenizer
    /// Prepended to every row's model ids (the model's bos when its tokenizer adds one).
    public let modelBOS: Int32?
    /// The model's end of text, answered as `networkEOS`.
    public let modelEOS: Int32?
    public let networkEOS: Int32?

    /// Text bytes of every model token, concatenated; token i is `modelBytes[modelOffsets[i]..<modelOffsets[i+1]]`.
    private let modelBytes: [UInt8]
    private let modelOffsets: [Int]
    /// Whether model token i has text (control tokens do not).
    private let modelHasText: [Bool]
    /// The most bytes any model token stands for: no phrase is longer (each network token has at
    /// least one byte, and a phrase spells at most one model token's bytes).
    public let maxModelTokenBytes: Int
    /// Model ids with text, sorted by their bytes: the tokens starting with given bytes form one range.
    private let sortedByBytes: [Int32]
    /// The phrase of every model token on its own; token i is `phraseIDs[phraseOffsets[i]..<phraseOffsets[i+1]]`.
    private let phraseIDs: [Int32]
    private let phraseOffsets: [Int]

    /// - Parameters:
    ///   - modelBOS: the model's bos, when its tokenizer adds one (`add_bos_token`).
    ///   - modelEOS, networkEOS: the two spaces' end of text (a model eos is answered as the network's).
    public init(network: any ByteTokenizer, model: any ByteTokenizer, modelBOS: Int32?, modelEOS: Int32?,
                networkEOS: Int32?) {
        self.network = network
        self.model = model
        self.modelBOS = modelBOS
        self.modelEOS = modelEOS
        self.networkEOS = networkEOS
        var bytes: [UInt8] = [], offsets = [0], hasText: [Bool] = []
        var phrases: [Int32] = [], phraseOffsets = [0]
        offsets.reserveCapacity(model.vocabSize + 1)
        phraseOffsets.reserveCapacity(model.vocabSize + 1)
        let encoder = network.makeByteEncoder()
        for id in 0..<Int32(model.vocabSize) {
            let text = model.textBytes(of: id) ?? []
            hasText.append(!text.isEmpty)
            bytes += text
            offsets.append(bytes.count)
            if !text.isEmpty {
                phrases += encoder.encode(bytes: text)
            } else if id == modelEOS, let networkEOS {
                phrases.append(networkEOS)
            }
            phraseOffsets.append(phrases.count)
        }
        modelBytes = bytes
        modelOffsets = offsets
        maxModelTokenBytes = max(1, zip(offsets.dropFirst(), offsets).map { $0 - $1 }.max() ?? 1)
        modelHasText = hasText
        phraseIDs = phrases
        self.phraseOffsets = phraseOffsets
        sortedByBytes = (0..<Int32(model.vocabSize)).filter { hasText[Int($0)] }.sorted { a, b in
            bytes[offsets[Int(a)]..<offsets[Int(a) + 1]].lexicographicallyPrecedes(bytes[offsets[Int(b)]..<offsets[Int(b) + 1]])
        }
    }

    public var networkVocabSize: Int { network.vocabSize }

    // MARK: Rows

    /// Lays a row of network ids (padding already removed) over its text in model tokens.
    /// - Throws: `TokenSpaceError` for an id outside the network vocabulary or a row without text.
    public func align(networkIDs: [Int32]) throws -> RowAlignment {
        var text: [UInt8] = []
        var networkEnds: [Int] = []
        networkEnds.reserveCapacity(networkIDs.count)
        for (position, id) in networkIDs.enumerated() {
            guard id >= 0, Int(id) < network.vocabSize else {
                throw TokenSpaceError.idOutOfRange(id: id, position: position, vocabSize: network.vocabSize)
            }
            text += network.textBytes(of: id) ?? []
            networkEnds.append(text.count)
        }
        guard !text.isEmpty else { throw TokenSpaceError.noText }
        var modelIDs: [Int32] = modelBOS.map { [$0] } ?? []
        var modelEnds: [Int] = modelBOS == nil ? [] : [0]
        var end = 0
        for id in modelTokens(ofPrefix: text) {
            end += modelTokenBytes(id).count
            modelIDs.append(id)
            modelEnds.append(end)
        }
        guard end == text.count else {
            throw TokenSpaceError.modelTokensDoNotSpellText(textBytes: text.count, modelBytes: end)
        }
        return RowAlignment(text: text, networkIDs: networkIDs, networkEnds: networkEnds, modelIDs: modelIDs,
                            modelEnds: modelEnds, firstTextPosition: modelBOS == nil ? 0 : 1)
    }

    /// The model's tokens of `text` as it reads them when the text goes on. A text that ends in
    /// whitespace can be tokenized otherwise on its own: GPT-2-style split rules keep a whitespace
    /// run whole at the very end of a text but give its last character to what follows (".\n\n"
    /// alone ends in one token "\n\n", followed by a word it is "\n" "\n"), and the model, which
    /// never saw "\n\n" before a word, would then predict as if the paragraph went on blank. So such
    /// a text is tokenized with a letter after it, and the tokens within the text are kept (the
    /// rest, if a token crossed the text's end, tokenized on its own).
    private func modelTokens(ofPrefix text: [UInt8]) -> [Int32] {
        guard let last = text.last, [0x20, 0x0A, 0x09, 0x0D].contains(last) else { return model.encode(bytes: text) }
        var ids: [Int32] = [], end = 0
        for id in model.encode(bytes: text + [UInt8(ascii: "x")]) {
            let next = end + modelTokenBytes(id).count
            guard next <= text.count else { break }
            ids.append(id)
            end = next
        }
        if end < text.count { ids += model.encode(bytes: Array(text[end...])) }
        return ids
    }

    /// The model positions whose next-token probabilities `nextPhrases` reads: `full`, after the
    /// whole text; `healed`, before its last model token (nil when there is no such position).
    public func nextPositions(_ row: RowAlignment) -> (healed: Int?, full: Int) {
        let last = row.modelIDs.count - 1
        return (last >= 1 ? last - 1 : nil, last)
    }

    // MARK: TEXT_CAUSAL_LM_NEXT

    /// The distribution of the text after `row` over phrases of network tokens, top `k`.
    ///
    /// - Parameters:
    ///   - healed: the model's next-token probabilities at `nextPositions(row).healed` (predicting
    ///     the row's last model token), or nil to skip healing.
    ///   - full: the model's next-token probabilities after the whole row.
    ///   - k: how many phrases to list (at most the network vocabulary).
    public func nextPhrases(_ row: RowAlignment, healed: UnsafeBufferPointer<Float>?, full: UnsafeBufferPointer<Float>,
                            k: Int) -> PhraseDistribution {
        precondition(full.count == model.vocabSize && (healed?.count ?? model.vocabSize) == model.vocabSize,
                     "distributions must span the model vocabulary")
        var mass: [[Int32]: Float] = [:]
        var exactShare: Float = 1
        if let healed, let (extensions, share) = healedContinuations(row, healed: healed) {
            exactShare = share
            for (phrase, p) in extensions { mass[phrase, default: 0] += p }
        }
        // Continuations after the whole text, weighted by the share of the healed mass that agrees
        // the text ends at a model boundary (exactly 1 when nothing else is consistent).
        for u in topIndices(full, count: k) {
            let phrase = Array(phraseOf(u))
            guard !phrase.isEmpty, full[u] > 0 else { continue }
            mass[phrase, default: 0] += exactShare == 1 ? full[u] : exactShare * full[u]
        }
        let ranked = mass.sorted { $0.value != $1.value ? $0.value > $1.value : $0.key.lexicographicallyPrecedes($1.key) }
            .prefix(k)
        let probabilities = ranked.map(\.value)
        let listed = probabilities.reduce(0, +)
        // The contract's floor counts k slots as listed, even when fewer phrases than k exist.
        let unlisted = network.vocabSize - min(k, network.vocabSize)
        return PhraseDistribution(probabilities: probabilities, phrases: ranked.map(\.key),
                                  floor: unlisted > 0 ? max(0, 1 - listed) / Float(unlisted) : 0)
    }

    /// Healing the last model token: the candidates for it that are consistent with the bytes after
    /// the backed-off boundary, renormalised. Returns the phrases of the candidates that extend past
    /// the text (each the network tokenization of the bytes it adds) and the share of candidates
    /// whose bytes end exactly with the text; nil when no candidate is consistent.
    private func healedContinuations(_ row: RowAlignment, healed: UnsafeBufferPointer<Float>)
        -> (extensions: [([Int32], Float)], exactShare: Float)? {
        let last = row.modelIDs.count - 1
        guard last >= 1 else { return nil }
        let remainder = Array(row.text[row.modelEnds[last - 1]...])
        guard let lastNetwork = row.networkIDs.last(where: { network.textBytes(of: $0)?.isEmpty == false }),
              let lastNetworkBytes = network.textBytes(of: lastNetwork) else { return nil }
        var exact: Float = 0
        var extensions: [([Int32], Float)] = []
        let encoder = network.makeByteEncoder()
        for t in candidates(startingWith: remainder) {
            let p = healed[Int(t)]
            guard p > 0 else { continue }
            let bytes = modelTokenBytes(t)
            if bytes.count == remainder.count {
                exact += p
                continue
            }
            let added = Array(bytes.dropFirst(remainder.count))
            // The network tokenizer put a boundary where the text ends; a continuation that would
            // make it merge the last network token with what follows contradicts that boundary.
            guard encoder.encode(bytes: lastNetworkBytes + added).first == lastNetwork else { continue }
            extensions.append((encoder.encode(bytes: added), p))
        }
        let total = exact + extensions.reduce(0) { $0 + $1.1 }
        guard total > 0, total.isFinite else { return nil }
        if extensions.isEmpty { return ([], 1) }
        return (extensions.map { ($0.0, $0.1 / total) }, exact / total)
    }

    // MARK: TEXT_CAUSAL_LM

    /// For every network position of `row`, the distribution of the next network token: a model
    /// token counts toward the first network token of its phrase.
    ///
    /// - Parameters:
    ///   - probabilitiesAt: the model's next-token probabilities at a model position of `row`.
    ///   - k: top-k to list; 0 lists every network token (ids in order, probabilities as given).
    public func nextTokens(_ row: RowAlignment, k: Int,
                           probabilitiesAt: (Int) -> UnsafeBufferPointer<Float>) -> [NetworkTokenDistribution] {
        var answers: [NetworkTokenDistribution] = []
        answers.reserveCapacity(row.networkEnds.count)
        forEachNextToken(row, k: k, probabilitiesAt: probabilitiesAt) { _, answer in answers.append(answer) }
        return answers
    }

    /// `nextTokens`, one network position at a time: `body` gets each position's distribution in
    /// order, so full distributions (k = 0) need not all be held at once.
    public func forEachNextToken(_ row: RowAlignment, k: Int, probabilitiesAt: (Int) -> UnsafeBufferPointer<Float>,
                                 body: (_ position: Int, _ distribution: NetworkTokenDistribution) -> Void) {
        var aggregate = [Float](repeating: 0, count: network.vocabSize)
        for (position, end) in row.networkEnds.enumerated() {
            for index in aggregate.indices { aggregate[index] = 0 }
            if let i = row.modelPosition(endingAt: end) {
                let p = probabilitiesAt(i)
                for u in 0..<model.vocabSize where p[u] > 0 {
                    if let first = firstNetworkToken(u) { aggregate[Int(first)] += p[u] }
                }
            } else {
                accumulateInside(row, end: end, into: &aggregate, probabilitiesAt: probabilitiesAt)
            }
            body(position, Self.select(aggregate, k: k))
        }
    }

    /// A network boundary inside model token i: the candidates for token i that start with the
    /// bytes from its start to `end`, each counted toward the first network token of what it adds,
    /// renormalised. Before the first text token without a bos there is nothing to condition on:
    /// the distribution stays empty (all floor).
    private func accumulateInside(_ row: RowAlignment, end: Int, into aggregate: inout [Float],
                                  probabilitiesAt: (Int) -> UnsafeBufferPointer<Float>) {
        let i = row.modelPosition(containing: end)
        guard i >= 1 else { return }
        let p = probabilitiesAt(i - 1)
        let prefix = Array(row.text[row.modelEnds[i - 1]..<end])
        var total: Float = 0
        var picked: [(Int32, Float)] = []
        let encoder = network.makeByteEncoder()
        for t in candidates(startingWith: prefix) where p[Int(t)] > 0 {
            let bytes = modelTokenBytes(t)
            guard bytes.count > prefix.count, let first = encoder.encode(bytes: Array(bytes.dropFirst(prefix.count))).first
            else { continue }
            picked.append((first, p[Int(t)]))
            total += p[Int(t)]
        }
        guard total > 0 else { return }
        for (id, q) in picked { aggregate[Int(id)] += q / total }
    }

    /// Top-k of a distribution over network ids with the floor, or every id for k = 0.
    static func select(_ p: [Float], k: Int) -> NetworkTokenDistribution {
        guard k > 0 else {
            return NetworkTokenDistribution(probabilities: p, ids: (0..<Int32(p.count)).map { $0 }, floor: 0)
        }
        let top = p.withUnsafeBufferPointer { topIndices($0, count: k) }
        let probabilities = top.map { p[$0] }
        let unlisted = p.count - top.count
        return NetworkTokenDistribution(probabilities: probabilities, ids: top.map { Int32($0) },
                                        floor: unlisted > 0 ? max(0, 1 - probabilities.reduce(0, +)) / Float(unlisted) : 0)
    }

    // MARK: Tables

    private func modelTokenBytes(_ id: Int32) -> ArraySlice<UInt8> {
        modelBytes[modelOffsets[Int(id)]..<modelOffsets[Int(id) + 1]]
    }

    /// The phrase of model token `u` on its own: the network ids of its text (the network's eos for
    /// the model's eos, empty for other tokens without text).
    public func phraseOf(_ u: Int) -> ArraySlice<Int32> {
        phraseIDs[phraseOffsets[u]..<phraseOffsets[u + 1]]
    }

    private func firstNetworkToken(_ u: Int) -> Int32? {
        phraseOffsets[u] < phraseOffsets[u + 1] ? phraseIDs[phraseOffsets[u]] : nil
    }

    /// Model tokens whose bytes start with `prefix`: one range of `sortedByBytes`.
    private func candidates(startingWith prefix: [UInt8]) -> ArraySlice<Int32> {
        func before(_ id: Int32) -> Bool {
            // Whether the token sorts before every token starting with `prefix`.
            let bytes = modelTokenBytes(id)
            return bytes.prefix(prefix.count).lexicographicallyPrecedes(prefix)
        }
        func startsWith(_ id: Int32) -> Bool { modelTokenBytes(id).starts(with: prefix) }
        var low = 0, high = sortedByBytes.count
        while low < high {
            let mid = (low + high) / 2
            if before(sortedByBytes[mid]) { low = mid + 1 } else { high = mid }
        }
        var upper = low, top = sortedByBytes.count
        while upper < top {
            let mid = (upper + top) / 2
            if startsWith(sortedByBytes[mid]) { upper = mid + 1 } else { top = mid }
        }
        return sortedByBytes[low..<upper]
    }
}

/// Indices of the `count` largest values, largest first (equal values: lower index first).
func topIndices(_ values: UnsafeBufferPointer<Float>, count: Int) -> [Int] {
    let k = min(count, values.count)
    guard k > 0 else { return [] }
    // A min-heap of the best k so far, ordered by (value, then higher index is worse).
    var heap: [Int] = []
    heap.reserveCapacity(k)
    func worse(_ a: Int, _ b: Int) -> Bool { values[a] != values[b] ? values[a] < values[b] : a > b }
    func siftDown(_ start: Int) {
        var i = start
        while true {
            let l = 2 * i + 1, r = l + 1
            var m = i
            if l < heap.count, worse(heap[l], heap[m]) { m = l }
            if r < heap.count, worse(heap[r], heap[m]) { m = r }
            if m == i { return }
            heap.swapAt(i, m)
            i = m
        }
    }
    for index in 0..<values.count {
        if heap.count < k {
            heap.append(index)
            var c = heap.count - 1
            while c > 0, worse(heap[c], heap[(c - 1) / 2]) { heap.swapAt(c, (c - 1) / 2); c = (c - 1) / 2 }
        } else if worse(heap[0], index) {
            heap[0] = index
            siftDown(0)
        }
    }
    return heap.sorted { worse($1, $0) }
}
