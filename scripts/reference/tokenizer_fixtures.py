#!/usr/bin/env python3
"""Reference token ids for the Tokenizer tests, from Hugging Face `tokenizers` (PyPI).

Writes into Tests/TokenizerTests/Fixtures/:
  smollm_cases.json          corpus and split scanner edge cases for the default model: text, expected ids (plain and
                             with special tokens parsed), HF-decoded text where it differs,
                             long runs (run-length encoded ids), and the expected sha256.
  smollm_random.json         a few thousand seeded random Unicode strings with expected ids.
  smollm_skeleton.tokenizer.json
                             HF's own tokenizer.json for the reference (pre-tokenizer, decoder,
                             added tokens) with model.vocab/merges emptied to stay small; the
                             test fills them from the GGUF.
  gpt2small.tokenizer.json   a complete small byte-level BPE (the first merges of the default
                             model that close over a byte alphabet missing three bytes) using
                             Split(GPT-2 regex) + ByteLevel(use_regex=False), unk_token with
                             fuse_unk, a bos template and one non-special added token.
  gpt2small.gguf             the same vocabulary as a GGUF with tokenizer.ggml.pre = "gpt2".
  gpt2small_cases.json       expected ids for both small tokenizers.
  bad_*.gguf                 tiny GGUFs that must be rejected (unknown model/pre, bad merges).

The reference for the default model is BPE(vocab, merges) from the GGUF's tokens and merges with
pre-tokenizer Sequence[Digits(individual_digits=True), ByteLevel(add_prefix_space=False,
use_regex=True)] and a ByteLevel decoder (it matches llama.cpp on this model).

Usage: "$(scripts/venv)" scripts/reference/tokenizer_fixtures.py
"""
import hashlib
import json
import os
import random
import struct

import gguf
from gguf import GGUFReader
from tokenizers import AddedToken, Regex, Tokenizer, decoders, models, pre_tokenizers, processors

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
MODEL = os.path.join(ROOT, "Models", "SmolLM2-135M-Instruct.Q4_1.gguf")
OUT = os.path.join(ROOT, "Tests", "TokenizerTests", "Fixtures")
GPT2_REGEX = r"""'s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+"""


def read_gguf(path):
    r = GGUFReader(path)

    def strs(key):
        f = r.fields[key]
        return [bytes(f.parts[i]).decode("utf-8") for i in f.data]

    def scalar(key):
        f = r.fields.get(key)
        return None if f is None else f.parts[f.data[0]].tolist()[0]

    def string(key):
        f = r.fields[key]
        return bytes(f.parts[f.data[0]]).decode("utf-8")

    tt = r.fields["tokenizer.ggml.token_type"]
    return {
        "tokens": strs("tokenizer.ggml.tokens"),
        "types": [int(tt.parts[i][0]) for i in tt.data],
        "merges": strs("tokenizer.ggml.merges"),
        "model": string("tokenizer.ggml.model"),
        "pre": string("tokenizer.ggml.pre"),
        "bos": scalar("tokenizer.ggml.bos_token_id"),
        "eos": scalar("tokenizer.ggml.eos_token_id"),
        "add_bos": bool(scalar("tokenizer.ggml.add_bos_token")),
    }


def digest(pre, tokens, types, merge_ids, add_bos_id=-1, add_eos_id=-1, unknown_byte_id=-1, fuse=False):
    """The documented `Tokenizer.sha256` definition, computed independently."""
    h = hashlib.sha256()

    def s(x):
        b = x.encode("utf-8")
        h.update(struct.pack("<I", len(b)) + b)

    s("axon-tokenizer-v1")
    s(pre)
    h.update(struct.pack("<I", len(tokens)))
    for t, ty in zip(tokens, types):
        s(t)
        h.update(struct.pack("<i", ty))
    h.update(struct.pack("<I", len(merge_ids)))
    for left, right in merge_ids:
        h.update(struct.pack("<ii", left, right))
    h.update(struct.pack("<iii", add_bos_id, add_eos_id, unknown_byte_id))
    h.update(bytes([1 if fuse else 0]))
    return h.hexdigest()


def rle(ids):
    out = []
    for i in ids:
        if out and out[-1][0] == i:
            out[-1][1] += 1
        else:
            out.append([i, 1])
    return out


CORPUS = [
    ("empty", ""),
    ("prose", "The quick brown fox jumps over the lazy dog. It wasn't the dog's fault; they'd been "
              "running all day, and we'll never know what they've seen."),
    ("prose2", "In 1859, Charles Darwin published On the Origin of Species. The book introduced the "
               "scientific theory that populations evolve over the course of generations through a "
               "process of natural selection.\n\nIt presented a body of evidence."),
    ("code_python", "def fibonacci(n: int) -> int:\n    if n < 2:\n        return n\n    return "
                    "fibonacci(n - 1) + fibonacci(n - 2)\n\nprint([fibonacci(i) for i in range(10)])\n"),
    ("code_c", "int main(int argc, char **argv) {\n\tfor (int i = 0; i < argc; ++i) {\n\t\tprintf(\"%s\\n\", argv[i]);\n\t}\n\treturn 0;\n}\n"),
    ("code_swift", "public func encode(_ text: String) -> [Int32] {\n    guard !text.isEmpty else { return [] }\n    return text.utf8.map { Int32($0) } // TODO: x_y_z\n}"),
    ("json", '{"name": "Axon", "version": "1.0.0", "tags": ["a", "b"], "n": -12.5e3, "ok": true}'),
    ("numbers", "3.14159 2,718 1e-9 0x1F 1_000_000 -42 +7 99.99% $1,234.56 €12 ½ ² ³ ¼ Ⅻ ١٢٣ ０１２"),
    ("dates", "2024-01-15T12:34:56Z, 15/01/2024, Jan 15th 2024, 12:00pm, 1999–2001, '99"),
    ("whitespace_runs", "a  b   c    d\n\n\ne\t\tf \t g\u00a0h\u3000i\u2028j  \n  k   "),
    ("leading_trailing_spaces", "   leading and trailing   "),
    ("only_spaces", "     "),
    ("only_newlines", "\n\n\n"),
    ("crlf_tabs", "line one\r\nline two\r\n\tindented\r\n\r\nend\r"),
    ("accented", "Café naïve façade résumé Ångström Øre Æsir ß Łódź İstanbul ĳ Ǆ"),
    ("cjk", "日本語のテキストと中文文本，还有한국어 텍스트。東京は日本の首都です。"),
    ("arabic", "مرحبا بالعالم! هذه جملة عربية مع أرقام ١٢٣ وعلامات ترقيم؟"),
    ("devanagari", "नमस्ते दुनिया। यह हिंदी में एक वाक्य है, जिसमें संख्या १२३ है।"),
    ("emoji", "I ❤️ tokenizers 😀😃😄 👍🏽 👩‍👩‍👧‍👦 🏳️‍🌈 👨🏿‍💻 🇫🇷🇯🇵 ✌🏻"),
    ("combining", "e\u0301 a\u0308 n\u0303 Z\u0335\u0321\u0327a\u0336\u0328l\u0337\u0322g\u0338o q\u0307\u0323"),
    ("contractions", "'s 't 're 've 'm 'll 'd 'S 'T 'RE 'Re 'VE 'M 'LL 'Ll 'D I'm you'RE we'Ll "
                     "it''s ''s '' ' 's's 'x rock'n'roll"),
    ("apostrophe_forms", "don’t can't won't y'all o'clock 'tis ’s ‘quoted’"),
    ("long_word", "Pneumonoultramicroscopicsilicovolcanoconiosis " * 3
                  + "Donaudampfschifffahrtselektrizitätenhauptbetriebswerkbauunterbeamtengesellschaft"),
    ("no_whitespace", "thisisaverylongstringwithoutanywhitespaceatallwhichgoesonandonandon" * 5),
    ("punctuation_runs", "!!! ??? ... --- *** ### @@@ $$$ %%% ^^^ &&& ((( ))) [[[ ]]] {{{ }}} <<< >>> ||| ~~~"),
    ("mixed_scripts", "Helloмирこんにちは세계مرحباשלוםनमस्ते你好Γειά"),
    ("control_chars", "a\x00b\x01c\x07d\x1be\x7ff\x04g\x06h\x13i\x14j\x16k\x1dl"),
    ("special_like", "<|im_start|>user\nHello<|im_end|>\n<|im_start|>assistant\n<repo_name>x<file_sep><|endoftext|>"),
    ("special_partial", "<|im_start <|im_end| <|endoftext|><|endoftext|> <|im_start|><|im_start|>"),
    ("url_email", "https://example.com/path?query=1&x=y#frag mailto:someone@example.org"),
    ("math", "∀x∈ℝ: x² ≥ 0, ∑ᵢ aᵢ = ∫₀¹ f(x) dx ≈ 3.0 ± 0.1"),
    ("digits_with_spaces", " 1 22 333 4444 55555 a1b2c3 1a 1 a 1  a  1"),
    ("fullwidth_and_compat", "ＡＢＣ　ｄｅｆ　１２３ ﬁ ﬂ ㎏ ℃ №"),
    ("nbsp_and_friends", "a\u00a0b\u2000c\u2009d\u200ae\u202ff\u205fg\u0085h\u000bi\u000cj\u001ck"),
    ("zero_width", "a\u200bb\u200cc\u200dd\ufeffe\u2060f"),
    ("private_use_and_planes", "\ue000\uf8ff\U000f0000\U00010000\U0001d11e\U00020000\U00040000\U000e0001"),
]

def scanner_edge_texts():
    """Edges of the split scanner's ASCII fast paths (letter runs eight bytes at a time, other and
    whitespace runs byte by byte) and of the piece key's word loads, as (name, text): letter runs
    of every length up to 20 ending in each kind of byte, a byte >= 0x80 at every offset of a
    word, case-fold neighbours of the letters (@ [ ` {), contractions at piece ends, trailing and
    mixed whitespace runs, a space before each class, and short pieces far from the text's end
    (16 readable bytes) next to the same pieces at its end."""
    letters = "abcdefghijklmnopqrstuvwxyz"
    enders = [" ", ".", "7", "\u00e9", "\u2014", "\n", "'", "_", "\u00a0", "\u65e5", "\x00", ""]
    yield "letter_run_lengths", "|".join(letters[:k] + e for k in range(1, 21) for e in enders)
    yield "letter_runs_at_end", " ".join(letters[:k] for k in range(1, 21))
    yield "high_byte_every_offset", " ".join(letters[:k] + x + letters[k:k + 6] for k in range(0, 18)
                                             for x in ["\u00e9", "\u00d7", "\u0301", "\u3000", "\U0001F642"])
    yield "case_fold_neighbours", "a@b[c`d{e A@ Z[ z{ `a {z @Z [A ~q \x7fq Q\x7f"
    yield "contractions_at_piece_ends", ("don't it's. they're\n I'll we've you'd abc's ABC'S x' 'end "
                                         "o'clock rock'n'roll 's't're've'm'll'd '''s \u00e9'sa 7's 's")
    yield "trailing_whitespace", "word   "
    yield "trailing_newlines", "word\n\n\n"
    yield "whitespace_then_non_ascii", ("a  \u00e9 b \u00a0c d\u00a0 e f \u3000g h\t\u3000 i\n\u00a0\u00a0j k   "
                                        "\u65e5 \n\u2028 l\u0085m \u0085 n")
    yield "space_before_each_class", "x 1 x ( x \u00e9 x \u00a0 x 's x \u2014 x \u0661 x \t x  y \x00 x \x7f"
    yield "other_runs", "...\u2014\u2026 (\u00e9) !!\u00e9 --7 ++a **\u00a0 \x01\x02b \x1c\x1d\x1e\x1f c"
    words = ["a", "of", "the", " the", "ing", " token", "izer", " internationalization", "qzxj", " qzxjvw",
             "abcdefgh", "abcdefghi", "abcdefghijklmnop", "abcdefghijklmnopq", "\u00e9t\u00e9", "\u65e5\u672c"]
    yield "short_pieces_far_from_end", "".join(w + "," for w in words) + " " * 20 + "".join(w + "." for w in words)


SPECIAL_TEXTS = [
    "<|im_start|>system\nYou are a helpful assistant.<|im_end|>\n<|im_start|>user\nHi!<|im_end|>\n",
    "<|endoftext|>",
    "<|im_start|><|im_start|><|im_end|>",
    "<|im_start <|im_end|x<|endoftext|",
    "text<repo_name>name<file_sep>code<filename>f.py<gh_stars>10<issue_start>",
    "<jupyter_start><jupyter_text>t<jupyter_code>c<jupyter_output>o<jupyter_script>s<empty_output>",
    " <|im_end|> ",
]

LONG_CASES = [("a", 1_000_000), (" ", 100_000), ("😀", 3_000), ("1", 100_000), ("ab", 200_000),
              ("\n", 50_000), ("a ", 50_000), (" a", 50_000), (" \n", 30_000)]


def random_strings(count, seed):
    rng = random.Random(seed)
    pools = [
        lambda: rng.choice("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ") * rng.randint(1, 3),
        lambda: rng.choice(["the", "and", " of", " to", "ing", "tion", " a", "I", "We", "hello"]),
        lambda: rng.choice("0123456789") * rng.randint(1, 4),
        lambda: " " * rng.randint(1, 4),
        lambda: rng.choice(["\t", "\n", "\r\n", "\r", "\n\n", " \n", "\t "]),
        lambda: rng.choice("!\"#$%&'()*+,-./:;<=>?@[\\]^_`{|}~"),
        lambda: rng.choice(["'s", "'S", "'t", "'re", "'RE", "'Re", "'ve", "'m", "'ll", "'LL", "'d", "'"]),
        lambda: chr(rng.randint(0xC0, 0x24F)),
        lambda: chr(rng.randint(0x300, 0x36F)),
        lambda: chr(rng.randint(0x370, 0x4FF)),
        lambda: chr(rng.randint(0x4E00, 0x9FFF)),
        lambda: chr(rng.randint(0x3040, 0x30FF)),
        lambda: chr(rng.randint(0xAC00, 0xD7A3)),
        lambda: chr(rng.randint(0x600, 0x6FF)),
        lambda: chr(rng.randint(0x900, 0x97F)),
        lambda: chr(rng.randint(0x1F300, 0x1FAFF)),
        lambda: chr(rng.randint(0x1F466, 0x1F469)) + "\u200d" + chr(rng.randint(0x1F466, 0x1F469)),
        lambda: chr(rng.randint(0x1F44A, 0x1F450)) + chr(rng.randint(0x1F3FB, 0x1F3FF)),
        lambda: rng.choice(["\ufe0f", "\u200d", "\u200b", "\u00a0", "\u3000", "\u2028", "\u0085",
                            "\u000b", "\u000c", "\u001c", "\u2003", "\u180e", "\u2060"]),
        lambda: rng.choice(["²", "³", "¹", "¼", "٣", "۴", "७", "Ⅷ", "５", "𝟙", "⑳", "〇"]),
        lambda: chr(rng.choice([c for c in (rng.randint(0, 0x10FFFF) for _ in range(4))
                                if not 0xD800 <= c <= 0xDFFF] or [0x41])),
    ]
    out = []
    for _ in range(count):
        n = rng.randint(1, 12)
        out.append("".join(rng.choice(pools)() for _ in range(n)))
    return out


def smollm_reference(g):
    vocab = {t: i for i, t in enumerate(g["tokens"])}
    merges = [tuple(m.split(" ")) for m in g["merges"]]
    tok = Tokenizer(models.BPE(vocab, merges))
    tok.pre_tokenizer = pre_tokenizers.Sequence([
        pre_tokenizers.Digits(individual_digits=True),
        pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=True),
    ])
    tok.decoder = decoders.ByteLevel()
    return tok


def with_specials(tok, g):
    """The same tokenizer with the control tokens registered as HF special added tokens."""
    special = Tokenizer.from_str(tok.to_str())
    special.add_special_tokens([AddedToken(t, special=True, normalized=False)
                                for t, ty in zip(g["tokens"], g["types"]) if ty == 3])
    return special


def write_json(name, value):
    path = os.path.join(OUT, name)
    with open(path, "w", encoding="utf-8") as f:
        # ASCII escapes: Foundation drops a U+FEFF that is a whole string when reading raw UTF-8.
        json.dump(value, f, ensure_ascii=True, separators=(",", ":"))
    print(f"wrote {path}: {os.path.getsize(path)} bytes")


def case_entry(tok, name, text):
    ids = tok.encode(text, add_special_tokens=False).ids
    entry = {"name": name, "text": text, "ids": ids}
    decoded = tok.decode(ids)
    if decoded != text:
        entry["decoded"] = decoded
    return entry


def small_vocabulary(g, merge_count, missing_bytes):
    """The first `merge_count` merges of the default model that close over a byte alphabet."""
    bs = list(range(0x21, 0x7F)) + list(range(0xA1, 0xAD)) + list(range(0xAE, 0x100))
    cs = bs[:]
    n = 0
    for b in range(256):
        if b not in bs:
            bs.append(b)
            cs.append(256 + n)
            n += 1
    byte_char = {b: chr(c) for b, c in zip(bs, cs)}
    tokens = ["<unk>", "<s>", "</s>"] + [byte_char[b] for b in range(256) if b not in missing_bytes]
    present = set(tokens)
    merges = []
    for m in g["merges"]:
        left, right = m.split(" ")
        if left in present and right in present:
            merges.append(m)
            if left + right not in present:
                tokens.append(left + right)
                present.add(left + right)
            if len(merges) == merge_count:
                break
    tokens.append("[[ADDED]]")
    return tokens, merges


def write_gguf(path, tokens, types, merges, model="gpt2", pre="gpt2", bos=None, eos=None, add_bos=None):
    w = gguf.GGUFWriter(path, arch="llama")
    w.add_tokenizer_model(model)
    if pre is not None:
        w.add_tokenizer_pre(pre)
    w.add_token_list(tokens)
    w.add_token_types(types)
    w.add_token_merges(merges)
    if bos is not None:
        w.add_bos_token_id(bos)
    if eos is not None:
        w.add_eos_token_id(eos)
    if add_bos is not None:
        w.add_add_bos_token(add_bos)
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()
    print(f"wrote {path}: {os.path.getsize(path)} bytes")


def main():
    os.makedirs(OUT, exist_ok=True)
    g = read_gguf(MODEL)
    assert g["model"] == "gpt2" and g["pre"] == "smollm", (g["model"], g["pre"])
    tok = smollm_reference(g)
    special = with_specials(tok, g)
    special.encode_special_tokens = False
    vocab = {t: i for i, t in enumerate(g["tokens"])}
    merge_ids = [(vocab[m.split(" ")[0]], vocab[m.split(" ")[1]]) for m in g["merges"]]

    cases = [case_entry(tok, name, text) for name, text in CORPUS + list(scanner_edge_texts())]
    for entry in cases:
        # The pre-tokenizer's pieces as substrings of the input (offsets are in characters).
        entry["pieces"] = [entry["text"][a:b] for _, (a, b) in tok.pre_tokenizer.pre_tokenize_str(entry["text"])]
    specials = [{"text": t,
                 "ids": tok.encode(t, add_special_tokens=False).ids,
                 "ids_parse_special": special.encode(t, add_special_tokens=False).ids}
                for t in SPECIAL_TEXTS]
    long_cases = [{"repeat": s, "count": n, "ids_rle": rle(tok.encode(s * n, add_special_tokens=False).ids)}
                  for s, n in LONG_CASES]
    long_word = "".join(random.Random(7).choice("abcdefghijklmnopqrstuvwxyz") for _ in range(10000))
    cases.append(case_entry(tok, "random_letters_10k", long_word))
    write_json("smollm_cases.json", {
        "source": "HF tokenizers " + __import__("tokenizers").__version__ + " from " + os.path.basename(MODEL),
        "sha256": digest("smollm", g["tokens"], g["types"], merge_ids,
                         add_bos_id=g["bos"] if g["add_bos"] else -1),
        "cases": cases, "special_cases": specials, "long_cases": long_cases,
    })
    randoms = random_strings(3000, seed=20261125)
    random_cases = []
    for t in randoms:
        entry = case_entry(tok, None, t)
        del entry["name"]
        random_cases.append(entry)
    write_json("smollm_random.json", {"seed": 20261125, "cases": random_cases})

    skeleton = json.loads(special.to_str())
    skeleton["model"]["vocab"] = {}
    skeleton["model"]["merges"] = []
    write_json("smollm_skeleton.tokenizer.json", skeleton)

    # A small, complete gpt2-split vocabulary: tokenizer.json and GGUF forms.
    missing = {0x04, 0x7E, 0xE3}
    s_tokens, s_merges = small_vocabulary(g, 3000, missing)
    s_vocab = {t: i for i, t in enumerate(s_tokens)}
    small = Tokenizer(models.BPE(s_vocab, [tuple(m.split(" ")) for m in s_merges], unk_token="<unk>", fuse_unk=True))
    small.pre_tokenizer = pre_tokenizers.Sequence([
        pre_tokenizers.Split(Regex(GPT2_REGEX), behavior="isolated", invert=False),
        pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False),
    ])
    small.decoder = decoders.ByteLevel()
    small.post_processor = processors.TemplateProcessing(single="<s> $A", special_tokens=[("<s>", 1)])
    small.add_special_tokens([AddedToken(t, special=True, normalized=False) for t in ["<unk>", "<s>", "</s>"]])
    small.add_tokens([AddedToken("[[ADDED]]", special=False, normalized=False)])
    with open(os.path.join(OUT, "gpt2small.tokenizer.json"), "w", encoding="utf-8") as f:
        f.write(small.to_str())
    print("wrote gpt2small.tokenizer.json:", os.path.getsize(os.path.join(OUT, "gpt2small.tokenizer.json")), "bytes")

    # GGUF form: no unk for bytes (llama.cpp semantics -> HF without unk_token drops them).
    s_types = [3, 3, 3] + [1] * (len(s_tokens) - 4) + [4]
    write_gguf(os.path.join(OUT, "gpt2small.gguf.fixture"), s_tokens, s_types, s_merges, bos=1, eos=2, add_bos=True)
    small_drop = Tokenizer(models.BPE(s_vocab, [tuple(m.split(" ")) for m in s_merges]))
    small_drop.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=True)
    small_drop.decoder = decoders.ByteLevel()
    small_drop.post_processor = processors.TemplateProcessing(single="<s> $A", special_tokens=[("<s>", 1)])
    small_drop.add_special_tokens([AddedToken(t, special=True, normalized=False) for t in ["<unk>", "<s>", "</s>"]])
    small_drop.add_tokens([AddedToken("[[ADDED]]", special=False, normalized=False)])

    texts = [t for _, t in CORPUS] + SPECIAL_TEXTS + ["x[[ADDED]]y [[ADDED]]", "~~ \x04\x04 ~ ã"] + randoms[:300]
    small_cases = []
    for t in texts:
        entry = {"text": t}
        for name, tk in [("json", small), ("gguf", small_drop)]:
            tk.encode_special_tokens = True
            entry[name] = tk.encode(t, add_special_tokens=False).ids
            entry[name + "_add_special"] = tk.encode(t, add_special_tokens=True).ids
            tk.encode_special_tokens = False
            entry[name + "_parse_special"] = tk.encode(t, add_special_tokens=False).ids
        small_cases.append(entry)
    s_merge_ids = [(s_vocab[m.split(" ")[0]], s_vocab[m.split(" ")[1]]) for m in s_merges]
    json_types = [3, 3, 3] + [1] * (len(s_tokens) - 4) + [4]
    write_json("gpt2small_cases.json", {
        "sha256_json": digest("gpt2", s_tokens, json_types, s_merge_ids, add_bos_id=1, unknown_byte_id=0, fuse=True),
        "sha256_gguf": digest("gpt2", s_tokens, s_types, s_merge_ids, add_bos_id=1),
        "cases": small_cases,
    })

    # Inputs that must be rejected, each breaking one rule.
    tiny = ["a", "b", "ab"]
    write_gguf(os.path.join(OUT, "bad_model.gguf.fixture"), tiny, [1, 1, 1], ["a b"], model="llama")
    write_gguf(os.path.join(OUT, "bad_pre.gguf.fixture"), tiny, [1, 1, 1], ["a b"], pre="qwen2")
    write_gguf(os.path.join(OUT, "bad_merge_shape.gguf.fixture"), tiny, [1, 1, 1], ["ab"])
    write_gguf(os.path.join(OUT, "bad_merge_token.gguf.fixture"), tiny, [1, 1, 1], ["a c"])
    write_gguf(os.path.join(OUT, "missing_pre.gguf.fixture"), tiny, [1, 1, 1], ["a b"], pre=None)


if __name__ == "__main__":
    main()
