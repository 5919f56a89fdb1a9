import Foundation
import GGUF
import TestSupport
import Tokenizer
import XCTest

/// Fixtures written by scripts/reference/tokenizer_fixtures.py (HF `tokenizers`), and the
/// tokenizers under test, built once per process.
enum Fixtures {
    static func url(_ name: String) throws -> URL {
        guard let url = Bundle.module.url(forResource: name, withExtension: nil, subdirectory: "Fixtures") else {
            throw FixtureMissing(name: name)
        }
        return url
    }

    static func json(_ name: String) throws -> [String: Any] {
        let data = try Data(contentsOf: url(name))
        guard let object = try JSONSerialization.jsonObject(with: data) as? [String: Any] else {
            throw FixtureMissing(name: name + " (not a JSON object)")
        }
        return object
    }

    struct FixtureMissing: Error, CustomStringConvertible {
        let name: String
        var description: String { "fixture \(name) is missing: run scripts/reference/tokenizer_fixtures.py" }
    }

    /// One encode case: input text and the reference's ids.
    struct Case {
        let name: String
        let text: String
        let ids: [Int32]
        /// HF's decode of `ids` (equal to `text` unless some bytes have no token).
        let decoded: String
    }

    static func cases(_ list: Any?, prefix: String) -> [Case] {
        (list as? [[String: Any]] ?? []).enumerated().map { i, c in
            let text = c["text"] as? String ?? ""
            return Case(name: c["name"] as? String ?? "\(prefix)[\(i)]", text: text,
                        ids: ids(c["ids"]), decoded: c["decoded"] as? String ?? text)
        }
    }

    static func ids(_ value: Any?) -> [Int32] {
        (value as? [Int] ?? []).map { Int32($0) }
    }

    /// Expands `[[id, count], ...]`.
    static func runLengthDecoded(_ value: Any?) -> [Int32] {
        var out: [Int32] = []
        for pair in value as? [[Int]] ?? [] where pair.count == 2 {
            out.append(contentsOf: repeatElement(Int32(pair[0]), count: pair[1]))
        }
        return out
    }

    /// Expands `{"head": [...], "unit": [...], "repeat": k, "tail": [...]}` (tokenizer_runs.periodic).
    static func periodicDecoded(_ value: Any?) -> [Int32] {
        let d = value as? [String: Any] ?? [:]
        let unit = ids(d["unit"])
        var out = ids(d["head"])
        for _ in 0..<(d["repeat"] as? Int ?? 0) { out.append(contentsOf: unit) }
        return out + ids(d["tail"])
    }

    // MARK: The default model

    private static let defaultGGUF = Result { try GGUFFile(path: TestPaths.defaultModel()) }
    static let smollmFromGGUF = Result { try Tokenizer(gguf: defaultGGUF.get()) }

    /// HF's tokenizer.json for the reference with model.vocab and model.merges filled in from
    /// the GGUF (the committed skeleton leaves them empty to stay small).
    static let smollmFromJSON = Result { () throws -> Tokenizer in
        let file = try defaultGGUF.get()
        var root = try json("smollm_skeleton.tokenizer.json")
        guard var model = root["model"] as? [String: Any],
              let tokens = file.stringArray("tokenizer.ggml.tokens"),
              let merges = file.stringArray("tokenizer.ggml.merges") else {
            throw FixtureMissing(name: "smollm_skeleton.tokenizer.json model, or the GGUF's tokens/merges")
        }
        var vocab: [String: Int] = [:]
        for (i, t) in tokens.enumerated() { vocab[t] = i }
        model["vocab"] = vocab
        model["merges"] = merges.map { $0.split(separator: " ").map(String.init) }
        root["model"] = model
        return try Tokenizer(tokenizerJSON: JSONSerialization.data(withJSONObject: root))
    }

    // MARK: Gemma 3 (SentencePiece-style), fetched by `Models/fetch gemma3-270m`

    struct GemmaMissing: Error, CustomStringConvertible {
        let path: String
        var description: String { "Gemma 3 270M missing at \(path): run Models/fetch gemma3-270m (scripts/test does)" }
    }

    static let gemmaPath = TestPaths.repositoryRoot.appendingPathComponent("Models/gemma-3-270m-q4_k_m.gguf").path
    static let gemmaGGUF = Result { () throws -> GGUFFile in
        guard FileManager.default.fileExists(atPath: gemmaPath) else { throw GemmaMissing(path: gemmaPath) }
        return try GGUFFile(path: gemmaPath)
    }
    static let gemma = Result { try SentencePieceTokenizer(gguf: gemmaGGUF.get()) }

    // MARK: The network's standard tokenizer, fetched by `Models/fetch gpt2`

    static let networkRanksPath = TestPaths.repositoryRoot.appendingPathComponent("Models/gpt2.tiktoken").path
    static let network = Result { () throws -> NetworkStandardTokenizer in
        guard FileManager.default.fileExists(atPath: networkRanksPath) else {
            throw FixtureMissing(name: "\(networkRanksPath) (run Models/fetch gpt2; scripts/test does)")
        }
        return try Tokenizer.networkStandard(ranksPath: networkRanksPath)
    }
}
