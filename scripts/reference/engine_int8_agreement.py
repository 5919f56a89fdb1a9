#!/usr/bin/env python3
"""llama.cpp's and an exact fp32 pass's next-token choices over 1,025 positions of held-out prose, for
the int8 path's accuracy tests (issue 14: within 0.01 nats of f32, top-1 agreement with f32 at least
llama.cpp's own).

The text is the start of Benchmarks/network/heldout.txt (Node.js's stream documentation), never the
int8 calibration text (Int8Calibration.text, the lighthouse prose of engine_reference.py). For each
default model it tokenizes the text with llama.cpp's own tokenizer (BOS when the GGUF asks for one),
keeps 1,025 positions (1,024 predicted next tokens), runs llama-cpp-python 0.3.36 with logits at every
position and the independent numpy forward pass (family_reference.py: gguf-dequantized weights,
float64), and records both argmaxes, their agreement, and both mean next-token losses.

Writes Tests/EngineTests/Fixtures/int8_heldout_<model>.json.

    "$(scripts/venv --llama)" scripts/reference/engine_int8_agreement.py [--models smollm2,gemma3]
"""
import argparse
import json
import os
import sys

import numpy as np
import llama_cpp

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from engine_reference import ROOT  # noqa: E402
from engine_gemma_agreement import mean_loss  # noqa: E402
from family_reference import FamilyModel  # noqa: E402
from llama_cpp_setup import avoid_amx_repacking  # noqa: E402

POSITIONS = 1025
TEXT = os.path.join(ROOT, "Benchmarks", "network", "heldout.txt")
MODELS = {
    "smollm2": ("SmolLM2-135M-Instruct.Q4_1.gguf", False),
    "gemma3": ("gemma-3-270m-q4_k_m.gguf", True),
}


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--models", default="smollm2,gemma3")
    args = ap.parse_args()
    avoid_amx_repacking()
    with open(TEXT, encoding="utf-8") as f:
        text = f.read()[:12000]   # comfortably more than 1,025 tokens for both tokenizers
    for key in args.models.split(","):
        name, bos = MODELS[key]
        path = os.path.join(ROOT, "Models", name)
        llm = llama_cpp.Llama(model_path=path, n_ctx=POSITIONS + 15, n_batch=POSITIONS + 15, n_ubatch=POSITIONS + 15,
                              n_threads=2, logits_all=True, verbose=False)
        ids = llm.tokenize(text.encode("utf-8"), add_bos=bos, special=False)[:POSITIONS]
        assert len(ids) == POSITIONS, len(ids)
        llm.eval(ids)
        scores = np.asarray(llm.scores[:POSITIONS], dtype=np.float32)
        llm.close()
        del llm
        ids_np = np.asarray(ids)
        llama_top1 = scores.argmax(axis=1)
        llama_loss = mean_loss(scores, ids_np)

        model = FamilyModel(path)
        hidden = model.forward(ids)
        ref = np.empty((POSITIONS, model.out.shape[0]), dtype=np.float32)
        for s in range(0, POSITIONS, 64):
            ref[s:s + 64] = model.logits(hidden[s:s + 64])
        ref_top1 = ref.argmax(axis=1)
        ref_loss = mean_loss(ref, ids_np)
        agreement = int((ref_top1 == llama_top1).sum())
        print(f"{key}: llama.cpp agrees with the fp32 reference on {agreement}/{POSITIONS}; mean loss fp32 {ref_loss:.5f}, "
              f"llama.cpp {llama_loss:.5f} (Δ {llama_loss - ref_loss:+.5f})", flush=True)
        fixture = {
            "generator": f"scripts/reference/engine_int8_agreement.py (llama-cpp-python {llama_cpp.__version__}, logits_all; "
                         "numpy float64 forward on gguf-dequantized weights)",
            "model": name,
            "text": "Benchmarks/network/heldout.txt (start)",
            "ids": [int(t) for t in ids],
            "llama_top1": [int(t) for t in llama_top1],
            "reference_top1": [int(t) for t in ref_top1],
            "reference_llama_agreement": agreement,
            "llama_mean_loss": float(f"{llama_loss:.6g}"),
            "reference_mean_loss": float(f"{ref_loss:.6g}"),
        }
        out = os.path.join(ROOT, "Tests", "EngineTests", "Fixtures", f"int8_heldout_{key}.json")
        with open(out, "w") as f:
            json.dump(fixture, f, separators=(",", ":"))
        print(f"wrote {out} ({os.path.getsize(out)} bytes)")


if __name__ == "__main__":
    main()
