"""Fixtures for the mixture axon's mixing weights (Sources/Mixture/Experts.swift, docs/VALIDATING.md
"Serving a mixture"): pi_i proportional to exp(-ema_loss_i) over the chosen experts, in numpy float64,
independently of the Swift code. Includes EMA losses near the validator's worst loss (92.1), where
exp(-ema) alone underflows nothing but differences of ~90 nats must still give ~e^-90 shares.

    cd scripts/reference && "$(../venv)" mixture_axon_fixtures.py
"""
import json
import pathlib

import numpy as np

ROOT = pathlib.Path(__file__).resolve().parents[2]
OUT = ROOT / "Tests" / "MixtureTests" / "Fixtures" / "mixing_weights.json"

rng = np.random.default_rng(15)
cases = [[3.2], [3.2, 3.2], [2.9, 3.4], [3.1, 92.10340371976183], [92.1, 92.1, 91.0], [800.0, 801.0]]
for _ in range(10):
    cases.append([float(x) for x in rng.uniform(1.5, 9.0, size=int(rng.integers(1, 6)))])
out = []
for emas in cases:
    e = np.array(emas, dtype=np.float64)
    # exp(-e) with the log-sum-exp shift (numpy's own float64 arithmetic).
    w = np.exp(-(e - e.min()))
    out.append({"ema_losses": emas, "mixing_weights": [float(x) for x in w / w.sum()]})
OUT.parent.mkdir(parents=True, exist_ok=True)
OUT.write_text(json.dumps({"generator": "scripts/reference/mixture_axon_fixtures.py (numpy float64)", "cases": out}) + "\n")
print(f"wrote {OUT.relative_to(ROOT)} ({OUT.stat().st_size} bytes, {len(out)} cases)")
