// y = x · Wᵀ for a few f32 activation rows against int8 / f16 / bf16 weights, per instruction set.
//
// Every path computes each output the same way whatever the tile, m, or output range: one vector
// accumulator of `lanes` partial sums over k (fused multiply-adds in k order, a zero-padded last
// step when k is not a multiple of the lanes), the lanes summed by a fixed tree, then the row scale
// (S8) and the optional add into y. So a row's result never depends on the other rows of the batch
// or on how outputs are split over threads.
#include "CKernels.h"

#include <string.h>

#if defined(__x86_64__)
#include <cpuid.h>
#include <immintrin.h>
#endif

#define ALWAYS_INLINE static inline __attribute__((always_inline))

// The switch cases of the tiles with MR rows and 3, 2 or 1 outputs (key mr · 4 + nr).
#define NR3_CASES(TILE, MR)                   \
    case MR * 4 + 3: TILE(MR, 3); break;      \
    case MR * 4 + 2: TILE(MR, 2); break;      \
    case MR * 4 + 1: TILE(MR, 1); break;
#ifndef PREFETCH_TILES
#define PREFETCH_TILES 2
#endif
#ifndef PREFETCH_HINT
#define PREFETCH_HINT _MM_HINT_T0
#endif

// The last step of a row whose k is not a multiple of the lanes loads a full vector of weights,
// reading up to one vector past the row (into the next row, or the matrix's padding: see the
// header), and multiplies the lanes past k by x lanes loaded as zero. Every stored weight is finite,
// so those lanes add exactly 0. (A copy into a zeroed buffer would call memcpy, and the compiler then
// spills an accumulator of the hot loop around the call.)

static inline ptrdiff_t element_size(int format) { return format == AXON_WEIGHT_S8 ? 1 : 2; }

// MARK: - Scalar (any CPU)

ALWAYS_INLINE float scalar_weight(int format, const void *w, ptrdiff_t i) {
    switch (format) {
    case AXON_WEIGHT_S8: return (float)((const int8_t *)w)[i];
    case AXON_WEIGHT_F16: return axon_f16_to_f32(((const uint16_t *)w)[i]);
    default: {
        uint32_t u = (uint32_t)((const uint16_t *)w)[i] << 16;
        float f;
        memcpy(&f, &u, 4);
        return f;
    }
    }
}

static void gemm_scalar(int format, const float *x, ptrdiff_t ldx, ptrdiff_t m, const void *w,
                        const float *scales, ptrdiff_t k, ptrdiff_t n0, ptrdiff_t n1, float *y,
                        ptrdiff_t ldy, int accumulate) {
    for (ptrdiff_t j = n0; j < n1; j++) {
        for (ptrdiff_t i = 0; i < m; i++) {
            const float *xr = x + i * ldx;
            float acc = 0;
            for (ptrdiff_t c = 0; c < k; c++) acc += xr[c] * scalar_weight(format, w, j * k + c);
            if (format == AXON_WEIGHT_S8) acc *= scales[j];
            float *o = y + i * ldy + j;
            *o = accumulate ? *o + acc : acc;
        }
    }
}

#if defined(__x86_64__)

// MARK: - AVX2 + FMA + F16C: 8 lanes

#define AVX2 __attribute__((target("avx2,fma,f16c")))
// Tiles for m > 1: 12 accumulators + 3 weights + 1 x in 16 ymm (4×3 > 3×3, 6×2 > 2×5 > 3×4, 2×6,
// which spill).
#define AVX2_MR 4
#define AVX2_NR 3
#define AVX2_NR_ONE 8   // tile outputs for m = 1: 8 independent FMA chains per core

ALWAYS_INLINE AVX2 __m256 avx2_weights(const int format, const void *w, ptrdiff_t i) {
    if (format == AXON_WEIGHT_S8)
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

// One MR × NR tile: rows [0, MR) of x against outputs [j0, j0 + NR).
ALWAYS_INLINE AVX2 void avx2_tile(const int MR, const int NR, const int format, const float *x, ptrdiff_t ldx,
                                  const void *w, const float *scales, ptrdiff_t k, ptrdiff_t j0, ptrdiff_t n_end,
                                  float *y, ptrdiff_t ldy, int accumulate) {
    __m256 acc[AVX2_MR][AVX2_NR_ONE];
    for (int i = 0; i < MR; i++)
        for (int j = 0; j < NR; j++) acc[i][j] = _mm256_setzero_ps();
    // The hardware prefetchers cannot learn NR interleaved row streams of k bytes each: fetch the
    // weight block PREFETCH_TILES tiles ahead (contiguous, NR·k elements) at the rate this tile reads.
    // (Near the end of the outputs it fetches the current block again, which costs nothing.)
    const ptrdiff_t ahead_tiles = j0 + (PREFETCH_TILES + 1) * NR <= n_end ? PREFETCH_TILES : 0;
    const char *ahead = (const char *)w + (j0 + ahead_tiles * NR) * k * element_size(format);
    const ptrdiff_t step = NR * 8 * element_size(format);
    ptrdiff_t c = 0;
    for (; c + 8 <= k; c += 8) {
        for (ptrdiff_t b = 0; b < step; b += 64) _mm_prefetch(ahead + c * NR * element_size(format) + b, PREFETCH_HINT);
        __m256 wv[AVX2_NR_ONE];
        for (int j = 0; j < NR; j++) wv[j] = avx2_weights(format, w, (j0 + j) * k + c);
        for (int i = 0; i < MR; i++) {
            __m256 xv = _mm256_loadu_ps(x + i * ldx + c);
            for (int j = 0; j < NR; j++) acc[i][j] = _mm256_fmadd_ps(xv, wv[j], acc[i][j]);
        }
    }
    if (c < k) {
        ptrdiff_t rem = k - c;
        __m256i mask = _mm256_loadu_si256((const __m256i *)(avx2_mask_table + 8 - rem));
        __m256 wv[AVX2_NR_ONE];
        for (int j = 0; j < NR; j++) wv[j] = avx2_weights(format, w, (j0 + j) * k + c);   // reads past the row: see the header
        for (int i = 0; i < MR; i++) {
            __m256 xv = _mm256_maskload_ps(x + i * ldx + c, mask);
            for (int j = 0; j < NR; j++) acc[i][j] = _mm256_fmadd_ps(xv, wv[j], acc[i][j]);
        }
    }
    for (int i = 0; i < MR; i++) {
        for (int j = 0; j < NR; j++) {
            float s = avx2_sum(acc[i][j]);
            if (format == AXON_WEIGHT_S8) s *= scales[j0 + j];
            float *o = y + i * ldy + j0 + j;
            *o = accumulate ? *o + s : s;
        }
    }
}

#define AVX2_TILE(MR, NR) avx2_tile(MR, NR, format, xi, ldx, w, scales, k, j0, n1, yi, ldy, accumulate)

ALWAYS_INLINE AVX2 void avx2_gemm(const int format, const float *x, ptrdiff_t ldx, ptrdiff_t m, const void *w,
                                  const float *scales, ptrdiff_t k, ptrdiff_t n0, ptrdiff_t n1, float *y,
                                  ptrdiff_t ldy, int accumulate) {
    if (m == 1) {
        const float *xi = x;
        float *yi = y;
        ptrdiff_t j0 = n0;
        for (; j0 + AVX2_NR_ONE <= n1; j0 += AVX2_NR_ONE) AVX2_TILE(1, AVX2_NR_ONE);
        switch (n1 - j0) {
        case 7: AVX2_TILE(1, 7); break;
        case 6: AVX2_TILE(1, 6); break;
        case 5: AVX2_TILE(1, 5); break;
        case 4: AVX2_TILE(1, 4); break;
        case 3: AVX2_TILE(1, 3); break;
        case 2: AVX2_TILE(1, 2); break;
        case 1: AVX2_TILE(1, 1); break;
        default: break;
        }
        return;
    }
    // Outputs outer, rows inner: a block of NR weight rows stays in L1 while every x row passes it.
    for (ptrdiff_t j0 = n0; j0 < n1; j0 += AVX2_NR) {
        ptrdiff_t nr = n1 - j0 < AVX2_NR ? n1 - j0 : AVX2_NR;
        for (ptrdiff_t i0 = 0; i0 < m; i0 += AVX2_MR) {
            ptrdiff_t mr = m - i0 < AVX2_MR ? m - i0 : AVX2_MR;
            const float *xi = x + i0 * ldx;
            float *yi = y + i0 * ldy;
            switch (mr * 4 + nr) {
                NR3_CASES(AVX2_TILE, 4)
                NR3_CASES(AVX2_TILE, 3)
                NR3_CASES(AVX2_TILE, 2)
                NR3_CASES(AVX2_TILE, 1)
            default: break;
            }
        }
    }
}

#define AVX2_FORMAT(NAME, FORMAT)                                                                              \
    AVX2 static void NAME(const float *x, ptrdiff_t ldx, ptrdiff_t m, const void *w, const float *scales,     \
                          ptrdiff_t k, ptrdiff_t n0, ptrdiff_t n1, float *y, ptrdiff_t ldy, int accumulate) { \
        avx2_gemm(FORMAT, x, ldx, m, w, scales, k, n0, n1, y, ldy, accumulate);                               \
    }
AVX2_FORMAT(avx2_gemm_s8, AXON_WEIGHT_S8)
AVX2_FORMAT(avx2_gemm_f16, AXON_WEIGHT_F16)
AVX2_FORMAT(avx2_gemm_bf16, AXON_WEIGHT_BF16)

// MARK: - AVX-512 F: 16 lanes

#define AVX512 __attribute__((target("avx512f,avx2,fma,f16c")))
// Tiles for m > 1 (measured on Zen 5 at 16 × 576 × 1536: 8×3 ≥ 4×6, 7×3, 6×4, 5×5 > 12×2 > 16×1).
#define AVX512_MR 8       // 24 accumulators + 3 weights + 1 x in 32 zmm
#define AVX512_NR 3
#define AVX512_NR_ONE 8

ALWAYS_INLINE AVX512 __m512 avx512_weights(const int format, const void *w, ptrdiff_t i) {
    if (format == AXON_WEIGHT_S8)
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

ALWAYS_INLINE AVX512 void avx512_tile(const int MR, const int NR, const int format, const float *x,
                                      ptrdiff_t ldx, const void *w, const float *scales, ptrdiff_t k,
                                      ptrdiff_t j0, ptrdiff_t n_end, float *y, ptrdiff_t ldy, int accumulate) {
    __m512 acc[AVX512_MR][AVX512_NR_ONE];
    for (int i = 0; i < MR; i++)
        for (int j = 0; j < NR; j++) acc[i][j] = _mm512_setzero_ps();
    // (Near the end of the outputs it fetches the current block again, which costs nothing.)
    const ptrdiff_t ahead_tiles = j0 + (PREFETCH_TILES + 1) * NR <= n_end ? PREFETCH_TILES : 0;
    const char *ahead = (const char *)w + (j0 + ahead_tiles * NR) * k * element_size(format);
    const ptrdiff_t step = NR * 16 * element_size(format);
    ptrdiff_t c = 0;
    for (; c + 16 <= k; c += 16) {
        for (ptrdiff_t b = 0; b < step; b += 64) _mm_prefetch(ahead + c * NR * element_size(format) + b, PREFETCH_HINT);
        __m512 wv[AVX512_NR_ONE];
        for (int j = 0; j < NR; j++) wv[j] = avx512_weights(format, w, (j0 + j) * k + c);
        for (int i = 0; i < MR; i++) {
            __m512 xv = _mm512_loadu_ps(x + i * ldx + c);
            for (int j = 0; j < NR; j++) acc[i][j] = _mm512_fmadd_ps(xv, wv[j], acc[i][j]);
        }
    }
    if (c < k) {
        ptrdiff_t rem = k - c;
        __mmask16 mask = (__mmask16)((1u << rem) - 1);
        __m512 wv[AVX512_NR_ONE];
        for (int j = 0; j < NR; j++) wv[j] = avx512_weights(format, w, (j0 + j) * k + c);
        for (int i = 0; i < MR; i++) {
            __m512 xv = _mm512_maskz_loadu_ps(mask, x + i * ldx + c);
            for (int j = 0; j < NR; j++) acc[i][j] = _mm512_fmadd_ps(xv, wv[j], acc[i][j]);
        }
    }
    for (int i = 0; i < MR; i++) {
        for (int j = 0; j < NR; j++) {
            float s = avx512_sum(acc[i][j]);
            if (format == AXON_WEIGHT_S8) s *= scales[j0 + j];
            float *o = y + i * ldy + j0 + j;
            *o = accumulate ? *o + s : s;
        }
    }
}

#define AVX512_TILE(MR, NR) avx512_tile(MR, NR, format, xi, ldx, w, scales, k, j0, n1, yi, ldy, accumulate)

ALWAYS_INLINE AVX512 void avx512_gemm(const int format, const float *x, ptrdiff_t ldx, ptrdiff_t m, const void *w,
                                      const float *scales, ptrdiff_t k, ptrdiff_t n0, ptrdiff_t n1, float *y,
                                      ptrdiff_t ldy, int accumulate) {
    if (m == 1) {
        const float *xi = x;
        float *yi = y;
        ptrdiff_t j0 = n0;
        for (; j0 + AVX512_NR_ONE <= n1; j0 += AVX512_NR_ONE) AVX512_TILE(1, AVX512_NR_ONE);
        switch (n1 - j0) {
        case 7: AVX512_TILE(1, 7); break;
        case 6: AVX512_TILE(1, 6); break;
        case 5: AVX512_TILE(1, 5); break;
        case 4: AVX512_TILE(1, 4); break;
        case 3: AVX512_TILE(1, 3); break;
        case 2: AVX512_TILE(1, 2); break;
        case 1: AVX512_TILE(1, 1); break;
        default: break;
        }
        return;
    }
    for (ptrdiff_t j0 = n0; j0 < n1; j0 += AVX512_NR) {
        ptrdiff_t nr = n1 - j0 < AVX512_NR ? n1 - j0 : AVX512_NR;
        for (ptrdiff_t i0 = 0; i0 < m; i0 += AVX512_MR) {
            ptrdiff_t mr = m - i0 < AVX512_MR ? m - i0 : AVX512_MR;
            const float *xi = x + i0 * ldx;
            float *yi = y + i0 * ldy;
            switch (mr * 4 + nr) {
                NR3_CASES(AVX512_TILE, 8)
                NR3_CASES(AVX512_TILE, 7)
                NR3_CASES(AVX512_TILE, 6)
                NR3_CASES(AVX512_TILE, 5)
                NR3_CASES(AVX512_TILE, 4)
                NR3_CASES(AVX512_TILE, 3)
                NR3_CASES(AVX512_TILE, 2)
                NR3_CASES(AVX512_TILE, 1)
            default: break;
            }
        }
    }
}

#define AVX512_FORMAT(NAME, FORMAT)                                                                            \
    AVX512 static void NAME(const float *x, ptrdiff_t ldx, ptrdiff_t m, const void *w, const float *scales,   \
                            ptrdiff_t k, ptrdiff_t n0, ptrdiff_t n1, float *y, ptrdiff_t ldy, int accumulate) { \
        avx512_gemm(FORMAT, x, ldx, m, w, scales, k, n0, n1, y, ldy, accumulate);                               \
    }
AVX512_FORMAT(avx512_gemm_s8, AXON_WEIGHT_S8)
AVX512_FORMAT(avx512_gemm_f16, AXON_WEIGHT_F16)
AVX512_FORMAT(avx512_gemm_bf16, AXON_WEIGHT_BF16)

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
        switch (format) {
        case AXON_WEIGHT_S8: avx512_gemm_s8(x, ldx, m, w, scales, k, n0, n1, y, ldy, accumulate); return;
        case AXON_WEIGHT_F16: avx512_gemm_f16(x, ldx, m, w, scales, k, n0, n1, y, ldy, accumulate); return;
        default: avx512_gemm_bf16(x, ldx, m, w, scales, k, n0, n1, y, ldy, accumulate); return;
        }
    }
    if (isa == AXON_ISA_AVX2 && axon_isa_supported(AXON_ISA_AVX2)) {
        switch (format) {
        case AXON_WEIGHT_S8: avx2_gemm_s8(x, ldx, m, w, scales, k, n0, n1, y, ldy, accumulate); return;
        case AXON_WEIGHT_F16: avx2_gemm_f16(x, ldx, m, w, scales, k, n0, n1, y, ldy, accumulate); return;
        default: avx2_gemm_bf16(x, ldx, m, w, scales, k, n0, n1, y, ldy, accumulate); return;
        }
    }
#endif
    gemm_scalar(format, x, ldx, m, w, scales, k, n0, n1, y, ldy, accumulate);
}
