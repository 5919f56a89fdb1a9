#!/usr/bin/env python3
"""Driver for Benchmarks/decode/run: `axon bench --decode` against llama-cpp-python's greedy decode.

llama.cpp (the anchor): one context of prompt + generate positions, 2 threads by default; the prompt
(random ids, as axon's) is evaluated in one call, then each greedy token is fed back by one
`eval([token])`. Its batch-1 decode rate is (generate − 1) tokens over the time from the first token
(argmax of the prompt's logits) to the last, axon's definition of `decode_tokens_per_s`; its time to
first token is the prompt's eval. Each side runs in a fresh process per measurement (a loaded
llama.cpp context keeps worker threads polling). Rounds interleave the two; the table reports
medians over rounds and the median of the per-round ratios.

Bars (issue 13): batch-1 decode ≥ 1.0× llama.cpp's; C concurrent requests over the wire (axon's
aggregate) ≥ 4× llama.cpp's batch-1 rate at C = 16; axon's time to first token of a prompt arriving
while C − 1 others decode ≤ 1.5× its idle one.
"""
import argparse
import json
import os
import shlex
import statistics
import subprocess
import sys
import time

import numpy as np
import llama_cpp

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
sys.path.insert(0, os.path.join(ROOT, "scripts", "reference"))
from llama_cpp_setup import avoid_amx_repacking  # noqa: E402


def axon_decode(axon, model, threads, prompt, generate, concurrency, extra):
    out = subprocess.run([axon, "bench", "--decode", "--model", model, "--threads", str(threads), "--prompt", str(prompt),
                          "--generate", str(generate), "--concurrency", concurrency, "--json"] + extra,
                         check=True, capture_output=True, text=True).stdout
    return {r["concurrency"]: r for r in json.loads(out)["results"]}


def llama_decode(model, threads, prompt, generate):
    out = subprocess.run([sys.executable, os.path.abspath(__file__), "--llama-one", "--model", model, "--threads",
                          str(threads), "--prompt", str(prompt), "--generate", str(generate)],
                         check=True, capture_output=True, text=True).stdout
    return json.loads(out.strip().splitlines()[-1])


def llama_one(model, threads, prompt, generate):
    """One llama.cpp greedy generation in this process (after a short warm-up): prints its rates."""
    avoid_amx_repacking()   # llama.cpp's AMX kernels SIGILL where the VM withholds tile state
    llm = llama_cpp.Llama(model_path=model, n_ctx=prompt + generate, n_batch=512, n_ubatch=512, n_threads=threads,
                          n_threads_batch=threads, verbose=False)
    rng = np.random.default_rng(0xDEC0DE)
    ids = [int(t) for t in rng.integers(0, llm.n_vocab(), prompt)]

    def last_argmax():
        return int(np.argmax(llm.scores[llm.n_tokens - 1]))

    def once(count):
        llm.reset()
        start = time.perf_counter()
        llm.eval(ids)
        token = last_argmax()
        first = time.perf_counter()
        for _ in range(count - 1):
            llm.eval([token])
            token = last_argmax()
        end = time.perf_counter()
        return first - start, (count - 1) / (end - first)
    once(4)   # warm-up: page in the weights
    ttft, rate = once(generate)
    print(json.dumps({"decode_tokens_per_s": rate, "ttft_ms": ttft * 1e3}))


def interleaved_rounds(axon, model, threads, prompt, generate, levels, rounds, extra, log=print):
    """`rounds` rounds, each one llama.cpp batch-1 generation then one `axon bench --decode` at every
    level: [(llama, {concurrency: axon row})], logging a line per round."""
    out = []
    for rnd in range(rounds):
        llama = llama_decode(model, threads, prompt, generate)
        axon_rows = axon_decode(axon, model, threads, prompt, generate, ",".join(map(str, levels)), extra)
        out.append((llama, axon_rows))
        parts = [f"llama.cpp batch 1 {llama['decode_tokens_per_s']:.1f} tok/s (ttft {llama['ttft_ms']:.1f} ms)"]
        for c in levels:
            a = axon_rows[c]
            parts.append(f"axon C={c} {a['decode_tokens_per_s']:.1f} tok/s = {a['decode_tokens_per_s'] / llama['decode_tokens_per_s']:.2f}x"
                         f" (ttft {a['ttft_ms']:.1f} ms)")
        log(f"round {rnd + 1}: " + "; ".join(parts))
    return out


def per_round(rounds, levels):
    """Per-round figures of the three bars, the first level as batch 1 / idle and the last as loaded:
    lists over rounds, so a caller takes medians or spreads."""
    first, last = levels[0], levels[-1]
    return {
        "llama_tokens_per_s": [l["decode_tokens_per_s"] for l, _ in rounds],
        "llama_ttft_ms": [l["ttft_ms"] for l, _ in rounds],
        "levels": {c: {"axon_tokens_per_s": [a[c]["decode_tokens_per_s"] for _, a in rounds],
                       "ratio_to_llama_batch1": [a[c]["decode_tokens_per_s"] / l["decode_tokens_per_s"] for l, a in rounds],
                       "ttft_ms": [a[c]["ttft_ms"] for _, a in rounds],
                       "ttft_over_idle": [a[c]["ttft_ms"] / a[first]["ttft_ms"] for _, a in rounds]}
                   for c in levels},
        "idle": first, "loaded": last,
    }


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--axon")
    ap.add_argument("--llama-one", action="store_true", help=argparse.SUPPRESS)
    ap.add_argument("--model", default=os.path.join(ROOT, "Models", "SmolLM2-135M-Instruct.Q4_1.gguf"))
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--prompt", type=int, default=128)
    ap.add_argument("--generate", type=int, default=128)
    ap.add_argument("--concurrency", default="1,16")
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--axon-args", default="", help="extra arguments for axon bench --decode")
    args = ap.parse_args()
    if args.llama_one:
        return llama_one(args.model, args.threads, args.prompt, args.generate)
    levels = [int(c) for c in args.concurrency.split(",")]
    rounds = interleaved_rounds(args.axon, args.model, args.threads, args.prompt, args.generate, levels, args.rounds,
                                shlex.split(args.axon_args), log=lambda line: print(line, flush=True))
    figures = per_round(rounds, levels)
    print()
    print(f"llama-cpp-python {llama_cpp.__version__}, {os.path.basename(args.model)}, threads={args.threads}, "
          f"prompt {args.prompt}, generate {args.generate}, median of {args.rounds} interleaved rounds")
    llama_rate = statistics.median(figures["llama_tokens_per_s"])
    idle_ttft = statistics.median(figures["levels"][levels[0]]["ttft_ms"])
    print(f"llama.cpp batch 1: {llama_rate:.1f} tok/s, ttft {statistics.median(figures['llama_ttft_ms']):.1f} ms")
    summary = []
    for c in levels:
        level = figures["levels"][c]
        rate = statistics.median(level["axon_tokens_per_s"])
        ratio = statistics.median(level["ratio_to_llama_batch1"])
        ttft = statistics.median(level["ttft_ms"])
        print(f"axon C={c:>3}: {rate:7.1f} tok/s aggregate, {ratio:.2f}x llama.cpp batch 1; "
              f"ttft {ttft:.1f} ms = {ttft / idle_ttft:.2f}x C={levels[0]}'s")
        summary.append({"concurrency": c, "axon_tokens_per_s": rate, "ratio_to_llama_batch1": ratio, "ttft_ms": ttft})
    print(json.dumps({"threads": args.threads, "prompt": args.prompt, "generate": args.generate,
                      "llama_tokens_per_s": llama_rate, "results": summary}))


if __name__ == "__main__":
    main()
