#!/usr/bin/env python3
"""The real Gemma 3 270M (Models/gemma-3-270m-q4_k_m.gguf) against llama.cpp and an independent
numpy forward pass, for the Engine's Gemma agreement test (mirrors engine_llama_agreement.py).

Tokenizes the prose of engine_reference.py with llama.cpp's own tokenizer (BOS first, as the GGUF
asks), keeps 512 positions, and records:
- llama.cpp (llama-cpp-python 0.3.36, logits at every position): its argmax, top 8 ids and logits,
  and its mean next-token loss over the 511 predicted positions;
- the numpy reference (family_reference.py; weights dequantized to f32 by `gguf`, arithmetic in
  float64, exact GELU): its argmax and top-2 margin at every position, its agreement with llama.cpp,
  its mean loss, and at 16 positions its logits of the top 32 ids plus 32 fixed random ids.

Writes Tests/EngineTests/Fixtures/gemma3_agreement.json.

    "$(scripts/venv --llama)" scripts/reference/engine_gemma_agreement.py [--model PATH]
"""
import argparse
import json
import os
import sys

import numpy as np
import llama_cpp

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from engine_reference import PROSE, ROOT  # noqa: E402
from family_reference import FamilyModel  # noqa: E402
from llama_cpp_setup import avoid_amx_repacking  # noqa: E402

DEFAULT_MODEL = os.path.join(ROOT, "Models", "gemma-3-270m-q4_k_m.gguf")
OUT = os.path.join(ROOT, "Tests", "EngineTests", "Fixtures", "gemma3_agreement.json")
POSITIONS = 512
CHECKED = 16


def log_softmax(z):
    z = z - z.max(axis=1, keepdims=True)
    return z - np.log(np.exp(z).sum(axis=1, keepdims=True))


def mean_loss(logits, ids):
    lp = log_softmax(logits[:-1].astype(np.float64))
    return float(-lp[np.arange(len(ids) - 1), ids[1:]].mean())


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--model", default=DEFAULT_MODEL)
    args = ap.parse_args()
    avoid_amx_repacking()
    llm = llama_cpp.Llama(model_path=args.model, n_ctx=POSITIONS + 16, n_batch=POSITIONS, n_ubatch=POSITIONS,
                          n_threads=2, logits_all=True, verbose=False)
    ids = llm.tokenize(PROSE.encode("utf-8"), add_bos=True, special=False)[:POSITIONS]
    assert len(ids) == POSITIONS, len(ids)
    llm.eval(ids)
    scores = np.asarray(llm.scores[:POSITIONS], dtype=np.float32)
    llm.close()
    top1 = scores.argmax(axis=1)
    top8 = np.argsort(-scores, axis=1, kind="stable")[:, :8]
    ids_np = np.asarray(ids)
    llama_loss = mean_loss(scores, ids_np)
    del llm

    model = FamilyModel(args.model)
    hidden = model.forward(ids)
    ref = np.empty((POSITIONS, model.out.shape[0]), dtype=np.float32)
    for s in range(0, POSITIONS, 64):
        ref[s:s + 64] = model.logits(hidden[s:s + 64])
    ref_top2 = np.argsort(-ref, axis=1, kind="stable")[:, :2]
    ref_margin = ref[np.arange(POSITIONS), ref_top2[:, 0]] - ref[np.arange(POSITIONS), ref_top2[:, 1]]
    agreement = int((ref_top2[:, 0] == top1).sum())
    ref_loss = mean_loss(ref, ids_np)
    print(f"numpy reference agrees with llama.cpp on {agreement}/{POSITIONS}; mean loss numpy {ref_loss:.4f}, "
          f"llama.cpp {llama_loss:.4f}; max |llama.cpp - numpy| {np.abs(scores - ref).max():.3g}")

    rng = np.random.default_rng(270)
    fixed = rng.choice(ref.shape[1], size=32, replace=False)
    checked = []
    for p in np.linspace(0, POSITIONS - 1, CHECKED).astype(int):
        top = np.argsort(-ref[p], kind="stable")[:32]
        chosen = [int(t) for t in top] + [int(t) for t in fixed if t not in set(top)]
        checked.append({"position": int(p), "ids": chosen, "logits": [float(f"{ref[p, t]:.7g}") for t in chosen]})
    fixture = {
        "generator": f"scripts/reference/engine_gemma_agreement.py (llama-cpp-python {llama_cpp.__version__}, "
                     "numpy float64 forward on gguf-dequantized weights)",
        "model": os.path.basename(args.model),
        "ids": [int(t) for t in ids],
        "llama_top1": [int(t) for t in top1],
        "llama_top8_ids": [[int(t) for t in row] for row in top8],
        "llama_top8_logits": [[float(f"{scores[p, t]:.5g}") for t in row] for p, row in enumerate(top8)],
        "llama_mean_loss": float(f"{llama_loss:.6g}"),
        "reference_top1": [int(t) for t in ref_top2[:, 0]],
        "reference_margin": [float(f"{m:.5g}") for m in ref_margin],
        "reference_llama_agreement": agreement,
        "reference_mean_loss": float(f"{ref_loss:.6g}"),
        "reference_logits": checked,
    }
    with open(OUT, "w") as f:
        json.dump(fixture, f, separators=(",", ":"))
    print(f"wrote {OUT} ({os.path.getsize(OUT)} bytes)")


if __name__ == "__main__":
    main()
