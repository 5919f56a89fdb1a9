#!/usr/bin/env python3
"""Independent fp32 reference for the Engine: a numpy forward pass (float64 accumulation) of a
llama-architecture GGUF, with weights dequantized by the PyPI `gguf` package.

Writes Tests/EngineTests/Fixtures/reference_forward.json: a ragged batch of token rows (prose and
code, tokenized by HF `tokenizers` built from the GGUF vocabulary), and for chosen positions of
each row the top-64 logits (ids and values) and the full hidden state after the final norm.

    "$(scripts/venv)" scripts/reference/engine_reference.py [--model PATH]
"""
import argparse
import json
import os

import numpy as np
import gguf
from tokenizers import Tokenizer, models, pre_tokenizers

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
DEFAULT_MODEL = os.path.join(ROOT, "Models", "SmolLM2-135M-Instruct.Q4_1.gguf")
OUT = os.path.join(ROOT, "Tests", "EngineTests", "Fixtures", "reference_forward.json")
TOP_K = 64

PROSE = (
    "The lighthouse keeper climbed the spiral stairs every evening at dusk, counting the steps as "
    "his father had taught him. There were one hundred and twelve of them, worn smooth in the middle "
    "by a century of boots. At the top he trimmed the wick, polished the great lens with a soft cloth, "
    "and watched the first beam sweep out across the water. Ships he would never meet passed safely "
    "because of that light, and he found a quiet pride in the thought. In winter the storms came in "
    "from the north, heavy with sleet, and the waves threw spray high enough to rattle the windows of "
    "the lamp room. On those nights he did not sleep. He sat beside the stove with a pot of tea and "
    "the logbook open on his knees, writing down the wind, the pressure and the hour of every passing "
    "vessel. The entries were short and plain: a trawler heading home at two, a cargo ship riding low "
    "at half past four, nothing at all until dawn. Years later, when the light was automated and the "
    "keeper's cottage became a small museum, visitors would read those pages and wonder what kind of "
    "man could spend so many nights alone with the sea. The answer, his daughter said, was simple. He "
    "was never alone. He had the sea, the light, the ships and the birds that nested in the cliffs "
    "below the tower, and he knew each of them the way other people know their neighbours. When he "
    "retired he moved to a town inland, far from any coast, and planted a garden full of tall flowers. "
    "Every evening at dusk he still looked up, out of habit, as if waiting for a beam of light to cross "
    "the sky. Sometimes the neighbours saw him standing at the gate, perfectly still, listening to "
    "something none of them could hear. Then he would smile, shake his head, and go back inside to "
    "write a few lines in a new logbook, one that recorded the weather, the flowers and the birds. "
    "The museum keeps that second logbook too, in a glass case beside the first, and people say that "
    "the handwriting in both is exactly the same, steady and careful, from the first page to the last. "
    "Nobody knows who wrote the short poem pinned to the wall of the lamp room, although many have "
    "guessed. It speaks of a lantern that does not ask who is out on the water, only that they see it "
    "and come home. Children who visit the museum like to copy it into their notebooks, and the "
    "teachers who bring them often stay behind to read it twice. The lens itself was sold long ago to "
    "a collector abroad, but a photograph of it hangs above the stairs, catching the afternoon sun so "
    "that for a few minutes each day the small room fills with scattered rainbows, as if the old "
    "light had found one more way to shine for anyone who cared to look."
)
CODE = (
    "def fibonacci(n: int) -> list[int]:\n"
    "    \"\"\"Return the first n Fibonacci numbers.\"\"\"\n"
    "    values = [0, 1]\n"
    "    while len(values) < n:\n"
    "        values.append(values[-1] + values[-2])\n"
    "    return values[:n]\n\n"
    "for i, v in enumerate(fibonacci(20)):\n"
    "    print(f\"{i:3d}: {v}\")\n"
)
SHORT = "Paris is the capital of France. Berlin is the capital of"


def field(reader, key):
    f = reader.fields.get(key)
    return None if f is None else f.contents()


def build_tokenizer(reader):
    tokens = field(reader, "tokenizer.ggml.tokens")
    merges = [tuple(m.split(" ", 1)) for m in field(reader, "tokenizer.ggml.merges")]
    vocab = {t: i for i, t in enumerate(tokens)}
    tok = Tokenizer(models.BPE(vocab, merges))
    tok.pre_tokenizer = pre_tokenizers.Sequence([
        pre_tokenizers.Digits(individual_digits=True),
        pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=True),
    ])
    return tok


class Model:
    def __init__(self, path):
        r = gguf.GGUFReader(path)
        self.reader = r
        arch = field(r, "general.architecture")
        g = lambda k: field(r, f"{arch}.{k}")
        self.n_layer = int(g("block_count"))
        self.dim = int(g("embedding_length"))
        self.n_head = int(g("attention.head_count"))
        self.n_kv = int(g("attention.head_count_kv"))
        self.head_dim = self.dim // self.n_head
        self.eps = float(g("attention.layer_norm_rms_epsilon"))
        self.base = float(g("rope.freq_base"))
        self.w = {}
        for t in r.tensors:
            self.w[t.name] = np.asarray(gguf.quants.dequantize(t.data, t.tensor_type), dtype=np.float32)
        self.emb = self.w["token_embd.weight"]              # (vocab, dim)
        self.out = self.w.get("output.weight", self.emb)    # tied when absent

    def rmsnorm(self, x, w):
        return x / np.sqrt(np.mean(x * x, axis=-1, keepdims=True) + self.eps) * w.astype(np.float64)

    def forward(self, ids):
        """One row alone: positions 0..<T, causal. Returns the final-normed hidden states (T, dim)."""
        T, hd = len(ids), self.head_dim
        x = self.emb[np.asarray(ids)].astype(np.float64)
        inv = self.base ** (-np.arange(0, hd, 2, dtype=np.float64) / hd)
        ang = np.arange(T, dtype=np.float64)[:, None] * inv[None, :]
        cos, sin = np.cos(ang)[:, None, :], np.sin(ang)[:, None, :]

        def rope(v):  # adjacent pairs (x[2i], x[2i+1]), as llama-architecture GGUF files expect
            a, b = v[..., 0::2], v[..., 1::2]
            out = np.empty_like(v)
            out[..., 0::2] = a * cos - b * sin
            out[..., 1::2] = a * sin + b * cos
            return out

        mask = np.triu(np.ones((T, T), dtype=bool), k=1)
        group = self.n_head // self.n_kv
        for l in range(self.n_layer):
            W = lambda n: self.w[f"blk.{l}.{n}.weight"].astype(np.float64)
            n = self.rmsnorm(x, self.w[f"blk.{l}.attn_norm.weight"])
            q = rope((n @ W("attn_q").T).reshape(T, self.n_head, hd))
            k = rope((n @ W("attn_k").T).reshape(T, self.n_kv, hd))
            v = (n @ W("attn_v").T).reshape(T, self.n_kv, hd)
            o = np.empty((T, self.n_head, hd))
            for h in range(self.n_head):
                s = q[:, h] @ k[:, h // group].T / np.sqrt(hd)
                s[mask] = -np.inf
                p = np.exp(s - s.max(axis=1, keepdims=True))
                p /= p.sum(axis=1, keepdims=True)
                o[:, h] = p @ v[:, h // group]
            x = x + o.reshape(T, self.dim) @ W("attn_output").T
            m = self.rmsnorm(x, self.w[f"blk.{l}.ffn_norm.weight"])
            gate, up = m @ W("ffn_gate").T, m @ W("ffn_up").T
            x = x + (gate / (1.0 + np.exp(-gate)) * up) @ W("ffn_down").T
        return self.rmsnorm(x, self.w["output_norm.weight"])

    def logits(self, hidden_rows):
        return hidden_rows @ self.out.astype(np.float64).T


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--model", default=DEFAULT_MODEL)
    args = ap.parse_args()
    model = Model(args.model)
    tok = build_tokenizer(model.reader)

    prose = tok.encode(PROSE).ids
    assert len(prose) >= 512, len(prose)
    rows = [
        prose[:512],                      # the longest row: 512 tokens of prose
        tok.encode(CODE).ids,             # code
        tok.encode(SHORT).ids,            # a short factual prompt
        [1],                              # a single token (<|im_start|>)
        prose[100:237],                   # a prose row starting mid-text
    ]
    out_rows = []
    for ids in rows:
        T = len(ids)
        hidden = model.forward(ids)
        positions = sorted({0, T // 3, T // 2, T - 1})
        logits = model.logits(hidden[positions])
        entries = []
        for i, p in enumerate(positions):
            top = np.argsort(-logits[i], kind="stable")[:TOP_K]
            probs = np.exp(logits[i] - logits[i].max())
            probs /= probs.sum()
            leftover = 1.0 - probs[top].sum()
            entries.append({
                "position": p,
                "top_ids": [int(t) for t in top],
                "top_logits": [float(f"{logits[i][t]:.7g}") for t in top],
                "top_probs": [float(f"{probs[t]:.7g}") for t in top],
                "leftover_mass": float(f"{leftover:.7g}"),
                "hidden": [float(f"{h:.8g}") for h in hidden[p]],
            })
        out_rows.append({"ids": [int(t) for t in ids], "positions": entries})
        print(f"row of {T} tokens: top-1 at last position {entries[-1]['top_ids'][0]}, "
              f"max |hidden| {np.abs(hidden).max():.3f}, max |logit| {np.abs(logits).max():.3f}")
    fixture = {
        "generator": "scripts/reference/engine_reference.py (numpy float64 forward, gguf.quants.dequantize weights)",
        "model": os.path.basename(args.model),
        "top_k": TOP_K,
        "rows": out_rows,
    }
    os.makedirs(os.path.dirname(OUT), exist_ok=True)
    with open(OUT, "w") as f:
        json.dump(fixture, f, separators=(",", ":"))
    print(f"wrote {OUT} ({os.path.getsize(OUT)} bytes)")


if __name__ == "__main__":
    main()
