import ArgumentParser
import Foundation
import GGUF
import Tokenizer

struct Detokenize: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Read token ids on stdin (whitespace or comma separated, or a JSON array) and print the text.")
    @OptionGroup var modelOption: ModelOption

    @Option(help: "Whose token ids: the model's, or the network's standard GPT-2 ones.")
    var space: TokenSpaceOption = .model

    func run() throws {
        let tokenizer = try space.tokenizer(modelOption)
        let data = FileHandle.standardInput.readDataToEndOfFile()
        let ids = try Self.parseIDs(String(decoding: data, as: UTF8.self))
        // The exact bytes, so that `axon tokenize | axon detokenize` reproduces the input.
        FileHandle.standardOutput.write(Data(try tokenizer.decodeBytes(ids)))
    }

    /// Ids separated by whitespace and/or commas, optionally inside one pair of brackets.
    static func parseIDs(_ input: String) throws -> [Int32] {
        var body = Substring(input.trimmingCharacters(in: .whitespacesAndNewlines))
        if body.first == "[" {
            guard body.last == "]" else { throw Failure("stdin starts with '[' but does not end with ']'") }
            body = body.dropFirst().dropLast()
        }
        var ids: [Int32] = []
        for (i, field) in body.split(whereSeparator: { $0 == "," || $0.isWhitespace }).enumerated() {
            guard let id = Int32(field) else {
                throw Failure("token \(i) '\(field.prefix(40))' is not an integer id")
            }
            ids.append(id)
        }
        return ids
    }
}
