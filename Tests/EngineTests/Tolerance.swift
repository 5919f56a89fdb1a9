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
}
