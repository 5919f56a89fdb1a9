/// A 4-ary min-heap of packed `UInt64` keys (priority in the high bits, position in the low
/// bits), the merge queue of both BPE and SentencePiece. Four children share a cache line and
/// the tree is half as deep as a binary heap, which matters when one piece is megabytes long.
/// Stale entries are the caller's business (skipped lazily on pop, as in llama.cpp).
struct MinHeap {
    private var storage = GrowableBuffer<UInt64>(capacity: 64)

    var isEmpty: Bool { storage.count == 0 }

    func free() { storage.free() }

    /// Empties the heap, keeping room for `capacity` keys.
    mutating func reset(capacity: Int) {
        storage.count = 0
        storage.reserve(capacity)
    }

    /// Appends without restoring the heap order; call `heapify()` before popping.
    @inline(__always)
    mutating func appendUnordered(_ value: UInt64) { storage.append(value) }

    mutating func heapify() {
        var k = (storage.count + 2) / 4
        while k > 0 {
            k -= 1
            siftDown(k)
        }
    }

    @inline(__always)
    mutating func push(_ value: UInt64) {
        storage.append(value)
        var i = storage.count - 1
        let h = storage.base
        while i > 0 {
            let parent = (i - 1) >> 2
            if h[parent] <= value { break }
            h[i] = h[parent]
            i = parent
        }
        h[i] = value
    }

    /// Removes and returns the smallest key (the heap must not be empty).
    @inline(__always)
    mutating func popMin() -> UInt64 {
        let top = storage[0]
        storage.count -= 1
        if storage.count > 0 {
            storage[0] = storage[storage.count]
            siftDown(0)
        }
        return top
    }

    @inline(__always)
    private mutating func siftDown(_ start: Int) {
        let h = storage.base
        let n = storage.count
        let value = h[start]
        var i = start
        while true {
            let first = 4 * i + 1
            if first >= n { break }
            var child = first
            let last = Swift.min(first + 4, n)
            var k = first + 1
            while k < last {
                if h[k] < h[child] { child = k }
                k += 1
            }
            if h[child] >= value { break }
            h[i] = h[child]
            i = child
        }
        h[i] = value
    }
}
