"""Fixtures for Validator's PhraseCrossEntropy: Bittensor v3.6.3's phrase_cross_entropy
(bittensor/utils/tokenizer_utils.py), re-stated in numpy float64 from its definition, over seeded
random answers: phrases over a small id range so first tokens and sub-targets really match, some
probabilities out of [0, 1] (clamped), answers with no match, and an all-zero answer (NaN: 20).

    "$(scripts/venv)" scripts/reference/phrase_loss_fixtures.py
"""
import json
import pathlib

import numpy as np

ROOT = pathlib.Path(__file__).resolve().parents[2]
OUT = ROOT / "Tests" / "ValidatorTests" / "Fixtures" / "phrase_loss.json"
IGNORE = -1
VOCAB_MIN = 50257


def phrase_cross_entropy(target, probs, phrases, floor):
    """(loss_val, loss) for one row, as Bittensor computes them (float64 here)."""
    k = len(probs)
    width = max((len(p) for p in phrases), default=0)
    tokens = np.full((k, width), IGNORE, dtype=np.int64)
    for i, p in enumerate(phrases):
        tokens[i, :len(p)] = p
    p = np.clip(np.asarray(probs, dtype=np.float64), 0, 1)
    f = float(np.clip(floor, 0, 1))
    with np.errstate(invalid="ignore", divide="ignore"):
        total = p.sum() + max(0, VOCAB_MIN - k) * f
        n_p = p / total
        n_f = f / total
        first = tokens[:, 0] == target[0] if width else np.zeros(k, dtype=bool)
        val = n_p[first].sum() if first.any() else n_f
        check = min(width, len(target))
        match = 0.0
        for c in range(1, check + 1):
            sub = np.full(check, IGNORE, dtype=np.int64)
            sub[:c] = target[:c]
            rows = np.where((tokens[:, :check] == sub).sum(axis=1) == check)[0]
            match += n_p[rows].sum() if len(rows) else n_f
        val = np.clip(val, 0, 1)
        match = np.clip(match, 0, 1)
        loss_val, loss = -np.log(val + 1e-40), -np.log(match + 1e-40)
    nan = lambda x: 20.0 if np.isnan(x) else float(x)
    return nan(loss_val), nan(loss)


def main():
    rng = np.random.default_rng(12)
    cases = []
    for n in range(80):
        k = int(rng.integers(1, 40))
        phrases = [[int(t) for t in rng.integers(0, 12, size=int(rng.integers(1, 5)))] for _ in range(k)]
        floor = float(rng.uniform(0, 2e-5))
        mass = max(0.0, 1 - floor * (VOCAB_MIN - k))
        probs = (rng.dirichlet(np.ones(k)) * mass * rng.uniform(0.5, 1.0)).astype(np.float32)
        target = [int(t) for t in rng.integers(0, 12, size=8)]
        if n % 3 == 0:  # make a phrase that is a prefix of the target
            phrases[int(rng.integers(0, k))] = target[:int(rng.integers(1, 4))]
        if n % 7 == 0:  # out-of-range values that Bittensor clamps
            probs[0] = 1.5
            floor = -1e-3 if n % 2 else floor
        if n % 11 == 0:  # no phrase starts with the target's first token
            target[0] = 99
        cases.append({"probabilities": [float(x) for x in probs], "phrases": phrases, "floor": float(np.float32(floor)),
                      "target": target})
    cases.append({"probabilities": [0.0, 0.0], "phrases": [[1], [2, 3]], "floor": 0.0, "target": [1, 2, 3]})
    for case in cases:
        lv, l = phrase_cross_entropy(case["target"], np.float32(case["probabilities"]), case["phrases"],
                                     np.float32(case["floor"]))
        case["loss_val"], case["loss"] = lv, l

    OUT.write_text(json.dumps({"generator": "scripts/reference/phrase_loss_fixtures.py (numpy float64)",
                               "vocab_size": VOCAB_MIN, "padding": IGNORE, "cases": cases}) + "\n")
    print(f"wrote {OUT.relative_to(ROOT)} ({OUT.stat().st_size} bytes, {len(cases)} cases)")


if __name__ == "__main__":
    main()
