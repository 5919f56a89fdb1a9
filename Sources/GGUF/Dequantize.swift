extension GGMLType {
    /// Dequantizes `count` consecutive elements of this type from `raw` into `output`.
    ///
    /// This is the entry point for callers that split a tensor into row ranges (e.g. to run
    /// them in parallel): `raw` must start on a block boundary. Results equal those of the
    /// `gguf` Python package's `gguf.quants.dequantize` bit for bit.
    /// - Throws: `GGUFError.unsupportedDequantization` for a type without a kernel,
    ///   `.countNotBlockMultiple` when `count` is not whole blocks, `.rawBufferTooSmall` when
    ///   `raw` holds fewer than the needed bytes.
    public func dequantize(_ raw: UnsafeRawBufferPointer, count: Int, into output: UnsafeMutablePointer<Float>) throws {
        guard isDequantizable else { throw GGUFError.unsupportedDequantization(type: self) }
        guard count >= 0, count % blockSize == 0 else { throw GGUFError.countNotBlockMultiple(type: self, count: count) }
        let blocks = count / blockSize
        let (needed, overflow) = blocks.multipliedReportingOverflow(by: bytesPerBlock)
        guard !overflow, needed <= raw.count else {
            throw GGUFError.rawBufferTooSmall(type: self, count: count, needed: overflow ? Int.max : needed, available: raw.count)
        }
        guard blocks > 0, let source = raw.baseAddress else { return }
        switch self {
        case .f32: UnsafeMutableRawPointer(output).copyMemory(from: source, byteCount: needed)
        case .f16: Dequantizer.f16(source, count: count, output)
        case .bf16: Dequantizer.bf16(source, count: count, output)
        case .q8_0: Dequantizer.q8_0(source, blocks: blocks, output)
        case .q4_0: Dequantizer.q4_0(source, blocks: blocks, output)
        case .q4_1: Dequantizer.q4_1(source, blocks: blocks, output)
        case .q5_0: Dequantizer.q5_0(source, blocks: blocks, output)
        case .q5_1: Dequantizer.q5_1(source, blocks: blocks, output)
        case .q4_K: Dequantizer.q4_K(source, blocks: blocks, output)
        case .q6_K: Dequantizer.q6_K(source, blocks: blocks, output)
        default: throw GGUFError.unsupportedDequantization(type: self)
        }
    }
}

/// Exact IEEE half → single conversion (every f16 value, including subnormals, infinities and
/// NaN payloads, is representable in f32). Matches numpy's `astype(np.float32)` bit for bit.
@inline(__always)
func floatFromHalf(_ bits: UInt16) -> Float {
    let h = UInt32(bits)
    let sign = (h & 0x8000) << 16
    let exponent = (h >> 10) & 0x1F
    let mantissa = h & 0x3FF
    if exponent == 0 {
        // Zero or subnormal: mantissa · 2^-24, exact in f32.
        let magnitude = Float(mantissa) * 0x1p-24
        return Float(bitPattern: magnitude.bitPattern | sign)
    }
    if exponent == 0x1F {
        return Float(bitPattern: sign | 0x7F80_0000 | (mantissa << 13))
    }
    return Float(bitPattern: sign | ((exponent + 112) << 23) | (mantissa << 13))
}

/// The same conversion on eight halves at once.
@inline(__always)
func floatsFromHalves(_ bits: SIMD8<UInt16>) -> SIMD8<Float> {
    let h = SIMD8<UInt32>(truncatingIfNeeded: bits)
    let sign = (h & 0x8000) &<< 16
    let exponent = (h &>> 10) & 0x1F
    let mantissa = h & 0x3FF
    var result = sign | ((exponent &+ 112) &<< 23) | (mantissa &<< 13)
    result.replace(with: sign | 0x7F80_0000 | (mantissa &<< 13), where: exponent .== 0x1F)
    let subnormal = SIMD8<Float>(mantissa) * 0x1p-24
    result.replace(with: sign | subnormal.bitPattern(), where: exponent .== 0)
    return SIMD8<Float>(bitPattern: result)
}

extension SIMD8 where Scalar == Float {
    @inline(__always) init(bitPattern bits: SIMD8<UInt32>) {
        self = unsafeBitCast(bits, to: SIMD8<Float>.self)
    }
    @inline(__always) func bitPattern() -> SIMD8<UInt32> {
        unsafeBitCast(self, to: SIMD8<UInt32>.self)
    }
}

/// Block kernels. Each mirrors the arithmetic order of `gguf.quants` (scale products are
/// formed first, no fused multiply-add) so that results are bit-identical to the reference.
enum Dequantizer {
    @inline(__always)
    static func half(_ p: UnsafeRawPointer, _ offset: Int) -> Float {
        floatFromHalf(UInt16(littleEndian: p.loadUnaligned(fromByteOffset: offset, as: UInt16.self)))
    }

    @inline(__always)
    static func store<V: SIMD>(_ v: V, _ out: UnsafeMutablePointer<Float>, _ index: Int) where V.Scalar == Float {
        UnsafeMutableRawPointer(out + index).storeBytes(of: v, as: V.self)
    }

    static func f16(_ src: UnsafeRawPointer, count: Int, _ out: UnsafeMutablePointer<Float>) {
        var i = 0
        while i + 8 <= count {
            let bits = src.loadUnaligned(fromByteOffset: 2 * i, as: SIMD8<UInt16>.self)
            store(floatsFromHalves(bits), out, i)
            i += 8
        }
        while i < count {
            out[i] = half(src, 2 * i)
            i += 1
        }
    }

    static func bf16(_ src: UnsafeRawPointer, count: Int, _ out: UnsafeMutablePointer<Float>) {
        var i = 0
        while i + 8 <= count {
            let bits = SIMD8<UInt32>(truncatingIfNeeded: src.loadUnaligned(fromByteOffset: 2 * i, as: SIMD8<UInt16>.self))
            store(SIMD8<Float>(bitPattern: bits &<< 16), out, i)
            i += 8
        }
        while i < count {
            let bits = UInt32(UInt16(littleEndian: src.loadUnaligned(fromByteOffset: 2 * i, as: UInt16.self)))
            out[i] = Float(bitPattern: bits << 16)
            i += 1
        }
    }

    /// Q8_0: `d, int8 qs[32]`; y = q·d.
    static func q8_0(_ src: UnsafeRawPointer, blocks: Int, _ out: UnsafeMutablePointer<Float>) {
        for b in 0 ..< blocks {
            let block = src + b * 34
            let d = SIMD16<Float>(repeating: half(block, 0))
            let y = out + b * 32
            for h in 0 ..< 2 {
                let q = block.loadUnaligned(fromByteOffset: 2 + 16 * h, as: SIMD16<Int8>.self)
                store(SIMD16<Float>(SIMD16<Int32>(truncatingIfNeeded: q)) * d, y, 16 * h)
            }
        }
    }

    /// The 32 4-bit values of a 16-byte run: low nibbles are elements 0…15, high nibbles 16…31.
    @inline(__always)
    static func nibbles(_ p: UnsafeRawPointer, _ offset: Int) -> (low: SIMD16<Float>, high: SIMD16<Float>) {
        let q = SIMD16<Int32>(truncatingIfNeeded: p.loadUnaligned(fromByteOffset: offset, as: SIMD16<UInt8>.self))
        return (SIMD16<Float>(q & 0x0F), SIMD16<Float>(q &>> 4))
    }

    /// Q4_0: `d, qs[16]`; y = (q − 8)·d.
    static func q4_0(_ src: UnsafeRawPointer, blocks: Int, _ out: UnsafeMutablePointer<Float>) {
        let eight = SIMD16<Float>(repeating: 8)
        for b in 0 ..< blocks {
            let block = src + b * 18
            let d = SIMD16<Float>(repeating: half(block, 0))
            let (low, high) = nibbles(block, 2)
            store((low - eight) * d, out, b * 32)
            store((high - eight) * d, out, b * 32 + 16)
        }
    }

    /// Q4_1: `d, m, qs[16]`; y = q·d + m.
    static func q4_1(_ src: UnsafeRawPointer, blocks: Int, _ out: UnsafeMutablePointer<Float>) {
        for b in 0 ..< blocks {
            let block = src + b * 20
            let d = SIMD16<Float>(repeating: half(block, 0))
            let m = SIMD16<Float>(repeating: half(block, 2))
            let (low, high) = nibbles(block, 4)
            store(d * low + m, out, b * 32)
            store(d * high + m, out, b * 32 + 16)
        }
    }

    /// Bit `j` of the 32-bit `qh` (little-endian at `offset`) for elements 0…15 and 16…31, as 0 or 16.
    @inline(__always)
    static func fifthBits(_ p: UnsafeRawPointer, _ offset: Int) -> (low: SIMD16<Int32>, high: SIMD16<Int32>) {
        let qh = SIMD16<UInt32>(repeating: UInt32(littleEndian: p.loadUnaligned(fromByteOffset: offset, as: UInt32.self)))
        let shifts = SIMD16<UInt32>(0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15)
        let low = ((qh &>> shifts) & 1) &<< 4
        let high = ((qh &>> (shifts &+ 16)) & 1) &<< 4
        return (SIMD16<Int32>(truncatingIfNeeded: low), SIMD16<Int32>(truncatingIfNeeded: high))
    }

    @inline(__always)
    static func nibbleInts(_ p: UnsafeRawPointer, _ offset: Int) -> (low: SIMD16<Int32>, high: SIMD16<Int32>) {
        let q = SIMD16<Int32>(truncatingIfNeeded: p.loadUnaligned(fromByteOffset: offset, as: SIMD16<UInt8>.self))
        return (q & 0x0F, q &>> 4)
    }

    /// Q5_0: `d, qh (u32), qs[16]`; y = (q − 16)·d with the 5th bit of element j in qh bit j.
    static func q5_0(_ src: UnsafeRawPointer, blocks: Int, _ out: UnsafeMutablePointer<Float>) {
        for b in 0 ..< blocks {
            let block = src + b * 22
            let d = SIMD16<Float>(repeating: half(block, 0))
            let (hLow, hHigh) = fifthBits(block, 2)
            let (low, high) = nibbleInts(block, 6)
            store(SIMD16<Float>((low | hLow) &- 16) * d, out, b * 32)
            store(SIMD16<Float>((high | hHigh) &- 16) * d, out, b * 32 + 16)
        }
    }

    /// Q5_1: `d, m, qh (u32), qs[16]`; y = q·d + m.
    static func q5_1(_ src: UnsafeRawPointer, blocks: Int, _ out: UnsafeMutablePointer<Float>) {
        for b in 0 ..< blocks {
            let block = src + b * 24
            let d = SIMD16<Float>(repeating: half(block, 0))
            let m = SIMD16<Float>(repeating: half(block, 2))
            let (hLow, hHigh) = fifthBits(block, 4)
            let (low, high) = nibbleInts(block, 8)
            store(d * SIMD16<Float>(low | hLow) + m, out, b * 32)
            store(d * SIMD16<Float>(high | hHigh) + m, out, b * 32 + 16)
        }
    }

    /// Q4_K: `d, dmin, scales[12], qs[128]`. Eight sub-blocks of 32 with 6-bit scale and min
    /// (packed as in ggml's `get_scale_min_k4`); y = (d·scale)·q − dmin·min. Each 32-byte run of
    /// qs holds two sub-blocks: low nibbles first, then high nibbles.
    static func q4_K(_ src: UnsafeRawPointer, blocks: Int, _ out: UnsafeMutablePointer<Float>) {
        for b in 0 ..< blocks {
            let block = src + b * 144
            let d = half(block, 0)
            let dmin = half(block, 2)
            let s = block + 4
            let y = out + b * 256
            for sub in 0 ..< 8 {
                let scale: UInt8, minimum: UInt8
                if sub < 4 {
                    scale = s.load(fromByteOffset: sub, as: UInt8.self) & 63
                    minimum = s.load(fromByteOffset: sub + 4, as: UInt8.self) & 63
                } else {
                    let packed = s.load(fromByteOffset: sub + 4, as: UInt8.self)
                    scale = (packed & 0x0F) | ((s.load(fromByteOffset: sub - 4, as: UInt8.self) >> 6) << 4)
                    minimum = (packed >> 4) | ((s.load(fromByteOffset: sub, as: UInt8.self) >> 6) << 4)
                }
                let factor = SIMD16<Float>(repeating: d * Float(scale))
                let shift = SIMD16<Float>(repeating: dmin * Float(minimum))
                let run = 16 + 32 * (sub / 2)
                for h in 0 ..< 2 {
                    let (low, high) = nibbles(block, run + 16 * h)
                    let q = sub % 2 == 0 ? low : high
                    store(factor * q - shift, y, 32 * sub + 16 * h)
                }
            }
        }
    }

    /// Q6_K: `ql[128], qh[64], int8 scales[16], d`; y = (d·scale)·(q − 32), 16 elements per scale.
    /// In each 128-element half, element 32k + l takes ql[l (+32 for k odd)] (low nibble for
    /// k < 2, high for k ≥ 2) and bits 2k…2k+1 of qh[l].
    static func q6_K(_ src: UnsafeRawPointer, blocks: Int, _ out: UnsafeMutablePointer<Float>) {
        for b in 0 ..< blocks {
            let block = src + b * 210
            let d = half(block, 208)
            let y = out + b * 256
            for half in 0 ..< 2 {
                let ql = block + 64 * half
                let qh = block + 128 + 32 * half
                for k in 0 ..< 4 {
                    for lane in 0 ..< 2 {
                        let l = 16 * lane
                        let lowBytes = SIMD16<Int32>(truncatingIfNeeded: ql.loadUnaligned(fromByteOffset: l + 32 * (k & 1), as: SIMD16<UInt8>.self))
                        let highBytes = SIMD16<Int32>(truncatingIfNeeded: qh.loadUnaligned(fromByteOffset: l, as: SIMD16<UInt8>.self))
                        let low = k < 2 ? lowBytes & 0x0F : lowBytes &>> 4
                        let high = (highBytes &>> Int32(2 * k)) & 3
                        let q = SIMD16<Float>((low | (high &<< 4)) &- 32)
                        let element = 128 * half + 32 * k + l
                        let scale = Float(block.load(fromByteOffset: 192 + element / 16, as: Int8.self))
                        store(SIMD16<Float>(repeating: d * scale) * q, y, element)
                    }
                }
            }
        }
    }
}
