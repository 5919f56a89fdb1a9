import Foundation

/// Times the matrix products of one decode step as the forward pass makes them, through a
/// `ProjectionWeights`: per layer Q|K|V, attention output (added into the residual), gate|up and
/// down (added), then the LM head, for `rows` activation rows. Every weight is read once per step,
/// so at one row the rate is bytes over time: the figure to hold against memory bandwidth.
/// `axon bench-kernels` prints it (Benchmarks/engine/decode_kernels).
public enum DecodeKernelBenchmark {
    /// One kind of matrix over all layers (or the head).
    public struct Part: Sendable, Encodable {
        public let name: String
        /// Outputs × inputs of one matrix, and how many a step multiplies (the layer count, or 1).
        public let rows: Int, columns: Int, count: Int
        /// Seconds per step spent on this kind, in the best step.
        public let seconds: Double
        public let bytes: Int
        public var gigabytesPerSecond: Double { Double(bytes) / max(seconds, 1e-12) * 1e-9 }
    }

    public struct Result: Sendable, Encodable {
        /// The projections' format ("f32" for the engine's own weights) and the head's.
        public let format: String
        public let headFormat: String
        public let path: String
        public let rows: Int
        public let threads: Int
        /// Wall time of the best step (least disturbed by other load) of `repeats`.
        public let secondsPerStep: Double
        /// Bytes of weights (and int8 scales) read per step.
        public let bytesPerStep: Int
        public let parts: [Part]
        public var gigabytesPerSecond: Double { Double(bytesPerStep) / secondsPerStep * 1e-9 }
        /// Tokens per second if a decode step were these products alone (`rows` tokens per step).
        public var tokensPerSecond: Double { Double(rows) / secondsPerStep }
        public var gflops: Double { 2 * Double(rows) * Double(parameters) / secondsPerStep * 1e-9 }
        public let parameters: Int

        enum CodingKeys: String, CodingKey {
            case format, head_format, path, rows, threads, seconds_per_step, bytes_per_step, gb_per_s,
                 tokens_per_s, gflops, parts
        }

        public func encode(to encoder: Encoder) throws {
            var c = encoder.container(keyedBy: CodingKeys.self)
            try c.encode(format, forKey: .format)
            try c.encode(headFormat, forKey: .head_format)
            try c.encode(path, forKey: .path)
            try c.encode(rows, forKey: .rows)
            try c.encode(threads, forKey: .threads)
            try c.encode(secondsPerStep, forKey: .seconds_per_step)
            try c.encode(bytesPerStep, forKey: .bytes_per_step)
            try c.encode(gigabytesPerSecond, forKey: .gb_per_s)
            try c.encode(tokensPerSecond, forKey: .tokens_per_s)
            try c.encode(gflops, forKey: .gflops)
            try c.encode(parts.map { ["name": $0.name, "shape": "\($0.rows)x\($0.columns)x\($0.count)",
                                      "gb_per_s": String(format: "%.1f", $0.gigabytesPerSecond),
                                      "ms": String(format: "%.3f", $0.seconds * 1e3)] }, forKey: .parts)
        }
    }

    /// Runs one warm-up step and `repeats` timed steps of `rows` rows (1...maxRows of the caller's
    /// choosing) and reports the best.
    public static func run(_ weights: ProjectionWeights, rows m: Int, repeats: Int = 20) -> Result {
        let layers = weights.layerCount
        let shapes = ProjectionWeights.Projection.allCases.map { weights.shape($0, layer: 0) }
        let hidden = shapes[ProjectionWeights.Projection.attentionOutput.rawValue].rows
        let ffnWidth = shapes[ProjectionWeights.Projection.gateUp.rawValue].rows
        let attentionWidth = shapes[ProjectionWeights.Projection.attentionOutput.rawValue].columns
        let qkvWidth = shapes[ProjectionWeights.Projection.qkv.rawValue].rows
        let headShape = (rows: weights.headRows, columns: hidden)

        // The forward pass's buffers: normed input, Q|K|V, attention output, residual, gate|up, logits.
        func buffer(_ count: Int) -> AlignedFloats {
            let b = AlignedFloats(count: count)
            for i in 0..<count { b.base[i] = Float(i % 29) * 0.01 - 0.14 }
            return b
        }
        let normed = buffer(m * hidden), qkv = buffer(m * qkvWidth), attn = buffer(m * attentionWidth)
        let residual = buffer(m * hidden), ffn = buffer(m * ffnWidth), logits = buffer(m * headShape.rows)
        var partSeconds = [Double](repeating: 0, count: 5)
        var best = Double.infinity, bestParts = partSeconds
        @inline(__always) func clock() -> UInt64 { DispatchTime.now().uptimeNanoseconds }
        for round in 0...max(1, repeats) {
            for i in partSeconds.indices { partSeconds[i] = 0 }
            let start = clock()
            for l in 0..<layers {
                var t = clock()
                weights.project(.qkv, layer: l, normed.base, stride: hidden, rows: m, into: qkv.base, stride: qkvWidth)
                var u = clock(); partSeconds[0] += Double(u - t) * 1e-9; t = u
                weights.project(.attentionOutput, layer: l, attn.base, stride: attentionWidth, rows: m, into: residual.base,
                                stride: hidden, accumulate: true)
                u = clock(); partSeconds[1] += Double(u - t) * 1e-9; t = u
                weights.project(.gateUp, layer: l, normed.base, stride: hidden, rows: m, into: ffn.base, stride: ffnWidth)
                u = clock(); partSeconds[2] += Double(u - t) * 1e-9; t = u
                // The down projection reads SiLU(gate)·up, stored over the gate half of each row.
                weights.project(.down, layer: l, ffn.base, stride: ffnWidth, rows: m, into: residual.base, stride: hidden,
                                accumulate: true)
                u = clock(); partSeconds[3] += Double(u - t) * 1e-9
            }
            let t = clock()
            weights.head(normed.base, rows: m, into: logits.base)
            let end = clock()
            partSeconds[4] = Double(end - t) * 1e-9
            let seconds = Double(end - start) * 1e-9
            // Keep the residual bounded: the accumulating products add into it every round.
            for i in 0..<(m * hidden) { residual.base[i] = 0 }
            if round > 0, seconds < best { best = seconds; bestParts = partSeconds }
        }
        let names = ["attn_q|k|v", "attn_output", "ffn_gate|up", "ffn_down", "head"]
        var parts: [Part] = []
        var parameters = 0
        for (i, name) in names.enumerated() {
            let shape = i < 4 ? shapes[i] : headShape
            let count = i < 4 ? layers : 1
            let bytes = i < 4 ? weights.bytesRead(ProjectionWeights.Projection(rawValue: i) ?? .qkv) * layers : weights.headBytes
            parameters += shape.rows * shape.columns * count
            parts.append(Part(name: name, rows: shape.rows, columns: shape.columns, count: count, seconds: bestParts[i], bytes: bytes))
        }
        return Result(format: weights.format?.rawValue ?? "f32", headFormat: weights.headFormat?.rawValue ?? "f32",
                      path: weights.format == nil && weights.headFormat == nil ? "OpenBLAS" : weights.path.description,
                      rows: m, threads: weights.threads, secondsPerStep: best, bytesPerStep: weights.bytesPerToken,
                      parts: parts, parameters: parameters)
    }
}

/// The machine's memory read rate: a SIMD sum over a buffer far larger than the caches, split
/// over `threads` workers, best of `repeats`. The ceiling for a batch-1 decode step.
public enum MemoryReadProbe {
    public static func gigabytesPerSecond(threads: Int, megabytes: Int = 512, repeats: Int = 5) -> Double {
        let count = megabytes << 18   // floats
        let data = AlignedFloats(count: count)
        let base = UncheckedPointer(data.base)
        DispatchQueue.concurrentPerform(iterations: max(1, threads)) { w in
            let lo = count * w / max(1, threads), hi = count * (w + 1) / max(1, threads)
            for i in lo..<hi { base.pointer[i] = Float(i & 7) }
        }
        let sums = UnsafeMutablePointer<Float>.allocate(capacity: max(1, threads))
        defer { sums.deallocate() }
        var best = Double.infinity
        for _ in 0..<max(1, repeats) {
            let start = DispatchTime.now().uptimeNanoseconds
            DispatchQueue.concurrentPerform(iterations: max(1, threads)) { w in
                let lo = count * w / max(1, threads) / 32 * 32, hi = count * (w + 1) / max(1, threads) / 32 * 32
                var a = Vec(), b = Vec(), c = Vec(), d = Vec()
                var i = lo
                let p = UnsafePointer(base.pointer)
                while i < hi {
                    a += loadVec(p + i); b += loadVec(p + i + 8); c += loadVec(p + i + 16); d += loadVec(p + i + 24)
                    i += 32
                }
                sums[w] = (a + b + c + d).sum()
            }
            best = min(best, Double(DispatchTime.now().uptimeNanoseconds - start) * 1e-9)
        }
        return Double(count * 4) / best * 1e-9
    }
}
