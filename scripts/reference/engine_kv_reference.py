#!/usr/bin/env python3
"""Independent references for the Engine's incremental decoding (KV cache), from family_reference.py's
numpy forward pass (fp32 weights dequantized by the PyPI `gguf` package, float64 arithmetic), which
recomputes the whole sequence at every step and has no cache.

Writes Tests/EngineTests/Fixtures/kv_reference.json:
- `greedy`: the default model (SmolLM2) greedy-decodes 64 tokens after a 40-token prose prompt
  (tokenized as in engine_reference.py). Per step: the chosen token, the runner-up, the top-2 margin.
- `reorder`: per model, what reordering the fp32 sums of the residual products does to the logits
  (FamilyModel.reorder_variance), over every step of the greedy run and every prefix of the family
  fixtures' 72-token row: the largest standard deviation of a logit, and the expected number of logits
  (over all those steps and the whole vocabulary) that move by more than `tolerance`, the tests' bound
  on a decode step with the cache against a full prefill of the same tokens (Tolerance.swift).

    "$(scripts/venv)" scripts/reference/engine_kv_reference.py [--model PATH]
"""
import argparse
import json
import os
import sys

import numpy as np
from math import erfc, sqrt

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from engine_reference import DEFAULT_MODEL, PROSE, ROOT, build_tokenizer  # noqa: E402
from family_reference import FamilyModel  # noqa: E402

FIXTURES = os.path.join(ROOT, "Tests", "EngineTests", "Fixtures")
OUT = os.path.join(FIXTURES, "kv_reference.json")
PROMPT_TOKENS = 40
GENERATE = 64
TOLERANCE = 1e-4   # Tolerance.cachedLogit in Tests/EngineTests/Tolerance.swift
# The family fixtures' long row (engine_families.py's LONG_ROW): longer than gemma3's window of 4.
FAMILY_ROW = [(7 * i * i + 3 * i + 1) % 64 for i in range(72)]


class Reorder:
    """Accumulates, over steps, the largest logit σ and the expected count of |δ logit| > TOLERANCE
    (two-sided Gaussian tail of each logit: erfc(tol / (σ√2)))."""
    def __init__(self):
        self.sigma, self.exceed, self.hidden_rms = 0.0, 0.0, 0.0

    def add(self, model, hidden_variance):
        sigma = model.reorder_logit_sigma(hidden_variance)
        self.sigma = max(self.sigma, float(sigma.max()))
        self.exceed += sum(erfc(TOLERANCE / (s * sqrt(2))) for s in sigma if s > TOLERANCE / 8)
        self.hidden_rms = max(self.hidden_rms, float(np.sqrt(hidden_variance.mean())))

    def json(self):
        return {"max_sigma": float(f"{self.sigma:.4g}"), "tolerance": TOLERANCE,
                "expected_exceedances": float(f"{self.exceed:.4g}"), "max_hidden_rms": float(f"{self.hidden_rms:.4g}")}


def greedy(model, prompt):
    ids = list(prompt)
    tokens, runners, margins, reorder = [], [], [], Reorder()
    for step in range(GENERATE):
        variance = []
        hidden = model.forward(ids, reorder=variance)
        logits = model.logits(hidden[-1:])[0]
        top = np.argsort(-logits, kind="stable")[:2]
        tokens.append(int(top[0]))
        runners.append(int(top[1]))
        margins.append(float(f"{logits[top[0]] - logits[top[1]]:.5g}"))
        reorder.add(model, variance[0])
        print(f"step {step}: token {top[0]} margin {margins[-1]:.4g} (σ so far {reorder.sigma:.3g}, "
              f"expected exceedances {reorder.exceed:.3g})", flush=True)
        ids.append(int(top[0]))
    return tokens, runners, margins, reorder


def family_reorder(arch):
    model = FamilyModel(os.path.join(FIXTURES, f"family_{arch}.gguf.fixture"))
    reorder = Reorder()
    for t in range(1, len(FAMILY_ROW) + 1):
        variance = []
        model.forward(FAMILY_ROW[:t], reorder=variance)
        reorder.add(model, variance[0])
    print(f"{arch}: {reorder.json()}")
    return reorder.json()


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--model", default=DEFAULT_MODEL)
    args = ap.parse_args()
    model = FamilyModel(args.model)
    prompt = build_tokenizer(model.reader).encode(PROSE).ids[:PROMPT_TOKENS]
    tokens, runners, margins, reorder = greedy(model, prompt)
    fixture = {
        "generator": "scripts/reference/engine_kv_reference.py (family_reference.FamilyModel: float64 numpy, "
                     "gguf.quants.dequantize weights, full recompute per step)",
        "model": os.path.basename(args.model),
        "greedy": {"prompt": [int(t) for t in prompt], "tokens": tokens, "runner_up": runners, "margins": margins},
        "reorder": {"smollm2": reorder.json()},
        "family_row": FAMILY_ROW,
    }
    for arch in ["llama", "qwen2", "qwen3", "gemma3"]:
        fixture["reorder"][arch] = family_reorder(arch)
    with open(OUT, "w") as f:
        json.dump(fixture, f, separators=(",", ":"))
    print(f"wrote {OUT} ({os.path.getsize(OUT)} bytes); smallest margin {min(margins):.4g}")


if __name__ == "__main__":
    main()
