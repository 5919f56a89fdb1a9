/// A manually managed growable array of trivial values, for the encoder's scratch and cache:
/// element access is a plain pointer read with no uniqueness or bounds check in the hot loop.
struct GrowableBuffer<Element> {
    private(set) var base: UnsafeMutablePointer<Element>
    private(set) var capacity: Int
    var count = 0

    init(capacity: Int) {
        self.capacity = Swift.max(capacity, 16)
        base = .allocate(capacity: self.capacity)
    }

    /// Must be called exactly once by the owner.
    func free() { base.deallocate() }

    /// Makes room for `extra` more elements; grows geometrically.
    @inline(__always)
    mutating func reserve(_ extra: Int) {
        if count &+ extra > capacity { grow(to: count &+ extra) }
    }

    private mutating func grow(to needed: Int) {
        var newCapacity = capacity * 2
        while newCapacity < needed { newCapacity *= 2 }
        let newBase = UnsafeMutablePointer<Element>.allocate(capacity: newCapacity)
        newBase.moveInitialize(from: base, count: count)
        base.deallocate()
        base = newBase
        capacity = newCapacity
    }

    @inline(__always)
    mutating func append(_ value: Element) {
        reserve(1)
        (base + count).initialize(to: value)
        count &+= 1
    }

    /// Appends `n` elements from `source` (which must not lie in this buffer) with a plain loop:
    /// the encoder's copies are a few ids or bytes, where a `memmove` call's size dispatch costs
    /// more than the copy and mispredicts.
    @inline(__always)
    mutating func append(from source: UnsafePointer<Element>, count n: Int) {
        reserve(n)
        let destination = base + count
        var k = 0
        while k < n {
            (destination + k).initialize(to: source[k])
            k &+= 1
        }
        count &+= n
    }

    @inline(__always)
    subscript(i: Int) -> Element {
        get { base[i] }
        nonmutating set { base[i] = newValue }
    }
}
