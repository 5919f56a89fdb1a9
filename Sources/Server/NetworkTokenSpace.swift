// The network's standard token space (docs/PROTOCOL.md, "Token spaces"): what INFO reports about it
// and the translator between its ids and the model's. Validation aligns each row (the loop thread
// needs the model-token count to check limits and price the work); the worker translates answers.
import Tokenizer
import TokenTranslation

/// The network's standard token space as one axon serves it. Immutable; build once at start (the
/// translator tokenizes every model token's text with the standard tokenizer).
public final class NetworkTokenSpace: Sendable {
    /// INFO's `network_tokenizer` ("gpt2").
    public let name: String
    /// INFO's `network_tokenizer_sha256`: the SHA-256 of the ranks file.
    public let sha256: String
    public let translator: TokenSpaceTranslator
    /// The standard tokenizer's end of text (`<|endoftext|>`), which validators pad with.
    public let endOfText: Int32

    /// Valid network ids are `0..<vocabSize` (50,257 for GPT-2).
    public var vocabSize: Int { translator.networkVocabSize }
    /// What INFO reports about this space (fields 17–19), as a relay reports its own.
    public var identity: RelayNetworkIdentity { RelayNetworkIdentity(name: name, sha256: sha256, vocabSize: vocabSize) }
    /// No phrase of any answer is longer (a phrase spells at most one model token's bytes): what
    /// validation reserves for a next-phrase answer's width L.
    public var maxPhraseLength: Int { translator.maxModelTokenBytes }

    /// - Parameters:
    ///   - standard: the network's standard tokenizer (`Tokenizer.networkStandard(ranksPath:)`).
    ///   - model: the model's own tokenizer; its bos is prepended to every row when it adds one.
    public init(standard: NetworkStandardTokenizer, model: any TextTokenizer) {
        name = NetworkStandardTokenizer.name
        sha256 = standard.ranksSHA256
        endOfText = NetworkStandardTokenizer.endOfText
        translator = TokenSpaceTranslator(network: TextTokenizerBytes(standard.tokenizer), model: TextTokenizerBytes(model),
                                          modelBOS: model.addsBOS ? model.bosID : nil, modelEOS: model.eosID,
                                          networkEOS: NetworkStandardTokenizer.endOfText)
    }
}
