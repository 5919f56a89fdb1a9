// Swift value types for the messages of Protos/axon.proto (package axon.v1). The protobuf-c structs
// stay inside ProtobufCodec.swift. Enums are open (proto3 semantics): an unknown number survives.

/// A request's method.
public struct Method: RawRepresentable, Hashable, Sendable, CustomStringConvertible {
    public let rawValue: Int32
    public init(rawValue: Int32) { self.rawValue = rawValue }
    public static let unspecified = Method(rawValue: 0)
    public static let ping = Method(rawValue: 1)
    public static let info = Method(rawValue: 2)
    public static let forward = Method(rawValue: 3)
    public var description: String {
        switch rawValue {
        case 0: return "METHOD_UNSPECIFIED"
        case 1: return "PING"
        case 2: return "INFO"
        case 3: return "FORWARD"
        default: return "method \(rawValue)"
        }
    }
}

/// The element type of a `Tensor`.
public struct DataType: RawRepresentable, Hashable, Sendable, CustomStringConvertible {
    public let rawValue: Int32
    public init(rawValue: Int32) { self.rawValue = rawValue }
    public static let unknown = DataType(rawValue: 0)
    public static let float32 = DataType(rawValue: 1)
    public static let float64 = DataType(rawValue: 2)
    public static let int32 = DataType(rawValue: 3)
    public static let int64 = DataType(rawValue: 4)
    public static let utf8 = DataType(rawValue: 5)
    public static let float16 = DataType(rawValue: 6)

    /// Bytes per element, or nil for types without a fixed size.
    public var byteWidth: Int? {
        switch rawValue {
        case 1, 3: return 4
        case 2, 4: return 8
        case 6: return 2
        default: return nil
        }
    }

    public var description: String {
        let names = ["DATA_TYPE_UNKNOWN", "FLOAT32", "FLOAT64", "INT32", "INT64", "UTF8", "FLOAT16"]
        return names.indices.contains(Int(rawValue)) ? names[Int(rawValue)] : "data type \(rawValue)"
    }
}

/// What a synapse asks of the model.
public struct SynapseType: RawRepresentable, Hashable, Sendable, CustomStringConvertible {
    public let rawValue: Int32
    public init(rawValue: Int32) { self.rawValue = rawValue }
    public static let null = SynapseType(rawValue: 0)
    public static let textLastHiddenState = SynapseType(rawValue: 1)
    public static let textCausalLM = SynapseType(rawValue: 2)
    public static let textSeq2Seq = SynapseType(rawValue: 3)
    public static let textCausalLMNext = SynapseType(rawValue: 4)
    public var description: String {
        let names = ["NULL_SYNAPSE", "TEXT_LAST_HIDDEN_STATE", "TEXT_CAUSAL_LM", "TEXT_SEQ_2_SEQ", "TEXT_CAUSAL_LM_NEXT"]
        return names.indices.contains(Int(rawValue)) ? names[Int(rawValue)] : "synapse type \(rawValue)"
    }
}

/// Bittensor's return codes (same numbers), plus 25 `Blacklisted`.
public struct ReturnCode: RawRepresentable, Hashable, Sendable, CustomStringConvertible {
    public let rawValue: Int32
    public init(rawValue: Int32) { self.rawValue = rawValue }
    public static let noReturn = ReturnCode(rawValue: 0)
    public static let success = ReturnCode(rawValue: 1)
    public static let timeout = ReturnCode(rawValue: 2)
    public static let backoff = ReturnCode(rawValue: 3)
    public static let unavailable = ReturnCode(rawValue: 4)
    public static let notImplemented = ReturnCode(rawValue: 5)
    public static let emptyRequest = ReturnCode(rawValue: 6)
    public static let emptyResponse = ReturnCode(rawValue: 7)
    public static let invalidResponse = ReturnCode(rawValue: 8)
    public static let invalidRequest = ReturnCode(rawValue: 9)
    public static let requestShapeException = ReturnCode(rawValue: 10)
    public static let responseShapeException = ReturnCode(rawValue: 11)
    public static let requestSerializationException = ReturnCode(rawValue: 12)
    public static let responseSerializationException = ReturnCode(rawValue: 13)
    public static let requestDeserializationException = ReturnCode(rawValue: 14)
    public static let responseDeserializationException = ReturnCode(rawValue: 15)
    public static let notServingNucleus = ReturnCode(rawValue: 16)
    public static let nucleusTimeout = ReturnCode(rawValue: 17)
    public static let nucleusFull = ReturnCode(rawValue: 18)
    public static let requestIncompatibleVersion = ReturnCode(rawValue: 19)
    public static let responseIncompatibleVersion = ReturnCode(rawValue: 20)
    public static let senderUnknown = ReturnCode(rawValue: 21)
    public static let unknownException = ReturnCode(rawValue: 22)
    public static let unauthenticated = ReturnCode(rawValue: 23)
    public static let badEndpoint = ReturnCode(rawValue: 24)
    public static let blacklisted = ReturnCode(rawValue: 25)

    /// The names as in Protos/axon.proto, indexed by number.
    public static let names = [
        "NoReturn", "Success", "Timeout", "Backoff", "Unavailable", "NotImplemented", "EmptyRequest",
        "EmptyResponse", "InvalidResponse", "InvalidRequest", "RequestShapeException", "ResponseShapeException",
        "RequestSerializationException", "ResponseSerializationException", "RequestDeserializationException",
        "ResponseDeserializationException", "NotServingNucleus", "NucleusTimeout", "NucleusFull",
        "RequestIncompatibleVersion", "ResponseIncompatibleVersion", "SenderUnknown", "UnknownException",
        "Unauthenticated", "BadEndpoint", "Blacklisted",
    ]

    public var description: String {
        Self.names.indices.contains(Int(rawValue)) ? Self.names[Int(rawValue)] : "ReturnCode \(rawValue)"
    }
}

/// A caller's signed identity (checked by the identity layer, not by Wire).
public struct Auth: Hashable, Sendable {
    public var hotkey: String
    public var nonce: UInt64
    public var uuid: String
    public var signature: [UInt8]
    public init(hotkey: String = "", nonce: UInt64 = 0, uuid: String = "", signature: [UInt8] = []) {
        self.hotkey = hotkey; self.nonce = nonce; self.uuid = uuid; self.signature = signature
    }
}

/// One client frame.
public struct Request: Hashable, Sendable {
    public var id: UInt64
    public var method: Method
    /// 0 means the server's default.
    public var timeoutMs: UInt32
    /// A serialized `ForwardRequest` for FORWARD, empty otherwise.
    public var body: [UInt8]
    public var auth: Auth?
    public init(id: UInt64, method: Method, timeoutMs: UInt32 = 0, body: [UInt8] = [], auth: Auth? = nil) {
        self.id = id; self.method = method; self.timeoutMs = timeoutMs; self.body = body; self.auth = auth
    }
}

/// A little-endian, row-major tensor.
public struct Tensor: Hashable, Sendable {
    public var buffer: [UInt8]
    public var shape: [Int64]
    public var dtype: DataType
    public init(buffer: [UInt8], shape: [Int64], dtype: DataType) {
        self.buffer = buffer; self.shape = shape; self.dtype = dtype
    }
}

/// Which token ids a FORWARD speaks.
public struct TokenSpace: RawRepresentable, Hashable, Sendable, CustomStringConvertible {
    public let rawValue: Int32
    public init(rawValue: Int32) { self.rawValue = rawValue }
    /// The model's own tokenizer (`InfoResponse.tokenizerSHA256`).
    public static let model = TokenSpace(rawValue: 0)
    /// The network's standard tokenizer (GPT-2, `InfoResponse.networkTokenizerSHA256`).
    public static let network = TokenSpace(rawValue: 1)
    public var description: String {
        switch rawValue {
        case 0: return "MODEL"
        case 1: return "NETWORK"
        default: return "token space \(rawValue)"
        }
    }
}

/// TEXT_SEQ_2_SEQ parameters as sent: nil is an absent field, which takes `Generation.Defaults`.
public struct Generation: Hashable, Sendable {
    public var numToGenerate: UInt32?
    public var topk: UInt32?
    public var doSample: Bool?
    public var topP: Float?
    public var temperature: Float?
    public var repetitionPenalty: Float?
    public var noRepeatNgramSize: UInt32?
    public var numBeams: UInt32?
    public var lengthPenalty: Float?
    public var earlyStopping: Bool?
    public var seed: UInt64?
    /// Empty: the model's eos.
    public var stopTokens: [Int32]

    public init(numToGenerate: UInt32? = nil, topk: UInt32? = nil, doSample: Bool? = nil, topP: Float? = nil,
                temperature: Float? = nil, repetitionPenalty: Float? = nil, noRepeatNgramSize: UInt32? = nil,
                numBeams: UInt32? = nil, lengthPenalty: Float? = nil, earlyStopping: Bool? = nil,
                seed: UInt64? = nil, stopTokens: [Int32] = []) {
        self.numToGenerate = numToGenerate; self.topk = topk; self.doSample = doSample; self.topP = topP
        self.temperature = temperature; self.repetitionPenalty = repetitionPenalty
        self.noRepeatNgramSize = noRepeatNgramSize; self.numBeams = numBeams; self.lengthPenalty = lengthPenalty
        self.earlyStopping = earlyStopping; self.seed = seed; self.stopTokens = stopTokens
    }

    /// The value an absent field takes (the comments in Protos/axon.proto; Bittensor's TextSeq2Seq
    /// defaults, except `numBeams`, which Bittensor set to 5).
    public enum Defaults {
        public static let numToGenerate: UInt32 = 256
        public static let topk: UInt32 = 50
        public static let doSample = false
        public static let topP: Float = 0.95
        public static let temperature: Float = 1.0
        public static let repetitionPenalty: Float = 1.0
        public static let noRepeatNgramSize: UInt32 = 2
        public static let numBeams: UInt32 = 1
        public static let lengthPenalty: Float = 1.0
        public static let earlyStopping = false
    }
}

/// One output asked of a FORWARD.
public struct Synapse: Hashable, Sendable {
    public var type: SynapseType
    public var topk: UInt32
    /// FLOAT32 (or 0, meaning FLOAT32) or FLOAT16, for float outputs.
    public var dtype: DataType
    /// TEXT_SEQ_2_SEQ only; nil when the field is absent.
    public var generation: Generation?
    public init(type: SynapseType, topk: UInt32 = 0, dtype: DataType = .unknown, generation: Generation? = nil) {
        self.type = type; self.topk = topk; self.dtype = dtype; self.generation = generation
    }
}

/// The body of a FORWARD request.
public struct ForwardRequest: Hashable, Sendable {
    /// INT32 or INT64, shape [batch, seq].
    public var tokens: Tensor?
    /// Empty: every position is valid. Else one per row: the row's valid tokens are its last `lengths[i]`.
    public var lengths: [UInt32]
    public var synapses: [Synapse]
    /// Which tokenizer's ids `tokens` holds (and the answers use).
    public var space: TokenSpace
    public init(tokens: Tensor?, lengths: [UInt32] = [], synapses: [Synapse], space: TokenSpace = .model) {
        self.tokens = tokens; self.lengths = lengths; self.synapses = synapses; self.space = space
    }
}

/// The answer to one synapse.
public struct SynapseResult: Hashable, Sendable {
    public var type: SynapseType
    public var code: ReturnCode
    public var message: String
    public var tensors: [Tensor]
    public init(type: SynapseType, code: ReturnCode, message: String = "", tensors: [Tensor] = []) {
        self.type = type; self.code = code; self.message = message; self.tensors = tensors
    }
}

/// The answer to a FORWARD: one result per synapse, in the request's order.
public struct ForwardResponse: Hashable, Sendable {
    public var results: [SynapseResult]
    public init(results: [SynapseResult]) { self.results = results }
}

/// The answer to INFO.
public struct InfoResponse: Hashable, Sendable {
    public var hotkey = ""
    public var uid: Int32 = 0
    public var netuid: UInt32 = 0
    public var model = ""
    public var architecture = ""
    public var vocabSize: UInt32 = 0
    public var hiddenSize: UInt32 = 0
    public var networkDim: UInt32 = 0
    public var maxBatch: UInt32 = 0
    public var maxSeq: UInt32 = 0
    public var maxBatchTokens: UInt32 = 0
    public var tokenizerSHA256 = ""
    public var version = ""
    public var bosID: UInt32 = 0
    public var eosID: UInt32 = 0
    public var padID: UInt32 = 0
    /// The network's standard tokenizer ("gpt2"), empty when the axon serves no network space.
    public var networkTokenizer = ""
    /// sha256 of the standard tokenizer's ranks file.
    public var networkTokenizerSHA256 = ""
    /// 50257 for GPT-2.
    public var networkVocabSize: UInt32 = 0
    /// Where replay and rate-limit state lives and, when shared, its connection (field 20).
    public var admissionState = ""
    public init() {}
}

/// Where a request's time went, in microseconds.
public struct Timing: Hashable, Sendable {
    public var queueUs: UInt32
    public var computeUs: UInt32
    /// Rows in the batch this request was computed in (with other requests' rows).
    public var batchRows: UInt32
    public init(queueUs: UInt32 = 0, computeUs: UInt32 = 0, batchRows: UInt32 = 0) {
        self.queueUs = queueUs; self.computeUs = computeUs; self.batchRows = batchRows
    }
}

/// One server frame.
public struct Response: Hashable, Sendable {
    public var id: UInt64
    public var code: ReturnCode
    public var message: String
    public var timing: Timing?
    public var forward: ForwardResponse?
    public var info: InfoResponse?
    public init(id: UInt64, code: ReturnCode, message: String = "", timing: Timing? = nil,
                forward: ForwardResponse? = nil, info: InfoResponse? = nil) {
        self.id = id; self.code = code; self.message = message; self.timing = timing
        self.forward = forward; self.info = info
    }
}
