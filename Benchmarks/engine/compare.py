#!/usr/bin/env python3
"""Driver for Benchmarks/engine/run: interleaves `axon bench --json` and llama-cpp-python per shape.

llama.cpp gets each row as its own sequence (reset, then one eval of the row: positions from 0),
with n_batch = n_ubatch = 512 and logits at the last position only or at every position
(logits_all), as the Axon side is asked for. Both sides run in a fresh process per measurement:
a loaded llama.cpp context keeps its worker threads polling, which would steal a core from the
other side. Each measurement is the median of `--repeats` timed
runs after a warm-up; each round runs every shape on both engines, and the table reports the
median over rounds.
"""
import argparse
import json
import os
import statistics
import subprocess
import sys
import time

import numpy as np
import llama_cpp

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
sys.path.insert(0, os.path.join(ROOT, "scripts", "reference"))
from llama_cpp_setup import avoid_amx_repacking  # noqa: E402


def axon_bench(axon, model, threads, shape, logits, repeats, env=None, roofline=False, precision=None):
    """tokens/s and the whole `axon bench --json` report (its "machine" says which OpenBLAS core ran);
    `env` replaces the environment (Benchmarks/run measures with OPENBLAS_* as given and unset)."""
    out = subprocess.run([axon, "bench", "--model", model, "--threads", str(threads), "--shapes", shape,
                          "--logits", logits, "--repeats", str(repeats), "--json"] + (["--roofline"] if roofline else [])
                         + (["--precision", precision] if precision else []),
                         check=True, capture_output=True, text=True, env=env).stdout
    report = json.loads(out)
    return report["results"][0]["tokens_per_s"], report


def llama_bench(python, model, threads, shape, logits, repeats):
    out = subprocess.run([python, os.path.abspath(__file__), "--llama-one", shape, "--logits", logits, "--model", model,
                          "--threads", str(threads), "--repeats", str(repeats)],
                         check=True, capture_output=True, text=True).stdout
    return float(out.strip().splitlines()[-1])


def llama_one(model, threads, shape, logits, repeats):
    """One llama.cpp measurement in this process: prints tokens/s."""
    b, s = (int(x) for x in shape.split("x"))
    avoid_amx_repacking()   # llama.cpp's AMX kernels SIGILL where the VM withholds tile state
    llm = llama_cpp.Llama(model_path=model, n_ctx=s, n_batch=512, n_ubatch=512, n_threads=threads,
                          n_threads_batch=threads, logits_all=(logits == "all"), verbose=False)
    rng = np.random.default_rng(1234)
    rows = [[int(t) for t in rng.integers(0, llm.n_vocab(), s)] for _ in range(b)]

    def once():
        start = time.perf_counter()
        for row in rows:
            llm.reset()
            llm.eval(row)
        return time.perf_counter() - start
    once()  # warm-up
    seconds = statistics.median(once() for _ in range(repeats))
    print(sum(len(r) for r in rows) / seconds)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--axon")
    ap.add_argument("--llama-one", help=argparse.SUPPRESS)
    ap.add_argument("--model", default=os.path.join(ROOT, "Models", "SmolLM2-135M-Instruct.Q4_1.gguf"))
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--shapes", default="1x128,8x128,1x512,4x512")
    ap.add_argument("--logits", default="last,all")
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--roofline", action="store_true",
                    help="also report axon's useful GFLOP/s over sgemm on the model's projection shapes (same process)")
    ap.add_argument("--precision", help="axon's --precision (f32 or int8; default: axon's choice for the CPU)")
    args = ap.parse_args()
    if args.llama_one:
        return llama_one(args.model, args.threads, args.llama_one, args.logits, args.repeats)
    shapes = [tuple(int(x) for x in s.split("x")) for s in args.shapes.split(",")]
    modes = args.logits.split(",")
    results = {}
    extra = {}
    for rnd in range(args.rounds):
        for mode in modes:
            for b, s in shapes:
                shape = f"{b}x{s}"
                a, report = axon_bench(args.axon, args.model, args.threads, shape, mode, args.repeats, roofline=args.roofline,
                                       precision=args.precision)
                l = llama_bench(sys.executable, args.model, args.threads, shape, mode, args.repeats)
                results.setdefault((mode, shape), []).append((a, l))
                extra[(mode, shape)] = report
                r = report["results"][0]
                roof = (f", {r['useful_gflops']:.0f} useful GFLOP/s = {100 * r['roofline_fraction']:.0f}% of sgemm's "
                        f"{r['sgemm_roofline_gflops']:.0f}") if r.get("roofline_fraction") else ""
                if r.get("int8_gemm_gops"):
                    roof += f", {100 * r['int8_gemm_fraction']:.0f}% of dnnl_gemm_u8s8s32's {r['int8_gemm_gops']:.0f} GOP/s"
                roof += f", peak RSS {report['peak_rss_mb']:.0f} MB ({report.get('precision', '?')})"
                results.setdefault(("roofline", mode, shape), []).append(r.get("roofline_fraction"))
                print(f"round {rnd + 1} {shape} logits={mode}: axon {a:.1f} tok/s, llama.cpp {l:.1f} tok/s, ratio {a / l:.2f}{roof}", flush=True)
    print()
    print(f"llama-cpp-python {llama_cpp.__version__}, {os.path.basename(args.model)}, threads={args.threads}, "
          f"median of {args.rounds} interleaved rounds")
    print("tokens/s: median over rounds; ratio: median of the per-round ratios (each round pairs both engines in time)")
    print(f"{'shape':>7} {'logits':>6} {'axon tok/s':>11} {'llama tok/s':>12} {'ratio':>6}")
    summary = []
    for key, pairs in results.items():
        if key[0] == "roofline":
            continue
        mode, shape = key
        a = statistics.median(p[0] for p in pairs)
        l = statistics.median(p[1] for p in pairs)
        ratios = [p[0] / p[1] for p in pairs]
        ratio = statistics.median(ratios)
        print(f"{shape:>7} {mode:>6} {a:11.1f} {l:12.1f} {ratio:6.2f}   (per-round ratios {', '.join(f'{r:.2f}' for r in ratios)})")
        fractions = [f for f in results.get(("roofline", mode, shape), []) if f]
        entry = {"shape": shape, "logits": mode, "axon_tokens_per_s": a, "llama_tokens_per_s": l, "ratio": ratio}
        if fractions:
            entry["roofline_fraction"] = statistics.median(fractions)
            print(f"{'':>7} {'':>6} axon at {100 * entry['roofline_fraction']:.0f}% of the sgemm roofline (median over rounds)")
        summary.append(entry)
    big = [r for (m, sh), r in extra.items() if sh == "4x512"]
    for report in big:
        print(f"axon at 4x512 ({report['results'][0]['logits']}): load {report['load_seconds']:.2f} s, "
              f"peak RSS {report['peak_rss_mb']:.0f} MB")
    print(json.dumps({"threads": args.threads, "results": summary}))


if __name__ == "__main__":
    main()
