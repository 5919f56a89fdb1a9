#!/usr/bin/env python3
"""An independent numpy forward pass for every family the Engine runs (llama, qwen2, qwen3, gemma3),
written from llama.cpp's graph code (src/models/*.cpp in llama-cpp-python 0.3.36), not from Axon's.

Weights come from the PyPI `gguf` package (`GGUFReader` + `gguf.quants.dequantize`). Arithmetic is
float64 with the exact tanh-form GELU; `dtype=np.float32` gives an fp32 pass instead. Imported by
engine_families.py (synthetic F32 models) and engine_gemma_agreement.py (the real Gemma 3 270M).
"""
import numpy as np
import gguf

# What differs by family, as in Sources/Engine/ModelFamily.swift but written out independently.
FAMILIES = {
    "llama":  dict(act="silu", rope="norm", qk_norm=False, post_norms=False, embed_scale=False, swa=False),
    "qwen2":  dict(act="silu", rope="neox", qk_norm=False, post_norms=False, embed_scale=False, swa=False),
    "qwen3":  dict(act="silu", rope="neox", qk_norm=True,  post_norms=False, embed_scale=False, swa=False),
    "gemma3": dict(act="gelu", rope="neox", qk_norm=True,  post_norms=True,  embed_scale=True,  swa=True),
}


def field(reader, key, default=None):
    f = reader.fields.get(key)
    return default if f is None else f.contents()


class FamilyModel:
    def __init__(self, path, dtype=np.float64):
        r = gguf.GGUFReader(path)
        self.reader = r
        self.dtype = dtype
        self.arch = arch = field(r, "general.architecture")
        self.fam = FAMILIES[arch]
        g = lambda k, d=None: field(r, f"{arch}.{k}", d)
        self.n_layer = int(g("block_count"))
        self.dim = int(g("embedding_length"))
        self.n_head = int(g("attention.head_count"))
        self.n_kv = int(g("attention.head_count_kv", self.n_head))
        self.head_dim = int(g("attention.key_length", self.dim // self.n_head))
        self.eps = float(g("attention.layer_norm_rms_epsilon"))
        self.base = float(g("rope.freq_base", 10000.0))
        if self.fam["swa"]:
            self.window = int(g("attention.sliding_window"))
            self.pattern = int(g("attention.sliding_window_pattern", 6))
            self.base_swa = float(g("rope.freq_base_swa", 10000.0))
        self.w = {}
        for t in r.tensors:
            a = np.asarray(gguf.quants.dequantize(t.data, t.tensor_type), dtype=np.float32)
            ne = [int(d) for d in t.shape]          # ne[0] (the row length) first
            while len(ne) > 1 and ne[-1] == 1:
                ne.pop()
            self.w[t.name] = a.reshape(ne[::-1])    # (rows, row length), as [out][in]
        self.emb = self.w["token_embd.weight"]              # (vocab, dim)
        self.out = self.w.get("output.weight", self.emb)    # tied when absent

    def W(self, name):
        return self.w[name].astype(self.dtype)

    def rmsnorm(self, x, w):
        return x / np.sqrt(np.mean(x * x, axis=-1, keepdims=True) + self.eps) * w.astype(self.dtype)

    def is_local(self, l):
        return self.fam["swa"] and l % self.pattern < self.pattern - 1

    def rope(self, v, base):
        T, hd = v.shape[0], self.head_dim
        inv = base ** (-np.arange(0, hd, 2, dtype=np.float64) / hd)
        ang = np.arange(T, dtype=np.float64)[:, None] * inv[None, :]
        cos, sin = np.cos(ang)[:, None, :].astype(self.dtype), np.sin(ang)[:, None, :].astype(self.dtype)
        out = np.empty_like(v)
        if self.fam["rope"] == "norm":   # adjacent pairs (x[2i], x[2i+1])
            a, b = v[..., 0::2], v[..., 1::2]
            out[..., 0::2] = a * cos - b * sin
            out[..., 1::2] = a * sin + b * cos
        else:                            # NEOX: x[i] pairs with x[i + hd/2]
            a, b = v[..., :hd // 2], v[..., hd // 2:]
            out[..., :hd // 2] = a * cos - b * sin
            out[..., hd // 2:] = a * sin + b * cos
        return out

    def act(self, g):
        if self.fam["act"] == "silu":
            return g / (1.0 + np.exp(-g))
        return 0.5 * g * (1.0 + np.tanh(np.sqrt(2.0 / np.pi) * (g + 0.044715 * g ** 3)))

    def forward(self, ids, reorder=None):
        """One row: positions 0..<T, causal. Returns the final-normed hidden states (T, dim).

        With a list `reorder`, appends the variance per element of the last position's final-normed
        hidden state that reordering the fp32 sums of the residual products moves it by (see
        `reorder_variance`)."""
        T, hd, H, KV = len(ids), self.head_dim, self.n_head, self.n_kv
        x = self.emb[np.asarray(ids)].astype(self.dtype)
        if self.fam["embed_scale"]:
            x = x * self.dtype(np.sqrt(self.dim))
        pos = np.arange(T)
        causal = pos[None, :] > pos[:, None]
        group = H // KV
        # gemma3 27B uses 1/sqrt(dim/heads) (llama_model_gemma3::load_arch_hparams); else 1/sqrt(head_dim).
        scale = 1.0 / np.sqrt(self.dim // H if (self.arch == "gemma3" and self.n_layer == 62) else hd)
        for l in range(self.n_layer):
            p = f"blk.{l}."
            n = self.rmsnorm(x, self.w[p + "attn_norm.weight"])
            q, k, v = n @ self.W(p + "attn_q.weight").T, n @ self.W(p + "attn_k.weight").T, n @ self.W(p + "attn_v.weight").T
            if p + "attn_q.bias" in self.w:
                q, k, v = q + self.W(p + "attn_q.bias"), k + self.W(p + "attn_k.bias"), v + self.W(p + "attn_v.bias")
            q, k, v = q.reshape(T, H, hd), k.reshape(T, KV, hd), v.reshape(T, KV, hd)
            if self.fam["qk_norm"]:
                q = self.rmsnorm(q, self.w[p + "attn_q_norm.weight"])
                k = self.rmsnorm(k, self.w[p + "attn_k_norm.weight"])
            local = self.is_local(l)
            base = self.base_swa if local else self.base
            q, k = self.rope(q, base), self.rope(k, base)
            mask = causal | ((pos[:, None] - pos[None, :]) >= self.window) if local else causal
            o = np.empty((T, H, hd), dtype=self.dtype)
            for h in range(H):
                s = (q[:, h] @ k[:, h // group].T) * self.dtype(scale)
                s[mask] = -np.inf
                e = np.exp(s - s.max(axis=1, keepdims=True))
                e /= e.sum(axis=1, keepdims=True)
                o[:, h] = e @ v[:, h // group]
            o = o.reshape(T, H * hd)
            a = o @ self.W(p + "attn_output.weight").T
            variance = None if reorder is None else self.reorder_variance(p + "attn_output.weight", o[-1])
            if self.fam["post_norms"]:
                if variance is not None:
                    variance *= self.rmsnorm_gain(a[-1], self.w[p + "post_attention_norm.weight"])
                a = self.rmsnorm(a, self.w[p + "post_attention_norm.weight"])
            x = x + a
            m = self.rmsnorm(x, self.w[p + "ffn_norm.weight"])
            f = self.act(m @ self.W(p + "ffn_gate.weight").T) * (m @ self.W(p + "ffn_up.weight").T)
            d = f @ self.W(p + "ffn_down.weight").T
            if reorder is not None:
                down = self.reorder_variance(p + "ffn_down.weight", f[-1])
                if self.fam["post_norms"]:
                    down *= self.rmsnorm_gain(d[-1], self.w[p + "post_ffw_norm.weight"])
                variance += down
                reorder.append(variance)
            if self.fam["post_norms"]:
                d = self.rmsnorm(d, self.w[p + "post_ffw_norm.weight"])
            x = x + d
        if reorder is not None:
            # Carried through the final norm; the result replaces the per-layer terms.
            total = np.sum(reorder, axis=0) * self.rmsnorm_gain(x[-1], self.w["output_norm.weight"])
            reorder[:] = [total]
        return self.rmsnorm(x, self.w["output_norm.weight"])

    # An fp32 sum of K terms t_k, accumulated in some order, rounds each partial sum S_k once (FMA)
    # with an error uniform in ±u·|S_k|, variance u²/3·S_k². For terms of random sign E[S_k²] = k·mean(t²),
    # so over the K partial sums the variance is u²/3 · K²/2 · mean(t²) = u²/6 · K · Σt²; two orders
    # that share no partial sums differ by twice that: u²/3 · K · Σt². Each residual product adds this
    # per output element; the errors of different products are independent, so variances add.
    U = 2.0 ** -24

    def reorder_variance(self, name, a):
        """Per output element of W·a: the variance of the difference of two fp32 summation orders."""
        terms = self.w[name].astype(np.float64) * np.asarray(a, dtype=np.float64)
        return self.U ** 2 / 3 * terms.shape[1] * (terms ** 2).sum(axis=1)

    def rmsnorm_gain(self, x, w):
        """(w / rms(x))²: to first order an RMSNorm scales a small error in x by w / rms(x) per element."""
        x = np.asarray(x, dtype=np.float64)
        return (w.astype(np.float64) / np.sqrt(np.mean(x * x) + self.eps)) ** 2

    def reorder_logit_sigma(self, hidden_variance):
        """Standard deviation of every logit e·h (vocab,) when h moves by independent errors of the
        given variances (the soft cap, when present, only shrinks errors)."""
        out = np.empty(self.out.shape[0])
        for v in range(0, self.out.shape[0], 16384):
            e = self.out[v:v + 16384].astype(np.float64)
            out[v:v + 16384] = np.sqrt((e * e) @ hidden_variance)
        return out

    def logits(self, hidden_rows, chunk=16384):
        """(rows, vocab); the head is converted a chunk of the vocabulary at a time (Gemma's is 262,144 rows)."""
        out = np.empty((hidden_rows.shape[0], self.out.shape[0]), dtype=self.dtype)
        for v in range(0, self.out.shape[0], chunk):
            out[:, v:v + chunk] = hidden_rows @ self.out[v:v + chunk].astype(self.dtype).T
        return out
