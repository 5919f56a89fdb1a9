/// The k most likely next tokens of a softmax over logits, and what is left for the rest.
public struct TopK: Sendable, Equatable {
    /// Token ids, most probable first (ties: lower id first).
    public var ids: [Int32]
    /// softmax(logits)[id] for each of `ids`.
    public var probs: [Float]
    /// 1 − Σ probs: the probability mass of every token outside the top k.
    public var leftoverMass: Float
    /// leftoverMass / (vocab − k): the probability Bittensor validators assume for a token outside
    /// the top k (0 when k covers the vocabulary).
    public var floor: Float
}

/// The running maximum and rescaled total of exponentials of an online softmax. `topK` and
/// `softmax` both fold logits through it, in the same order, so their probabilities are equal bit
/// for bit.
private struct OnlineSoftmax {
    var runningMax = -Float.infinity
    // A Double total: in fp32 the 6,144 chunk sums, most far below the total, all round the same way
    // (measured: probabilities 3.2e-5 too large on the default model).
    var sum: Double = 0

    /// Folds in 8 logits; returns their maximum.
    @inline(__always) mutating func add(_ chunk: Vec) -> Float {
        let chunkMax = horizontalMax(chunk)
        if chunkMax > runningMax {
            sum *= Double(vexp(Vec(repeating: runningMax - chunkMax))[0])
            runningMax = chunkMax
        }
        sum += Double(vexp(chunk - Vec(repeating: runningMax)).sum())
        return chunkMax
    }

    @inline(__always) mutating func add(_ x: Float) {
        if x > runningMax {
            sum *= Double(vexp(Vec(repeating: runningMax - x))[0])
            runningMax = x
        }
        sum += Double(vexp(Vec(repeating: x - runningMax))[0])
    }

    var inverse: Float { Float(1 / sum) }
}

/// Softmax top-k in one pass over the logits: a running max and rescaled sum of exponentials
/// (online softmax) together with a size-k min-heap of the best logits.
///
/// - Parameters:
///   - logits: one position's logits (vocabulary order).
///   - k: how many candidates to return; clamped to 0...logits.count.
public func topK(_ logits: UnsafeBufferPointer<Float>, k: Int) -> TopK {
    let n = logits.count
    let k = max(0, min(k, n))
    guard n > 0, let base = logits.baseAddress else { return TopK(ids: [], probs: [], leftoverMass: 0, floor: 0) }
    var heap = MinHeap(capacity: k)
    var total = OnlineSoftmax()
    var i = 0
    while i + vecWidth <= n {
        let chunk = loadVec(base + i)
        let chunkMax = total.add(chunk)
        if k > 0, !heap.isFull || chunkMax >= heap.minValue {
            for j in 0..<vecWidth { heap.offer(chunk[j], id: Int32(i + j)) }
        }
        i += vecWidth
    }
    while i < n {
        total.add(base[i])
        if k > 0 { heap.offer(base[i], id: Int32(i)) }
        i += 1
    }
    let (values, ids) = heap.sortedDescending()
    let inv = total.inverse
    var probs = [Float](repeating: 0, count: values.count)
    var covered: Double = 0   // Double for the same reason as `sum`: up to k small terms against ~1
    for j in 0..<values.count {
        probs[j] = vexp(Vec(repeating: values[j] - total.runningMax))[0] * inv
        covered += Double(probs[j])
    }
    let leftover = Float(max(0, 1 - covered))
    return TopK(ids: ids, probs: probs, leftoverMass: leftover, floor: k < n ? leftover / Float(n - k) : 0)
}

/// softmax(logits) over the whole vocabulary into `probabilities` (the same count), each value
/// equal bit for bit to the probability `topK` gives that id: the same running maximum, total and
/// rounding. What a translation between token spaces needs to stay exact where the spaces agree.
public func softmax(_ logits: UnsafeBufferPointer<Float>, into probabilities: UnsafeMutableBufferPointer<Float>) {
    let n = logits.count
    precondition(probabilities.count == n, "softmax writes one probability per logit")
    guard n > 0, let base = logits.baseAddress, let out = probabilities.baseAddress else { return }
    var total = OnlineSoftmax()
    var i = 0
    while i + vecWidth <= n {
        _ = total.add(loadVec(base + i))
        i += vecWidth
    }
    while i < n { total.add(base[i]); i += 1 }
    let inv = total.inverse, shift = Vec(repeating: total.runningMax)
    // Lane by lane, vexp of a vector is vexp of each value on its own (no lane reads another).
    i = 0
    while i + vecWidth <= n {
        storeVec(vexp(loadVec(base + i) - shift) * inv, out + i)
        i += vecWidth
    }
    while i < n { out[i] = vexp(Vec(repeating: base[i] - total.runningMax))[0] * inv; i += 1 }
}

/// A bounded min-heap of (logit, id) keeping the `capacity` best; "better" is the higher logit,
/// then the lower id.
private struct MinHeap {
    private var values: [Float]
    private var ids: [Int32]
    let capacity: Int

    init(capacity: Int) {
        self.capacity = capacity
        values = []
        ids = []
        values.reserveCapacity(capacity)
        ids.reserveCapacity(capacity)
    }

    var isFull: Bool { values.count == capacity }
    var minValue: Float { values[0] }

    @inline(__always) private func worse(_ a: Int, _ b: Int) -> Bool {
        values[a] < values[b] || (values[a] == values[b] && ids[a] > ids[b])
    }

    mutating func offer(_ value: Float, id: Int32) {
        guard !value.isNaN else { return }
        if values.count < capacity {
            values.append(value)
            ids.append(id)
            var c = values.count - 1
            while c > 0 {
                let p = (c - 1) / 2
                guard worse(c, p) else { break }
                values.swapAt(c, p)
                ids.swapAt(c, p)
                c = p
            }
            return
        }
        guard value > values[0] || (value == values[0] && id < ids[0]) else { return }
        values[0] = value
        ids[0] = id
        var p = 0
        while true {
            let l = 2 * p + 1, r = l + 1
            var m = p
            if l < values.count, worse(l, m) { m = l }
            if r < values.count, worse(r, m) { m = r }
            guard m != p else { break }
            values.swapAt(p, m)
            ids.swapAt(p, m)
            p = m
        }
    }

    func sortedDescending() -> ([Float], [Int32]) {
        let order = values.indices.sorted { a, b in
            values[a] > values[b] || (values[a] == values[b] && ids[a] < ids[b])
        }
        return (order.map { values[$0] }, order.map { ids[$0] })
    }
}
