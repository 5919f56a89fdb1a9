#!/usr/bin/env python3
"""Exactness fixtures for every model family: tiny random-weight all-F32 GGUFs and their logits.

For llama, qwen2, qwen3 and gemma3 this writes, with the PyPI `gguf` package's GGUFWriter,
Tests/EngineTests/Fixtures/family_<arch>.gguf.fixture (a few layers, a 64-token vocabulary), runs it
in llama.cpp (llama-cpp-python 0.3.36) with an F32 KV cache (type_k = type_v = GGML_TYPE_F32 = 0),
flash attention off and logits at every position, and writes family_<arch>.json with the token rows
and llama.cpp's logits. On an all-F32 file with an F32 cache llama.cpp computes in f32, an exact
reference for llama, qwen2 and qwen3. For gemma3, whose GELU llama.cpp's CPU backend reads from an
fp16 table, the fixture also holds the independent float64 numpy forward (family_reference.py,
exact tanh GELU) and the measured gap between the two.

gemma3 gets 7 layers (6 local, 1 global at il = 5) and a 4-position window, shorter than the rows,
so windowed and full attention and both RoPE bases (local 10,000 by default, global 1e6) matter.

    "$(scripts/venv --llama)" scripts/reference/engine_families.py
"""
import json
import os
import sys

import numpy as np
import gguf
import llama_cpp

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from family_reference import FamilyModel  # noqa: E402

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
FIXTURES = os.path.join(ROOT, "Tests", "EngineTests", "Fixtures")
VOCAB = 64
ROWS = [[5, 17, 33, 2, 60, 41, 8, 8, 29, 11, 50, 3], [1, 44, 23, 62, 7, 19, 36, 12, 58]]
# gemma3 also gets a row longer than the engine's 64-query attention block plus the window, so a
# block's keys start past 0; only its last 8 positions are kept, to keep the fixture small.
LONG_ROW = [(7 * i * i + 3 * i + 1) % 64 for i in range(72)]
LONG_KEPT = list(range(64, 72))

# Shapes per family. head_dim 16 keeps RoPE's rotate-half on whole SIMD vectors (hd/2 = 8);
# gemma3's key_length 16 differs from hidden/heads = 8.
SPECS = {
    "llama":  dict(hidden=32, heads=2, kv=1, ffn=32, layers=2, base=10000.0, tied=False),
    "qwen2":  dict(hidden=32, heads=2, kv=1, ffn=32, layers=2, base=1e6, tied=True, bias=True),
    "qwen3":  dict(hidden=32, heads=2, kv=1, ffn=32, layers=2, base=1e6, tied=True, key_length=16, qk_norm=True),
    "gemma3": dict(hidden=16, heads=2, kv=1, ffn=32, layers=7, base=1e6, tied=True, key_length=16, qk_norm=True,
                   post_norms=True, window=4),
}


def write_gguf(arch, spec, path, rng, vocab=VOCAB, context=128, tokenizer=None, matrix_type=np.float32):
    """`tokenizer(writer)` adds the vocabulary (default: none, ids taken directly); `matrix_type`
    stores the 2-D weights (np.float16 halves a file whose values do not matter)."""
    h, H, KV, f = spec["hidden"], spec["heads"], spec["kv"], spec["ffn"]
    hd = spec.get("key_length", h // H)
    w = gguf.GGUFWriter(path, arch=arch)
    w.add_name(f"tiny {arch}")
    w.add_block_count(spec["layers"])
    w.add_context_length(context)
    w.add_embedding_length(h)
    w.add_feed_forward_length(f)
    w.add_head_count(H)
    w.add_head_count_kv(KV)
    w.add_rope_freq_base(spec["base"])
    w.add_layer_norm_rms_eps(1e-6)
    w.add_vocab_size(vocab)
    if "key_length" in spec:
        w.add_key_length(hd)
        w.add_value_length(hd)
    if "window" in spec:
        w.add_sliding_window(spec["window"])
    if tokenizer is None:
        # No vocabulary: llama.cpp then makes `vocab_size` dummy tokens and takes ids directly.
        w.add_tokenizer_model("none")
    else:
        tokenizer(w)

    def mat(rows, cols, scale):
        return (rng.standard_normal((rows, cols)) * scale).astype(np.float32).astype(matrix_type)

    def norm(n):
        return (1.0 + 0.2 * rng.standard_normal(n)).astype(np.float32)

    w.add_tensor("token_embd.weight", mat(vocab, h, 1.0))
    w.add_tensor("output_norm.weight", norm(h))
    if not spec["tied"]:
        w.add_tensor("output.weight", mat(vocab, h, 0.5))
    for l in range(spec["layers"]):
        p = f"blk.{l}."
        w.add_tensor(p + "attn_norm.weight", norm(h))
        w.add_tensor(p + "attn_q.weight", mat(H * hd, h, 1 / np.sqrt(h)))
        w.add_tensor(p + "attn_k.weight", mat(KV * hd, h, 1 / np.sqrt(h)))
        w.add_tensor(p + "attn_v.weight", mat(KV * hd, h, 1 / np.sqrt(h)))
        if spec.get("bias"):
            w.add_tensor(p + "attn_q.bias", (0.5 * rng.standard_normal(H * hd)).astype(np.float32))
            w.add_tensor(p + "attn_k.bias", (0.5 * rng.standard_normal(KV * hd)).astype(np.float32))
            w.add_tensor(p + "attn_v.bias", (0.5 * rng.standard_normal(KV * hd)).astype(np.float32))
        if spec.get("qk_norm"):
            w.add_tensor(p + "attn_q_norm.weight", norm(hd))
            w.add_tensor(p + "attn_k_norm.weight", norm(hd))
        w.add_tensor(p + "attn_output.weight", mat(h, H * hd, 1 / np.sqrt(H * hd)))
        if spec.get("post_norms"):
            w.add_tensor(p + "post_attention_norm.weight", norm(h))
        w.add_tensor(p + "ffn_norm.weight", norm(h))
        w.add_tensor(p + "ffn_gate.weight", mat(f, h, 1.5 / np.sqrt(h)))
        w.add_tensor(p + "ffn_up.weight", mat(f, h, 1 / np.sqrt(h)))
        w.add_tensor(p + "ffn_down.weight", mat(h, f, 1 / np.sqrt(f)))
        if spec.get("post_norms"):
            w.add_tensor(p + "post_ffw_norm.weight", norm(h))
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()


def llama_logits(path, ids):
    llm = llama_cpp.Llama(model_path=path, n_ctx=128, n_batch=128, n_ubatch=128, n_threads=2, logits_all=True,
                          type_k=0, type_v=0, flash_attn=False, verbose=False)
    llm.eval(ids)
    out = np.asarray(llm.scores[:len(ids)], dtype=np.float64)
    llm.close()
    return out


def rounded(a):
    return [[float(f"{v:.7g}") for v in row] for row in a]


def main():
    rng = np.random.default_rng(20261201)
    for arch, spec in SPECS.items():
        path = os.path.join(FIXTURES, f"family_{arch}.gguf.fixture")
        write_gguf(arch, spec, path, rng)
        numpy_model = FamilyModel(path)
        rows = []
        worst_llama_numpy = 0.0
        for ids in ROWS + ([LONG_ROW] if arch == "gemma3" else []):
            kept = LONG_KEPT if ids is LONG_ROW else list(range(len(ids)))
            llama = llama_logits(path, ids)[kept]
            ref = numpy_model.logits(numpy_model.forward(ids))[kept]
            gap = float(np.abs(llama - ref).max())
            worst_llama_numpy = max(worst_llama_numpy, gap)
            row = {"ids": ids, "positions": kept, "llama_logits": rounded(llama)}
            if arch == "gemma3":
                row["numpy_logits"] = rounded(ref)
            rows.append(row)
            print(f"{arch}: row of {len(ids)}: max |llama.cpp - numpy f64| = {gap:.3g}, max |logit| {np.abs(ref).max():.3g}")
        fixture = {
            "generator": f"scripts/reference/engine_families.py (gguf {gguf.__version__ if hasattr(gguf, '__version__') else ''}, "
                         f"llama-cpp-python {llama_cpp.__version__}, F32 KV cache, flash attention off)",
            "architecture": arch,
            "llama_numpy_max_gap": float(f"{worst_llama_numpy:.4g}"),
            "rows": rows,
        }
        out = os.path.join(FIXTURES, f"family_{arch}.json")
        with open(out, "w") as f:
            json.dump(fixture, f, separators=(",", ":"))
        print(f"wrote {path} ({os.path.getsize(path)} bytes) and {out} ({os.path.getsize(out)} bytes)")


if __name__ == "__main__":
    main()
