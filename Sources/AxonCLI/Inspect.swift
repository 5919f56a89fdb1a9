import ArgumentParser
import Dispatch
import Engine
import Foundation
import GGUF

struct Inspect: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Show a GGUF model's architecture, hyperparameters, tokenizer, tensors and parameter count, or (--system) the machine.")
    @OptionGroup var modelOption: ModelOption

    @Flag(help: "Show the machine instead: CPU, vector ISA, OpenBLAS version, kernel core and thread count.")
    var system = false

    @Flag(help: "Print one JSON object instead of text.")
    var json = false

    @Flag(help: "Also dequantize every tensor to f32 (on all cores) and report load and dequantization times.")
    var timeDequantize = false

    func run() throws {
        if system {
            let info = SystemInfo.current()
            if json {
                let encoder = JSONEncoder()
                encoder.outputFormatting = [.sortedKeys]
                print(String(decoding: try encoder.encode(MachineLine(info)), as: UTF8.self))
            } else {
                print(info.text)
            }
            return
        }
        let path = try modelOption.resolvedPath()
        let clock = ContinuousClock()
        let loadStart = clock.now
        let file = try GGUFFile(path: path)
        let loadTime = clock.now - loadStart
        let summary = ModelSummary(file: file, path: path)
        var timing: DequantizationTiming?
        if timeDequantize {
            timing = try DequantizationTiming.measure(file, loadTime: loadTime)
        }
        if json {
            print(try summary.json(timing: timing))
        } else {
            print(summary.text())
            if let timing { print(timing.text) }
        }
    }
}

/// The facts `inspect` reports, read from a parsed file.
struct ModelSummary {
    struct Tensor: Codable {
        let name: String
        let type: String
        let shape: [Int]
        let bytes: Int
    }

    let path: String
    let fileSize: Int
    let version: UInt32
    let architecture: String
    let name: String?
    /// `<architecture>.*` scalar keys in file order, without the prefix.
    let hyperparameters: [(key: String, value: GGUFValue)]
    let tokenizerModel: String?
    let tokenizerPre: String?
    let vocabSize: Int?
    let mergeCount: Int?
    let specialIDs: [(name: String, id: Int)]
    let tensors: [Tensor]
    let parameterCount: Int
    let file: GGUFFile

    init(file: GGUFFile, path: String) {
        self.file = file
        self.path = path
        fileSize = file.fileSize
        version = file.version
        architecture = file.string("general.architecture") ?? "unknown"
        name = file.string("general.name")
        let prefix = architecture + "."
        hyperparameters = file.metadataKeys.compactMap { key in
            guard key.hasPrefix(prefix), let value = file.metadata[key], value.array == nil else { return nil }
            return (String(key.dropFirst(prefix.count)), value)
        }
        tokenizerModel = file.string("tokenizer.ggml.model")
        tokenizerPre = file.string("tokenizer.ggml.pre")
        vocabSize = file.int(prefix + "vocab_size") ?? file.array("tokenizer.ggml.tokens")?.count
        mergeCount = file.array("tokenizer.ggml.merges")?.count
        // llama.cpp's key names: tokenizer.ggml.{bos,eos,unknown,padding,seperator,mask}_token_id.
        let roles = [("bos", "bos"), ("eos", "eos"), ("unk", "unknown"), ("pad", "padding"), ("sep", "seperator"), ("mask", "mask")]
        specialIDs = roles.compactMap { role, key in
            file.int("tokenizer.ggml.\(key)_token_id").map { (role, $0) }
        }
        tensors = file.tensors.map { Tensor(name: $0.name, type: $0.type.name, shape: $0.dims, bytes: $0.byteCount) }
        parameterCount = file.parameterCount
    }

    private func hyper(_ key: String) -> Int? { file.int(architecture + "." + key) }

    func text() -> String {
        var lines: [String] = []
        lines.append("model: \(path)")
        lines.append("  GGUF v\(version), \(grouped(fileSize)) bytes, alignment \(file.alignment), \(file.metadataKeys.count) metadata keys")
        lines.append("architecture: \(architecture)" + (name.map { " (\($0))" } ?? ""))
        // How (or why not) the engine runs it, from the same checks the engine makes at load.
        do { lines.append("engine: " + (try ModelConfig(source: file).summary)) } catch { lines.append("engine: cannot run it: \(error)") }
        lines.append("hyperparameters:")
        for (key, value) in hyperparameters {
            lines.append("  \(key): \(render(value))")
        }
        var tokenizer = "tokenizer: model \(tokenizerModel ?? "-"), pre \(tokenizerPre ?? "-")"
        tokenizer += ", vocab \(vocabSize.map(grouped) ?? "-"), merges \(mergeCount.map(grouped) ?? "-")"
        for (role, id) in specialIDs { tokenizer += ", \(role) \(id)" }
        lines.append(tokenizer)
        lines.append("tensors: \(tensors.count)")
        let nameWidth = max(4, tensors.map(\.name.count).max() ?? 0)
        let shapeTexts = tensors.map { $0.shape.map(String.init).joined(separator: " x ") }
        let shapeWidth = max(5, shapeTexts.map(\.count).max() ?? 0)
        lines.append("  " + pad("name", nameWidth) + "  " + pad("type", 7) + "  " + pad("shape", shapeWidth) + "  " + "bytes")
        for (t, shape) in zip(tensors, shapeTexts) {
            lines.append("  " + pad(t.name, nameWidth) + "  " + pad(t.type, 7) + "  " + pad(shape, shapeWidth) + "  " + grouped(t.bytes))
        }
        lines.append("parameters: \(grouped(parameterCount))")
        return lines.joined(separator: "\n")
    }

    func json(timing: DequantizationTiming?) throws -> String {
        var object: [String: Any] = [
            "path": path,
            "file_size": fileSize,
            "gguf_version": Int(version),
            "alignment": file.alignment,
            "architecture": architecture,
            "tensor_count": tensors.count,
            "parameter_count": parameterCount,
            "tensors": tensors.map { ["name": $0.name, "type": $0.type, "shape": $0.shape, "bytes": $0.bytes] as [String: Any] },
        ]
        if let name { object["name"] = name }
        for key in ["block_count", "embedding_length", "feed_forward_length", "context_length",
                    "attention.head_count", "attention.head_count_kv", "rope.dimension_count"] {
            if let value = hyper(key) { object[key.replacingOccurrences(of: "attention.", with: "").replacingOccurrences(of: ".", with: "_")] = value }
        }
        if let eps = file.double(architecture + ".attention.layer_norm_rms_epsilon") { object["rms_norm_epsilon"] = eps }
        if let base = file.double(architecture + ".rope.freq_base") { object["rope_freq_base"] = base }
        if let vocabSize { object["vocab_size"] = vocabSize }
        var tokenizer: [String: Any] = [:]
        if let tokenizerModel { tokenizer["model"] = tokenizerModel }
        if let tokenizerPre { tokenizer["pre"] = tokenizerPre }
        if let vocabSize { tokenizer["vocab_size"] = vocabSize }
        if let mergeCount { tokenizer["merges"] = mergeCount }
        for (role, id) in specialIDs { tokenizer[role + "_token_id"] = id }
        object["tokenizer"] = tokenizer
        if let timing {
            object["load_seconds"] = timing.loadSeconds
            object["dequantize_seconds"] = timing.dequantizeSeconds
        }
        let data = try JSONSerialization.data(withJSONObject: object, options: [.sortedKeys])
        return String(decoding: data, as: UTF8.self)
    }

    private func render(_ value: GGUFValue) -> String {
        switch value {
        case .string(let s): return "\"\(s)\""
        case .float32(let f): return "\(f)"
        case .float64(let d): return "\(d)"
        case .bool(let b): return "\(b)"
        default: return value.int.map(String.init) ?? "\(value)"
        }
    }
}

/// Load and full-dequantization times (the "load and dequantize the model" benchmark line).
struct DequantizationTiming {
    let loadSeconds: Double
    let dequantizeSeconds: Double
    let elementCount: Int

    /// Dequantizes every tensor into its own newly allocated f32 buffer (as an engine would),
    /// splitting the work into row chunks spread over all cores. Allocation is inside the timing.
    static func measure(_ file: GGUFFile, loadTime: Duration) throws -> DequantizationTiming {
        let supported = file.tensors.filter(\.type.isDequantizable)
        if let unsupported = file.tensors.first(where: { !$0.type.isDequantizable }) {
            throw GGUFError.unsupportedTensorType(tensor: unsupported.name, type: unsupported.type)
        }
        let clock = ContinuousClock()
        let start = clock.now
        let outputs = supported.map { UnsafeMutableBufferPointer<Float>.allocate(capacity: $0.elementCount) }
        defer { outputs.forEach { $0.deallocate() } }

        // Work items of about 256K elements: whole rows of one tensor.
        struct Chunk { let tensor: Int; let rows: Range<Int> }
        var chunks: [Chunk] = []
        for (i, t) in supported.enumerated() {
            let rowsPerChunk = max(1, (1 << 18) / t.rowLength)
            for first in stride(from: 0, to: t.rowCount, by: rowsPerChunk) {
                chunks.append(Chunk(tensor: i, rows: first ..< min(first + rowsPerChunk, t.rowCount)))
            }
        }
        let failure = FirstError()
        DispatchQueue.concurrentPerform(iterations: chunks.count) { c in
            let chunk = chunks[c]
            let t = supported[chunk.tensor]
            let out = UnsafeMutableBufferPointer(rebasing: outputs[chunk.tensor][(chunk.rows.lowerBound * t.rowLength) ..< (chunk.rows.upperBound * t.rowLength)])
            do { try file.dequantizeRows(t, rows: chunk.rows, into: out) } catch { failure.record(error) }
        }
        if let error = failure.error { throw error }
        let elapsed = clock.now - start
        return DequantizationTiming(loadSeconds: loadTime.seconds, dequantizeSeconds: elapsed.seconds,
                                    elementCount: supported.reduce(0) { $0 + $1.elementCount })
    }

    var text: String {
        func s(_ x: Double) -> String { String(format: "%.3f s", x) }
        return "load \(s(loadSeconds)), dequantize \(grouped(elementCount)) elements to f32 \(s(dequantizeSeconds))"
            + " (\(ProcessInfo.processInfo.activeProcessorCount) cores), total \(s(loadSeconds + dequantizeSeconds))"
    }
}

/// Keeps the first error thrown by concurrent work.
private final class FirstError: @unchecked Sendable {
    private let lock = NSLock()
    private var stored: Error?
    var error: Error? { lock.withLock { stored } }
    func record(_ error: Error) { lock.withLock { if stored == nil { stored = error } } }
}

private extension Duration {
    var seconds: Double {
        let (s, attoseconds) = components
        return Double(s) + Double(attoseconds) * 1e-18
    }
}

private func grouped(_ n: Int) -> String {
    let digits = String(n.magnitude)
    var out = ""
    for (i, ch) in digits.enumerated() {
        if i > 0, (digits.count - i) % 3 == 0 { out.append(",") }
        out.append(ch)
    }
    return n < 0 ? "-" + out : out
}

private func pad(_ s: String, _ width: Int) -> String {
    s.count >= width ? s : s + String(repeating: " ", count: width - s.count)
}
