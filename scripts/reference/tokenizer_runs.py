"""Shared by the new tokenizer fixture scripts: the BPE script's corpus, and compact, exact
encodings of the ids of long repeated texts.

`periodic(ids)` returns {"head": [...], "unit": [...], "repeat": k, "tail": [...]} with
ids == head + unit * k + tail and a short head and tail; the Swift tests expand it
(Fixtures.periodicDecoded). Run-length encoding cannot shrink alternating ids (" \\n" x 30000).
"""
import bisect
import importlib.util
import os

HERE = os.path.dirname(os.path.abspath(__file__))


def reference_corpus():
    """scripts/reference/tokenizer_fixtures.py as a module (CORPUS, SPECIAL_TEXTS, random_strings, ...)."""
    spec = importlib.util.spec_from_file_location("tokenizer_fixtures", os.path.join(HERE, "tokenizer_fixtures.py"))
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def periodic(ids, max_period=16, max_head=64):
    n = len(ids)
    best = {"head": ids, "unit": [], "repeat": 0, "tail": []}
    best_size = n
    for p in range(1, min(max_period, n) + 1):
        bad = [i for i in range(p, n) if ids[i] != ids[i - p]] + [n]   # where period p breaks
        for h in range(0, min(max_head, n - p) + 1):
            e = bad[bisect.bisect_left(bad, h + p)]   # ids[h:e] has period p
            k = (e - h) // p
            tail = ids[h + k * p:]
            if h + p + len(tail) < best_size:
                best, best_size = {"head": ids[:h], "unit": ids[h:h + p], "repeat": k, "tail": tail}, h + p + len(tail)
    assert best["head"] + best["unit"] * best["repeat"] + best["tail"] == ids
    return best
