#!/usr/bin/env python3
"""Writes the GGUF module's fixtures with the PyPI `gguf` package as the reference.

    "$(scripts/venv)" scripts/reference/gguf_fixtures.py [--model PATH]

Outputs (Tests/GGUFTests/Fixtures/):
  synthetic.gguf              written by gguf.GGUFWriter: every metadata value type (including a
                              nested array), alignment 64, and tensors of every dequantizable type
                              (random data quantized with gguf.quants.quantize where the package
                              can; random blocks with sane f16 scales for Q4_K/Q6_K; fully random
                              bytes for every quantized type, so odd scales (NaN, inf, subnormal)
                              are covered; special f16/bf16/f32 bit patterns) plus a few types
                              that cannot be dequantized.
  synthetic_expected.json     metadata as read back by gguf.GGUFReader, the tensor table, and for
                              each dequantizable tensor its element range in the blob below.
  synthetic_expected.f32      gguf.quants.dequantize output, little-endian f32, concatenated.
  model_expected.json         facts about the default model read by gguf.GGUFReader, and the
                              element ranges of the dequantized row slices in the blob below.
  model_slices.f32            first and last rows of one tensor of each type in the model.
  quant_sizes.json            gguf.constants.GGML_QUANT_SIZES (block size, bytes per block).

Scalars in JSON are strings (integers in decimal, floats as their IEEE bit pattern in hex) so
that every value survives JSON exactly.
"""
import argparse
import json
import os
import struct
import sys

import numpy as np
import gguf
from gguf import GGMLQuantizationType as T, GGUFValueType as V
from gguf.quants import quantize, dequantize

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
OUT = os.path.join(ROOT, "Tests", "GGUFTests", "Fixtures")
DEFAULT_MODEL = os.path.join(ROOT, "Models", "SmolLM2-135M-Instruct.Q4_1.gguf")

rng = np.random.default_rng(20261125)


def f32_bits(x: float) -> str:
    return "0x%08x" % struct.unpack("<I", struct.pack("<f", x))[0]


def f64_bits(x: float) -> str:
    return "0x%016x" % struct.unpack("<Q", struct.pack("<d", x))[0]


TYPE_NAMES = {V.UINT8: "u8", V.INT8: "i8", V.UINT16: "u16", V.INT16: "i16", V.UINT32: "u32", V.INT32: "i32",
              V.FLOAT32: "f32", V.BOOL: "bool", V.STRING: "string", V.UINT64: "u64", V.INT64: "i64",
              V.FLOAT64: "f64", V.ARRAY: "array"}


def encode_scalar(vtype, value):
    if vtype == V.FLOAT32:
        return f32_bits(float(value))
    if vtype == V.FLOAT64:
        return f64_bits(float(value))
    if vtype == V.BOOL:
        return "true" if bool(value) else "false"
    if vtype == V.STRING:
        return value
    return str(int(value))


def encode_written(vtype, value, sub=None):
    """Expected encoding of a value we handed to GGUFWriter (used only for nested arrays,
    which GGUFReader cannot decode)."""
    if vtype == V.ARRAY:
        return {"type": "array", "value": [encode_written(sub[0], v, sub[1:]) for v in value]}
    return {"type": TYPE_NAMES[vtype], "value": encode_scalar(vtype, value)}


def encode_field(field):
    """A metadata field as gguf.GGUFReader reads it."""
    main = field.types[0]
    if main != V.ARRAY:
        return {"type": TYPE_NAMES[main], "value": encode_scalar(main, field.contents())}
    sub = field.types[-1]
    return {"type": "array", "value": [{"type": TYPE_NAMES[sub], "value": encode_scalar(sub, v)} for v in field.contents()]}


# ---------------------------------------------------------------------------------------------
# (a) synthetic file

def random_blocks(qtype, n_blocks):
    _, type_size = gguf.GGML_QUANT_SIZES[qtype]
    return rng.integers(0, 256, size=(n_blocks, type_size), dtype=np.uint8)


def sane_half(n):
    return rng.uniform(0.001, 0.05, size=n).astype(np.float16).view(np.uint8).reshape(n, 2)


def k_quant_blocks(qtype, n_blocks):
    """Random K-quant blocks whose f16 scales are sane (the package cannot quantize these)."""
    blocks = random_blocks(qtype, n_blocks)
    if qtype == T.Q4_K:            # d, dmin first
        blocks[:, 0:2] = sane_half(n_blocks)
        blocks[:, 2:4] = sane_half(n_blocks)
    elif qtype == T.Q6_K:          # d last
        blocks[:, 208:210] = sane_half(n_blocks)
    else:
        raise ValueError(qtype)
    return blocks


def special_halves():
    """Every zero/subnormal and inf/NaN pattern, a sweep of mantissas over all exponents, and randoms."""
    bits = set()
    for sign in (0, 0x8000):
        for m in range(1024):
            bits.add(sign | m)                # exponent 0
            bits.add(sign | 0x7C00 | m)       # exponent 31
        for e in range(1, 31):
            for m in (0, 1, 2, 3, 0x1FF, 0x200, 0x201, 0x3FE, 0x3FF):
                bits.add(sign | (e << 10) | m)
    bits.update(int(x) for x in rng.integers(0, 65536, size=1500))
    arr = np.array(sorted(bits), dtype=np.uint16)
    pad = (-len(arr)) % 64
    return np.concatenate([arr, np.zeros(pad, dtype=np.uint16)])


def special_floats():
    vals = [0.0, -0.0, 1.0, -1.0, float("inf"), float("-inf"), 1e-45, -1e-45, 1.17549435e-38, 3.4028235e38]
    bits = [struct.unpack("<I", struct.pack("<f", v))[0] for v in vals]
    bits += [0x7FC00000, 0x7F800001, 0xFFC00001, 0x7FBFFFFF]   # quiet, signalling, payload NaNs
    arr = np.array(bits, dtype=np.uint32)
    pad = (-len(arr)) % 16
    return np.concatenate([arr, rng.integers(0, 2**32, size=pad, dtype=np.uint32)]).view(np.float32)


def build_synthetic():
    path = os.path.join(OUT, "synthetic.gguf.fixture")
    w = gguf.GGUFWriter(path, arch="synthetic")
    w.add_custom_alignment(64)
    w.add_name("synthetic fixture")
    w.add_uint8("test.u8", 200)
    w.add_int8("test.i8", -100)
    w.add_uint16("test.u16", 60000)
    w.add_int16("test.i16", -30000)
    w.add_uint32("test.u32", 4000000000)
    w.add_int32("test.i32", -2000000000)
    w.add_float32("test.f32", 0.1)
    w.add_bool("test.bool", True)
    w.add_string("test.string", "héllo, wörld ✓ 🚀")
    w.add_uint64("test.u64", 2**64 - 1)
    w.add_int64("test.i64", -(2**63))
    w.add_float64("test.f64", -1.0 / 3.0)
    w.add_array("test.array_i32", [1, -2, 3, -4])
    w.add_array("test.array_string", ["a", "bc", "", "déf"])
    w.add_key_value("test.array_f32", [0.5, -1.25, 3.0e-8], V.ARRAY, sub_type=V.FLOAT32)
    nested = [[1, 2, 3], [4], [5, 6]]
    w.add_key_value("test.nested", nested, V.ARRAY, sub_type=V.ARRAY)
    written_nested = encode_written(V.ARRAY, nested, [V.ARRAY, V.INT32])

    tensors = []   # (name, qtype, raw bytes array with shape (..., row bytes), numpy element shape)

    def add(name, qtype, data_bytes, shape):
        tensors.append((name, qtype, data_bytes, shape))

    def normal(shape):
        return rng.standard_normal(size=shape).astype(np.float32)

    # Quantized by the reference package from random data.
    x = normal((3, 512))
    add("f32.random", T.F32, x.view(np.uint8), x.shape)
    add("f16.random", T.F16, quantize(x, T.F16).view(np.uint8), x.shape)
    for qtype in (T.BF16, T.Q8_0, T.Q4_0, T.Q4_1, T.Q5_0, T.Q5_1):
        add(f"{qtype.name.lower()}.quantized", qtype, quantize(x, qtype), x.shape)
    # A 3-D and a 4-D tensor.
    x3 = normal((2, 3, 64))
    add("q8_0.three_dims", T.Q8_0, quantize(x3, T.Q8_0), x3.shape)
    x4 = normal((2, 1, 2, 32))
    add("q4_1.four_dims", T.Q4_1, quantize(x4, T.Q4_1), x4.shape)
    # K-quants: random blocks with sane scales (3 rows of 512).
    for qtype in (T.Q4_K, T.Q6_K):
        blocks = k_quant_blocks(qtype, 6)
        add(f"{qtype.name.lower()}.random_blocks", qtype, blocks.reshape(3, -1), (3, 512))
    # Fully random bytes for every quantized type: arbitrary scales (NaN, inf, subnormal).
    for qtype in (T.Q8_0, T.Q4_0, T.Q4_1, T.Q5_0, T.Q5_1, T.Q4_K, T.Q6_K):
        block_size, _ = gguf.GGML_QUANT_SIZES[qtype]
        n_blocks = 512 // block_size
        add(f"{qtype.name.lower()}.random_bytes", qtype, random_blocks(qtype, n_blocks).reshape(2, -1), (2, 256))
    # Bit patterns.
    h = special_halves()
    add("f16.special", T.F16, h.view(np.uint8).reshape(-1, 128), (len(h) // 64, 64))
    add("bf16.special", T.BF16, h.view(np.uint8).reshape(-1, 128), (len(h) // 64, 64))
    f = special_floats()
    add("f32.special", T.F32, f.view(np.uint8).reshape(1, -1), (1, len(f)))
    # Types that load but cannot be dequantized.
    for qtype in (T.Q2_K, T.Q5_K, T.IQ4_NL):
        block_size, _ = gguf.GGML_QUANT_SIZES[qtype]
        add(f"{qtype.name.lower()}.unsupported", qtype, random_blocks(qtype, 256 // block_size * 2).reshape(2, -1), (2, 256))

    for name, qtype, data, shape in tensors:
        raw = np.ascontiguousarray(data).view(np.uint8).reshape(shape[:-1] + (-1,))
        w.add_tensor(name, raw, raw_dtype=qtype)
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()

    # Read back with the reference reader and dequantize with the reference package.
    r = gguf.GGUFReader(path)
    metadata = []
    for field in r.fields.values():
        if field.name.startswith("GGUF."):
            continue   # the reader's pseudo-fields for the header
        entry = written_nested if field.name == "test.nested" else encode_field(field)
        metadata.append({"key": field.name, **entry})
    blob = []
    position = 0
    table = []
    for t in r.tensors:
        entry = {"name": t.name, "type": t.tensor_type.name, "dims": [int(d) for d in t.shape],
                 "offset": int(t.data_offset - r.data_offset), "bytes": int(t.n_bytes), "elements": int(t.n_elements)}
        if not t.name.endswith(".unsupported"):
            values = dequantize(np.asarray(t.data), t.tensor_type).astype(np.float32).reshape(-1)
            assert values.size == t.n_elements
            entry["expected_start"] = position
            blob.append(values)
            position += values.size
        table.append(entry)
    np.concatenate(blob).astype("<f4").tofile(os.path.join(OUT, "synthetic_expected.f32"))
    header = {"version": int(r.fields["GGUF.version"].contents()), "alignment": int(r.alignment),
              "data_offset": int(r.data_offset)}
    with open(os.path.join(OUT, "synthetic_expected.json"), "w") as fh:
        json.dump({"generator": f"gguf {gguf_version()}, numpy {np.__version__}", **header,
                   "metadata": metadata, "tensors": table}, fh, indent=1)


# ---------------------------------------------------------------------------------------------
# (b) default model

def build_model(model_path):
    r = gguf.GGUFReader(model_path)
    metadata = []
    for field in r.fields.values():
        if field.name.startswith("GGUF."):
            continue
        main = field.types[0]
        if main == V.ARRAY:
            sub = field.types[-1]
            values = field.contents()
            metadata.append({"key": field.name, "type": "array", "element_type": TYPE_NAMES[sub], "count": len(values),
                             "first": [encode_scalar(sub, v) for v in values[:3]],
                             "last": [encode_scalar(sub, v) for v in values[-3:]]})
        else:
            metadata.append({"key": field.name, **encode_field(field)})
    tensors = [{"name": t.name, "type": t.tensor_type.name, "dims": [int(d) for d in t.shape],
                "offset": int(t.data_offset - r.data_offset), "bytes": int(t.n_bytes)} for t in r.tensors]
    parameter_count = sum(int(t.n_elements) for t in r.tensors)

    # First and last three rows of the first tensor of each type, plus the last block's down projection.
    chosen = {}
    for t in r.tensors:
        chosen.setdefault(t.tensor_type, t)
    chosen_names = [t.name for t in chosen.values()]
    last_q = [t for t in r.tensors if t.name == "blk.29.ffn_down.weight"]
    slices = []
    blob = []
    position = 0
    for t in list(chosen.values()) + last_q:
        rows = np.asarray(t.data).reshape(-1, np.asarray(t.data).shape[-1])   # byte rows (or element rows)
        n_rows = rows.shape[0]
        picks = sorted(set(list(range(min(3, n_rows))) + list(range(max(0, n_rows - 3), n_rows))))
        for row in picks:
            values = dequantize(rows[row], t.tensor_type).astype(np.float32).reshape(-1)
            slices.append({"tensor": t.name, "type": t.tensor_type.name, "row": row, "count": int(values.size),
                           "expected_start": position})
            blob.append(values)
            position += values.size
    np.concatenate(blob).astype("<f4").tofile(os.path.join(OUT, "model_slices.f32"))
    facts = {
        "generator": f"gguf {gguf_version()}, numpy {np.__version__}",
        "file": os.path.basename(model_path),
        "file_size": os.path.getsize(model_path),
        "version": int(r.fields["GGUF.version"].contents()),
        "alignment": int(r.alignment),
        "data_offset": int(r.data_offset),
        "tensor_count": len(r.tensors),
        "metadata_count": len(metadata),
        "parameter_count": parameter_count,
        "metadata": metadata,
        "tensors": tensors,
        "slice_tensors": chosen_names + [t.name for t in last_q],
        "slices": slices,
    }
    with open(os.path.join(OUT, "model_expected.json"), "w") as fh:
        json.dump(facts, fh, indent=1)


def gguf_version():
    from importlib.metadata import version
    return version("gguf")


def main():
    np.seterr(invalid="ignore", over="ignore")   # random scales include inf and NaN on purpose
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", default=DEFAULT_MODEL)
    args = ap.parse_args()
    os.makedirs(OUT, exist_ok=True)
    build_synthetic()
    with open(os.path.join(OUT, "quant_sizes.json"), "w") as fh:
        json.dump({t.name: {"id": int(t.value), "block_size": v[0], "type_size": v[1]}
                   for t, v in gguf.GGML_QUANT_SIZES.items()}, fh, indent=1)
    if not os.path.exists(args.model):
        sys.exit(f"default model missing at {args.model}: run Models/fetch")
    build_model(args.model)
    total = sum(os.path.getsize(os.path.join(OUT, f)) for f in os.listdir(OUT))
    print(f"wrote fixtures to {OUT} ({total} bytes)")


if __name__ == "__main__":
    main()
