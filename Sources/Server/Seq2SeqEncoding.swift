// The wire encoding of a TEXT_SEQ_2_SEQ answer (docs/PROTOCOL.md, "TEXT_SEQ_2_SEQ").
import Wire

enum Seq2SeqEncoding {
    /// The id that pads a row after its last generated token.
    static let padding: Int32 = -1

    /// `tensors[0]`: the generated ids, INT32 `[batch, N]` with N the longest row, each row
    /// right-padded with −1; `tensors[1]`: each row's length, INT32 `[batch]`. The prompt is not repeated.
    static func tensors(_ outputs: [[Int32]]) -> [Tensor] {
        let width = outputs.map(\.count).max() ?? 0
        var ids = [Int32](repeating: padding, count: outputs.count * width)
        for (row, output) in outputs.enumerated() {
            ids.replaceSubrange((row * width)..<(row * width + output.count), with: output)
        }
        return [int32Tensor(ids, shape: [outputs.count, width]), int32Tensor(outputs.map { Int32($0.count) }, shape: [outputs.count])]
    }

    /// Little-endian INT32 bytes of `values`, row-major in `shape`.
    private static func int32Tensor(_ values: [Int32], shape: [Int]) -> Tensor {
        var bytes = [UInt8](repeating: 0, count: values.count * 4)
        bytes.withUnsafeMutableBytes { raw in
            for (index, value) in values.enumerated() { raw.storeBytes(of: value.littleEndian, toByteOffset: index * 4, as: Int32.self) }
        }
        return Tensor(buffer: bytes, shape: shape.map(Int64.init), dtype: .int32)
    }
}
