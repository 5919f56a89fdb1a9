#!/usr/bin/env python3
"""Tokenizer benchmark: Axon vs Hugging Face `tokenizers` on the same English prose, in one run.

  1. Writes the corpus (Benchmarks/tokenizer/corpus.py: Python's documentation topics and
     standard-library docstrings, about 2 MB) unless --corpus FILE is given.
  2. Axon: `axon tokenize --bench FILE` (single thread, best of 5 calls, each call starting
     with a cold piece cache); then the same text one paragraph per call through one reused
     `TokenizerSession` (request-sized calls, as a server would make).
  3. HF: the reference tokenizer of scripts/reference/tokenizer_fixtures.py (BPE from the GGUF,
     Digits + ByteLevel), one `encode` call on the whole text, best of 5, a freshly built
     tokenizer for each call so its word cache is cold too. TOKENIZERS_PARALLELISM=false.
  4. Checks that both give identical ids on the whole corpus (`axon tokenize --json`).
  5. Linear scaling: `axon tokenize --bench` at 1, 2, 4 and 8 MB on a run of one letter and on
     random letters (each a single pre-tokenizer piece, so BPE runs on one huge word), and on
     letters and punctuation without whitespace. MB/s should stay roughly flat (the heap adds a
     log factor); quadratic behaviour would collapse by 8x over this range.

Usage (from the repository root, after `swift build -c release`):
  "$(scripts/venv)" Benchmarks/tokenizer/bench.py [--axon .build/release/axon] [--corpus FILE] [--no-scaling]
"""
import argparse
import importlib.util
import json
import os
import random
import re
import subprocess
import sys
import tempfile
import time

os.environ["TOKENIZERS_PARALLELISM"] = "false"
ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
MODEL = os.path.join(ROOT, "Models", "SmolLM2-135M-Instruct.Q4_1.gguf")


def load_reference():
    path = os.path.join(ROOT, "scripts", "reference", "tokenizer_fixtures.py")
    spec = importlib.util.spec_from_file_location("tokenizer_fixtures", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def axon_bench(axon, path, repeats=5, paragraphs=False):
    command = [axon, "tokenize", "--model", MODEL, "--bench", path, "--bench-repeats", str(repeats)]
    if paragraphs:
        command.append("--bench-paragraphs")
    out = subprocess.run(command, check=True, capture_output=True, text=True).stdout
    match = re.search(r"= ([0-9.]+) MB/s", out)
    return float(match.group(1)), out.strip()


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--axon", default=os.path.join(ROOT, ".build", "release", "axon"))
    parser.add_argument("--corpus")
    parser.add_argument("--no-scaling", action="store_true")
    args = parser.parse_args()

    tmp = tempfile.mkdtemp(prefix="axon-tok-bench-")
    corpus = args.corpus
    if corpus is None:
        corpus = os.path.join(tmp, "corpus.txt")
        subprocess.run([sys.executable, os.path.join(ROOT, "Benchmarks", "tokenizer", "corpus.py"), corpus], check=True)
    with open(corpus, encoding="utf-8") as f:
        text = f.read()
    size_mb = len(text.encode("utf-8")) / 1e6

    axon_mbs, axon_line = axon_bench(args.axon, corpus)
    print(axon_line)
    _, paragraph_line = axon_bench(args.axon, corpus, paragraphs=True)
    print(paragraph_line + " [one call per paragraph, one reused TokenizerSession]")

    ref = load_reference()
    g = ref.read_gguf(MODEL)
    best = float("inf")
    hf_ids = None
    for _ in range(5):
        tok = ref.smollm_reference(g)
        start = time.perf_counter()
        hf_ids = tok.encode(text, add_special_tokens=False).ids
        best = min(best, time.perf_counter() - start)
    hf_mbs = size_mb / best
    print(f"HF tokenizers encode: {size_mb * 1e6:.0f} bytes, {len(hf_ids)} ids, best {best:.4f} s = {hf_mbs:.1f} MB/s (5 runs, one call)")

    axon_ids = json.loads(subprocess.run([args.axon, "tokenize", "--model", MODEL, "--json"], input=text.encode("utf-8"),
                                         check=True, capture_output=True).stdout)
    same = axon_ids == hf_ids
    print(f"ids identical on the whole corpus: {'yes' if same else 'NO'} ({len(axon_ids)} vs {len(hf_ids)} ids)")
    print(f"RESULT axon {axon_mbs:.1f} MB/s, HF {hf_mbs:.2f} MB/s, ratio {axon_mbs / hf_mbs:.1f}x")

    if not args.no_scaling:
        rng = random.Random(1)
        letters = "abcdefghijklmnopqrstuvwxyz"
        for label, make in [("one-letter run (one piece)", lambda n: "a" * n),
                            ("random letters, no whitespace (one piece)",
                             lambda n: "".join(rng.choice(letters) for _ in range(n))),
                            ("no whitespace (random letters and punctuation)",
                             lambda n: "".join(rng.choice(letters + ".,;-") for _ in range(n)))]:
            rates = []
            for mb in (1, 2, 4, 8):
                path = os.path.join(tmp, "scale.txt")
                with open(path, "w") as f:
                    f.write(make(mb * 1_000_000))
                rate, _ = axon_bench(args.axon, path, repeats=3)
                rates.append(rate)
            print(f"scaling, {label}: " + ", ".join(f"{mb} MB {r:.1f} MB/s" for mb, r in zip((1, 2, 4, 8), rates)))
    return 0 if same else 1


if __name__ == "__main__":
    sys.exit(main())
