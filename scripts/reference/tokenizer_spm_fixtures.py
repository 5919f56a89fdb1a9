#!/usr/bin/env python3
"""Reference token ids for the SentencePiece-style (`tokenizer.ggml.model = "llama"`) tokenizer,
from llama.cpp itself (llama-cpp-python 0.3.36, `Llama(model_path, vocab_only=True)`), on
Gemma 3 270M (Models/gemma-3-270m-q4_k_m.gguf: `Models/fetch gemma3-270m`).

Writes Tests/TokenizerTests/Fixtures/gemma3_cases.json:
  cases          the corpus of scripts/reference/tokenizer_fixtures.py (prose, code, CJK, Arabic,
                 emoji, ...), Gemma-specific texts (its special and user-defined tokens, space,
                 tab and newline runs, literal U+2581, "<0x41>"), and seeded random Unicode
                 strings: text, `ids` (tokenize(special=False)), `ids_special` (special=True),
                 `ids_bos` (add_bos=True, special=False) for the first few, and `decoded`
                 (llama_detokenize(ids_special, remove_special=False, unparse_special=True))
                 where it differs from the text.
  long_cases     long runs, ids as head + unit * repeat + tail (tokenizer_runs.periodic).
  attributes     llama.cpp's token attributes after its load-time fix-ups: counts, and the ids
                 whose attributes differ from what `tokenizer.ggml.token_type` alone gives.

Usage: "$(scripts/venv --llama)" scripts/reference/tokenizer_spm_fixtures.py
"""
import collections
import ctypes
import hashlib
import json
import os
import random
import struct

import llama_cpp
from gguf import GGUFReader

import tokenizer_runs as runs

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
MODEL = os.path.join(ROOT, "Models", "gemma-3-270m-q4_k_m.gguf")
OUT = os.path.join(ROOT, "Tests", "TokenizerTests", "Fixtures")

# llama_token_attr bits (include/llama.h)
ATTR = {"unknown": 1 << 0, "unused": 1 << 1, "normal": 1 << 2, "control": 1 << 3,
        "user_defined": 1 << 4, "byte": 1 << 5}
# tokenizer.ggml.token_type -> attribute, as llama_vocab::impl::load maps it
TYPE_ATTR = {1: ATTR["normal"], 2: ATTR["unknown"], 3: ATTR["control"], 4: ATTR["user_defined"],
             5: ATTR["unused"], 6: ATTR["byte"]}

GEMMA_TEXTS = [
    ("chat_template", "<start_of_turn>user\nWhat is 2+2?<end_of_turn>\n<start_of_turn>model\n4<end_of_turn>\n"),
    ("bos_eos_text", "<bos>Hello<eos> <pad><unk><mask>"),
    ("sentencepiece_markers", "<s>a</s> <s> </s>"),
    ("unused_tokens", "<unused0><unused12>x<unused6241>"),
    ("image_tokens", "[multimodal]<start_of_image><end_of_image>"),
    ("html_user_defined", "<table><tr><td>1</td></tr></table><b>bold</b><em>x</em><div>d</div>"),
    ("html_adjacent", "<<s>><s><b></b><i><u></u></i><a></a></s>"),
    ("space_runs", "a  b   c    d" + " " * 31 + "e" + " " * 32 + "f" + " " * 33 + "g" + " " * 70 + "h"),
    ("newline_runs", "a\nb\n\nc\n\n\nd" + "\n" * 31 + "e" + "\n" * 40 + "f"),
    ("tab_runs", "a\tb\t\tc" + "\t" * 35 + "d\t \t  \t\n\t"),
    ("mixed_ws", " \n \n\n  \t \t\t   \r\n\r\n x"),
    ("literal_sp_marker", "\u2581hello \u2581\u2581world\u2581 \u2581"),
    ("byte_token_text", "<0x41><0x0A> <0xFF>x<0x"),
    ("leading_space", " Hello"),
    ("two_leading_spaces", "  Hello"),
    ("partial_specials", "<start_of_turn <end_of_turn>> <bos <unused <td"),
    ("gt_before_space", "a> b >> c ->  d =>\te"),
]


def open_vocab():
    return llama_cpp.Llama(model_path=MODEL, vocab_only=True, verbose=False)


def detokenize(llm, ids):
    """llama.cpp's own detokenize, rendering control tokens (unparse_special) and keeping bos/eos."""
    vocab = llm._model.vocab
    arr = (llama_cpp.llama_token * max(1, len(ids)))(*ids)
    size = max(64, 8 * len(ids) + 64)
    while True:
        buf = ctypes.create_string_buffer(size)
        n = llama_cpp.llama_detokenize(vocab, arr, len(ids), buf, size, False, True)
        if n >= 0:
            return buf.raw[:n]
        size = -n + 1


def tokenize(llm, text, add_bos=False, special=False):
    return llm.tokenize(text.encode("utf-8"), add_bos=add_bos, special=special)


def entry(llm, name, text, with_bos):
    e = {"text": text, "ids": tokenize(llm, text), "ids_special": tokenize(llm, text, special=True)}
    if name is not None:
        e["name"] = name
    if with_bos:
        e["ids_bos"] = tokenize(llm, text, add_bos=True)
    decoded = detokenize(llm, e["ids_special"]).decode("utf-8", errors="replace")
    if decoded != text:
        e["decoded"] = decoded
    return e


RELEVANT = ATTR["control"] | ATTR["user_defined"] | ATTR["unknown"] | ATTR["normal"] | ATTR["byte"]


def digest(llm):
    """The documented `SentencePieceTokenizer.sha256`, from the GGUF's texts and scores and
    llama.cpp's own token attributes (after its load-time fix-ups)."""
    r = GGUFReader(MODEL)
    f = r.fields["tokenizer.ggml.tokens"]
    tokens = [bytes(f.parts[i]) for i in f.data]
    sc = r.fields["tokenizer.ggml.scores"]
    scores = [struct.unpack("<I", struct.pack("<f", float(sc.parts[i][0])))[0] for i in sc.data]
    vocab = llm._model.vocab

    def scalar(key):
        fld = r.fields.get(key)
        return None if fld is None else fld.parts[fld.data[0]].tolist()[0]

    h = hashlib.sha256()

    def s(b):
        h.update(struct.pack("<I", len(b)) + b)

    s(b"axon-tokenizer-v1")
    s(b"llama")
    h.update(struct.pack("<I", len(tokens)))
    for i, (t, sbits) in enumerate(zip(tokens, scores)):
        s(t)
        h.update(struct.pack("<II", llama_cpp.llama_vocab_get_attr(vocab, i) & RELEVANT, sbits))
    add_bos = llama_cpp.llama_vocab_get_add_bos(vocab)
    add_eos = llama_cpp.llama_vocab_get_add_eos(vocab)
    h.update(struct.pack("<iii", llm.token_bos() if add_bos else -1, llm.token_eos() if add_eos else -1,
                         scalar("tokenizer.ggml.unknown_token_id")))
    h.update(bytes([1 if scalar("tokenizer.ggml.add_space_prefix") else 0]))
    return h.hexdigest()


def attributes(llm):
    r = GGUFReader(MODEL)
    tt = r.fields["tokenizer.ggml.token_type"]
    types = [int(tt.parts[i][0]) for i in tt.data]
    vocab = llm._model.vocab
    n = llama_cpp.llama_vocab_n_tokens(vocab)
    counts = collections.Counter()
    changed = []
    for i in range(n):
        a = llama_cpp.llama_vocab_get_attr(vocab, i)
        for k, bit in ATTR.items():
            if a & bit:
                counts[k] += 1
        # Only the bits that steer tokenization and decoding (unused is informational).
        if a & RELEVANT != TYPE_ATTR.get(types[i], 0) & RELEVANT:
            changed.append([i, a & RELEVANT])
    return {"n_tokens": n, "counts": dict(counts), "changed": changed,
            "gguf_type_counts": {str(k): v for k, v in sorted(collections.Counter(types).items())}}


def main():
    ref = runs.reference_corpus()
    llm = open_vocab()
    cases = []
    for k, (name, text) in enumerate(ref.CORPUS + GEMMA_TEXTS):
        cases.append(entry(llm, name, text, with_bos=k < 12))
    for k, text in enumerate(ref.SPECIAL_TEXTS):
        cases.append(entry(llm, f"special_text_{k}", text, with_bos=False))
    long_word = "".join(random.Random(7).choice("abcdefghijklmnopqrstuvwxyz") for _ in range(10000))
    cases.append(entry(llm, "random_letters_10k", long_word, with_bos=False))
    randoms = [entry(llm, None, t, with_bos=False) for t in ref.random_strings(1200, seed=20261201)]
    long_cases = [{"repeat": s, "count": n, "ids": runs.periodic(tokenize(llm, s * n))}
                  for s, n in ref.LONG_CASES + [("日本", 20_000), (" a  b", 20_000)]]
    out = {
        "source": f"llama-cpp-python {llama_cpp.__version__} (vocab_only) on {os.path.basename(MODEL)}",
        "add_bos": llama_cpp.llama_vocab_get_add_bos(llm._model.vocab),
        "add_eos": llama_cpp.llama_vocab_get_add_eos(llm._model.vocab),
        "bos": llm.token_bos(), "eos": llm.token_eos(),
        "sha256": digest(llm),
        "attributes": attributes(llm),
        "cases": cases, "random_cases": randoms, "long_cases": long_cases,
    }
    path = os.path.join(OUT, "gemma3_cases.json")
    with open(path, "w", encoding="utf-8") as f:
        json.dump(out, f, ensure_ascii=True, separators=(",", ":"))
    print(f"wrote {path}: {os.path.getsize(path)} bytes")

    # Files the loader must reject, each breaking one rule.
    import gguf
    for name, model, scores in [("unknown_vocab_type.gguf.fixture", "bert", None),
                                ("spm_short_scores.gguf.fixture", "llama", [0.0, -1.0])]:
        w = gguf.GGUFWriter(os.path.join(OUT, name), arch="llama")
        w.add_tokenizer_model(model)
        w.add_token_list(["a", "b", "ab"])
        w.add_token_types([1, 1, 1])
        if scores is not None:
            w.add_token_scores(scores)
        w.write_header_to_file()
        w.write_kv_data_to_file()
        w.write_tensors_to_file()
        w.close()
        print(f"wrote {name}")


if __name__ == "__main__":
    main()
