import Foundation
import GGUF

/// A tiny llama-architecture GGUF written in memory: F32 tensors with deterministic pseudo-random
/// values, so validation and batching tests run in milliseconds. `drop`/`override` let a test
/// remove a key or tensor, or change a key or a tensor's dims.
struct TinyModel {
    var hidden = 32, heads = 4, kvHeads = 2, ffn = 48, layers = 2, vocab = 64, context = 256
    var tied = true
    var dropKeys: Set<String> = []
    var dropTensors: Set<String> = []
    var keyOverrides: [String: GGUFValue] = [:]
    var dimOverrides: [String: [Int]] = [:]
    var architecture = "llama"
    /// Family extras: q/k/v biases, per-head q/k norms, post-block norms, `attention.key_length`
    /// (the head dimension, else hidden/heads) and `attention.sliding_window`.
    var qkvBias = false, qkNorm = false, postNorms = false
    var keyLength: Int?
    var slidingWindow: Int?
    /// Tensors stored in another type than F32 (their bytes are pseudo-random).
    var typeOverrides: [String: GGMLType] = [:]

    /// A gemma3-shaped tiny model: head_dim from key_length ≠ hidden/heads, windowed local layers.
    static func gemma3() -> TinyModel {
        var m = TinyModel()
        m.architecture = "gemma3"
        m.qkNorm = true; m.postNorms = true; m.keyLength = 16; m.slidingWindow = 4; m.layers = 7
        return m
    }

    /// A qwen2-shaped tiny model: q/k/v biases.
    static func qwen2() -> TinyModel {
        var m = TinyModel()
        m.architecture = "qwen2"
        m.qkvBias = true
        return m
    }

    func metadata() -> [(String, GGUFValue)] {
        let a = architecture
        var kv: [(String, GGUFValue)] = [
            ("general.architecture", .string(a)),
            ("\(a).block_count", .uint32(UInt32(layers))),
            ("\(a).context_length", .uint32(UInt32(context))),
            ("\(a).embedding_length", .uint32(UInt32(hidden))),
            ("\(a).feed_forward_length", .uint32(UInt32(ffn))),
            ("\(a).attention.head_count", .uint32(UInt32(heads))),
            ("\(a).attention.head_count_kv", .uint32(UInt32(kvHeads))),
            ("\(a).rope.freq_base", .float32(10_000)),
            ("\(a).attention.layer_norm_rms_epsilon", .float32(1e-5)),
        ]
        if let keyLength {
            kv += [("\(a).attention.key_length", .uint32(UInt32(keyLength))), ("\(a).attention.value_length", .uint32(UInt32(keyLength)))]
        }
        if let slidingWindow { kv.append(("\(a).attention.sliding_window", .uint32(UInt32(slidingWindow)))) }
        kv = kv.filter { !dropKeys.contains($0.0) }.map { (k, v) in (k, keyOverrides[k] ?? v) }
        for (k, v) in keyOverrides where !kv.contains(where: { $0.0 == k }) { kv.append((k, v)) }
        return kv
    }

    func tensorShapes() -> [(String, [Int])] {
        let hd = keyLength ?? hidden / heads
        var list: [(String, [Int])] = [("token_embd.weight", [hidden, vocab]), ("output_norm.weight", [hidden])]
        if !tied { list.append(("output.weight", [hidden, vocab])) }
        for l in 0..<layers {
            list += [
                ("blk.\(l).attn_norm.weight", [hidden]), ("blk.\(l).attn_q.weight", [hidden, heads * hd]),
                ("blk.\(l).attn_k.weight", [hidden, kvHeads * hd]), ("blk.\(l).attn_v.weight", [hidden, kvHeads * hd]),
                ("blk.\(l).attn_output.weight", [heads * hd, hidden]), ("blk.\(l).ffn_norm.weight", [hidden]),
                ("blk.\(l).ffn_gate.weight", [hidden, ffn]), ("blk.\(l).ffn_up.weight", [hidden, ffn]),
                ("blk.\(l).ffn_down.weight", [ffn, hidden]),
            ]
            if qkvBias {
                list += [("blk.\(l).attn_q.bias", [heads * hd]), ("blk.\(l).attn_k.bias", [kvHeads * hd]), ("blk.\(l).attn_v.bias", [kvHeads * hd])]
            }
            if qkNorm { list += [("blk.\(l).attn_q_norm.weight", [hd]), ("blk.\(l).attn_k_norm.weight", [hd])] }
            if postNorms { list += [("blk.\(l).post_attention_norm.weight", [hidden]), ("blk.\(l).post_ffw_norm.weight", [hidden])] }
        }
        return list.filter { !dropTensors.contains($0.0) }.map { (n, d) in (n, dimOverrides[n] ?? d) }
    }

    /// GGUF v3 bytes: header, metadata, tensor infos, data aligned to 32.
    func bytes() -> [UInt8] {
        var out: [UInt8] = Array("GGUF".utf8)
        func u32(_ v: UInt32) { withUnsafeBytes(of: v.littleEndian) { out += $0 } }
        func u64(_ v: UInt64) { withUnsafeBytes(of: v.littleEndian) { out += $0 } }
        func str(_ s: String) { u64(UInt64(s.utf8.count)); out += Array(s.utf8) }
        let kv = metadata(), shapes = tensorShapes()
        u32(3); u64(UInt64(shapes.count)); u64(UInt64(kv.count))
        for (key, value) in kv {
            str(key)
            switch value {
            case .string(let s): u32(8); str(s)
            case .uint32(let v): u32(4); u32(v)
            case .float32(let v): u32(6); u32(v.bitPattern)
            default: preconditionFailure("TinyModel writes only string, u32 and f32 values")
            }
        }
        var offset: UInt64 = 0
        for (name, dims) in shapes {
            str(name); u32(UInt32(dims.count))
            for d in dims { u64(UInt64(d)) }
            let type = typeOverrides[name] ?? .f32
            u32(UInt32(type.rawValue)); u64(offset)
            let byteCount = storedBytes(name, dims)
            offset += UInt64((byteCount + 31) / 32 * 32)
        }
        out += [UInt8](repeating: 0, count: (out.count + 31) / 32 * 32 - out.count)
        var state: UInt64 = 0x9E37_79B9_7F4A_7C15
        for (name, dims) in shapes {
            let count = dims.reduce(1, *)
            if typeOverrides[name] != nil {
                let n = storedBytes(name, dims)
                for i in 0..<n { out.append(UInt8(truncatingIfNeeded: i &* 131 &+ 7)) }
                out += [UInt8](repeating: 0, count: (n + 31) / 32 * 32 - n)
                continue
            }
            let isNorm = name.hasSuffix("norm.weight")
            for _ in 0..<count {
                // xorshift64*: values in [-0.5, 0.5); norms near 1.
                state ^= state >> 12; state ^= state << 25; state ^= state >> 27
                let bits: UInt64 = (state &* 0x2545_F491_4F6C_DD1D) >> 40
                let unit: Float = Float(bits) / 16_777_216 - 0.5
                let value: Float = isNorm ? 1 + 0.2 * unit : unit
                u32(value.bitPattern)
            }
            out += [UInt8](repeating: 0, count: (count * 4 + 31) / 32 * 32 - count * 4)
        }
        return out
    }

    private func storedBytes(_ name: String, _ dims: [Int]) -> Int {
        let type = typeOverrides[name] ?? .f32
        return dims.reduce(1, *) / type.blockSize * type.bytesPerBlock
    }

    func file() throws -> GGUFFile { try GGUFFile(bytes: bytes()) }
}
