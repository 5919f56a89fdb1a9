"""Reference for the Sampling module: Hugging Face's generation definitions re-stated in numpy (transformers
and torch are not installed), plus the project's own seeded RNG and draw rule, writing the fixtures under
Tests/SamplingTests/Fixtures/.

    "$(scripts/venv)" scripts/reference/sampling_reference.py

Sources read (huggingface/transformers):
- src/transformers/generation/logits_process.py: RepetitionPenaltyLogitsProcessor (gather the scores of the
  ids in the sequence, prompt included; `where(score < 0, score * penalty, score / penalty)`; scatter back,
  so a repeated id is penalised once), NoRepeatNGramLogitsProcessor (`_get_ngrams` / `_get_generated_ngrams`:
  ban every token that completes an n-gram already in the sequence; nothing before cur_len >= n),
  TemperatureLogitsWarper (`scores / temperature`), TopKLogitsWarper (`scores < topk(scores, k)[..., -1]` set
  to -inf, k = min(max(top_k, min_tokens_to_keep), vocab): ties with the k-th value are all kept),
  TopPLogitsWarper (sort ascending, `softmax(sorted).cumsum()`, remove `cumulative <= 1 - top_p`, keep the
  last min_tokens_to_keep = 1).
- src/transformers/generation/utils.py `_get_logits_processor` / `_get_logits_warper`: processors in the order
  repetition penalty, no-repeat-ngram; then, only when do_sample, temperature (if != 1), top-k (if != 0),
  top-p (if < 1). `_beam_search` (v4.36-v4.47): log_softmax of the logits, the processors on the log-probs,
  plus the beam's running score, the top max(2, 1 + n_eos) * num_beams over all beams (flattened
  beam * vocab + token), then BeamSearchScorer.process; beam scores start at [0, -1e9, ...].
- src/transformers/generation/beam_search.py (same versions): BeamSearchScorer.process (cur_len =
  len(input_ids) + 1; an eos candidate of rank >= num_beams is skipped, otherwise added to the hypotheses
  with generated_len = cur_len - prompt_len, i.e. counting the eos; the first num_beams non-eos candidates
  become the next beams; done |= is_done(best candidate score, cur_len)), finalize (open beams added with
  generated_len = len - prompt_len unless done; the best is the last of a stable ascending sort),
  BeamHypotheses.add (score = sum_logprobs / generated_len ** length_penalty; kept when fewer than num_beams
  or better than the worst; the worst evicted) and is_done (True: as soon as num_beams are finished;
  False: worst >= best_running / (cur_len - prompt_len) ** length_penalty; "never": the same with
  max_length - prompt_len when length_penalty > 0).

Tie orders torch leaves unspecified are fixed as a stable sort fixes them: top-p sorts ascending with equal
values in id order (so among tied tokens the lower ids are removed first); beam candidates are ordered by
score, then by lower flat index. Cases whose outcome would turn on f32 rounding (a cumulative sum, beam score
or draw within four of Swift's error bounds of a decision boundary) are refused by assertions here, or the
fake model's salt is advanced until none is; the cases built to be exact in any arithmetic are exempt.
"""
import json
import math
import pathlib

import numpy as np

ROOT = pathlib.Path(__file__).resolve().parents[2]
OUT = ROOT / "Tests" / "SamplingTests" / "Fixtures"
MASK = (1 << 64) - 1
F32_U = 2.0 ** -24
GENERATOR = "scripts/reference/sampling_reference.py (numpy, Hugging Face definitions)"


# ---------------------------------------------------------------------------------------------------------
# The project's RNG (Sources/Sampling/RandomGenerator.swift): xoshiro256** 1.0 (Blackman & Vigna), its state
# filled by four SplitMix64 outputs of the seed; stream k of a seed is the state after k jump()s (2^128 steps
# each). A uniform double is (next >> 11) * 2^-53.
# ---------------------------------------------------------------------------------------------------------
def splitmix64(state):
    state = (state + 0x9E3779B97F4A7C15) & MASK
    z = state
    z = ((z ^ (z >> 30)) * 0xBF58476D1CE4E5B9) & MASK
    z = ((z ^ (z >> 27)) * 0x94D049BB133111EB) & MASK
    return state, z ^ (z >> 31)


def rotl(x, k):
    return ((x << k) | (x >> (64 - k))) & MASK


class Xoshiro256StarStar:
    JUMP = (0x180EC6D33CFD0ABA, 0xD5A61266F0C9392C, 0xA9582618E03FC9AA, 0x39ABDC4529B1661C)

    def __init__(self, seed, stream=0):
        sm = seed & MASK
        self.s = []
        for _ in range(4):
            sm, z = splitmix64(sm)
            self.s.append(z)
        for _ in range(stream):
            self.jump()

    def next(self):
        s = self.s
        result = (rotl((s[1] * 5) & MASK, 7) * 9) & MASK
        t = (s[1] << 17) & MASK
        s[2] ^= s[0]
        s[3] ^= s[1]
        s[1] ^= s[2]
        s[0] ^= s[3]
        s[2] ^= t
        s[3] = rotl(s[3], 45)
        return result

    def jump(self):
        acc = [0, 0, 0, 0]
        for word in self.JUMP:
            for b in range(64):
                if word & (1 << b):
                    acc = [a ^ x for a, x in zip(acc, self.s)]
                self.next()
        self.s = acc

    def uniform(self):
        return (self.next() >> 11) * 2.0 ** -53


# ---------------------------------------------------------------------------------------------------------
# A deterministic fake model: logits as a function of the whole prefix, exact in f32 in any language
# (Tests/SamplingTests/FakeModel.swift). h = FNV-1a over the ids (as u32) from `salt`; token v's logit is
# the top 24 bits of splitmix64's mix of h + (v + 1) * golden, scaled to [-4, 4) in steps of 2^-21, times
# `scale`; each stop token gets + 0.375 * ((len(prefix) + 3) % 7) - 1 so that beams finish at varied lengths.
# ---------------------------------------------------------------------------------------------------------
def mix64(z):
    z = ((z ^ (z >> 30)) * 0xBF58476D1CE4E5B9) & MASK
    z = ((z ^ (z >> 27)) * 0x94D049BB133111EB) & MASK
    return z ^ (z >> 31)


def fake_logits(prefix, vocab, salt, stop=(), scale=1.0):
    h = (0xCBF29CE484222325 ^ salt) & MASK
    for t in prefix:
        h = ((h ^ (t & 0xFFFFFFFF)) * 0x100000001B3) & MASK
    out = np.empty(vocab, dtype=np.float32)
    for v in range(vocab):
        z = mix64((h + (v + 1) * 0x9E3779B97F4A7C15) & MASK)
        out[v] = np.float32(z >> 40) * np.float32(2.0 ** -21) - np.float32(4.0)
    out *= np.float32(scale)
    bonus = np.float32(0.375 * ((len(prefix) + 3) % 7) - 1.0)
    for s in stop:
        out[s] += bonus
    return out


def fake_logits_fast(prefix, vocab, salt, scale=1.0):
    """fake_logits without stop bonuses, vectorised (for the 262,144-token case)."""
    h = (0xCBF29CE484222325 ^ salt) & MASK
    for t in prefix:
        h = ((h ^ (t & 0xFFFFFFFF)) * 0x100000001B3) & MASK
    v = np.arange(1, vocab + 1, dtype=np.uint64)
    with np.errstate(over="ignore"):
        z = np.uint64(h) + v * np.uint64(0x9E3779B97F4A7C15)
        z = (z ^ (z >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
        z = (z ^ (z >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
        z = z ^ (z >> np.uint64(31))
    out = (z >> np.uint64(40)).astype(np.float32) * np.float32(2.0 ** -21) - np.float32(4.0)
    return out * np.float32(scale)


# ---------------------------------------------------------------------------------------------------------
# Hugging Face's processors, f32 in and out like torch's (the elementwise ones are single IEEE operations).
# ---------------------------------------------------------------------------------------------------------
def repetition_penalty(input_ids, scores, penalty):
    scores = scores.copy()
    ids = np.asarray(input_ids, dtype=np.int64)
    score = scores[ids]
    p = np.float32(penalty)
    score = np.where(score < 0, score * p, score / p).astype(np.float32)
    scores[ids] = score  # scatter: a repeated id writes the same value again
    return scores


def banned_ngram_tokens(input_ids, n):
    """HF's _get_ngrams + _get_generated_ngrams for one hypothesis."""
    cur_len = len(input_ids)
    if cur_len + 1 < n:
        return []
    ngrams = {}
    for i in range(cur_len - n + 1):
        gram = tuple(input_ids[i:i + n])
        ngrams.setdefault(gram[:-1], []).append(gram[-1])
    start = cur_len + 1 - n
    return ngrams.get(tuple(input_ids[start:cur_len]), [])


def no_repeat_ngram(input_ids, scores, n):
    scores = scores.copy()
    for t in banned_ngram_tokens(list(input_ids), n):
        scores[t] = -np.inf
    return scores


def temperature(scores, t):
    return (scores / np.float32(t)).astype(np.float32)


def top_k(scores, k, min_keep=1):
    k = min(max(k, min_keep), scores.shape[-1])
    kth = np.sort(scores)[-k]
    out = scores.copy()
    out[scores < kth] = -np.inf
    return out


def softmax64(scores):
    x = scores.astype(np.float64)
    m = np.max(x)
    if m == -np.inf:
        return np.full_like(x, np.nan)
    e = np.exp(x - m)
    return e / e.sum()


def top_p(scores, p, min_keep=1):
    """Returns (filtered scores, margin): margin is how far the decisive cumulative sums are from 1 - p."""
    order = np.argsort(scores, kind="stable")  # ascending; ties in id order
    sorted_probs = softmax64(scores[order])
    cum = np.cumsum(sorted_probs)
    threshold = 1.0 - float(np.float32(p))
    remove = cum <= threshold
    remove[-min_keep:] = False
    out = scores.copy()
    out[order[remove]] = -np.inf
    # The decision flips only for the last removed and the first kept entry. Swift's f32 weights exp(x - max)
    # are off by at most eps = (|x - max| + 4) u relative (Tolerance.swift), so a normalised cumulative sum c by
    # at most 2 eps c: the margin is returned in units of that bound.
    n_removed = int(remove.sum())
    finite = scores[scores != -np.inf].astype(np.float64)
    eps = (finite.max() - finite.min() + 4) * F32_U
    margins = []
    if n_removed > 0:
        margins.append((threshold - cum[n_removed - 1]) / (2 * eps * threshold))
    if n_removed < len(cum) - min_keep:
        margins.append((cum[n_removed] - threshold) / (2 * eps * cum[n_removed]))
    return out, min(margins) if margins else math.inf


def hf_stages(params, beam=False):
    """`_get_logits_processor` + `_get_logits_warper` for the parameters this project exposes."""
    stages = []
    if params.get("repetition_penalty", 1.0) != 1.0:
        stages.append(("repetition_penalty", params["repetition_penalty"]))
    if params.get("no_repeat_ngram_size", 0) > 0:
        stages.append(("no_repeat_ngram", params["no_repeat_ngram_size"]))
    if params.get("do_sample", False) and not beam:
        if params.get("temperature", 1.0) != 1.0:
            stages.append(("temperature", params["temperature"]))
        if params.get("top_k", 0) != 0:
            stages.append(("top_k", params["top_k"]))
        if params.get("top_p", 1.0) < 1.0:
            stages.append(("top_p", params["top_p"]))
    return stages


def apply_stage(stage, input_ids, scores):
    name, value = stage
    if name == "repetition_penalty":
        return repetition_penalty(input_ids, scores, value), math.inf
    if name == "no_repeat_ngram":
        return no_repeat_ngram(input_ids, scores, value), math.inf
    if name == "temperature":
        return temperature(scores, value), math.inf
    if name == "top_k":
        return top_k(scores, value), math.inf
    if name == "top_p":
        return top_p(scores, value)
    raise ValueError(name)


def apply_chain(params, input_ids, scores):
    margin = math.inf
    for stage in hf_stages(params):
        scores, m = apply_stage(stage, input_ids, scores)
        margin = min(margin, m)
    return scores, margin


def kept(scores):
    return [int(i) for i in np.flatnonzero(scores != -np.inf)]


def floats(a):
    return [("-inf" if x == -np.inf else float(x)) for x in np.asarray(a, dtype=np.float32)]


# ---------------------------------------------------------------------------------------------------------
# The draw (Sources/Sampling/SequenceSampler.swift): weights w_i = exp(x_i - max) of the processed logits,
# Z their sum in id order, target = u * Z; the token is the first id whose running sum exceeds the target.
# ---------------------------------------------------------------------------------------------------------
def draw(scores, u):
    probs = softmax64(scores)
    cum = np.cumsum(probs)
    target = u * cum[-1]
    i = int(np.searchsorted(cum, target, side="right"))
    i = min(i, len(cum) - 1)
    while probs[i] == 0:  # only reachable through rounding at the very top: the last positive weight
        i -= 1
    lo = cum[i - 1] if i > 0 else 0.0
    margin = min(target - lo, cum[i] - target)
    return i, margin


# ---------------------------------------------------------------------------------------------------------
# Fixtures.
# ---------------------------------------------------------------------------------------------------------
def processor_cases():
    rng = np.random.default_rng(13)
    cases = []

    def add(name, logits, input_ids, params, exact=False):
        logits = np.asarray(logits, dtype=np.float32)
        case = {"name": name, "logits": floats(logits), "input_ids": [int(t) for t in input_ids], "params": params,
                "stage_order": [stage[0] for stage in hf_stages(params)]}
        stages = {}
        for stage in hf_stages(params):
            out, margin = apply_stage(stage, input_ids, logits)
            assert exact or margin > 4, (name, stage, margin)
            stages[stage[0]] = {"scores": floats(out), "kept": kept(out)}
        chain, margin = apply_chain(params, input_ids, logits)
        assert exact or margin > 4, (name, margin)
        probs = softmax64(chain)
        case["stages"] = stages if len(stages) > 1 else {}  # a single stage is the chain
        case["chain"] = {"scores": floats(chain), "kept": kept(chain),
                         "probabilities": [float(probs[i]) for i in kept(chain)],  # of the kept ids, in order
                         "argmax": int(np.argmax(chain))}
        cases.append(case)

    sample = {"do_sample": True}
    # Random logits, a sequence with repeats and repeated n-gram prefixes (…5, 9 … 5, 12 … 7, 5).
    ids = [5, 9, 3, 5, 12, 7, 5, 40, 41, 7, 5]
    base = rng.normal(0, 3, size=64)
    add("normal64_penalty_ngram2", base, ids, {**sample, "repetition_penalty": 1.3, "no_repeat_ngram_size": 2,
                                               "temperature": 0.7, "top_k": 20, "top_p": 0.9})
    add("normal64_ngram3_reward", base, ids, {**sample, "repetition_penalty": 0.8, "no_repeat_ngram_size": 3,
                                              "temperature": 1.6, "top_k": 0, "top_p": 0.95})
    add("normal64_ngram1", base, ids, {"no_repeat_ngram_size": 1, "repetition_penalty": 2.0})
    add("normal64_topk_only", base, [1], {**sample, "top_k": 7})
    add("normal64_topp_small", base, [1], {**sample, "top_p": 0.05})
    # A sequence shorter than the n-gram: nothing banned.
    add("short_sequence_ngram4", base, [5, 9], {"no_repeat_ngram_size": 4, "repetition_penalty": 1.0})
    # Zero, positive and negative logits under the penalty (0 is divided: stays 0).
    signs = np.array([0.0, 1.5, -1.5, 3.0, -3.0, 0.25, -0.25, 2.0], dtype=np.float32)
    add("signs_penalty", signs, [0, 1, 2, 3, 4, 5, 6, 1, 1], {"repetition_penalty": 1.7})
    # Ties at the k-th value: every tied token is kept (more than k survive).
    ties = np.array([1.0, 2.0, 2.0, 0.5, 2.0, 3.0, 0.5, -1.0, 2.0, 0.0], dtype=np.float32)
    add("ties_topk", ties, [0], {**sample, "top_k": 3}, exact=True)
    add("ties_topk_beyond_vocab", ties, [0], {**sample, "top_k": 1000}, exact=True)
    # Equal logits: cumulative sums exactly on 1 - top_p (removed: <=), ties broken as a stable ascending
    # sort breaks them (lower ids removed first).
    flat8 = np.zeros(8, dtype=np.float32)
    for p in (0.5, 0.75, 0.25, 0.125, 1.0 / 16):
        add(f"flat8_topp_{p}", flat8, [0], {**sample, "top_p": p}, exact=True)
    flat4 = np.full(4, 2.5, dtype=np.float32)
    add("flat4_topp_0.6", flat4, [0], {**sample, "top_p": 0.6}, exact=True)
    # Above Sources/Sampling's sort limit (2,048 members) top-p goes through the radix levels: the same
    # ties, exactly on the boundary, and a cut inside a group of equal values.
    flat2100 = np.zeros(2100, dtype=np.float32)
    add("flat2100_topp_0.5", flat2100, [0], {**sample, "top_p": 0.5}, exact=True)
    levels = (np.arange(2100) % 7).astype(np.float32) * np.float32(0.5)
    add("levels2100_topp_0.6", levels, [0], {**sample, "top_p": 0.6})
    add("levels2100_temp_topp_0.3", levels, [0], {**sample, "temperature": 0.25, "top_p": 0.3})
    # One dominant token: top-p keeps it alone (min_tokens_to_keep = 1).
    dom = np.array([-20.0, 30.0, -20.0, -20.0], dtype=np.float32)
    add("dominant_topp", dom, [0], {**sample, "top_p": 0.5}, exact=True)
    # Top-k then top-p on tied values within the nucleus boundary.
    tie_p = np.array([1.0, 1.0, 1.0, 1.0, 0.0, 0.0], dtype=np.float32)
    add("ties_topk_then_topp", tie_p, [0], {**sample, "top_k": 5, "top_p": 0.5}, exact=True)
    # Wider, peaked logits over a 512-token vocabulary with the defaults of the wire when sampling.
    wide = rng.standard_t(3, size=512) * 0.8
    history = [int(t) for t in rng.integers(0, 512, size=40)]
    history += [history[3], history[17], history[3]]  # the last token's bigrams: (h3, h4) and (h3, h17)
    add("t512_defaults_sample", wide, history,
        {**sample, "top_k": 50, "top_p": 0.95, "temperature": 1.0, "no_repeat_ngram_size": 2})
    add("t512_greedy_defaults", wide, history, {"no_repeat_ngram_size": 2})
    return cases


def large_vocab_cases():
    """262,144 tokens (Gemma 3's vocabulary), logits from the fake model, so only summaries are stored:
    the kept count and the sum of kept ids (exact), and the argmax."""
    cases = []
    vocab = 262144
    for name, salt, scale, params in (
        ("gemma_vocab_topp_only", 3, 2.0, {"do_sample": True, "top_p": 0.95}),
        ("gemma_vocab_topk_topp", 4, 2.0, {"do_sample": True, "top_k": 50, "top_p": 0.9, "temperature": 0.8}),
        ("gemma_vocab_topk_large", 5, 1.0, {"do_sample": True, "top_k": 40000}),
        ("gemma_vocab_topp_peaked", 6, 3.0, {"do_sample": True, "top_p": 0.5, "temperature": 0.5}),
    ):
        while True:  # the first salt from the given one whose top-p decision is clear of f32 rounding
            logits = fake_logits_fast([1, 2, 3], vocab, salt, scale)
            chain, margin = apply_chain(params, [1, 2, 3], logits)
            if margin > 4:
                break
            salt += 100
        ids = np.flatnonzero(chain != -np.inf)
        cases.append({"name": name, "vocab": vocab, "salt": salt, "scale": scale, "prefix": [1, 2, 3],
                      "params": params, "kept_count": int(len(ids)), "kept_id_sum": int(ids.sum()),
                      "min_kept_logit": float(chain[ids].min()), "argmax": int(np.argmax(chain))})
    return cases


def rng_fixture():
    out = []
    for seed in (0, 1, 42, 0xDEADBEEFCAFEF00D, MASK):
        for stream in (0, 1, 3):
            g = Xoshiro256StarStar(seed, stream)
            words = [g.next() for _ in range(6)]
            uniforms = [g.uniform() for _ in range(4)]
            out.append({"seed": f"{seed:016x}", "stream": stream, "next": [f"{w:016x}" for w in words],
                        "uniform": uniforms})
    return out


def generate_sampled(prompt, vocab, salt, stop, params, seed, stream, max_new):
    """One seeded sequence against the fake model, as SequenceSampler generates it."""
    g = Xoshiro256StarStar(seed, stream)
    tokens = list(prompt)
    out, margin = [], math.inf
    for _ in range(max_new):
        logits = fake_logits(tokens, vocab, salt, stop)
        chain, m = apply_chain(params, tokens, logits)
        margin = min(margin, m)
        if params.get("do_sample", False):
            t, dm = draw(chain, g.uniform())
            # Swift's f32 weights exp(x - max) are off by at most (|x - max| + 4) u relative (Tolerance.swift):
            # the draw must sit farther than that (times 4) from a boundary of the cumulative sum.
            finite = chain[chain != -np.inf]
            bound = (float(finite.max() - finite.min()) + 4) * F32_U
            assert dm > 4 * bound, (dm, bound)
        else:
            t = int(np.argmax(chain))  # exact: the greedy processors are single f32 operations in both
        tokens.append(t)
        out.append(t)
        if t in stop:
            break
    return out, margin


def sampling_fixture():
    seqs = []
    for name, params, seed, stream in (
        ("sample_topk_topp_temp", {"do_sample": True, "top_k": 10, "top_p": 0.9, "temperature": 0.8}, 7, 0),
        ("sample_same_seed_stream1", {"do_sample": True, "top_k": 10, "top_p": 0.9, "temperature": 0.8}, 7, 1),
        ("sample_plain", {"do_sample": True}, 12345, 0),
        ("sample_topk_only", {"do_sample": True, "top_k": 5, "temperature": 0.6}, 99, 0),
        ("sample_penalty_ngram", {"do_sample": True, "top_k": 0, "top_p": 0.95, "repetition_penalty": 1.4,
                                  "no_repeat_ngram_size": 2, "temperature": 1.3}, 2024, 2),
        ("greedy_ngram", {"no_repeat_ngram_size": 2}, 0, 0),
        ("greedy_penalty", {"repetition_penalty": 1.5, "no_repeat_ngram_size": 3}, 0, 0),
    ):
        vocab, salt, stop, prompt, max_new = 96, 11, [1], [4, 8, 15, 16, 23, 42], 40
        tokens, margin = generate_sampled(prompt, vocab, salt, stop, params, seed, stream, max_new)
        assert margin > 4, (name, margin)
        seqs.append({"name": name, "vocab": vocab, "salt": salt, "stop": stop, "prompt": prompt,
                     "max_new": max_new, "params": params, "seed": f"{seed:016x}", "stream": stream,
                     "tokens": tokens})

    # Chi-square: draws from a processed distribution against its probabilities. "row": the draw alone on
    # one processed row (a static history for the penalty); "sampler": SequenceSampler end to end, the same
    # raw row every step, so only history-free stages (temperature, top-k, top-p).
    rng = np.random.default_rng(99)
    logits = rng.normal(0, 1.5, size=48).astype(np.float32)
    chi = []
    for name, params, ids, draws, seed in (
        ("row", {"do_sample": True, "top_k": 24, "top_p": 0.97, "temperature": 0.9, "repetition_penalty": 1.2},
         [3, 9, 27, 41], 60_000, 0x5EED),
        ("sampler", {"do_sample": True, "top_k": 20, "top_p": 0.9, "temperature": 1.3}, [], 60_000, 0xC0FFEE),
    ):
        chain, margin = apply_chain(params, ids, logits)
        assert margin > 4, margin
        probs = softmax64(chain)
        support = np.flatnonzero(probs > 0)
        expected = probs[support] * draws
        assert expected.min() >= 5, expected.min()  # the chi-square approximation's usual condition
        df = len(support) - 1
        false_failure = 1e-6
        chi.append({"name": name, "logits": floats(logits), "input_ids": ids, "params": params,
                    "seed": f"{seed:016x}", "draws": draws, "support": [int(i) for i in support],
                    "probabilities": [float(p) for p in probs[support]], "degrees_of_freedom": df,
                    "false_failure_probability": false_failure, "threshold": chi2_quantile_upper(df, false_failure)})
    return {"sequences": seqs, "chi_square": chi}


def gammaincc(a, x):
    """Regularised upper incomplete gamma Q(a, x) (series for x < a + 1, Lentz continued fraction else)."""
    if x <= 0:
        return 1.0
    lg = math.lgamma(a)
    if x < a + 1:
        term = total = 1.0 / a
        n = a
        while abs(term) > abs(total) * 1e-17:
            n += 1
            term *= x / n
            total += term
        return 1.0 - total * math.exp(-x + a * math.log(x) - lg)
    b = x + 1 - a
    c = 1 / 1e-300
    d = 1 / b
    h = d
    i = 1
    while True:
        an = -i * (i - a)
        b += 2
        d = an * d + b
        d = 1e-300 if abs(d) < 1e-300 else d
        c = b + an / c
        c = 1e-300 if abs(c) < 1e-300 else c
        d = 1 / d
        delta = d * c
        h *= delta
        i += 1
        if abs(delta - 1) < 1e-16:
            break
    return math.exp(-x + a * math.log(x) - lg) * h


def chi2_quantile_upper(df, alpha):
    """x with P(chi2_df > x) = alpha, by bisection on Q(df/2, x/2)."""
    lo, hi = 0.0, 10.0 * df + 200.0
    for _ in range(200):
        mid = (lo + hi) / 2
        if gammaincc(df / 2, mid / 2) > alpha:
            lo = mid
        else:
            hi = mid
    return hi


# ---------------------------------------------------------------------------------------------------------
# Beam search: HF's _beam_search + BeamSearchScorer + BeamHypotheses, float64, over the fake model.
# ---------------------------------------------------------------------------------------------------------
class BeamHypotheses:
    def __init__(self, num_beams, length_penalty, early_stopping, max_length):
        self.num_beams, self.length_penalty = num_beams, length_penalty
        self.early_stopping, self.max_length = early_stopping, max_length
        self.beams = []
        self.worst_score = 1e9
        self.decisions = []  # (a, b) pairs of normalised scores whose order decided something

    def add(self, hyp, sum_logprobs, generated_len, stop_token):
        score = sum_logprobs / (generated_len ** self.length_penalty)
        if len(self.beams) >= self.num_beams:
            self.decisions.append((score, self.worst_score))
        if len(self.beams) < self.num_beams or score > self.worst_score:
            self.beams.append((score, hyp, sum_logprobs, generated_len, stop_token))
            if len(self.beams) > self.num_beams:
                ranked = sorted([(s, idx) for idx, (s, *_rest) in enumerate(self.beams)])
                self.decisions.append((ranked[0][0], ranked[1][0]))
                del self.beams[ranked[0][1]]
                self.worst_score = ranked[1][0]
            else:
                self.worst_score = min(score, self.worst_score)

    def is_done(self, best_sum_logprobs, cur_len, prompt_len):
        if len(self.beams) < self.num_beams:
            return False
        if self.early_stopping is True:
            return True
        if self.early_stopping is False or self.length_penalty <= 0:
            highest = best_sum_logprobs / (cur_len - prompt_len) ** self.length_penalty
        else:
            highest = best_sum_logprobs / (self.max_length - prompt_len) ** self.length_penalty
        self.decisions.append((self.worst_score, highest))
        return self.worst_score >= highest


def log_softmax64(logits):
    x = logits.astype(np.float64)
    m = x.max()
    return x - m - math.log(np.exp(x - m).sum())


def beam_search(prompt, vocab, salt, stop, params):
    nb = params["num_beams"]
    lp = params.get("length_penalty", 1.0)
    early = params.get("early_stopping", False)
    max_new = params["max_new"]
    P = len(prompt)
    hyps = BeamHypotheses(nb, lp, early, P + max_new)
    beams = [list(prompt) for _ in range(nb)]
    scores = [0.0] + [-1e9] * (nb - 1)
    n_keep = max(2, 1 + len(stop)) * nb
    stages = hf_stages(params, beam=True)
    gaps = []
    done = False
    steps = 0
    for step in range(max_new):
        cur_len = P + step
        rows = []
        for r in range(nb):
            lsm = log_softmax64(fake_logits(beams[r], vocab, salt, stop))
            for name, value in stages:
                if name == "repetition_penalty":
                    ids = np.asarray(beams[r], dtype=np.int64)
                    s = lsm[ids]
                    lsm[ids] = np.where(s < 0, s * value, s / value)
                else:
                    for t in banned_ngram_tokens(beams[r], value):
                        lsm[t] = -np.inf
            rows.append(lsm + scores[r])
        flat = np.concatenate(rows)
        order = np.argsort(-flat, kind="stable")
        top = flat[order[:n_keep + 1]]
        finite = top[np.isfinite(top)]
        gaps += list(np.diff(-finite))
        nxt = []
        for rank, idx in enumerate(order[:n_keep]):
            r, t = divmod(int(idx), vocab)
            s = float(flat[idx])
            if t in stop:
                if rank >= nb:
                    continue
                hyps.add(beams[r][P:], s, cur_len + 1 - P, t)
            else:
                nxt.append((s, t, r))
            if len(nxt) == nb:
                break
        assert len(nxt) == nb
        done = done or hyps.is_done(float(flat[order[0]]), cur_len + 1, P)
        beams = [beams[r] + [t] for (_, t, r) in nxt]
        scores = [s for (s, _, _) in nxt]
        steps = step + 1
        if done:
            break
    if not done:
        for r in range(nb):
            hyps.add(beams[r][P:], scores[r], len(beams[r]) - P, None)
    ranked = sorted(hyps.beams, key=lambda h: h[0])  # stable; the best is popped from the end
    final = list(reversed(ranked))
    for a, b in zip(ranked, ranked[1:]):
        hyps.decisions.append((a[0], b[0]))
    return final, steps, gaps, hyps.decisions


def beam_tolerance(sum_logprobs, generated_len, length_penalty, penalty):
    """Tests/SamplingTests/Tolerance.swift's bound on a hypothesis' score (kept in step with it)."""
    per_step = (56 * penalty) * F32_U
    total = generated_len * (per_step + F32_U * abs(sum_logprobs))
    return total / generated_len ** length_penalty, total


def beam_fixture():
    cases = []
    configs = [
        ("beams2_lp1", {"num_beams": 2, "max_new": 10}),
        ("beams3_lp1", {"num_beams": 3, "max_new": 12}),
        ("beams5_bittensor", {"num_beams": 5, "max_new": 16, "no_repeat_ngram_size": 2}),
        ("beams4_lp0", {"num_beams": 4, "max_new": 12, "length_penalty": 0.0}),
        ("beams4_lp2", {"num_beams": 4, "max_new": 12, "length_penalty": 2.0}),
        ("beams4_lp_negative", {"num_beams": 4, "max_new": 12, "length_penalty": -0.5}),
        ("beams3_early_true", {"num_beams": 3, "max_new": 14, "early_stopping": True}),
        ("beams3_never", {"num_beams": 3, "max_new": 10, "early_stopping": "never"}),
        ("beams3_never_lp_negative", {"num_beams": 3, "max_new": 10, "early_stopping": "never",
                                      "length_penalty": -1.0}),
        ("beams3_penalty_ngram3", {"num_beams": 3, "max_new": 14, "repetition_penalty": 1.5,
                                   "no_repeat_ngram_size": 3}),
        ("beams2_two_stops", {"num_beams": 2, "max_new": 12, "stops": [1, 2]}),
        ("beams6_short", {"num_beams": 6, "max_new": 5}),
    ]
    vocab, prompt = 40, [7, 3, 9, 3]
    for name, params in configs:
        stop = params.pop("stops", [1])
        penalty = params.get("repetition_penalty", 1.0)
        for salt in range(1, 200):
            final, steps, gaps, decisions = beam_search(prompt, vocab, salt, stop, params)
            worst_tol = max(beam_tolerance(h[2], h[3], params.get("length_penalty", 1.0), max(penalty, 1.0))[0]
                            for h in final)
            worst_sum_tol = max(beam_tolerance(h[2], h[3], 0.0, max(penalty, 1.0))[0] for h in final)
            min_gap = min(gaps) if gaps else math.inf
            min_decision = min((abs(a - b) for a, b in decisions), default=math.inf)
            if min_gap > 4 * worst_sum_tol and min_decision > 4 * worst_tol:
                break
        else:
            raise AssertionError(f"no salt separates the decisions of {name}")
        cases.append({
            "name": name, "vocab": vocab, "salt": salt, "prompt": prompt, "stop": stop,
            "num_beams": params["num_beams"], "max_new": params["max_new"],
            "length_penalty": params.get("length_penalty", 1.0),
            "early_stopping": {True: "true", False: "false", "never": "never"}[params.get("early_stopping", False)],
            "repetition_penalty": penalty, "no_repeat_ngram_size": params.get("no_repeat_ngram_size", 0),
            "steps": steps,
            "hypotheses": [{"tokens": h[1], "score": h[0], "sum_logprobs": h[2], "generated_len": h[3],
                            "stop_token": h[4]} for h in final],
            "min_candidate_gap": min_gap, "min_decision_gap": min_decision,
        })
    return cases


def main():
    OUT.mkdir(parents=True, exist_ok=True)
    files = {
        "processors.json": {"generator": GENERATOR, "cases": processor_cases(), "large_vocab": large_vocab_cases()},
        "rng.json": {"generator": GENERATOR, "cases": rng_fixture()},
        "sampling.json": {"generator": GENERATOR, **sampling_fixture()},
        "beam_search.json": {"generator": GENERATOR, "cases": beam_fixture()},
    }
    for name, content in files.items():
        path = OUT / name
        path.write_text(json.dumps(content, allow_nan=False) + "\n")
        print(f"wrote {path.relative_to(ROOT)} ({path.stat().st_size} bytes)")


if __name__ == "__main__":
    main()
