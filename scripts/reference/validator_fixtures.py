"""Fixtures for Validator's loop (AnswerGrade, Ledger's EMA, WeightFunction), computed in numpy
float64 from the definitions in docs/VALIDATING.md, independently of the Swift code:
- grades: two-row phrase answers, each well-formed (mean phrase loss over its rows, by Bittensor's
  phrase cross-entropy from phrase_loss_fixtures.py) or malformed in one listed way (its key);
- ema: a UID's losses and the EMA after each (ema = loss first, then (1 - a) ema + a loss);
- weights: EMA losses (None: never queried), exclude quantile and cap, and the weights.

    "$(scripts/venv)" scripts/reference/validator_fixtures.py
"""
import json
import math
import pathlib

import numpy as np

from phrase_loss_fixtures import VOCAB_MIN, phrase_cross_entropy

ROOT = pathlib.Path(__file__).resolve().parents[2]
OUT = ROOT / "Tests" / "ValidatorTests" / "Fixtures" / "validator_loop.json"
WORST = -math.log(1e-40)


def grade(case):
    probs = np.float32(case["probabilities"])
    floors = np.float32(case["floors"])
    if any(i >= VOCAB_MIN for row in case["phrases"] for p in row for i in p):
        return "PhraseIdOutOfRange", WORST
    if not (np.all((probs >= 0) & (probs <= 1)) and np.all((floors >= 0) & (floors <= 1))):
        return "ProbabilityOutOfRange", WORST
    if np.any(probs.astype(np.float64).sum(axis=1) > 1 + 1e-6):
        return "ProbabilitySumAboveOne", WORST
    losses = [phrase_cross_entropy(t, probs[r], case["phrases"][r], floors[r])[1] for r, t in enumerate(case["targets"])]
    return "ok", float(np.mean(losses))


def weights(emas, q, cap):
    n = len(emas)
    s = np.array([math.exp(-e) if e is not None else 0.0 for e in emas])
    scored = [i for i, e in enumerate(emas) if e is not None]
    drop = int(math.floor(q * len(scored)))
    worst = sorted(scored, key=lambda i: (-emas[i], -i))[:drop]
    s[worst] = 0
    if s.sum() == 0:
        return [0.0] * n
    nz = s > 0
    if cap * nz.sum() < 1:
        return list(np.where(nz, 1 / nz.sum(), 0.0))
    w = s / s.sum()
    fixed = np.zeros(n, dtype=bool)
    while True:
        free = nz & ~fixed
        w[free] = (1 - cap * fixed.sum()) * s[free] / s[free].sum() if free.any() else 0
        w[fixed] = cap
        over = free & (w > cap)
        if not over.any():
            return [float(x) for x in w]
        fixed |= over


rng = np.random.default_rng(15)
grades = []
for n in range(24):
    k = 3
    rows = 2
    phrases = [[[int(t) for t in rng.integers(0, 10, size=int(rng.integers(1, 4)))] for _ in range(k)] for _ in range(rows)]
    targets = [[int(t) for t in rng.integers(0, 10, size=8)] for _ in range(rows)]
    for r in range(rows):
        if n % 2 == 0:
            phrases[r][0] = targets[r][:int(rng.integers(1, 3))]
    probs = [list(map(float, np.float32(rng.dirichlet(np.ones(k)) * 0.9))) for _ in range(rows)]
    floors = [float(np.float32((1 - sum(p)) / (VOCAB_MIN - k))) for p in probs]
    kind = n % 6
    if kind == 1:
        phrases[1][2] = [3, 50257]
    elif kind == 2:
        probs[0][1] = -0.01
    elif kind == 3:
        floors[1] = 1.5
    elif kind == 4:
        probs[1] = [0.6, 0.3, 0.2]
    case = {"probabilities": probs, "phrases": phrases, "floors": floors, "targets": targets}
    case["expected"], case["loss"] = grade(case)
    grades.append(case)

losses = [float(x) for x in rng.uniform(2, 6, size=10)] + [WORST, 3.0]
ema, emas = None, []
for x in losses:
    ema = x if ema is None else 0.9 * ema + 0.1 * x
    emas.append(ema)

weight_cases = []
for n in range(12):
    count = int(rng.integers(2, 12))
    e = [float(x) for x in rng.uniform(2, 6, size=count)]
    if n % 3 == 0:
        e[0] = None
    if n % 4 == 1:
        e[-1] = WORST
    q = [0.0, 0.1, 0.25, 0.5][n % 4]
    cap = [1.0, 0.3, 0.15, 0.05][n % 4]
    weight_cases.append({"ema_losses": e, "exclude_quantile": q, "max_weight": cap, "weights": weights(e, q, cap)})

OUT.write_text(json.dumps({"generator": "scripts/reference/validator_fixtures.py (numpy float64)", "worst_loss": WORST,
                           "grades": grades, "ema": {"alpha": 0.1, "losses": losses, "emas": emas},
                           "weights": weight_cases}) + "\n")
print(f"wrote {OUT.relative_to(ROOT)} ({OUT.stat().st_size} bytes)")
