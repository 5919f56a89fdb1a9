// Weight conversion at load: int8 per-row quantization, binary16 and bfloat16 rounding.
#include "CKernels.h"

#include <float.h>
#include <math.h>
#include <string.h>

// One span of weights (a row, or a block of one) to int8 with one scale: returns the non-finite count.
static ptrdiff_t quantize_span(const float *w, ptrdiff_t count, int8_t *out, float *scale_out) {
    float maxAbs = 0;
    ptrdiff_t bad = 0;
    for (ptrdiff_t i = 0; i < count; i++) {
        float a = fabsf(w[i]);
        bad += !(a <= FLT_MAX);              // NaN or infinite
        maxAbs = a > maxAbs ? a : maxAbs;    // (maxps: vectorizes; NaNs are counted above)
    }
    if (bad) {
        *scale_out = NAN;
        memset(out, 0, (size_t)count);
        return bad;
    }
    float scale = maxAbs / 127.0f;
    *scale_out = scale;
    if (scale == 0) {   // all zero (or a maximum whose 1/127 underflows to zero)
        memset(out, 0, (size_t)count);
        return 0;
    }
    // The quotient of two floats is correctly rounded in double and never rounded across a
    // half-integer (a half-integer quotient is exact), so the rounding decision is the exact one,
    // ties to even, and |w − q·scale| ≤ scale / 2 holds exactly. Adding and removing 1.5·2^52 rounds
    // |v| < 2^51 to the nearest integer, ties to even (the default rounding mode), in two adds that
    // vectorize. (w · (1/scale) would be faster, but it can move an exact tie off its half-integer.)
    for (ptrdiff_t i = 0; i < count; i++) {
        double v = ((double)w[i] / (double)scale + 6755399441055744.0) - 6755399441055744.0;
        v = v > 127 ? 127 : (v < -127 ? -127 : v);
        out[i] = (int8_t)(int)v;
    }
    return 0;
}

ptrdiff_t axon_quantize_s8_rows(const float *w, ptrdiff_t k, ptrdiff_t r0, ptrdiff_t r1,
                                int8_t *q, float *scales) {
    ptrdiff_t nonFinite = 0;
    for (ptrdiff_t r = r0; r < r1; r++) nonFinite += quantize_span(w + r * k, k, q + r * k, scales + r);
    return nonFinite;
}

ptrdiff_t axon_quantize_s8_blocks(const float *w, ptrdiff_t k, ptrdiff_t r0, ptrdiff_t r1,
                                  int8_t *q, float *scales) {
    const ptrdiff_t blocks = (k + AXON_WEIGHT_BLOCK - 1) / AXON_WEIGHT_BLOCK;
    ptrdiff_t nonFinite = 0;
    for (ptrdiff_t r = r0; r < r1; r++) {
        for (ptrdiff_t b = 0; b < blocks; b++) {
            ptrdiff_t start = b * AXON_WEIGHT_BLOCK, count = k - start < AXON_WEIGHT_BLOCK ? k - start : AXON_WEIGHT_BLOCK;
            nonFinite += quantize_span(w + r * k + start, count, q + r * k + start, scales + r * blocks + b);
        }
    }
    return nonFinite;
}

static inline uint32_t bits_of(float f) { uint32_t u; memcpy(&u, &f, 4); return u; }
static inline float float_of(uint32_t u) { float f; memcpy(&f, &u, 4); return f; }

// f32 → binary16, round to nearest even, by integer arithmetic (no F16C needed).
static inline uint16_t f32_to_f16(float f, int *overflow) {
    uint32_t u = bits_of(f);
    uint32_t sign = (u >> 16) & 0x8000u;
    uint32_t mag = u & 0x7fffffffu;
    if (mag >= 0x7f800000u) {                       // inf or NaN
        return (uint16_t)(sign | 0x7c00u | (mag > 0x7f800000u ? 0x200u : 0));
    }
    if (mag >= 0x477ff000u) {                       // ≥ 65520: rounds to infinity
        *overflow = 1;
        return (uint16_t)(sign | 0x7c00u);
    }
    if (mag < 0x38800000u) {                        // below 2^-14: subnormal half (or zero)
        // Add 0.5 so the float adder aligns the value to the half's subnormal step 2^-24 with
        // round-to-nearest-even, then read off the low mantissa bits.
        float shifted = float_of(mag) + 0.5f;
        return (uint16_t)(sign | (bits_of(shifted) - bits_of(0.5f)));
    }
    uint32_t odd = (mag >> 13) & 1u;
    mag += 0xc8000fffu + odd;                       // rebias exponent (−112 << 23) and round
    return (uint16_t)(sign | (mag >> 13));
}

#if defined(__x86_64__)
#include <immintrin.h>
// F16C's conversion rounds to nearest even like f32_to_f16; overflow is counted from |v| ≥ 65520.
__attribute__((target("avx2,f16c"))) static ptrdiff_t convert_f16_f16c(const float *src, ptrdiff_t count, uint16_t *dst) {
    ptrdiff_t overflows = 0, i = 0;
    const __m256 limit = _mm256_set1_ps(65520.0f), absMask = _mm256_castsi256_ps(_mm256_set1_epi32(0x7fffffff));
    for (; i + 8 <= count; i += 8) {
        __m256 v = _mm256_loadu_ps(src + i);
        __m256 a = _mm256_and_ps(v, absMask);
        // finite (a ≤ FLT_MAX) and a ≥ 65520: rounds to infinity
        __m256 over = _mm256_and_ps(_mm256_cmp_ps(a, limit, _CMP_GE_OQ),
                                    _mm256_cmp_ps(a, _mm256_set1_ps(FLT_MAX), _CMP_LE_OQ));
        overflows += __builtin_popcount((unsigned)_mm256_movemask_ps(over));
        _mm_storeu_si128((__m128i *)(dst + i), _mm256_cvtps_ph(v, _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC));
    }
    for (; i < count; i++) {
        int overflow = 0;
        dst[i] = f32_to_f16(src[i], &overflow);
        overflows += overflow;
    }
    return overflows;
}
#endif

ptrdiff_t axon_convert_f16(int isa, const float *src, ptrdiff_t count, uint16_t *dst) {
#if defined(__x86_64__)
    if (isa >= AXON_ISA_AVX2 && axon_isa_supported(AXON_ISA_AVX2)) return convert_f16_f16c(src, count, dst);
#endif
    ptrdiff_t overflows = 0;
    for (ptrdiff_t i = 0; i < count; i++) {
        int overflow = 0;
        dst[i] = f32_to_f16(src[i], &overflow);
        overflows += overflow;
    }
    return overflows;
}

void axon_convert_bf16(const float *src, ptrdiff_t count, uint16_t *dst) {
    for (ptrdiff_t i = 0; i < count; i++) {
        uint32_t u = bits_of(src[i]);
        if ((u & 0x7fffffffu) > 0x7f800000u) { dst[i] = (uint16_t)((u >> 16) | 0x40u); continue; }
        u += 0x7fffu + ((u >> 16) & 1u);
        dst[i] = (uint16_t)(u >> 16);
    }
}

float axon_f16_to_f32(uint16_t h) {
    uint32_t sign = (uint32_t)(h & 0x8000u) << 16;
    uint32_t exponent = (h >> 10) & 0x1fu, mantissa = h & 0x3ffu;
    if (exponent == 0x1f) return float_of(sign | 0x7f800000u | (mantissa << 13));
    if (exponent == 0) {   // subnormal or zero: mantissa · 2^-24, exact in f32
        float v = (float)mantissa * 0x1p-24f;
        return sign ? -v : v;
    }
    return float_of(sign | ((exponent + 112) << 23) | (mantissa << 13));
}
