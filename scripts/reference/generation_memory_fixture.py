#!/usr/bin/env python3
"""The model of the generation memory test (Tests/ServerTests/GenerationMemoryTests.swift).

Writes Tests/ServerTests/Fixtures/generation_memory.gguf.fixture with engine_families.py's writer: a
random-weight llama-family GGUF, F16 matrices (their values do not matter, only the shapes), context
1,024 so a 512-token prompt plus 256 generated tokens fits, and a SentencePiece-style byte vocabulary
(<unk>, <s>, </s>, then the 256 byte tokens) so `axon serve` can load a tokenizer; the test sends
model-space ids, never text.

The shapes make the KV cache, not the weights, the memory that matters: 4 layers x 2 KV heads x
head_dim 64 (attention.key_length, wider than hidden 32 / 2 heads) is 4 · 2 · 2 · 64 · 4 =
4,096 bytes of f32 cache per token, and a 16-position block of one layer 16,384 bytes.

    .venv/bin/python scripts/reference/generation_memory_fixture.py
"""
import os
import sys

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from engine_families import ROOT, write_gguf  # noqa: E402

PATH = os.path.join(ROOT, "Tests", "ServerTests", "Fixtures", "generation_memory.gguf.fixture")
SPEC = dict(hidden=32, heads=2, kv=2, ffn=64, layers=4, base=10000.0, tied=True, key_length=64)
CONTEXT = 1024
TOKENS = ["<unk>", "<s>", "</s>"] + [f"<0x{b:02X}>" for b in range(256)]
# llama.cpp's token types: 2 unknown, 3 control, 6 byte.
TYPES = [2, 3, 3] + [6] * 256


def tokenizer(w):
    w.add_tokenizer_model("llama")
    w.add_token_list(TOKENS)
    w.add_token_scores([0.0] * len(TOKENS))
    w.add_token_types(TYPES)
    w.add_bos_token_id(1)
    w.add_eos_token_id(2)
    w.add_unk_token_id(0)


def main():
    write_gguf("llama", SPEC, PATH, np.random.default_rng(20261202), vocab=len(TOKENS), context=CONTEXT,
               tokenizer=tokenizer, matrix_type=np.float16)
    print(f"wrote {PATH} ({os.path.getsize(PATH)} bytes)")


if __name__ == "__main__":
    main()
