#!/usr/bin/env python3
"""Figures for Benchmarks/mixture/run (plain Python: no third-party packages).

    report.py ranking steps.csv weights.json
    report.py mixture losses-a.csv losses-b.csv losses-mixture.csv
    report.py faults faults.csv weights.json losses-mixture-faults.csv DEADLINE_MS
"""
import csv
import json
import math
import random
import sys

NAMES = {0: "SmolLM2-135M (uid 0)", 1: "Gemma 3 270M (uid 1)", 2: "fake (uid 2)"}


def ranking(steps_path, weights_path):
    ema = {}
    order_by_step = []
    for row in csv.DictReader(open(steps_path)):
        step, uid = int(row["step"]), int(row["uid"])
        ema[uid] = float(row["ema_loss"])
        if len(order_by_step) < step:
            order_by_step.append(None)
        order_by_step[step - 1] = sorted(ema, key=lambda u: ema[u])
    final = order_by_step[-1]
    stable = len(order_by_step)
    while stable > 1 and order_by_step[stable - 2] == final:
        stable -= 1
    print(f"ranking by EMA loss (best first) after step {len(order_by_step)}: {final}; unchanged since step {stable}")
    for entry in json.load(open(weights_path))["weights"]:
        print(f"  {NAMES.get(entry['uid'], entry['uid'])}: weight {entry['weight']:.4f}, ema_loss {entry['ema_loss']:.4f}, "
              f"responses {entry['responses']}, failures {entry['failures']}")


def losses(path):
    return {int(r["start"]): (float(r["phrase_loss"]), float(r["server_ms"] or "nan")) for r in csv.DictReader(open(path))}


def mixture(a_path, b_path, m_path):
    a, b, m = losses(a_path), losses(b_path), losses(m_path)
    starts = sorted(set(a) & set(b) & set(m))
    mean = lambda d, keys: sum(d[k][0] for k in keys) / len(keys)
    best, best_name = (a, NAMES[0]) if mean(a, starts) <= mean(b, starts) else (b, NAMES[1])
    print(f"held-out windows: {len(starts)} (each scored against its next 8 standard tokens)")
    print(f"  mean phrase loss: {NAMES[0]} {mean(a, starts):.4f}, {NAMES[1]} {mean(b, starts):.4f}, mixture {mean(m, starts):.4f}")
    # The gain as positions grow: windows in a seeded random order, cumulative means and the paired
    # standard error of (best miner - mixture).
    order = starts[:]
    random.Random(15).shuffle(order)
    print(f"  gain over the better miner ({best_name}) as the windows grow:")
    print("  | windows | better miner | mixture | gain (nats) | std. error | gain / s.e. |")
    print("  |---|---|---|---|---|---|")
    n = 25
    while True:
        n = min(n, len(order))
        keys = order[:n]
        diffs = [best[k][0] - m[k][0] for k in keys]
        g = sum(diffs) / n
        se = math.sqrt(sum((d - g) ** 2 for d in diffs) / (n - 1) / n) if n > 1 else float("nan")
        print(f"  | {n} | {mean(best, keys):.4f} | {mean(m, keys):.4f} | {g:+.4f} | {se:.4f} | {g / se:.1f} |")
        if n == len(order):
            break
        n *= 2
    wins = sum(1 for k in starts if m[k][0] < best[k][0])
    print(f"  the mixture's loss is lower on {wins} of {len(starts)} windows")


def faults(steps_path, weights_path, probe_path, deadline_ms):
    outcomes = {}
    for row in csv.DictReader(open(steps_path)):
        outcomes.setdefault(int(row["uid"]), []).append(row["outcome"] if row["outcome"] != "ok" else "ok")
    for uid, seen in sorted(outcomes.items()):
        print(f"  {NAMES.get(uid, uid)} per step: {' '.join(seen)}")
    for entry in json.load(open(weights_path))["weights"]:
        print(f"  final {NAMES.get(entry['uid'], entry['uid'])}: weight {entry['weight']:.4g}, ema_loss {entry['ema_loss']:.3f}, failures {entry['failures']}")
    probe = losses(probe_path)
    ms = sorted(v[1] for v in probe.values())
    late = sum(1 for v in ms if v >= float(deadline_ms))
    print(f"  the mixture answered {len(ms)} of {len(ms)} requests (one window each) with the experts dead or stalled: "
          f"server time median {ms[len(ms) // 2]:.0f} ms, max {ms[-1]:.0f} ms, {late} at or past the {deadline_ms} ms deadline; "
          f"mean phrase loss {sum(v[0] for v in probe.values()) / len(probe):.4f}")


if __name__ == "__main__":
    {"ranking": ranking, "mixture": mixture, "faults": faults}[sys.argv[1]](*sys.argv[2:])
