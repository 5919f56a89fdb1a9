#!/usr/bin/env python3
"""llama.cpp's next-token choices over 512 positions of prose, for the Engine's agreement test.

Runs the default model in llama-cpp-python (logits at every position) on the prose of
engine_reference.py, tokenized by llama.cpp itself, and writes
Tests/EngineTests/Fixtures/llama_top1.json: the 512 token ids and llama.cpp's argmax at each position.
llama.cpp quantizes activations (its logits differ from fp32 by about 0.14 on average here), so
besides the argmax the fixture keeps llama.cpp's top 8 ids and logits per position: the test can then
tell a real disagreement from a near-tie that llama.cpp's rounding decides.
It also records the independent numpy fp32 reference's top-1 and top-2 margin at the same positions:
an exact fp32 forward pass cannot agree with llama.cpp more often than that reference does
(96.1% on this text), so the test holds the engine to the reference's choices and agreement.

    "$(scripts/venv --llama)" scripts/reference/engine_llama_agreement.py [--model PATH]
"""
import argparse
import json
import os
import sys

import numpy as np
import llama_cpp

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from engine_reference import DEFAULT_MODEL, PROSE, ROOT, Model  # noqa: E402

OUT = os.path.join(ROOT, "Tests", "EngineTests", "Fixtures", "llama_top1.json")
POSITIONS = 512


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--model", default=DEFAULT_MODEL)
    args = ap.parse_args()
    llm = llama_cpp.Llama(model_path=args.model, n_ctx=POSITIONS + 16, n_batch=POSITIONS, n_ubatch=POSITIONS,
                          n_threads=2, logits_all=True, verbose=False)
    ids = llm.tokenize(PROSE.encode("utf-8"), add_bos=False, special=False)[:POSITIONS]
    assert len(ids) == POSITIONS, len(ids)
    llm.eval(ids)
    scores = np.asarray(llm.scores[:POSITIONS])
    top1 = [int(t) for t in scores.argmax(axis=1)]
    top8 = np.argsort(-scores, axis=1, kind="stable")[:, :8]
    reference = Model(args.model)
    fp32 = reference.logits(reference.forward(ids))
    fp32_top2 = np.argsort(-fp32, axis=1, kind="stable")[:, :2]
    fp32_top1 = [int(t) for t in fp32_top2[:, 0]]
    fp32_margin = [float(f"{fp32[p, a] - fp32[p, b]:.5g}") for p, (a, b) in enumerate(fp32_top2)]
    fp32_agreement = sum(a == b for a, b in zip(fp32_top1, top1))
    print(f"numpy fp32 reference agrees with llama.cpp on {fp32_agreement}/{POSITIONS} positions")
    fixture = {
        "generator": f"scripts/reference/engine_llama_agreement.py (llama-cpp-python {llama_cpp.__version__}, logits_all)",
        "model": os.path.basename(args.model),
        "ids": [int(t) for t in ids],
        "llama_top1": top1,
        "llama_top8_ids": [[int(t) for t in row] for row in top8],
        "llama_top8_logits": [[float(f"{scores[p, t]:.5g}") for t in row] for p, row in enumerate(top8)],
        "fp32_top1": fp32_top1,
        "fp32_margin": fp32_margin,
        "fp32_llama_agreement": fp32_agreement,
    }
    with open(OUT, "w") as f:
        json.dump(fixture, f, separators=(",", ":"))
    print(f"wrote {OUT} ({os.path.getsize(OUT)} bytes)")


if __name__ == "__main__":
    main()
