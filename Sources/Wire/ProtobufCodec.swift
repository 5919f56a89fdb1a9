// Conversion between the Swift message types and protobuf-c (pack/unpack). The C structs and
// pointers never leave this file.
import AxonProto
import CProtobufC
#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// Why a message could not be read from bytes.
public enum MessageError: Error, Equatable, CustomStringConvertible {
    /// protobuf-c rejected the bytes (bad tag, truncated field, wrong wire type, ...) or decoding
    /// them needed more memory than `budget` bytes.
    case malformed(message: String, byteCount: Int, budget: Int)
    /// A string field holds a NUL byte or is not UTF-8. Such strings are refused rather than cut
    /// at the NUL or repaired, so two different byte strings can never read as one (a hotkey
    /// `ss58\0junk` as `ss58`, uuids `abc\0X` and `abc\0Y` as one session).
    case invalidString(message: String, field: String, reason: String)

    public var description: String {
        switch self {
        case let .malformed(message, byteCount, budget):
            return "\(byteCount) bytes are not a valid axon.v1.\(message) (or decoding them needs more than \(budget) bytes of memory)"
        case let .invalidString(message, field, reason):
            return "axon.v1.\(message) field \(field) \(reason); string fields must be UTF-8 without NUL bytes"
        }
    }
}

// MARK: - Public entry points

extension Request {
    /// The protobuf serialization.
    public func serializedBytes() -> [UInt8] {
        let arena = CArena()
        var message = arena.request(self)
        return pack(size: axon__v1__request__get_packed_size(&message)) { axon__v1__request__pack(&message, $0) }
    }

    /// Reads a serialized `Request`.
    /// - Throws: `MessageError.malformed` when protobuf-c rejects the bytes.
    public init(serializedBytes bytes: [UInt8]) throws {
        self = try unpack(bytes, name: "Request", unpack: axon__v1__request__unpack,
                          free: axon__v1__request__free_unpacked, convert: Request.init(c:))
    }
}

extension ForwardRequest {
    /// The protobuf serialization (what goes in `Request.body`).
    public func serializedBytes() -> [UInt8] {
        let arena = CArena()
        var message = arena.forwardRequest(self)
        return pack(size: axon__v1__forward_request__get_packed_size(&message)) {
            axon__v1__forward_request__pack(&message, $0)
        }
    }

    /// Reads a serialized `ForwardRequest`.
    /// - Throws: `MessageError.malformed` when protobuf-c rejects the bytes.
    public init(serializedBytes bytes: [UInt8]) throws {
        self = try unpack(bytes, name: "ForwardRequest", unpack: axon__v1__forward_request__unpack,
                          free: axon__v1__forward_request__free_unpacked, convert: ForwardRequest.init(c:))
    }
}

extension Response {
    /// The protobuf serialization.
    public func serializedBytes() -> [UInt8] {
        let arena = CArena()
        var message = arena.response(self)
        return pack(size: axon__v1__response__get_packed_size(&message)) { axon__v1__response__pack(&message, $0) }
    }

    /// One frame (varint length, then the serialization), packed in place: one copy less than
    /// `FrameEncoder.frame(serializedBytes())`, which matters for responses of hundreds of MB.
    public func serializedFrame() -> [UInt8] {
        let arena = CArena()
        var message = arena.response(self)
        let size = axon__v1__response__get_packed_size(&message)
        var prefix: [UInt8] = []
        FrameEncoder.appendVarint(UInt64(size), to: &prefix)
        return [UInt8](unsafeUninitializedCapacity: prefix.count + size) { buffer, initialized in
            for (index, byte) in prefix.enumerated() { buffer[index] = byte }
            let written = size == 0 ? 0 : axon__v1__response__pack(&message, buffer.baseAddress.unsafelyUnwrapped + prefix.count)
            initialized = prefix.count + written
        }
    }

    /// Reads a serialized `Response`.
    /// - Throws: `MessageError.malformed` when protobuf-c rejects the bytes.
    public init(serializedBytes bytes: [UInt8]) throws {
        self = try unpack(bytes, name: "Response", unpack: axon__v1__response__unpack,
                          free: axon__v1__response__free_unpacked, convert: Response.init(c:))
    }
}

// MARK: - Packing

private func pack(size: Int, _ write: (UnsafeMutablePointer<UInt8>) -> Int) -> [UInt8] {
    [UInt8](unsafeUninitializedCapacity: max(size, 1)) { buffer, initialized in
        initialized = size == 0 ? 0 : write(buffer.baseAddress.unsafelyUnwrapped)
    }
}

/// Owns the C memory of one message tree being packed; frees it all at once.
private final class CArena {
    private var blocks: [UnsafeMutableRawPointer] = []

    deinit { for block in blocks { free(block) } }

    func allocate<T>(_ type: T.Type, count: Int = 1) -> UnsafeMutablePointer<T> {
        let raw = calloc(max(count, 1), MemoryLayout<T>.stride).unsafelyUnwrapped
        blocks.append(raw)
        return raw.bindMemory(to: T.self, capacity: max(count, 1))
    }

    func string(_ value: String) -> UnsafeMutablePointer<CChar> {
        let raw = strdup(value).unsafelyUnwrapped
        blocks.append(UnsafeMutableRawPointer(raw))
        return raw
    }

    func binary(_ bytes: [UInt8]) -> ProtobufCBinaryData {
        let data = allocate(UInt8.self, count: bytes.count)
        bytes.withUnsafeBufferPointer { source in
            if let base = source.baseAddress { data.update(from: base, count: bytes.count) }
        }
        return ProtobufCBinaryData(len: bytes.count, data: data)
    }

    func array<T>(_ values: [T]) -> UnsafeMutablePointer<T> {
        let pointer = allocate(T.self, count: values.count)
        for (index, value) in values.enumerated() { (pointer + index).initialize(to: value) }
        return pointer
    }

    func pointers<S, T>(_ values: [S], _ build: (S) -> T) -> UnsafeMutablePointer<UnsafeMutablePointer<T>?> {
        let list = allocate(UnsafeMutablePointer<T>?.self, count: values.count)
        for (index, value) in values.enumerated() {
            let element = allocate(T.self)
            element.initialize(to: build(value))
            list[index] = element
        }
        return list
    }

    func request(_ value: Request) -> Axon__V1__Request {
        var c = Axon__V1__Request()
        axon__v1__request__init(&c)
        c.id = value.id
        c.method = Axon__V1__Method(rawValue: UInt32(bitPattern: value.method.rawValue))
        c.timeout_ms = value.timeoutMs
        c.body = binary(value.body)
        if let auth = value.auth {
            let a = allocate(Axon__V1__Auth.self)
            axon__v1__auth__init(a)
            a.pointee.hotkey = string(auth.hotkey)
            a.pointee.nonce = auth.nonce
            a.pointee.uuid = string(auth.uuid)
            a.pointee.signature = binary(auth.signature)
            c.auth = a
        }
        return c
    }

    func tensor(_ value: Tensor) -> Axon__V1__Tensor {
        var c = Axon__V1__Tensor()
        axon__v1__tensor__init(&c)
        c.buffer = binary(value.buffer)
        c.n_shape = value.shape.count
        c.shape = array(value.shape)
        c.dtype = Axon__V1__DataType(rawValue: UInt32(bitPattern: value.dtype.rawValue))
        return c
    }

    func forwardRequest(_ value: ForwardRequest) -> Axon__V1__ForwardRequest {
        var c = Axon__V1__ForwardRequest()
        axon__v1__forward_request__init(&c)
        if let tokens = value.tokens {
            let t = allocate(Axon__V1__Tensor.self)
            t.initialize(to: tensor(tokens))
            c.tokens = t
        }
        c.n_lengths = value.lengths.count
        c.lengths = array(value.lengths)
        c.n_synapses = value.synapses.count
        c.synapses = pointers(value.synapses) { synapse in
            var s = Axon__V1__Synapse()
            axon__v1__synapse__init(&s)
            s.type = Axon__V1__SynapseType(rawValue: UInt32(bitPattern: synapse.type.rawValue))
            s.topk = synapse.topk
            s.dtype = Axon__V1__DataType(rawValue: UInt32(bitPattern: synapse.dtype.rawValue))
            if let generation = synapse.generation { s.generation = self.generation(generation) }
            return s
        }
        c.space = Axon__V1__TokenSpace(rawValue: UInt32(bitPattern: value.space.rawValue))
        return c
    }

    /// Each present optional field sets its synthetic oneof's case (scripts/gen-proto explains why
    /// proto3 `optional` arrives as a one-field oneof).
    func generation(_ value: Generation) -> UnsafeMutablePointer<Axon__V1__Generation> {
        let g = allocate(Axon__V1__Generation.self)
        axon__v1__generation__init(g)
        if let v = value.numToGenerate {
            g.pointee.num_to_generate = v; g.pointee._num_to_generate_case = AXON__V1__GENERATION___NUM_TO_GENERATE_NUM_TO_GENERATE
        }
        if let v = value.topk { g.pointee.topk = v; g.pointee._topk_case = AXON__V1__GENERATION___TOPK_TOPK }
        if let v = value.doSample {
            g.pointee.do_sample = v ? 1 : 0; g.pointee._do_sample_case = AXON__V1__GENERATION___DO_SAMPLE_DO_SAMPLE
        }
        if let v = value.topP { g.pointee.top_p = v; g.pointee._top_p_case = AXON__V1__GENERATION___TOP_P_TOP_P }
        if let v = value.temperature {
            g.pointee.temperature = v; g.pointee._temperature_case = AXON__V1__GENERATION___TEMPERATURE_TEMPERATURE
        }
        if let v = value.repetitionPenalty {
            g.pointee.repetition_penalty = v
            g.pointee._repetition_penalty_case = AXON__V1__GENERATION___REPETITION_PENALTY_REPETITION_PENALTY
        }
        if let v = value.noRepeatNgramSize {
            g.pointee.no_repeat_ngram_size = v
            g.pointee._no_repeat_ngram_size_case = AXON__V1__GENERATION___NO_REPEAT_NGRAM_SIZE_NO_REPEAT_NGRAM_SIZE
        }
        if let v = value.numBeams {
            g.pointee.num_beams = v; g.pointee._num_beams_case = AXON__V1__GENERATION___NUM_BEAMS_NUM_BEAMS
        }
        if let v = value.lengthPenalty {
            g.pointee.length_penalty = v
            g.pointee._length_penalty_case = AXON__V1__GENERATION___LENGTH_PENALTY_LENGTH_PENALTY
        }
        if let v = value.earlyStopping {
            g.pointee.early_stopping = v ? 1 : 0
            g.pointee._early_stopping_case = AXON__V1__GENERATION___EARLY_STOPPING_EARLY_STOPPING
        }
        if let v = value.seed { g.pointee.seed = v; g.pointee._seed_case = AXON__V1__GENERATION___SEED_SEED }
        g.pointee.n_stop_tokens = value.stopTokens.count
        g.pointee.stop_tokens = array(value.stopTokens)
        return g
    }

    func response(_ value: Response) -> Axon__V1__Response {
        var c = Axon__V1__Response()
        axon__v1__response__init(&c)
        c.id = value.id
        c.code = Axon__V1__ReturnCode(rawValue: UInt32(bitPattern: value.code.rawValue))
        c.message = string(value.message)
        if let timing = value.timing {
            let t = allocate(Axon__V1__Timing.self)
            axon__v1__timing__init(t)
            t.pointee.queue_us = timing.queueUs
            t.pointee.compute_us = timing.computeUs
            t.pointee.batch_rows = timing.batchRows
            c.timing = t
        }
        if let forward = value.forward {
            let f = allocate(Axon__V1__ForwardResponse.self)
            axon__v1__forward_response__init(f)
            f.pointee.n_results = forward.results.count
            f.pointee.results = pointers(forward.results) { result in
                var r = Axon__V1__SynapseResult()
                axon__v1__synapse_result__init(&r)
                r.type = Axon__V1__SynapseType(rawValue: UInt32(bitPattern: result.type.rawValue))
                r.code = Axon__V1__ReturnCode(rawValue: UInt32(bitPattern: result.code.rawValue))
                r.message = string(result.message)
                r.n_tensors = result.tensors.count
                r.tensors = pointers(result.tensors, tensor)
                return r
            }
            c.forward = f
        }
        if let info = value.info {
            let i = allocate(Axon__V1__InfoResponse.self)
            axon__v1__info_response__init(i)
            i.pointee.hotkey = string(info.hotkey)
            i.pointee.uid = info.uid
            i.pointee.netuid = info.netuid
            i.pointee.model = string(info.model)
            i.pointee.architecture = string(info.architecture)
            i.pointee.vocab_size = info.vocabSize
            i.pointee.hidden_size = info.hiddenSize
            i.pointee.network_dim = info.networkDim
            i.pointee.max_batch = info.maxBatch
            i.pointee.max_seq = info.maxSeq
            i.pointee.max_batch_tokens = info.maxBatchTokens
            i.pointee.tokenizer_sha256 = string(info.tokenizerSHA256)
            i.pointee.version = string(info.version)
            i.pointee.bos_id = info.bosID
            i.pointee.eos_id = info.eosID
            i.pointee.pad_id = info.padID
            i.pointee.network_tokenizer = string(info.networkTokenizer)
            i.pointee.network_tokenizer_sha256 = string(info.networkTokenizerSHA256)
            i.pointee.network_vocab_size = info.networkVocabSize
            i.pointee.admission_state = string(info.admissionState)
            c.info = i
        }
        return c
    }
}

// MARK: - Unpacking

/// protobuf-c allocations draw from this budget; when it runs out, unpack fails cleanly instead of
/// allocating without bound (repeated fields can expand several-fold from their wire size).
private func allocationBudget(forByteCount count: Int) -> Int { 16 * count + 64 * 1024 }

/// Each block carries its size in a header before it: protobuf-c unpacks a string field into a
/// block of exactly its wire length + 1 (for the terminating NUL), so the header is how a string's
/// true length is known when its bytes hold a NUL (see `stringOf`).
private let blockHeader = 16

private func budgetedAlloc(_ data: UnsafeMutableRawPointer?, _ size: Int) -> UnsafeMutableRawPointer? {
    guard let remaining = data?.assumingMemoryBound(to: Int.self), size <= remaining.pointee,
          let block = malloc(blockHeader + size) else { return nil }
    remaining.pointee -= size
    block.storeBytes(of: size, as: Int.self)
    return block + blockHeader
}

private func budgetedFree(_ data: UnsafeMutableRawPointer?, _ pointer: UnsafeMutableRawPointer?) {
    guard let pointer else { return }
    free(pointer - blockHeader)
}

private func unpack<C, T>(
    _ bytes: [UInt8], name: String,
    unpack: (UnsafeMutablePointer<ProtobufCAllocator>?, Int, UnsafePointer<UInt8>?) -> UnsafeMutablePointer<C>?,
    free freeUnpacked: (UnsafeMutablePointer<C>?, UnsafeMutablePointer<ProtobufCAllocator>?) -> Void,
    convert: (C) throws -> T
) throws -> T {
    let budget = allocationBudget(forByteCount: bytes.count)
    var remaining = budget
    return try withUnsafeMutablePointer(to: &remaining) { remainingPointer in
        var allocator = ProtobufCAllocator(alloc: budgetedAlloc, free: budgetedFree,
                                           allocator_data: UnsafeMutableRawPointer(remainingPointer))
        let parsed: UnsafeMutablePointer<C>? = bytes.withUnsafeBufferPointer { buffer in
            var empty: UInt8 = 0
            return withUnsafePointer(to: &empty) { emptyPointer in
                unpack(&allocator, buffer.count, buffer.baseAddress ?? emptyPointer)
            }
        }
        guard let parsed else {
            throw MessageError.malformed(message: name, byteCount: bytes.count, budget: budget)
        }
        defer { freeUnpacked(parsed, &allocator) }
        do {
            return try convert(parsed.pointee)
        } catch let field as StringFieldError {
            throw MessageError.invalidString(message: name, field: field.field, reason: field.reason)
        }
    }
}

private func bytesOf(_ data: ProtobufCBinaryData) -> [UInt8] {
    guard let base = data.data, data.len > 0 else { return [] }
    return Array(UnsafeBufferPointer(start: base, count: data.len))
}

private func arrayOf<T>(_ pointer: UnsafeMutablePointer<T>?, _ count: Int) -> [T] {
    guard let pointer, count > 0 else { return [] }
    return Array(UnsafeBufferPointer(start: pointer, count: count))
}

private func messagesOf<C, T>(_ pointer: UnsafeMutablePointer<UnsafeMutablePointer<C>?>?, _ count: Int,
                              _ convert: (C) throws -> T) rethrows -> [T] {
    guard let pointer, count > 0 else { return [] }
    return try UnsafeBufferPointer(start: pointer, count: count).compactMap { try $0.map { try convert($0.pointee) } }
}

/// A string field that cannot be read exactly (thrown inside a conversion, reported as
/// `MessageError.invalidString` with the message name).
private struct StringFieldError: Error {
    let field: String
    let reason: String
}

/// The default every absent string field points at (protobuf-c's `protobuf_c_empty_string`, not
/// allocated by `budgetedAlloc`, so it has no size header).
private let emptyDefaultString: UnsafeMutablePointer<CChar>? = {
    var auth = Axon__V1__Auth()
    axon__v1__auth__init(&auth)
    return auth.hotkey
}()

/// The exact bytes of an unpacked string field as a String. A field whose bytes hold a NUL, or
/// are not UTF-8, throws: `String(cString:)` would stop at the NUL (or repair the bytes) and
/// silently read different wire strings as the same text.
private func stringOf(_ pointer: UnsafeMutablePointer<CChar>?, field: String) throws -> String {
    guard let pointer, pointer != emptyDefaultString else { return "" }
    let length = UnsafeRawPointer(pointer - blockHeader).load(as: Int.self) - 1
    let bytes = UnsafeRawBufferPointer(start: pointer, count: max(0, length))
    if let nul = bytes.firstIndex(of: 0) {
        throw StringFieldError(field: field, reason: "holds a NUL byte at offset \(nul) of \(length)")
    }
    guard let text = String(validating: bytes, as: UTF8.self) else {
        throw StringFieldError(field: field, reason: "is not valid UTF-8 (\(length) bytes)")
    }
    return text
}

extension Request {
    fileprivate init(c: Axon__V1__Request) throws {
        self.init(id: c.id, method: Method(rawValue: Int32(bitPattern: c.method.rawValue)),
                  timeoutMs: c.timeout_ms, body: bytesOf(c.body),
                  auth: try c.auth.map { a in
                      Auth(hotkey: try stringOf(a.pointee.hotkey, field: "auth.hotkey"), nonce: a.pointee.nonce,
                           uuid: try stringOf(a.pointee.uuid, field: "auth.uuid"), signature: bytesOf(a.pointee.signature))
                  })
    }
}

extension Tensor {
    fileprivate init(c: Axon__V1__Tensor) {
        self.init(buffer: bytesOf(c.buffer), shape: arrayOf(c.shape, c.n_shape),
                  dtype: DataType(rawValue: Int32(bitPattern: c.dtype.rawValue)))
    }
}

extension ForwardRequest {
    fileprivate init(c: Axon__V1__ForwardRequest) {
        self.init(tokens: c.tokens.map { Tensor(c: $0.pointee) },
                  lengths: arrayOf(c.lengths, c.n_lengths),
                  synapses: messagesOf(c.synapses, c.n_synapses) { s in
                      Synapse(type: SynapseType(rawValue: Int32(bitPattern: s.type.rawValue)), topk: s.topk,
                              dtype: DataType(rawValue: Int32(bitPattern: s.dtype.rawValue)),
                              generation: s.generation.map { Generation(c: $0.pointee) })
                  },
                  space: TokenSpace(rawValue: Int32(bitPattern: c.space.rawValue)))
    }
}

extension Generation {
    fileprivate init(c g: Axon__V1__Generation) {
        func present<T>(_ isSet: Bool, _ value: T) -> T? { isSet ? value : nil }
        self.init(
            numToGenerate: present(g._num_to_generate_case == AXON__V1__GENERATION___NUM_TO_GENERATE_NUM_TO_GENERATE,
                                   g.num_to_generate),
            topk: present(g._topk_case == AXON__V1__GENERATION___TOPK_TOPK, g.topk),
            doSample: present(g._do_sample_case == AXON__V1__GENERATION___DO_SAMPLE_DO_SAMPLE, g.do_sample != 0),
            topP: present(g._top_p_case == AXON__V1__GENERATION___TOP_P_TOP_P, g.top_p),
            temperature: present(g._temperature_case == AXON__V1__GENERATION___TEMPERATURE_TEMPERATURE, g.temperature),
            repetitionPenalty: present(
                g._repetition_penalty_case == AXON__V1__GENERATION___REPETITION_PENALTY_REPETITION_PENALTY,
                g.repetition_penalty),
            noRepeatNgramSize: present(
                g._no_repeat_ngram_size_case == AXON__V1__GENERATION___NO_REPEAT_NGRAM_SIZE_NO_REPEAT_NGRAM_SIZE,
                g.no_repeat_ngram_size),
            numBeams: present(g._num_beams_case == AXON__V1__GENERATION___NUM_BEAMS_NUM_BEAMS, g.num_beams),
            lengthPenalty: present(g._length_penalty_case == AXON__V1__GENERATION___LENGTH_PENALTY_LENGTH_PENALTY,
                                   g.length_penalty),
            earlyStopping: present(g._early_stopping_case == AXON__V1__GENERATION___EARLY_STOPPING_EARLY_STOPPING,
                                   g.early_stopping != 0),
            seed: present(g._seed_case == AXON__V1__GENERATION___SEED_SEED, g.seed),
            stopTokens: arrayOf(g.stop_tokens, g.n_stop_tokens))
    }
}

extension Response {
    fileprivate init(c: Axon__V1__Response) throws {
        self.init(id: c.id, code: ReturnCode(rawValue: Int32(bitPattern: c.code.rawValue)),
                  message: try stringOf(c.message, field: "message"))
        if let t = c.timing?.pointee {
            timing = Timing(queueUs: t.queue_us, computeUs: t.compute_us, batchRows: t.batch_rows)
        }
        if let f = c.forward?.pointee {
            forward = ForwardResponse(results: try messagesOf(f.results, f.n_results) { r in
                SynapseResult(type: SynapseType(rawValue: Int32(bitPattern: r.type.rawValue)),
                              code: ReturnCode(rawValue: Int32(bitPattern: r.code.rawValue)),
                              message: try stringOf(r.message, field: "forward.results.message"),
                              tensors: messagesOf(r.tensors, r.n_tensors, Tensor.init(c:)))
            })
        }
        if let i = c.info?.pointee {
            var info = InfoResponse()
            info.hotkey = try stringOf(i.hotkey, field: "info.hotkey")
            info.uid = i.uid
            info.netuid = i.netuid
            info.model = try stringOf(i.model, field: "info.model")
            info.architecture = try stringOf(i.architecture, field: "info.architecture")
            info.vocabSize = i.vocab_size
            info.hiddenSize = i.hidden_size
            info.networkDim = i.network_dim
            info.maxBatch = i.max_batch
            info.maxSeq = i.max_seq
            info.maxBatchTokens = i.max_batch_tokens
            info.tokenizerSHA256 = try stringOf(i.tokenizer_sha256, field: "info.tokenizer_sha256")
            info.version = try stringOf(i.version, field: "info.version")
            info.bosID = i.bos_id
            info.eosID = i.eos_id
            info.padID = i.pad_id
            info.networkTokenizer = try stringOf(i.network_tokenizer, field: "info.network_tokenizer")
            info.networkTokenizerSHA256 = try stringOf(i.network_tokenizer_sha256, field: "info.network_tokenizer_sha256")
            info.networkVocabSize = i.network_vocab_size
            info.admissionState = try stringOf(i.admission_state, field: "info.admission_state")
            self.info = info
        }
    }
}
