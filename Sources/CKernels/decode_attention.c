// One decode query's attention over the KV cache's blocks (see CKernels.h, axon_attend_scores and
// axon_attend_values), per instruction set. The cache holds, per layer and block of
// AXON_KV_BLOCK positions, each KV head's keys transposed (headDim, 16) and, `value_offset` floats
// later, its values (16, headDim). The Swift version of these loops (SIMD8 through the stdlib)
// ran at ~4 GMAC/s; these keep the accumulators in registers and reach the FMA units.
#include "CKernels.h"

#if defined(__x86_64__)
#include <immintrin.h>
#endif

#define ALWAYS_INLINE static inline __attribute__((always_inline))

static inline ptrdiff_t min_pd(ptrdiff_t a, ptrdiff_t b) { return a < b ? a : b; }

// MARK: - Scalar (any CPU): the definition

static void scores_scalar(const float *q, ptrdiff_t group, ptrdiff_t hd, float scale, const float *pool,
                          const int32_t *table, ptrdiff_t block_floats, ptrdiff_t first, ptrdiff_t cached,
                          const float *new_keys, ptrdiff_t new_stride, ptrdiff_t new_count, float *scores, ptrdiff_t n) {
    for (ptrdiff_t i = 0; i < cached; i++) {
        ptrdiff_t pos = first + i;
        const float *k = pool + (ptrdiff_t)table[pos / AXON_KV_BLOCK] * block_floats + pos % AXON_KV_BLOCK;
        for (ptrdiff_t j = 0; j < group; j++) {
            float acc = 0;
            for (ptrdiff_t d = 0; d < hd; d++) acc += q[j * hd + d] * k[d * AXON_KV_BLOCK];
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

static void values_scalar(const float *p, ptrdiff_t group, ptrdiff_t n, ptrdiff_t hd, const float *pool,
                          const int32_t *table, ptrdiff_t block_floats, ptrdiff_t value_offset, ptrdiff_t first,
                          ptrdiff_t cached, const float *new_values, ptrdiff_t new_stride, ptrdiff_t new_count, float *out) {
    for (ptrdiff_t j = 0; j < group; j++) {
        for (ptrdiff_t d = 0; d < hd; d++) {
            float acc = 0;
            for (ptrdiff_t i = 0; i < cached; i++) {
                ptrdiff_t pos = first + i;
                const float *v = pool + (ptrdiff_t)table[pos / AXON_KV_BLOCK] * block_floats + value_offset;
                acc += p[j * n + i] * v[(pos % AXON_KV_BLOCK) * hd + d];
            }
            for (ptrdiff_t i = 0; i < new_count; i++) acc += p[j * n + cached + i] * new_values[i * new_stride + d];
            out[j * hd + d] = acc;
        }
    }
}

#if defined(__x86_64__)

// MARK: - Vector paths, instantiated per instruction set

// Scores: a block's 16 keys against up to 4 query heads at once, the keys loaded once per
// dimension for all of them (broadcast FMAs over the transposed block: no horizontal sums).
// Values: 4 vectors of output dimensions in registers over every position.
#define DEFINE_ATTENTION(ISA, TARGET, VEC, LANES, ZERO, SET1, LOAD, STORE, FMA, SUM)                                   \
    TARGET static void ISA##_scores(const float *q, ptrdiff_t group, ptrdiff_t hd, float scale, const float *pool,    \
                                    const int32_t *table, ptrdiff_t block_floats, ptrdiff_t first, ptrdiff_t cached,    \
                                    const float *new_keys, ptrdiff_t new_stride, ptrdiff_t new_count, float *scores,   \
                                    ptrdiff_t n) {                                                                     \
        enum { V = AXON_KV_BLOCK / LANES };                                                                            \
        float tile[4 * AXON_KV_BLOCK] __attribute__((aligned(64)));                                                    \
        ptrdiff_t pos = first, end = first + cached;                                                                   \
        while (pos < end) {                                                                                            \
            ptrdiff_t block_start = pos - pos % AXON_KV_BLOCK, stop = min_pd(block_start + AXON_KV_BLOCK, end);        \
            const float *k = pool + (ptrdiff_t)table[pos / AXON_KV_BLOCK] * block_floats;                              \
            for (ptrdiff_t j0 = 0; j0 < group; j0 += 4) {                                                              \
                const int jn = (int)min_pd(4, group - j0);                                                             \
                VEC acc[4][V];                                                                                         \
                for (int j = 0; j < 4; j++)                                                                            \
                    for (int v = 0; v < V; v++) acc[j][v] = ZERO();                                                    \
                const float *qj = q + j0 * hd;                                                                         \
                for (ptrdiff_t d = 0; d < hd; d++) {                                                                   \
                    VEC kv[V];                                                                                         \
                    for (int v = 0; v < V; v++) kv[v] = LOAD(k + d * AXON_KV_BLOCK + v * LANES);                       \
                    for (int j = 0; j < 4; j++) {                                                                      \
                        if (j >= jn) break;                                                                            \
                        VEC b = SET1(qj[j * hd + d]);                                                                  \
                        for (int v = 0; v < V; v++) acc[j][v] = FMA(b, kv[v], acc[j][v]);                              \
                    }                                                                                                  \
                }                                                                                                      \
                for (int j = 0; j < jn; j++) {                                                                         \
                    for (int v = 0; v < V; v++) STORE(tile + j * AXON_KV_BLOCK + v * LANES, acc[j][v]);                \
                    float *row = scores + (j0 + j) * n + (pos - first);                                                \
                    for (ptrdiff_t i = pos; i < stop; i++) row[i - pos] = tile[j * AXON_KV_BLOCK + i - block_start] * scale; \
                }                                                                                                      \
            }                                                                                                          \
            pos = stop;                                                                                                \
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
    TARGET static void ISA##_values(const float *p, ptrdiff_t group, ptrdiff_t n, ptrdiff_t hd, const float *pool,    \
                                    const int32_t *table, ptrdiff_t block_floats, ptrdiff_t value_offset,              \
                                    ptrdiff_t first, ptrdiff_t cached, const float *new_values, ptrdiff_t new_stride,  \
                                    ptrdiff_t new_count, float *out) {                                                 \
        for (ptrdiff_t j = 0; j < group; j++) {                                                                        \
            const float *pj = p + j * n;                                                                               \
            for (ptrdiff_t d0 = 0; d0 < hd; d0 += 4 * LANES) {                                                         \
                const int w = (int)min_pd(4, (hd - d0) / LANES);                                                       \
                VEC acc[4] = {ZERO(), ZERO(), ZERO(), ZERO()};                                                         \
                ptrdiff_t pos = first, end = first + cached;                                                           \
                while (pos < end) {                                                                                    \
                    ptrdiff_t block_start = pos - pos % AXON_KV_BLOCK, stop = min_pd(block_start + AXON_KV_BLOCK, end); \
                    const float *v = pool + (ptrdiff_t)table[pos / AXON_KV_BLOCK] * block_floats + value_offset + d0;  \
                    for (ptrdiff_t i = pos; i < stop; i++) {                                                           \
                        VEC b = SET1(pj[i - first]);                                                                   \
                        const float *row = v + (i - block_start) * hd;                                                 \
                        for (int c = 0; c < 4; c++)                                                                    \
                            if (c < w) acc[c] = FMA(b, LOAD(row + c * LANES), acc[c]);                                 \
                    }                                                                                                  \
                    pos = stop;                                                                                        \
                }                                                                                                      \
                for (ptrdiff_t i = 0; i < new_count; i++) {                                                            \
                    VEC b = SET1(pj[cached + i]);                                                                      \
                    const float *row = new_values + i * new_stride + d0;                                               \
                    for (int c = 0; c < 4; c++)                                                                        \
                        if (c < w) acc[c] = FMA(b, LOAD(row + c * LANES), acc[c]);                                     \
                }                                                                                                      \
                for (int c = 0; c < 4; c++)                                                                            \
                    if (c < w) STORE(out + j * hd + d0 + c * LANES, acc[c]);                                           \
            }                                                                                                          \
        }                                                                                                              \
    }

#define AVX2 __attribute__((target("avx2,fma")))
AVX2 static inline float avx2_attention_sum(__m256 v) {
    __m128 s = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
    s = _mm_add_ps(s, _mm_movehl_ps(s, s));
    s = _mm_add_ss(s, _mm_movehdup_ps(s));
    return _mm_cvtss_f32(s);
}
DEFINE_ATTENTION(avx2, AVX2, __m256, 8, _mm256_setzero_ps, _mm256_set1_ps, _mm256_loadu_ps, _mm256_storeu_ps,
                 _mm256_fmadd_ps, avx2_attention_sum)

#define AVX512 __attribute__((target("avx512f,avx2,fma")))
AVX512 static inline float avx512_attention_sum(__m512 v) { return _mm512_reduce_add_ps(v); }
DEFINE_ATTENTION(avx512, AVX512, __m512, 16, _mm512_setzero_ps, _mm512_set1_ps, _mm512_loadu_ps, _mm512_storeu_ps,
                 _mm512_fmadd_ps, avx512_attention_sum)

#endif  // __x86_64__

void axon_attend_scores(int isa, const float *q, ptrdiff_t group, ptrdiff_t hd, float scale, const float *pool,
                        const int32_t *table, ptrdiff_t block_floats, ptrdiff_t first, ptrdiff_t cached,
                        const float *new_keys, ptrdiff_t new_stride, ptrdiff_t new_count, float *scores, ptrdiff_t n) {
#if defined(__x86_64__)
    if (isa == AXON_ISA_AVX512 && hd % 16 == 0 && axon_isa_supported(AXON_ISA_AVX512)) {
        avx512_scores(q, group, hd, scale, pool, table, block_floats, first, cached, new_keys, new_stride, new_count, scores, n);
        return;
    }
    if (isa >= AXON_ISA_AVX2 && hd % 8 == 0 && axon_isa_supported(AXON_ISA_AVX2)) {
        avx2_scores(q, group, hd, scale, pool, table, block_floats, first, cached, new_keys, new_stride, new_count, scores, n);
        return;
    }
#endif
    scores_scalar(q, group, hd, scale, pool, table, block_floats, first, cached, new_keys, new_stride, new_count, scores, n);
}

void axon_attend_values(int isa, const float *p, ptrdiff_t group, ptrdiff_t n, ptrdiff_t hd, const float *pool,
                        const int32_t *table, ptrdiff_t block_floats, ptrdiff_t value_offset, ptrdiff_t first,
                        ptrdiff_t cached, const float *new_values, ptrdiff_t new_stride, ptrdiff_t new_count, float *out) {
#if defined(__x86_64__)
    if (isa == AXON_ISA_AVX512 && hd % 16 == 0 && axon_isa_supported(AXON_ISA_AVX512)) {
        avx512_values(p, group, n, hd, pool, table, block_floats, value_offset, first, cached, new_values, new_stride, new_count, out);
        return;
    }
    if (isa >= AXON_ISA_AVX2 && hd % 8 == 0 && axon_isa_supported(AXON_ISA_AVX2)) {
        avx2_values(p, group, n, hd, pool, table, block_floats, value_offset, first, cached, new_values, new_stride, new_count, out);
        return;
    }
#endif
    values_scalar(p, group, n, hd, pool, table, block_floats, value_offset, first, cached, new_values, new_stride, new_count, out);
}
