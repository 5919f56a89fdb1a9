// One decode query's attention over the KV cache's blocks (see CKernels.h, axon_attend_scores and
// axon_attend_values), per instruction set and cache element (f32, or f16 converted exactly by
// F16C). The cache holds, per layer and block of AXON_KV_BLOCK positions, each KV head's keys
// transposed (headDim, 16) and, `value_offset` elements later, its values (16, headDim). The Swift version of these loops (SIMD8 through the stdlib)
// ran at ~4 GMAC/s; these keep the accumulators in registers and reach the FMA units.
#include "CKernels.h"

#include <math.h>

#if defined(__x86_64__)
#include <immintrin.h>
#endif

#define ALWAYS_INLINE static inline __attribute__((always_inline))

static inline ptrdiff_t min_pd(ptrdiff_t a, ptrdiff_t b) { return a < b ? a : b; }

// Element i of the cache's pool: f32, or binary16 when `half` (converted exactly).
static inline float element(const void *pool, int half, ptrdiff_t i) {
    return half ? axon_f16_to_f32(((const uint16_t *)pool)[i]) : ((const float *)pool)[i];
}

// MARK: - Scalar (any CPU): the definition

static void scores_scalar(int half, const float *q, ptrdiff_t group, ptrdiff_t hd, float scale, const void *pool,
                          const int32_t *table, ptrdiff_t block_floats, ptrdiff_t value_offset, ptrdiff_t first, ptrdiff_t cached,
                          const float *new_keys, ptrdiff_t new_stride, ptrdiff_t new_count, float *scores, ptrdiff_t n) {
    (void)value_offset;
    for (ptrdiff_t i = 0; i < cached; i++) {
        ptrdiff_t pos = first + i;
        ptrdiff_t k = (ptrdiff_t)table[pos / AXON_KV_BLOCK] * block_floats + pos % AXON_KV_BLOCK;
        for (ptrdiff_t j = 0; j < group; j++) {
            float acc = 0;
            for (ptrdiff_t d = 0; d < hd; d++) acc += q[j * hd + d] * element(pool, half, k + d * AXON_KV_BLOCK);
            scores[j * n + i] = acc * scale;
        }
    }
    for (ptrdiff_t i = 0; i < new_count; i++) {
        for (ptrdiff_t j = 0; j < group; j++) {
            float acc = 0;
            for (ptrdiff_t d = 0; d < hd; d++) acc += q[j * hd + d] * new_keys[i * new_stride + d];
            scores[j * n + cached + i] = acc * scale;
        }
    }
}

static void values_scalar(int half, const float *p, ptrdiff_t group, ptrdiff_t n, ptrdiff_t hd, const void *pool,
                          const int32_t *table, ptrdiff_t block_floats, ptrdiff_t value_offset, ptrdiff_t first,
                          ptrdiff_t cached, const float *new_values, ptrdiff_t new_stride, ptrdiff_t new_count, float *out) {
    for (ptrdiff_t j = 0; j < group; j++) {
        for (ptrdiff_t d = 0; d < hd; d++) {
            float acc = 0;
            for (ptrdiff_t i = 0; i < cached; i++) {
                ptrdiff_t pos = first + i;
                ptrdiff_t v = (ptrdiff_t)table[pos / AXON_KV_BLOCK] * block_floats + value_offset;
                acc += p[j * n + i] * element(pool, half, v + (pos % AXON_KV_BLOCK) * hd + d);
            }
            for (ptrdiff_t i = 0; i < new_count; i++) acc += p[j * n + cached + i] * new_values[i * new_stride + d];
            out[j * hd + d] = acc;
        }
    }
}

#if defined(__x86_64__)

// MARK: - Vector paths, instantiated per instruction set

// Scores: NB blocks of 16 keys against up to 4 query heads at once, each key vector loaded once per
// dimension for all of them (broadcast FMAs over the transposed blocks: no horizontal sums); NB is
// chosen so that 8 accumulator chains run at once (an FMA's latency is ~4 cycles: 4 chains would
// leave half the FMA units idle at AVX-512's one vector per block).
// Values: up to 4 query heads × VV vectors of output dimensions in registers over every position,
// each value row loaded (and converted from f16) once for all the heads.
// Every output is still one FMA chain in the order of its definition (scores: over d; values: over
// the positions), so the grouping changes no result.
#define DEFINE_ATTENTION(ISA, TARGET, VEC, LANES, NB, VV, ZERO, SET1, LOAD, STORE, FMA, SUM, ELEM, LOADC)              \
    TARGET static void ISA##_scores(const float *q, ptrdiff_t group, ptrdiff_t hd, float scale, const ELEM *pool,     \
                                    const int32_t *table, ptrdiff_t block_floats, ptrdiff_t value_offset,              \
                                    ptrdiff_t first, ptrdiff_t cached, const float *new_keys, ptrdiff_t new_stride, ptrdiff_t new_count, float *scores,   \
                                    ptrdiff_t n) {                                                                     \
        enum { V = AXON_KV_BLOCK / LANES };                                                                            \
        float tile[4 * NB * AXON_KV_BLOCK] __attribute__((aligned(64)));                                               \
        ptrdiff_t pos = first, end = first + cached;                                                                   \
        while (pos < end) {                                                                                            \
            /* Up to NB blocks: [starts[b], stops[b]) of each, blocks[b] its keys. */                                  \
            const ELEM *blocks[NB];                                                                                    \
            ptrdiff_t starts[NB], stops[NB], block_starts[NB];                                                         \
            int nb = 0;                                                                                                \
            for (; nb < NB && pos < end; nb++) {                                                                       \
                block_starts[nb] = pos - pos % AXON_KV_BLOCK;                                                          \
                starts[nb] = pos;                                                                                      \
                stops[nb] = min_pd(block_starts[nb] + AXON_KV_BLOCK, end);                                             \
                blocks[nb] = pool + (ptrdiff_t)table[pos / AXON_KV_BLOCK] * block_floats;                              \
                pos = stops[nb];                                                                                       \
            }                                                                                                          \
            for (int b = nb; b < NB; b++) blocks[b] = blocks[0];   /* computed, never copied */                        \
            /* The next NB blocks are elsewhere in the pool (their table entries): fetch their keys and */             \
            /* values now, one line of each per dimension step, so neither the next pass nor the values' */            \
            /* waits on them. */                                                                                       \
            const char *ahead[NB];                                                                                     \
            for (int b = 0; b < NB; b++) {                                                                             \
                ptrdiff_t next = pos + b * AXON_KV_BLOCK;                                                              \
                ahead[b] = next < end ? (const char *)(pool + (ptrdiff_t)table[next / AXON_KV_BLOCK] * block_floats)   \
                                      : (const char *)blocks[0];                                                       \
            }                                                                                                          \
            const ptrdiff_t lines = (ptrdiff_t)(AXON_KV_BLOCK * hd * sizeof(ELEM) / 64);                               \
            for (ptrdiff_t j0 = 0; j0 < group; j0 += 4) {                                                              \
                const int jn = (int)min_pd(4, group - j0);                                                             \
                VEC acc[4][NB * V];                                                                                    \
                for (int j = 0; j < 4; j++)                                                                            \
                    for (int v = 0; v < NB * V; v++) acc[j][v] = ZERO();                                               \
                const float *qj = q + j0 * hd;                                                                         \
                for (ptrdiff_t d = 0; d < hd; d++) {                                                                   \
                    if (j0 == 0 && d < lines) {                                                                        \
                        for (int b = 0; b < NB; b++) {                                                                 \
                            _mm_prefetch(ahead[b] + d * 64, _MM_HINT_T0);                                              \
                            _mm_prefetch(ahead[b] + (value_offset) * (ptrdiff_t)sizeof(ELEM) + d * 64, _MM_HINT_T0);    \
                        }                                                                                              \
                    }                                                                                                  \
                    VEC kv[NB * V];                                                                                    \
                    for (int b = 0; b < NB; b++)                                                                       \
                        for (int v = 0; v < V; v++) kv[b * V + v] = LOADC(blocks[b] + d * AXON_KV_BLOCK + v * LANES);  \
                    for (int j = 0; j < 4; j++) {                                                                      \
                        if (j >= jn) break;                                                                            \
                        VEC bq = SET1(qj[j * hd + d]);                                                                 \
                        for (int v = 0; v < NB * V; v++) acc[j][v] = FMA(bq, kv[v], acc[j][v]);                        \
                    }                                                                                                  \
                }                                                                                                      \
                for (int j = 0; j < jn; j++) {                                                                         \
                    for (int v = 0; v < NB * V; v++) STORE(tile + j * NB * AXON_KV_BLOCK + v * LANES, acc[j][v]);      \
                    for (int b = 0; b < nb; b++) {                                                                     \
                        float *row = scores + (j0 + j) * n + (starts[b] - first);                                      \
                        const float *t = tile + (j * NB + b) * AXON_KV_BLOCK;                                          \
                        for (ptrdiff_t i = starts[b]; i < stops[b]; i++) row[i - starts[b]] = t[i - block_starts[b]] * scale; \
                    }                                                                                                  \
                }                                                                                                      \
            }                                                                                                          \
        }                                                                                                              \
        for (ptrdiff_t i = 0; i < new_count; i++) {                                                                    \
            const float *key = new_keys + i * new_stride;                                                              \
            for (ptrdiff_t j = 0; j < group; j++) {                                                                    \
                VEC acc = ZERO();                                                                                      \
                for (ptrdiff_t d = 0; d < hd; d += LANES) acc = FMA(LOAD(q + j * hd + d), LOAD(key + d), acc);         \
                scores[j * n + cached + i] = SUM(acc) * scale;                                                         \
            }                                                                                                          \
        }                                                                                                              \
    }                                                                                                                  \
                                                                                                                       \
    /* Heads j0 ..< j0 + JN, dimensions d0 ..< d0 + W · LANES (JN and W constants: the accumulators */             \
    /* stay in registers). */                                                                                      \
    ALWAYS_INLINE TARGET void ISA##_values_tile(const int JN, const int W, const float *pj, ptrdiff_t n, ptrdiff_t hd, \
                                                const ELEM *pool, const int32_t *table, ptrdiff_t block_floats,      \
                                                ptrdiff_t value_offset, ptrdiff_t first, ptrdiff_t cached,            \
                                                const float *new_values, ptrdiff_t new_stride, ptrdiff_t new_count,   \
                                                ptrdiff_t d0, float *out) {                                           \
        VEC acc[4][VV];                                                                                                \
        for (int j = 0; j < JN; j++)                                                                                   \
            for (int c = 0; c < W; c++) acc[j][c] = ZERO();                                                            \
        ptrdiff_t pos = first, end = first + cached;                                                                   \
        while (pos < end) {                                                                                            \
            ptrdiff_t block_start = pos - pos % AXON_KV_BLOCK, stop = min_pd(block_start + AXON_KV_BLOCK, end);        \
            const ELEM *v = pool + (ptrdiff_t)table[pos / AXON_KV_BLOCK] * block_floats + value_offset + d0;           \
            for (ptrdiff_t i = pos; i < stop; i++) {                                                                   \
                const ELEM *row = v + (i - block_start) * hd;                                                          \
                VEC vv[VV];                                                                                            \
                for (int c = 0; c < W; c++) vv[c] = LOADC(row + c * LANES);                                            \
                for (int j = 0; j < JN; j++) {                                                                         \
                    VEC b = SET1(pj[j * n + i - first]);                                                               \
                    for (int c = 0; c < W; c++) acc[j][c] = FMA(b, vv[c], acc[j][c]);                                  \
                }                                                                                                      \
            }                                                                                                          \
            pos = stop;                                                                                                \
        }                                                                                                              \
        for (ptrdiff_t i = 0; i < new_count; i++) {                                                                    \
            const float *row = new_values + i * new_stride + d0;                                                       \
            VEC vv[VV];                                                                                                \
            for (int c = 0; c < W; c++) vv[c] = LOAD(row + c * LANES);                                                 \
            for (int j = 0; j < JN; j++) {                                                                             \
                VEC b = SET1(pj[j * n + cached + i]);                                                                  \
                for (int c = 0; c < W; c++) acc[j][c] = FMA(b, vv[c], acc[j][c]);                                      \
            }                                                                                                          \
        }                                                                                                              \
        for (int j = 0; j < JN; j++)                                                                                   \
            for (int c = 0; c < W; c++) STORE(out + j * hd + d0 + c * LANES, acc[j][c]);                               \
    }                                                                                                                  \
                                                                                                                       \
    TARGET static void ISA##_values(const float *p, ptrdiff_t group, ptrdiff_t n, ptrdiff_t hd, const ELEM *pool,     \
                                    const int32_t *table, ptrdiff_t block_floats, ptrdiff_t value_offset,              \
                                    ptrdiff_t first, ptrdiff_t cached, const float *new_values, ptrdiff_t new_stride,  \
                                    ptrdiff_t new_count, float *out) {                                                 \
        for (ptrdiff_t j0 = 0; j0 < group; j0 += 4) {                                                                  \
            const int jn = (int)min_pd(4, group - j0);                                                                 \
            for (ptrdiff_t d0 = 0; d0 < hd; d0 += VV * LANES) {                                                        \
                const int w = (int)min_pd(VV, (hd - d0) / LANES);                                                      \
                switch (jn * 8 + w) {                                                                                  \
                VALUES_CASES(ISA, VV, 4) VALUES_CASES(ISA, VV, 3) VALUES_CASES(ISA, VV, 2) VALUES_CASES(ISA, VV, 1)    \
                default: break;                                                                                        \
                }                                                                                                      \
            }                                                                                                          \
        }                                                                                                              \
    }

// The value tiles of JN heads and 1 ... VV vectors (switch key jn · 8 + w), reading ISA##_values'
// locals. Cases past VV never run; `W <= VV ? W : 1` keeps them from instantiating a tile wider
// than its accumulators.
#define VALUES_TILE(ISA, VV, JN, W)                                                                                    \
    case JN * 8 + W:                                                                                                   \
        if (W <= VV)                                                                                                   \
            ISA##_values_tile(JN, W <= VV ? W : 1, p + (j0) * n, n, hd, pool, table, block_floats, value_offset,   \
                              first, cached, new_values, new_stride, new_count, d0, out + (j0) * hd);                  \
        break;
#define VALUES_CASES(ISA, VV, JN) VALUES_TILE(ISA, VV, JN, 4) VALUES_TILE(ISA, VV, JN, 3) VALUES_TILE(ISA, VV, JN, 2) VALUES_TILE(ISA, VV, JN, 1)

#define AVX2 __attribute__((target("avx2,fma,f16c")))
AVX2 static inline float avx2_attention_sum(__m256 v) {
    __m128 s = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
    s = _mm_add_ps(s, _mm_movehl_ps(s, s));
    s = _mm_add_ss(s, _mm_movehdup_ps(s));
    return _mm_cvtss_f32(s);
}
#define AVX2_LOAD_F16(p) _mm256_cvtph_ps(_mm_loadu_si128((const __m128i *)(p)))
DEFINE_ATTENTION(avx2, AVX2, __m256, 8, 1, 2, _mm256_setzero_ps, _mm256_set1_ps, _mm256_loadu_ps, _mm256_storeu_ps,
                 _mm256_fmadd_ps, avx2_attention_sum, float, _mm256_loadu_ps)
DEFINE_ATTENTION(avx2_f16, AVX2, __m256, 8, 1, 2, _mm256_setzero_ps, _mm256_set1_ps, _mm256_loadu_ps, _mm256_storeu_ps,
                 _mm256_fmadd_ps, avx2_attention_sum, uint16_t, AVX2_LOAD_F16)

#define AVX512 __attribute__((target("avx512f,avx2,fma,f16c")))
AVX512 static inline float avx512_attention_sum(__m512 v) { return _mm512_reduce_add_ps(v); }
#define AVX512_LOAD_F16(p) _mm512_cvtph_ps(_mm256_loadu_si256((const __m256i *)(p)))
DEFINE_ATTENTION(avx512, AVX512, __m512, 16, 2, 4, _mm512_setzero_ps, _mm512_set1_ps, _mm512_loadu_ps, _mm512_storeu_ps,
                 _mm512_fmadd_ps, avx512_attention_sum, float, _mm512_loadu_ps)
DEFINE_ATTENTION(avx512_f16, AVX512, __m512, 16, 2, 4, _mm512_setzero_ps, _mm512_set1_ps, _mm512_loadu_ps, _mm512_storeu_ps,
                 _mm512_fmadd_ps, avx512_attention_sum, uint16_t, AVX512_LOAD_F16)

#endif  // __x86_64__

void axon_attend_scores(int isa, int half, const float *q, ptrdiff_t group, ptrdiff_t hd, float scale, const void *pool,
                        const int32_t *table, ptrdiff_t block_floats, ptrdiff_t value_offset, ptrdiff_t first, ptrdiff_t cached,
                        const float *new_keys, ptrdiff_t new_stride, ptrdiff_t new_count, float *scores, ptrdiff_t n) {
#define SCORES_ARGS q, group, hd, scale, pool, table, block_floats, value_offset, first, cached, new_keys, new_stride, new_count, scores, n
#if defined(__x86_64__)
    if (isa == AXON_ISA_AVX512 && hd % 16 == 0 && axon_isa_supported(AXON_ISA_AVX512)) {
        if (half) avx512_f16_scores(SCORES_ARGS); else avx512_scores(SCORES_ARGS);
        return;
    }
    if (isa >= AXON_ISA_AVX2 && hd % 8 == 0 && axon_isa_supported(AXON_ISA_AVX2)) {
        if (half) avx2_f16_scores(SCORES_ARGS); else avx2_scores(SCORES_ARGS);
        return;
    }
#endif
    scores_scalar(half, SCORES_ARGS);
#undef SCORES_ARGS
}

void axon_attend_values(int isa, int half, const float *p, ptrdiff_t group, ptrdiff_t n, ptrdiff_t hd, const void *pool,
                        const int32_t *table, ptrdiff_t block_floats, ptrdiff_t value_offset, ptrdiff_t first,
                        ptrdiff_t cached, const float *new_values, ptrdiff_t new_stride, ptrdiff_t new_count, float *out) {
#define VALUES_ARGS p, group, n, hd, pool, table, block_floats, value_offset, first, cached, new_values, new_stride, new_count, out
#if defined(__x86_64__)
    if (isa == AXON_ISA_AVX512 && hd % 16 == 0 && axon_isa_supported(AXON_ISA_AVX512)) {
        if (half) avx512_f16_values(VALUES_ARGS); else avx512_values(VALUES_ARGS);
        return;
    }
    if (isa >= AXON_ISA_AVX2 && hd % 8 == 0 && axon_isa_supported(AXON_ISA_AVX2)) {
        if (half) avx2_f16_values(VALUES_ARGS); else avx2_values(VALUES_ARGS);
        return;
    }
#endif
    values_scalar(half, VALUES_ARGS);
#undef VALUES_ARGS
}

// MARK: - Whole decode steps: scores, softmax, values per item, items spread over the pool

// e^x on 8 lanes as the engine's Swift `vexp` (Kernels.swift): Cody–Waite reduction, the Cephes
// expf polynomial, 2^n in the exponent bits; inputs clamped to [−87, 88].
#if defined(__x86_64__)
AVX2 static inline __m256 avx2_exp(__m256 x) {
    x = _mm256_max_ps(_mm256_min_ps(x, _mm256_set1_ps(88.0f)), _mm256_set1_ps(-87.0f));
    const __m256 magic = _mm256_set1_ps(12582912.0f);
    __m256 shifted = _mm256_add_ps(_mm256_mul_ps(x, _mm256_set1_ps(1.44269504f)), magic);
    __m256 n = _mm256_sub_ps(shifted, magic);
    __m256 r = _mm256_sub_ps(x, _mm256_mul_ps(n, _mm256_set1_ps(0.693359375f)));
    r = _mm256_add_ps(r, _mm256_mul_ps(n, _mm256_set1_ps(2.1219444e-4f)));
    __m256 p = _mm256_set1_ps(1.98756915e-4f);
    p = _mm256_add_ps(_mm256_mul_ps(p, r), _mm256_set1_ps(1.39819995e-3f));
    p = _mm256_add_ps(_mm256_mul_ps(p, r), _mm256_set1_ps(8.3334519e-3f));
    p = _mm256_add_ps(_mm256_mul_ps(p, r), _mm256_set1_ps(4.16657959e-2f));
    p = _mm256_add_ps(_mm256_mul_ps(p, r), _mm256_set1_ps(1.66666655e-1f));
    p = _mm256_add_ps(_mm256_mul_ps(p, r), _mm256_set1_ps(5.00000012e-1f));
    p = _mm256_add_ps(_mm256_add_ps(_mm256_mul_ps(p, _mm256_mul_ps(r, r)), r), _mm256_set1_ps(1.0f));
    __m256i bits = _mm256_sub_epi32(_mm256_castps_si256(shifted), _mm256_set1_epi32(0x4B400000));
    __m256 scale = _mm256_castsi256_ps(_mm256_slli_epi32(_mm256_add_epi32(bits, _mm256_set1_epi32(127)), 23));
    return _mm256_mul_ps(p, scale);
}

// The softmax of `n` scores in place, in 8-lane steps (the tail through the same exp).
AVX2 static void avx2_softmax(float *s, ptrdiff_t n) {
    __m256 vmax = _mm256_set1_ps(-__builtin_inff());
    ptrdiff_t i = 0;
    for (; i + 8 <= n; i += 8) vmax = _mm256_max_ps(vmax, _mm256_loadu_ps(s + i));
    float lanes[8];
    _mm256_storeu_ps(lanes, vmax);
    float m = lanes[0];
    for (int l = 1; l < 8; l++) m = lanes[l] > m ? lanes[l] : m;
    for (; i < n; i++) m = s[i] > m ? s[i] : m;
    const __m256 mv = _mm256_set1_ps(m);
    __m256 acc = _mm256_setzero_ps();
    for (i = 0; i + 8 <= n; i += 8) {
        __m256 e = avx2_exp(_mm256_sub_ps(_mm256_loadu_ps(s + i), mv));
        _mm256_storeu_ps(s + i, e);
        acc = _mm256_add_ps(acc, e);
    }
    float sum = avx2_attention_sum(acc);
    for (; i < n; i++) {
        float e = _mm256_cvtss_f32(avx2_exp(_mm256_set1_ps(s[i] - m)));
        s[i] = e;
        sum += e;
    }
    const __m256 inv = _mm256_set1_ps(1 / sum);
    for (i = 0; i + 8 <= n; i += 8) _mm256_storeu_ps(s + i, _mm256_mul_ps(_mm256_loadu_ps(s + i), inv));
    for (; i < n; i++) s[i] *= 1 / sum;
}
#endif

// The portable softmax (libm's expf): CPUs without AVX2.
static void scalar_softmax(float *s, ptrdiff_t n) {
    float m = s[0], sum = 0;
    for (ptrdiff_t i = 1; i < n; i++) m = s[i] > m ? s[i] : m;
    for (ptrdiff_t i = 0; i < n; i++) { s[i] = expf(s[i] - m); sum += s[i]; }
    for (ptrdiff_t i = 0; i < n; i++) s[i] *= 1 / sum;
}

static void attend_item(const axon_decode_attention_job *job, const axon_decode_attention_item *it, float *scores) {
    const ptrdiff_t n = it->cached + it->new_count;
    axon_attend_scores(job->isa, job->half, it->q, job->group, job->head_dim, job->scale, it->keys, it->table,
                       job->block_elements, job->value_offset, it->first, it->cached, it->new_keys, job->new_stride,
                       it->new_count, scores, n);
#if defined(__x86_64__)
    if (job->isa >= AXON_ISA_AVX2 && axon_isa_supported(AXON_ISA_AVX2)) {
        for (ptrdiff_t j = 0; j < job->group; j++) avx2_softmax(scores + j * n, n);
    } else
#endif
    for (ptrdiff_t j = 0; j < job->group; j++) scalar_softmax(scores + j * n, n);
    axon_attend_values(job->isa, job->half, scores, job->group, n, job->head_dim, it->keys, it->table, job->block_elements,
                       job->value_offset, it->first, it->cached, it->new_keys + job->new_value_offset, job->new_stride,
                       it->new_count, it->out);
}

typedef struct {
    const axon_decode_attention_job *job;
    const axon_decode_attention_item *items;
    ptrdiff_t count;
    ptrdiff_t next;   // the next unclaimed item (__atomic builtins)
} attention_run;

static void attention_part(void *context, ptrdiff_t part, ptrdiff_t parts) {
    (void)parts;
    attention_run *run = context;
    float *scores = run->job->scratch + part * run->job->scratch_stride;
    for (;;) {
        ptrdiff_t i = __atomic_fetch_add(&run->next, 1, __ATOMIC_RELAXED);
        if (i >= run->count) return;
        attend_item(run->job, run->items + i, scores);
    }
}

void axon_attend_decode(axon_pool *pool, ptrdiff_t parts, const axon_decode_attention_job *job,
                        const axon_decode_attention_item *items, ptrdiff_t count) {
    attention_run run = {job, items, count, 0};
    if (parts <= 1 || pool == NULL) {
        attention_part(&run, 0, 1);
        return;
    }
    axon_pool_run(pool, attention_part, &run, parts);
}
