"""Fixtures for Validator's PhraseMixture: experts' phrase answers mixed by weight, each expert's
floor standing for the phrases it did not list, computed in numpy float64 from the rule in
Sources/Validator/PhraseMixture.swift's comment (docs/VALIDATING.md), independently of the Swift code.

    cd scripts/reference && "$(../venv)" mixture_fixtures.py
"""
import json
import pathlib

import numpy as np

ROOT = pathlib.Path(__file__).resolve().parents[2]
OUT = ROOT / "Tests" / "ValidatorTests" / "Fixtures" / "mixture.json"
V = 50257

rng = np.random.default_rng(42)
cases = []
for n in range(20):
    experts = []
    for _ in range(int(rng.integers(1, 5))):
        k = int(rng.integers(1, 8))
        phrases = [[int(t) for t in rng.integers(0, 6, size=int(rng.integers(1, 3)))] for _ in range(k)]
        probs = np.float32(rng.dirichlet(np.ones(k)) * rng.uniform(0.5, 0.99))
        floor = float(np.float32((1 - probs.astype(np.float64).sum()) / (V - k)))
        experts.append({"weight": float(rng.uniform(0.1, 2)), "phrases": phrases, "probabilities": [float(p) for p in probs],
                        "floor": floor})
    k = int(rng.integers(1, 10))
    pis = np.array([e["weight"] for e in experts])
    pis = pis / pis.sum()
    union = sorted({tuple(p) for e in experts for p in e["phrases"]})
    mixed = {}
    for x in union:
        total = 0.0
        for pi, e in zip(pis, experts):
            own = [np.float64(np.float32(p)) for ph, p in zip(e["phrases"], e["probabilities"]) if tuple(ph) == x]
            total += pi * (sum(own) if own else np.float64(np.float32(e["floor"])))
        mixed[x] = float(total)
    top = sorted(mixed.items(), key=lambda kv: (-kv[1], kv[0]))[:k]
    listed = sum(v for _, v in top)
    cases.append({"experts": experts, "k": k, "phrases": [list(p) for p, _ in top], "probabilities": [v for _, v in top],
                  "floor": max(0.0, 1 - listed) / (V - k)})

OUT.write_text(json.dumps({"generator": "scripts/reference/mixture_fixtures.py (numpy float64)", "vocab_size": V, "cases": cases}) + "\n")
print(f"wrote {OUT.relative_to(ROOT)} ({OUT.stat().st_size} bytes, {len(cases)} cases)")
