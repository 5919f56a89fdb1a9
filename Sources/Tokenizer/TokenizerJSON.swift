import Foundation

/// Reads a Hugging Face tokenizer.json of the byte-level BPE family into a `BPEVocabulary`.
/// Supported: no normalizer; a `BPE` model (no dropout, prefixes/suffixes or byte fallback;
/// optional `unk_token`/`fuse_unk`); pre-tokenizer `ByteLevel(use_regex: true)` or
/// `Split(GPT-2 regex, Isolated)` + `ByteLevel(use_regex: false)`, optionally preceded by
/// `Digits(individual_digits: true)`; `added_tokens`; a `ByteLevel` (or no) decoder; a
/// `ByteLevel` and/or `TemplateProcessing` post-processor (its single-sequence template gives
/// the bos/eos that `addSpecial` adds). Anything else is a `TokenizerError`, never ignored.
enum TokenizerJSON {
    static let gpt2Pattern = #"'s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+"#

    static func vocabulary(from data: Data) throws -> BPEVocabulary {
        let root: [String: Any]
        do {
            guard let object = try JSONSerialization.jsonObject(with: data) as? [String: Any] else {
                throw TokenizerError.invalidJSON("the top level is not an object")
            }
            root = object
        } catch let error as TokenizerError {
            throw error
        } catch {
            throw TokenizerError.invalidJSON(error.localizedDescription)
        }

        if let normalizer = root["normalizer"], !(normalizer is NSNull) {
            throw TokenizerError.invalidField("normalizer", reason: "\(typeName(normalizer)) is not supported (byte-level BPE uses none)")
        }
        guard let model = root["model"] as? [String: Any] else { throw TokenizerError.missingField("model") }
        let modelType = model["type"] as? String ?? "BPE"
        guard modelType == "BPE" else { throw TokenizerError.unsupportedModel("'\(modelType)' (model.type)") }
        if let dropout = model["dropout"] as? Double, dropout != 0 {
            throw TokenizerError.unsupportedModel("BPE with dropout \(dropout) (model.dropout)")
        }
        for key in ["continuing_subword_prefix", "end_of_word_suffix"] {
            if let s = model[key] as? String, !s.isEmpty {
                throw TokenizerError.unsupportedModel("BPE with \(key) '\(s)' (model.\(key))")
            }
        }
        for key in ["byte_fallback", "ignore_merges"] where model[key] as? Bool == true {
            throw TokenizerError.unsupportedModel("BPE with \(key) (model.\(key))")
        }
        guard let vocab = model["vocab"] as? [String: Any] else { throw TokenizerError.missingField("model.vocab") }
        guard let rawMerges = model["merges"] as? [Any] else { throw TokenizerError.missingField("model.merges") }

        // Tokens by id: the model vocabulary plus added tokens, which may extend it.
        var byID: [Int: String] = [:]
        byID.reserveCapacity(vocab.count)
        for (text, value) in vocab {
            guard let id = value as? Int, id >= 0, id < Int(Int32.max) else {
                throw TokenizerError.invalidField("model.vocab", reason: "token '\(text)' has id \(value), expected a non-negative integer")
            }
            if let other = byID[id] {
                throw TokenizerError.malformedVocabulary("tokens '\(other)' and '\(text)' share id \(id) in model.vocab")
            }
            byID[id] = text
        }
        var typeByID: [Int: Int32] = [:]
        for (i, entry) in (root["added_tokens"] as? [Any] ?? []).enumerated() {
            guard let t = entry as? [String: Any], let id = t["id"] as? Int, id >= 0, id < Int(Int32.max),
                  let content = t["content"] as? String else {
                throw TokenizerError.invalidField("added_tokens[\(i)]", reason: "expected an object with an integer id and a string content")
            }
            for key in ["lstrip", "rstrip", "single_word"] where t[key] as? Bool == true {
                throw TokenizerError.invalidField("added_tokens[\(i)].\(key)", reason: "'\(content)' sets \(key), which is not supported")
            }
            if let existing = byID[id], existing != content {
                throw TokenizerError.malformedVocabulary("added token '\(content)' has id \(id), which model.vocab gives to '\(existing)'")
            }
            byID[id] = content
            typeByID[id] = (t["special"] as? Bool ?? false) ? BPEVocabulary.TokenType.control : BPEVocabulary.TokenType.userDefined
        }
        let count = (byID.keys.max() ?? -1) + 1
        var tokens: [String] = []
        var types: [Int32] = []
        tokens.reserveCapacity(count)
        types.reserveCapacity(count)
        for id in 0..<count {
            guard let t = byID[id] else { throw TokenizerError.malformedVocabulary("id \(id) has no token (ids must be 0..<\(count) without gaps)") }
            tokens.append(t)
            types.append(typeByID[id] ?? BPEVocabulary.TokenType.normal)
        }

        var merges: [BPEVocabulary.Merge] = []
        merges.reserveCapacity(rawMerges.count)
        for (i, m) in rawMerges.enumerated() {
            if let s = m as? String {
                merges.append(try BPEVocabulary.parseMerge(s, index: i))
            } else if let pair = m as? [Any], pair.count == 2, let l = pair[0] as? String, let r = pair[1] as? String {
                merges.append(BPEVocabulary.Merge(left: l, right: r))
            } else {
                throw TokenizerError.malformedMerge(index: i, merge: "\(m)", reason: "expected \"left right\" or [left, right]")
            }
        }

        var unknownByteID: Int32?
        if let unk = model["unk_token"] as? String {
            guard let id = byID.first(where: { $0.value == unk })?.key else {
                throw TokenizerError.invalidField("model.unk_token", reason: "'\(unk)' is not in the vocabulary")
            }
            unknownByteID = Int32(id)
        }

        let kind = try preTokenizer(root["pre_tokenizer"])
        try checkDecoder(root["decoder"])
        var bos: Int32?
        var eos: Int32?
        try readPostProcessor(root["post_processor"], bos: &bos, eos: &eos)
        return BPEVocabulary(tokens: tokens, tokenTypes: types, merges: merges, preTokenizer: kind,
                             bosID: bos, eosID: eos, unkID: unknownByteID,
                             addBOS: bos != nil, addEOS: eos != nil,
                             unknownByteID: unknownByteID, fuseUnknown: model["fuse_unk"] as? Bool ?? false)
    }

    private static func typeName(_ value: Any) -> String {
        if let d = value as? [String: Any], let t = d["type"] as? String { return "'\(t)'" }
        return "\(value)"
    }

    /// Flattens `Sequence` pre-tokenizers and matches the step list against the supported forms.
    private static func preTokenizer(_ value: Any?) throws -> PreTokenizerKind {
        guard let value, !(value is NSNull) else {
            throw TokenizerError.unsupportedPreTokenizer("none (pre_tokenizer is null): byte-level BPE needs the GPT-2 split")
        }
        var steps: [[String: Any]] = []
        func flatten(_ v: Any) throws {
            guard let d = v as? [String: Any], let type = d["type"] as? String else {
                throw TokenizerError.invalidField("pre_tokenizer", reason: "expected objects with a 'type'")
            }
            if type == "Sequence" {
                for p in d["pretokenizers"] as? [Any] ?? [] { try flatten(p) }
            } else {
                steps.append(d)
            }
        }
        try flatten(value)
        let names = steps.map { $0["type"] as? String ?? "?" }
        var kind = PreTokenizerKind.gpt2
        var rest = steps[...]
        if let first = rest.first, first["type"] as? String == "Digits" {
            guard first["individual_digits"] as? Bool == true else {
                throw TokenizerError.unsupportedPreTokenizer("Digits(individual_digits: false)")
            }
            kind = .smollm
            rest = rest.dropFirst()
        }
        let described = names.joined(separator: ", ")
        if rest.count == 1, let only = rest.first, only["type"] as? String == "ByteLevel" {
            try checkByteLevel(only, useRegex: true)
            return kind
        }
        if rest.count == 2, let split = rest.first, split["type"] as? String == "Split",
           let last = rest.last, last["type"] as? String == "ByteLevel" {
            let pattern = (split["pattern"] as? [String: Any])?["Regex"] as? String
            guard pattern == gpt2Pattern else {
                throw TokenizerError.unsupportedPreTokenizer("Split with pattern \(split["pattern"] ?? "nil") (only the GPT-2 regex is implemented)")
            }
            guard split["behavior"] as? String == "Isolated", split["invert"] as? Bool != true else {
                throw TokenizerError.unsupportedPreTokenizer("Split with behavior \(split["behavior"] ?? "nil"), invert \(split["invert"] ?? "nil") (only Isolated, not inverted)")
            }
            try checkByteLevel(last, useRegex: false)
            return kind
        }
        throw TokenizerError.unsupportedPreTokenizer("sequence [\(described)]")
    }

    private static func checkByteLevel(_ step: [String: Any], useRegex: Bool) throws {
        if step["add_prefix_space"] as? Bool == true {
            throw TokenizerError.unsupportedPreTokenizer("ByteLevel(add_prefix_space: true)")
        }
        let regex = step["use_regex"] as? Bool ?? true
        guard regex == useRegex else {
            throw TokenizerError.unsupportedPreTokenizer("ByteLevel(use_regex: \(regex)) in this position (expected \(useRegex))")
        }
    }

    private static func checkDecoder(_ value: Any?) throws {
        guard let value, !(value is NSNull) else { return }
        guard let d = value as? [String: Any], let type = d["type"] as? String else {
            throw TokenizerError.invalidField("decoder", reason: "expected an object with a 'type'")
        }
        if type == "ByteLevel" { return }
        if type == "Sequence" {
            for sub in d["decoders"] as? [Any] ?? [] { try checkDecoder(sub) }
            return
        }
        throw TokenizerError.invalidField("decoder", reason: "'\(type)' is not supported (expected ByteLevel)")
    }

    private static func readPostProcessor(_ value: Any?, bos: inout Int32?, eos: inout Int32?) throws {
        guard let value, !(value is NSNull) else { return }
        guard let d = value as? [String: Any], let type = d["type"] as? String else {
            throw TokenizerError.invalidField("post_processor", reason: "expected an object with a 'type'")
        }
        switch type {
        case "ByteLevel":
            return   // offsets only; ids unchanged
        case "Sequence":
            for sub in d["processors"] as? [Any] ?? [] { try readPostProcessor(sub, bos: &bos, eos: &eos) }
        case "TemplateProcessing":
            guard let single = d["single"] as? [Any] else { throw TokenizerError.missingField("post_processor.single") }
            let specials = d["special_tokens"] as? [String: Any] ?? [:]
            func specialID(_ item: [String: Any]) throws -> Int32 {
                let name = item["id"] as? String ?? "?"
                guard let entry = specials[name] as? [String: Any], let ids = entry["ids"] as? [Int], ids.count == 1,
                      let id = Int32(exactly: ids[0]) else {
                    throw TokenizerError.invalidField("post_processor.special_tokens", reason: "'\(name)' must map to exactly one id")
                }
                return id
            }
            var sawSequence = false
            for item in single {
                guard let i = item as? [String: Any] else { continue }
                if let s = i["SpecialToken"] as? [String: Any] {
                    if sawSequence { eos = try specialID(s) } else { bos = try specialID(s) }
                } else if i["Sequence"] != nil {
                    guard !sawSequence else {
                        throw TokenizerError.invalidField("post_processor.single", reason: "more than one sequence")
                    }
                    sawSequence = true
                }
            }
        default:
            throw TokenizerError.invalidField("post_processor", reason: "'\(type)' is not supported")
        }
    }
}

extension BPEVocabulary {
    /// Reads a Hugging Face tokenizer.json (byte-level BPE family; see the module docs).
    /// - Throws: `TokenizerError.invalidJSON`, `.unsupportedModel`, `.unsupportedPreTokenizer`
    ///   (for example a Split regex other than GPT-2's), `.invalidField`, `.malformedMerge`.
    public init(tokenizerJSON data: Data) throws {
        self = try TokenizerJSON.vocabulary(from: data)
    }
}

extension Tokenizer {
    /// The tokenizer described by a Hugging Face tokenizer.json.
    /// - Throws: `TokenizerError` naming the unsupported or malformed part.
    public convenience init(tokenizerJSON data: Data) throws {
        try self.init(vocabulary: BPEVocabulary(tokenizerJSON: data))
    }
}
