// y = x · Wᵀ for a few f32 activation rows against int8 / f16 / bf16 weights, per instruction set.
//
// Every path computes each output the same way whatever the tile, m, or output range: one vector
// accumulator of `lanes` partial sums over k (fused multiply-adds in k order; S8_BLOCK32 weights
// enter as q · their block's scale, rounded once to f32, as an f32 engine holding those weights would
// see them), the lanes summed by a fixed tree, then the row scale (S8) and the optional add into y. So a row's result never depends on the other rows
// of the batch or on how outputs are split over threads.
//
// A row's last step, when k is not a multiple of the lanes, loads a full vector of weights: up to
// one vector past the row, into the next row or the matrix's zeroed padding (AXON_WEIGHT_PADDING),
// and multiplies the lanes past k by x lanes loaded as zero. Every stored weight is finite, so those
// lanes add exactly 0. (Copying the tail into a zeroed buffer would call memcpy, and the compiler
// then spills an accumulator of the hot loop around the call.)
#include "CKernels.h"

#include <string.h>

#if defined(__x86_64__)
#include <cpuid.h>
#include <immintrin.h>
#endif

#define ALWAYS_INLINE static inline __attribute__((always_inline))

// The switch cases of the tiles with R ≤ MAX rows and 3, 2 or 1 outputs (key r · 4 + nr).
#define NR3_CASES(TILE, R, MAX)                         \
    case R * 4 + 3: if (R <= MAX) TILE(R, 3); break;   \
    case R * 4 + 2: if (R <= MAX) TILE(R, 2); break;   \
    case R * 4 + 1: if (R <= MAX) TILE(R, 1); break;

// Weight blocks fetched ahead of the tile reading them (see decode_tile.h).
#define PREFETCH_TILES 2
#define PREFETCH_HINT _MM_HINT_T0

static inline ptrdiff_t element_size(int format) {
    return format == AXON_WEIGHT_S8 || format == AXON_WEIGHT_S8_BLOCK32 ? 1 : 2;
}

// MARK: - Scalar (any CPU)

ALWAYS_INLINE float scalar_weight(int format, const void *w, ptrdiff_t i) {
    switch (format) {
    case AXON_WEIGHT_F16: return axon_f16_to_f32(((const uint16_t *)w)[i]);
    case AXON_WEIGHT_BF16: {
        uint32_t u = (uint32_t)((const uint16_t *)w)[i] << 16;
        float f;
        memcpy(&f, &u, 4);
        return f;
    }
    default: return (float)((const int8_t *)w)[i];
    }
}

static void gemm_scalar(int format, const float *x, ptrdiff_t ldx, ptrdiff_t m, const void *w,
                        const float *scales, ptrdiff_t k, ptrdiff_t n0, ptrdiff_t n1, float *y,
                        ptrdiff_t ldy, int accumulate) {
    const ptrdiff_t blocks = (k + AXON_WEIGHT_BLOCK - 1) / AXON_WEIGHT_BLOCK;
    for (ptrdiff_t j = n0; j < n1; j++) {
        for (ptrdiff_t i = 0; i < m; i++) {
            const float *xr = x + i * ldx;
            float acc = 0;
            if (format == AXON_WEIGHT_S8_BLOCK32) {
                for (ptrdiff_t c = 0; c < k; c++) {
                    float weight = scalar_weight(format, w, j * k + c) * scales[j * blocks + c / AXON_WEIGHT_BLOCK];
                    acc += xr[c] * weight;
                }
            } else {
                for (ptrdiff_t c = 0; c < k; c++) acc += xr[c] * scalar_weight(format, w, j * k + c);
                if (format == AXON_WEIGHT_S8) acc *= scales[j];
            }
            float *o = y + i * ldy + j;
            *o = accumulate ? *o + acc : acc;
        }
    }
}

#if defined(__x86_64__)

// MARK: - AVX2 + FMA + F16C: 8 lanes

#define AVX2 __attribute__((target("avx2,fma,f16c")))

ALWAYS_INLINE AVX2 __m256 avx2_weights(const int format, const void *w, ptrdiff_t i) {
    if (format == AXON_WEIGHT_S8 || format == AXON_WEIGHT_S8_BLOCK32)
        return _mm256_cvtepi32_ps(_mm256_cvtepi8_epi32(_mm_loadl_epi64((const __m128i *)((const int8_t *)w + i))));
    __m128i h = _mm_loadu_si128((const __m128i *)((const uint16_t *)w + i));
    if (format == AXON_WEIGHT_F16) return _mm256_cvtph_ps(h);
    return _mm256_castsi256_ps(_mm256_slli_epi32(_mm256_cvtepu16_epi32(h), 16));
}

static const int32_t avx2_mask_table[16] = {-1, -1, -1, -1, -1, -1, -1, -1, 0, 0, 0, 0, 0, 0, 0, 0};

ALWAYS_INLINE AVX2 float avx2_sum(__m256 v) {
    __m128 s = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
    s = _mm_add_ps(s, _mm_movehl_ps(s, s));
    s = _mm_add_ss(s, _mm_movehdup_ps(s));
    return _mm_cvtss_f32(s);
}

#define ISA(name) avx2_##name
#define TARGET AVX2
#define VEC __m256
#define LANES 8
#define V_ZERO() _mm256_setzero_ps()
#define V_SET1(f) _mm256_set1_ps(f)
#define V_LOADX(p) _mm256_loadu_ps(p)
#define V_LOADX_TAIL(p, rem) _mm256_maskload_ps(p, _mm256_loadu_si256((const __m256i *)(avx2_mask_table + 8 - (rem))))
#define V_MUL(a, b) _mm256_mul_ps(a, b)
#define V_FMA(a, b, c) _mm256_fmadd_ps(a, b, c)
#define V_SUM(v) avx2_sum(v)
#define V_WEIGHTS(format, w, i) avx2_weights(format, w, i)
// 16 ymm: 12 accumulators + 3 weights + 1 x (4×3 > 3×3, 6×2 > 2×5 > 3×4, 2×6, which spill);
// at m = 1, 4 outputs (measured on Zen 4, 2 threads on the worker pool: 4 streams of weight rows reach
// 28.7 GB/s against 20.1 with 8, which the prefetchers and the 8 interleaved streams held back).
#define TILE_MR 4
#define TILE_NR_ONE 4
#include "decode_tile.h"
#undef ISA
#undef TARGET
#undef VEC
#undef LANES
#undef V_ZERO
#undef V_SET1
#undef V_LOADX
#undef V_LOADX_TAIL
#undef V_MUL
#undef V_FMA
#undef V_SUM
#undef V_WEIGHTS
#undef TILE_MR
#undef TILE_NR_ONE

// MARK: - AVX-512 F: 16 lanes

#define AVX512 __attribute__((target("avx512f,avx2,fma,f16c")))

ALWAYS_INLINE AVX512 __m512 avx512_weights(const int format, const void *w, ptrdiff_t i) {
    if (format == AXON_WEIGHT_S8 || format == AXON_WEIGHT_S8_BLOCK32)
        return _mm512_cvtepi32_ps(_mm512_cvtepi8_epi32(_mm_loadu_si128((const __m128i *)((const int8_t *)w + i))));
    __m256i h = _mm256_loadu_si256((const __m256i *)((const uint16_t *)w + i));
    if (format == AXON_WEIGHT_F16) return _mm512_cvtph_ps(h);
    return _mm512_castsi512_ps(_mm512_slli_epi32(_mm512_cvtepu16_epi32(h), 16));
}

ALWAYS_INLINE AVX512 float avx512_sum(__m512 v) {
    __m256 lo = _mm512_castps512_ps256(v);
    __m256 hi = _mm256_castpd_ps(_mm512_extractf64x4_pd(_mm512_castps_pd(v), 1));
    __m256 s8 = _mm256_add_ps(lo, hi);
    __m128 s = _mm_add_ps(_mm256_castps256_ps128(s8), _mm256_extractf128_ps(s8, 1));
    s = _mm_add_ps(s, _mm_movehl_ps(s, s));
    s = _mm_add_ss(s, _mm_movehdup_ps(s));
    return _mm_cvtss_f32(s);
}

#define ISA(name) avx512_##name
#define TARGET AVX512
#define VEC __m512
#define LANES 16
#define V_ZERO() _mm512_setzero_ps()
#define V_SET1(f) _mm512_set1_ps(f)
#define V_LOADX(p) _mm512_loadu_ps(p)
#define V_LOADX_TAIL(p, rem) _mm512_maskz_loadu_ps((__mmask16)((1u << (rem)) - 1), p)
#define V_MUL(a, b) _mm512_mul_ps(a, b)
#define V_FMA(a, b, c) _mm512_fmadd_ps(a, b, c)
#define V_SUM(v) avx512_sum(v)
#define V_WEIGHTS(format, w, i) avx512_weights(format, w, i)
// 32 zmm: 24 accumulators + 3 weights + 1 x (measured on Zen 4 at 16 × 576 × 1536: 8×3 ≥ 4×6,
// 7×3, 6×4, 5×5 > 12×2 > 16×1); at m = 1, 4 outputs (33.5 GB/s against 20.1 with 8, Zen 4, 2 threads).
#define TILE_MR 8
#define TILE_NR_ONE 4
#include "decode_tile.h"

// MARK: - Run-time detection

static uint64_t read_xcr0(void) {
    uint32_t lo, hi;
    __asm__ volatile("xgetbv" : "=a"(lo), "=d"(hi) : "c"(0));
    return ((uint64_t)hi << 32) | lo;
}

static int detect(int isa) {
    unsigned a, b, c, d;
    if (!__get_cpuid(1, &a, &b, &c, &d)) return 0;
    int fma = (c >> 12) & 1, osxsave = (c >> 27) & 1, avx = (c >> 28) & 1, f16c = (c >> 29) & 1;
    if (!osxsave || !avx || !fma || !f16c) return 0;
    uint64_t xcr0 = read_xcr0();
    if ((xcr0 & 0x6) != 0x6) return 0;   // the OS saves xmm and ymm state
    if (!__get_cpuid_count(7, 0, &a, &b, &c, &d)) return 0;
    int avx2 = (b >> 5) & 1, avx512f = (b >> 16) & 1;
    if (!avx2) return 0;
    if (isa == AXON_ISA_AVX2) return 1;
    // AVX-512 also needs the OS to save opmask and both zmm halves (XCR0 bits 5, 6, 7).
    if (isa == AXON_ISA_AVX512) return avx512f && (xcr0 & 0xe0) == 0xe0;
    return 0;
}
#endif  // __x86_64__

int axon_isa_supported(int isa) {
    if (isa == AXON_ISA_SCALAR) return 1;
#if defined(__x86_64__)
    static int cache[3] = {-1, -1, -1};   // benign race: every thread computes the same value
    if (isa < 0 || isa > AXON_ISA_AVX512) return 0;
    if (cache[isa] < 0) cache[isa] = detect(isa);
    return cache[isa];
#else
    return 0;
#endif
}

int axon_isa_lanes(int isa) {
    switch (isa) {
    case AXON_ISA_AVX2: return 8;
    case AXON_ISA_AVX512: return 16;
    default: return 1;
    }
}

void axon_decode_gemm(int isa, int format, const float *x, ptrdiff_t ldx, ptrdiff_t m,
                      const void *w, const float *scales, ptrdiff_t k, ptrdiff_t n0, ptrdiff_t n1,
                      float *y, ptrdiff_t ldy, int accumulate) {
    if (m <= 0 || n1 <= n0 || k <= 0) {
        if (k <= 0 && !accumulate)
            for (ptrdiff_t i = 0; i < m; i++)
                for (ptrdiff_t j = n0; j < n1; j++) y[i * ldy + j] = 0;
        return;
    }
#if defined(__x86_64__)
    if (isa == AXON_ISA_AVX512 && axon_isa_supported(AXON_ISA_AVX512)) {
        avx512_gemm(format, x, ldx, m, w, scales, k, n0, n1, y, ldy, accumulate);
        return;
    }
    if (isa == AXON_ISA_AVX2 && axon_isa_supported(AXON_ISA_AVX2)) {
        avx2_gemm(format, x, ldx, m, w, scales, k, n0, n1, y, ldy, accumulate);
        return;
    }
#endif
    gemm_scalar(format, x, ldx, m, w, scales, k, n0, n1, y, ldy, accumulate);
}
