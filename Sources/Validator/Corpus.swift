import Foundation

public enum CorpusError: Error, CustomStringConvertible, Equatable {
    case unreadable(path: String, reason: String)
    case badLine(path: String, line: Int, reason: String)
    case empty

    public var description: String {
        switch self {
        case let .unreadable(path, reason): return "corpus file '\(path)' cannot be read as UTF-8: \(reason)"
        case let .badLine(path, line, reason):
            return "\(path):\(line): not a JSON object with a string field \"text\" (\(reason)); JSONL corpora hold one such object a line"
        case .empty: return "the corpus holds no text"
        }
    }
}

/// The validator's text: plain UTF-8 files, or JSONL (`.jsonl`, `.ndjson`) with a `text` field
/// per line (the form Bittensor's dataset and most public corpora come in).
public enum Corpus {
    /// The documents of every file, in order (a text file is one document, a JSONL line another).
    /// - Throws: `CorpusError`.
    public static func documents(paths: [String]) throws -> [String] {
        var documents: [String] = []
        for path in paths {
            let contents: String
            do { contents = try String(contentsOfFile: path, encoding: .utf8) } catch {
                throw CorpusError.unreadable(path: path, reason: error.localizedDescription)
            }
            let ext = URL(fileURLWithPath: path).pathExtension.lowercased()
            guard ext == "jsonl" || ext == "ndjson" else {
                documents.append(contents)
                continue
            }
            for (index, line) in contents.split(separator: "\n", omittingEmptySubsequences: false).enumerated() {
                guard !line.allSatisfy(\.isWhitespace) else { continue }
                let object: Any
                do { object = try JSONSerialization.jsonObject(with: Data(line.utf8)) } catch {
                    throw CorpusError.badLine(path: path, line: index + 1, reason: "\(error.localizedDescription)")
                }
                guard let text = (object as? [String: Any])?["text"] as? String else {
                    throw CorpusError.badLine(path: path, line: index + 1, reason: "no string \"text\"")
                }
                documents.append(text)
            }
        }
        guard documents.contains(where: { !$0.isEmpty }) else { throw CorpusError.empty }
        return documents
    }

    /// The documents as one text, separated by a blank line, which is what the loop's windows are
    /// cut from (a window may span two documents, as in Bittensor's concatenated dataset blocks).
    public static func text(paths: [String]) throws -> String {
        try documents(paths: paths).filter { !$0.isEmpty }.joined(separator: "\n\n")
    }
}
