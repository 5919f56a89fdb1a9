/// How far two fp32 forward passes of the default model (SmolLM2-135M: 30 layers, hidden 576, FFN
/// 1536, vocabulary 49,152) may differ, derived from the arithmetic rather than from a passing run.
/// The same budget bounds the engine against the float64-accumulated numpy reference and a row in
/// a ragged batch against the row alone: both differ only in the order of fp32 sums (another OpenBLAS
/// kernel, blocking or row count), which no test may assume (OPENBLAS_CORETYPE, L2 size, CPU vary).
enum Tolerance {
    /// fp32 unit roundoff.
    static let u: Float = 0x1p-24
    /// A K-term fp32 sum in another order moves by ~u·√K of its terms' magnitude (rounding errors add
    /// as a random walk). Each layer adds two products to the residual stream, Wo·attention (K = 576)
    /// and Wdown·FFN (K = 1536): over 30 layers the relative error is u·√(30·(576 + 1536)) = 1.5e-5.
    static let relative = u * Float(30 * (576 + 1536)).squareRoot()
    /// The final norm carries that onto hidden values as large as |h| = 43 (the largest in
    /// reference_forward.json): 43 · 1.5e-5 = 6.5e-4.
    static let hidden = 43 * relative
    /// A logit is Σ e·h over 576 terms with Σ|e·h| ≤ 124 for the fixture's top-64 logits (token
    /// embeddings from the GGUF): 124 · 1.5e-5 = 1.9e-3. The head's own rounding, u·√576 = 1.4e-6
    /// relative, adds in quadrature (under 1%).
    static let logit = 124 * relative
    /// The engine's softmax (TopK.swift) keeps its total of exponentials in Double, so what is left
    /// is vexp (~1 ulp = 2u) on each value and on each rescale of the total when a new maximum
    /// appears (≈ H₆₁₄₄ = 9.3 times over 6,144 chunks in any unsorted order: take 11), and the
    /// rounding of 1/total and of the product: (2 + 2·11 + 2)·u = 26u = 1.5e-6 relative.
    static let softmax = u * Float(2 + 2 * 11 + 2)
    /// Softmax: δp/p = δz_j − Σ p·δz ≤ 2·δz, plus the normalisation: 2 · 1.9e-3 + 1.5e-6 = 3.7e-3
    /// of the probability itself.
    static let probability = 2 * logit + softmax
    /// A decode step with the KV cache against a full prefill of the same tokens (and a row of a
    /// mixed batch against the row alone): the same arithmetic with fp32 sums in another order
    /// (OpenBLAS blocks a one-row product unlike a T-row one; cached attention sums positions in
    /// order). `logit` bounds that with every rounding error aligned; the issue asks for 1e-4, which
    /// holds for the typical size. An FMA chain of K terms t rounds each partial sum S_k once, by a
    /// uniform ±u·|S_k| (variance u²/3·S_k²); for terms of random sign E[S_k²] = k·mean(t²), so two
    /// orders differ with variance u²/3·K·Σt² per output. Summed over the 60 residual products
    /// (Wo, Wdown) at the last position and carried through the final norm (`reorder_variance` in
    /// scripts/reference/family_reference.py), this predicts a hidden-state error of rms ≤ 2.2e-6 on
    /// SmolLM2 (measured: 0.9e-6 to 1.3e-6) and a logit σ of at most 2.6e-5 over 64 greedy steps:
    /// 1e-4 is 3.9σ for the worst logit, and the expected number of logits past it over those 64
    /// steps × 49,152 logits is 7e-4 (`kv_reference.json`; the tests require < 0.01). The synthetic
    /// families' σ is under 2e-6.
    static let cachedLogit: Float = 1e-4
}
