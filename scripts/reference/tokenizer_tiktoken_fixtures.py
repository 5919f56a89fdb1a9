#!/usr/bin/env python3
"""Reference token ids for the network's standard tokenizer (GPT-2 from tiktoken ranks), from
PyPI `tiktoken`: Encoding("gpt2", pat_str=GPT-2, mergeable_ranks=load_tiktoken_bpe(path),
special_tokens={"<|endoftext|>": 50256}) over Models/gpt2.tiktoken (`Models/fetch gpt2`).

Writes Tests/TokenizerTests/Fixtures/gpt2_tiktoken_cases.json:
  cases / random_cases  the corpus of scripts/reference/tokenizer_fixtures.py (with its split
                        scanner edge texts) and seeded random
                        Unicode strings: text, `ids` (encode_ordinary), `ids_special`
                        (encode(allowed_special="all")), and `decoded` (decode(ids)) where it
                        differs from the text;
  long_cases            long runs, ids as head + unit * repeat + tail (tokenizer_runs.periodic);
  ranks_sha256          hashlib's digest of the ranks file;
  sha256                the documented `Tokenizer.sha256` with tiktoken's merge rule spelled out
                        (every split of a token into two tokens is a merge at the token's rank).

Usage: "$(scripts/venv)" scripts/reference/tokenizer_tiktoken_fixtures.py
"""
import hashlib
import json
import os
import struct

import tiktoken
import tiktoken.load

import tokenizer_runs as runs

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
RANKS = os.path.join(ROOT, "Models", "gpt2.tiktoken")
OUT = os.path.join(ROOT, "Tests", "TokenizerTests", "Fixtures")
GPT2_PATTERN = r"""'s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+"""
EOT = "<|endoftext|>"


def encoding():
    ranks = tiktoken.load.load_tiktoken_bpe(RANKS)
    return tiktoken.Encoding("gpt2", pat_str=GPT2_PATTERN, mergeable_ranks=ranks, special_tokens={EOT: 50256}), ranks


def byte_level(b):
    """GPT-2's byte -> printable character table (the vocabulary spelling in the digest)."""
    bs = list(range(0x21, 0x7F)) + list(range(0xA1, 0xAD)) + list(range(0xAE, 0x100))
    cs = bs[:]
    n = 0
    for x in range(256):
        if x not in bs:
            bs.append(x)
            cs.append(256 + n)
            n += 1
    table = {x: chr(c) for x, c in zip(bs, cs)}
    return "".join(table[x] for x in b)


def digest(ref, ranks):
    by_rank = sorted(ranks.items(), key=lambda kv: kv[1])
    tokens = [byte_level(t) for t, _ in by_rank] + [EOT]
    types = [1] * len(by_rank) + [3]
    merges = []
    for t, rank in by_rank:
        for k in range(1, len(t)):
            if t[:k] in ranks and t[k:] in ranks:
                merges.append((ranks[t[:k]], ranks[t[k:]]))
    # The same definition as tokenizer_fixtures.digest, plus item 5: tiktoken's whole-piece rule.
    h = hashlib.sha256()

    def s(x):
        b = x.encode("utf-8")
        h.update(struct.pack("<I", len(b)) + b)

    s("axon-tokenizer-v1")
    s("gpt2")
    h.update(struct.pack("<I", len(tokens)))
    for t, ty in zip(tokens, types):
        s(t)
        h.update(struct.pack("<i", ty))
    h.update(struct.pack("<I", len(merges)))
    for left, right in merges:
        h.update(struct.pack("<ii", left, right))
    h.update(struct.pack("<iii", -1, -1, -1))
    h.update(bytes([0, 1]))
    return h.hexdigest()


def cache_and_split_texts():
    """Texts for the piece cache's inline keys and the split scanner's ASCII runs: pieces of every
    length 1..48 bytes (the cache's limit), each twice so the second is a cache hit, next to pieces
    that share their first 8 or 16 bytes and differ after, or differ only in length; contractions;
    whitespace runs; numbers; letters, numbers and spaces of several Unicode categories."""
    letters = "abcdefghijklmnopqrstuvwxyz" * 2
    words = []
    for n in range(1, 49):
        w = letters[:n]
        words += [w, w, w[:-1] + "Z", w[:-1] + "Z", " " + w, " " + w]
    yield "cache_every_length", " ".join(words)
    stems = ["internationaliza", "abcdefgh", "abcdefghijklmnop", "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijkl"]
    yield "cache_shared_prefixes", " ".join(f"{st}{tail} {st}{tail}" for st in stems
                                            for tail in ["", "x", "y", "xy", "yx", "tion"])
    yield "cache_multibyte_lengths", " ".join(["é" * k + " " + "é" * k for k in range(1, 25)]
                                              + ["日本語" * k for k in range(1, 9)])
    yield "contractions", ("it's we're they've I'm you'll he'd 's 't 're 've 'm 'll 'd 'S 'T 'RE 'Ve 'LL "
                           "''s '''' 'x 'r 'l")
    yield "whitespace_runs", "a  b   c\t\t d\n\n\ne  \n f \r\n g\u00a0\u00a0h \u2003\u3000i   \n\n   "
    yield "numbers", "123 4567 12345678901234567890 3.14 1,000,000 x2y3 ١٢٣ ½¾ ² ⅷ 007 a1b22c333"
    yield "unicode_categories", ("naïve café Ελληνικά русский 日本語 한국어 عربى עברית हिन्दी ไทย 🙂👍🏽 "
                                 "\u200d\u0301a ǅungla ʰmod 〇 Ⅻ ㈠ $€¥ «»—… ¿¡ x\u0300y")
    yield "ascii_punctuation_runs", "a.b,c;d!!!e??f...g---h ((i)) [j]{k} <l>=m+n*o/p\\q|r&s^t%u$v#w@x~y`z"


def ascii_block_texts():
    """Long ASCII texts for the encoder's 64-byte block kernel (axon_ascii_piece_starts): seeded
    runs of words, numbers, punctuation, contractions and apostrophes, single and repeated spaces,
    tabs, CR, LF, VT, FF and control bytes, so that every kind of piece boundary falls at every
    offset of a block, across block edges too; each text also shifted by 1..63 leading bytes, and
    one that ends at a block edge with a whitespace run."""
    import random
    rng = random.Random(20261203)
    atoms = ["the", "Tokenizer", "x", "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopq", "42", "3.14", "1000000",
             "'s", "'t", "'re", "'ve", "'m", "'ll", "'d", "'S", "'x", "''", "'", "don't", "we're", "it's",
             ".", ",", "!?", "...", "--", "(", ")", "[a]", "{b}", "<c>", "a_b", "#", "$", "@", "\\", "`",
             " ", "  ", "   ", "\t", "\n", "\n\n", "\r\n", "\x0b", "\x0c", " \n", "\n ", "\t ", " \t\t",
             "\x00", "\x01", "\x1c", "\x1f", "\x7f"]
    for k in range(4):
        parts = []
        while sum(len(p) for p in parts) < 2500:
            parts.append(rng.choice(atoms))
            if rng.random() < 0.5:
                parts.append(" ")
        text = "".join(parts)
        yield f"ascii_blocks_{k}", text
        yield f"ascii_blocks_{k}_shifted", "".join(rng.choice("ab '\n") for _ in range(1 + 19 * k)) + text
    yield "ascii_blocks_edge_whitespace", "word " * 25 + "      \n\n"


def entry(enc, name, text):
    e = {"text": text, "ids": enc.encode_ordinary(text), "ids_special": enc.encode(text, allowed_special="all")}
    if name is not None:
        e["name"] = name
    decoded = enc.decode(e["ids_special"])
    if decoded != text:
        e["decoded"] = decoded
    return e


def main():
    ref = runs.reference_corpus()
    enc, ranks = encoding()
    texts = ref.CORPUS + [(f"special_text_{k}", t) for k, t in enumerate(ref.SPECIAL_TEXTS)] + [
        ("endoftext_forms", "<|endoftext|>a<|endoftext|><|endoftext|> <|endoftext <|endoftext|>|>"),
        ("left_padding_like", "<|endoftext|>" * 5 + "Hello world"),
    ] + list(cache_and_split_texts()) + list(ref.scanner_edge_texts()) + list(ascii_block_texts())
    cases = [entry(enc, name, text) for name, text in texts]
    randoms = [entry(enc, None, t) for t in ref.random_strings(1200, seed=20261202)]
    long_cases = [{"repeat": s, "count": n, "ids": runs.periodic(enc.encode_ordinary(s * n))}
                  for s, n in ref.LONG_CASES + [("日本", 20_000)]]
    with open(RANKS, "rb") as f:
        ranks_sha = hashlib.sha256(f.read()).hexdigest()
    out = {"source": f"tiktoken {tiktoken.__version__} over {os.path.basename(RANKS)}",
           "ranks_sha256": ranks_sha, "sha256": digest(ref, ranks), "n_vocab": enc.n_vocab,
           "cases": cases, "random_cases": randoms, "long_cases": long_cases}
    path = os.path.join(OUT, "gpt2_tiktoken_cases.json")
    with open(path, "w", encoding="utf-8") as f:
        json.dump(out, f, ensure_ascii=True, separators=(",", ":"))
    print(f"wrote {path}: {os.path.getsize(path)} bytes")


if __name__ == "__main__":
    main()
