/// Everything that can go wrong opening a GGUF file or dequantizing one of its tensors.
///
/// Each case names the offending key or tensor (or the byte offset when no name has been read
/// yet) and carries the observed and expected values, so the message tells the user what to fix.
public enum GGUFError: Error, CustomStringConvertible, Equatable, Sendable {
    // Opening.
    case cannotOpen(path: String, reason: String)
    case cannotMap(path: String, reason: String)

    // Header.
    case truncatedHeader(fileSize: Int, needed: Int)
    case badMagic(found: [UInt8])
    case unsupportedVersion(UInt32)
    case tooManyMetadataKeys(count: UInt64, limit: UInt64)
    case tooManyTensors(count: UInt64, limit: UInt64)

    // Metadata. `context` reads like "key 'general.name'" or "key #3" (when the key itself is bad),
    // with "[i]" appended for array elements.
    case truncatedMetadata(context: String, offset: Int, needed: Int, remaining: Int)
    case truncatedString(context: String, offset: Int, length: UInt64, remaining: Int)
    case stringTooLong(context: String, length: UInt64, limit: Int)
    case invalidUTF8(context: String, offset: Int)
    case invalidValueType(context: String, typeID: UInt32)
    case arrayTooLong(context: String, count: UInt64, limit: Int)
    case truncatedArray(context: String, count: UInt64, minimumBytes: UInt64, remaining: Int)
    case arrayNestingTooDeep(context: String, limit: Int)
    case duplicateKey(String)
    case metadataTypeMismatch(key: String, expected: String, found: String)
    case invalidAlignment(Int)

    // Tensor infos. `tensor` is the name, or "#i" if the name could not be read.
    case truncatedTensorInfo(tensor: String, offset: Int, needed: Int, remaining: Int)
    case duplicateTensor(String)
    case invalidDimensionCount(tensor: String, count: UInt32, maximum: Int)
    case invalidDimension(tensor: String, index: Int, value: UInt64)
    case elementCountOverflow(tensor: String, dims: [UInt64])
    case unknownTensorType(tensor: String, typeID: UInt32)
    case rowNotBlockMultiple(tensor: String, type: GGMLType, rowLength: Int, blockSize: Int)

    // Tensor data placement (offsets are relative to the data section).
    case misalignedTensorOffset(tensor: String, offset: UInt64, alignment: Int)
    case tensorOffsetOutOfRange(tensor: String, offset: UInt64, dataSize: Int)
    case truncatedTensorData(tensor: String, end: UInt64, dataSize: Int)
    case overlappingTensors(first: String, firstEnd: Int, second: String, secondOffset: Int)

    // Dequantization.
    case unsupportedTensorType(tensor: String, type: GGMLType)
    case unsupportedDequantization(type: GGMLType)
    case outputSizeMismatch(tensor: String, elementCount: Int, outputCount: Int)
    case countNotBlockMultiple(type: GGMLType, count: Int)
    case rawBufferTooSmall(type: GGMLType, count: Int, needed: Int, available: Int)

    public var description: String {
        switch self {
        case .cannotOpen(let path, let reason):
            return "cannot open GGUF file '\(path)': \(reason)"
        case .cannotMap(let path, let reason):
            return "cannot memory-map GGUF file '\(path)': \(reason)"
        case .truncatedHeader(let fileSize, let needed):
            return "truncated GGUF header: the file has \(fileSize) bytes, the header needs \(needed)"
        case .badMagic(let found):
            let hex = found.map { String($0, radix: 16) }.joined(separator: " ")
            return "not a GGUF file: magic bytes are [\(hex)], expected [47 47 55 46] (\"GGUF\")"
        case .unsupportedVersion(let v):
            return v == 1
                ? "unsupported GGUF version 1 (GGUFv1 is obsolete): only versions 2 and 3 are supported; re-convert the model"
                : "unsupported GGUF version \(v): only versions 2 and 3 are supported"
        case .tooManyMetadataKeys(let count, let limit):
            return "the header claims \(count) metadata keys, but at most \(limit) fit in the rest of the file (truncated or corrupt)"
        case .tooManyTensors(let count, let limit):
            return "the header claims \(count) tensors, but at most \(limit) fit in the rest of the file (truncated or corrupt)"
        case .truncatedMetadata(let context, let offset, let needed, let remaining):
            return "truncated metadata at \(context) (byte \(offset)): needs \(needed) more bytes, \(remaining) remain"
        case .truncatedString(let context, let offset, let length, let remaining):
            return "truncated string at \(context) (byte \(offset)): length \(length) exceeds the \(remaining) bytes remaining"
        case .stringTooLong(let context, let length, let limit):
            return "string at \(context) has length \(length), more than the limit of \(limit) bytes"
        case .invalidUTF8(let context, let offset):
            return "string at \(context) (byte \(offset)) is not valid UTF-8"
        case .invalidValueType(let context, let typeID):
            return "\(context) has invalid value type \(typeID), expected 0...12"
        case .arrayTooLong(let context, let count, let limit):
            return "array at \(context) has \(count) elements, more than the limit of \(limit)"
        case .truncatedArray(let context, let count, let minimumBytes, let remaining):
            return "array at \(context) claims \(count) elements (at least \(minimumBytes) bytes) but only \(remaining) bytes remain"
        case .arrayNestingTooDeep(let context, let limit):
            return "array at \(context) nests deeper than \(limit) levels"
        case .duplicateKey(let key):
            return "duplicate metadata key '\(key)'"
        case .metadataTypeMismatch(let key, let expected, let found):
            return "metadata key '\(key)' has type \(found), expected \(expected)"
        case .invalidAlignment(let value):
            return "general.alignment is \(value), expected a power of two"
        case .truncatedTensorInfo(let tensor, let offset, let needed, let remaining):
            return "truncated tensor info for tensor '\(tensor)' (byte \(offset)): needs \(needed) more bytes, \(remaining) remain"
        case .duplicateTensor(let name):
            return "duplicate tensor name '\(name)'"
        case .invalidDimensionCount(let tensor, let count, let maximum):
            return "tensor '\(tensor)' has \(count) dimensions, expected 1...\(maximum)"
        case .invalidDimension(let tensor, let index, let value):
            return "tensor '\(tensor)' dimension \(index) is \(value), expected 1...\(Int64.max)"
        case .elementCountOverflow(let tensor, let dims):
            return "tensor '\(tensor)' with shape \(dims) has more elements or bytes than fit in 63 bits"
        case .unknownTensorType(let tensor, let typeID):
            return "tensor '\(tensor)' has unknown ggml type id \(typeID)"
        case .rowNotBlockMultiple(let tensor, let type, let rowLength, let blockSize):
            return "tensor '\(tensor)' of type \(type.name) has rows of \(rowLength) elements, not a multiple of the block size \(blockSize)"
        case .misalignedTensorOffset(let tensor, let offset, let alignment):
            return "tensor '\(tensor)' has offset \(offset), not a multiple of the alignment \(alignment)"
        case .tensorOffsetOutOfRange(let tensor, let offset, let dataSize):
            return "tensor '\(tensor)' has offset \(offset), beyond the data section of \(dataSize) bytes"
        case .truncatedTensorData(let tensor, let end, let dataSize):
            return "tensor '\(tensor)' data ends at \(end), but the data section has only \(dataSize) bytes (file truncated?)"
        case .overlappingTensors(let first, let firstEnd, let second, let secondOffset):
            return "tensor '\(second)' starts at offset \(secondOffset), inside tensor '\(first)' which ends at \(firstEnd)"
        case .unsupportedTensorType(let tensor, let type):
            return "tensor '\(tensor)' has type \(type.name), which cannot be dequantized (supported: \(GGMLType.dequantizableNames))"
        case .unsupportedDequantization(let type):
            return "type \(type.name) cannot be dequantized (supported: \(GGMLType.dequantizableNames))"
        case .outputSizeMismatch(let tensor, let elementCount, let outputCount):
            return "tensor '\(tensor)' has \(elementCount) elements, but the output buffer holds \(outputCount)"
        case .countNotBlockMultiple(let type, let count):
            return "cannot dequantize \(count) elements of \(type.name): not a multiple of the block size \(type.blockSize)"
        case .rawBufferTooSmall(let type, let count, let needed, let available):
            return "dequantizing \(count) elements of \(type.name) needs \(needed) bytes, the raw buffer has \(available)"
        }
    }
}

extension GGMLType {
    static var dequantizableNames: String {
        allCases.filter(\.isDequantizable).map(\.name).joined(separator: ", ")
    }
}
