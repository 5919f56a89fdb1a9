#include "Int8Activations.h"
#include <math.h>

#if defined(__x86_64__)
#define AXON_V3 __attribute__((target("avx2,fma")))
#else
#define AXON_V3
#endif

// Lanes of the row statistics: independent partial minima, maxima and sums the compiler keeps in
// vector registers (a single running sum could not be vectorized without reassociating it).
#define AXON_LANES 16

AXON_V3 ptrdiff_t axon_quantize_u8_rows(const float *x, ptrdiff_t ldx, ptrdiff_t k, ptrdiff_t r0, ptrdiff_t r1,
                                        int levels, uint8_t *u, ptrdiff_t ldu, float *scale, int32_t *zero,
                                        float peak_ratio, uint8_t *fallback) {
    ptrdiff_t bad = 0;
    for (ptrdiff_t r = r0; r < r1; r++) {
        const float *row = x + r * ldx;
        uint8_t *out = u + r * ldu;
        float los[AXON_LANES] = {0}, his[AXON_LANES] = {0}, squares[AXON_LANES] = {0};
        int32_t nonFinites[AXON_LANES] = {0};
        ptrdiff_t i = 0;
        for (; i + AXON_LANES <= k; i += AXON_LANES) {
            for (int j = 0; j < AXON_LANES; j++) {
                float v = row[i + j];
                los[j] = v < los[j] ? v : los[j];
                his[j] = v > his[j] ? v : his[j];
                squares[j] += v * v;
                nonFinites[j] += (v - v != 0);   // NaN or ±inf
            }
        }
        for (; i < k; i++) {
            float v = row[i];
            los[0] = v < los[0] ? v : los[0];
            his[0] = v > his[0] ? v : his[0];
            squares[0] += v * v;
            nonFinites[0] += (v - v != 0);
        }
        float lo = 0, hi = 0, sumSquares = 0;
        ptrdiff_t nonFinite = 0;
        for (int j = 0; j < AXON_LANES; j++) {
            lo = los[j] < lo ? los[j] : lo;
            hi = his[j] > hi ? his[j] : hi;
            sumSquares += squares[j];
            nonFinite += nonFinites[j];
        }
        if (fallback) fallback[r] = 0;
        if (nonFinite > 0 || !(hi - lo > 0)) {
            bad += nonFinite;
            scale[r] = 0;
            zero[r] = 0;
            for (i = 0; i < k; i++) out[i] = 0;
            continue;
        }
        float peak = hi > -lo ? hi : -lo;
        if (fallback) fallback[r] = peak_ratio > 0 && peak * peak > peak_ratio * peak_ratio * sumSquares / (float)k;
        float s = (hi - lo) / (float)levels, inv = (float)levels / (hi - lo);
        float z = nearbyintf(-lo * inv), top = (float)levels;
        scale[r] = s;
        zero[r] = (int32_t)z;
        for (ptrdiff_t i = 0; i < k; i++) {
            float q = nearbyintf(row[i] * inv) + z;
            q = q < 0 ? 0 : q;
            q = q > top ? top : q;
            out[i] = (uint8_t)(int32_t)q;
        }
    }
    return bad;
}

AXON_V3 void axon_u8_residual_rows(const float *x, ptrdiff_t ldx, ptrdiff_t k, const int32_t *rows, ptrdiff_t i0,
                                   ptrdiff_t i1, const uint8_t *u, ptrdiff_t ldu, const float *scale,
                                   const int32_t *zero, float *e, ptrdiff_t lde) {
    for (ptrdiff_t i = i0; i < i1; i++) {
        const ptrdiff_t r = rows[i];
        const float *row = x + r * ldx;
        const uint8_t *q = u + r * ldu;
        const float s = scale[r], z = (float)zero[r];
        float *out = e + i * lde;
        for (ptrdiff_t c = 0; c < k; c++) out[c] = row[c] - ((float)q[c] - z) * s;
    }
}

AXON_V3 void axon_dequantize_s32_rows(const int32_t *c, ptrdiff_t ldc, ptrdiff_t n, ptrdiff_t r0, ptrdiff_t r1,
                                      const float *xscale, const int32_t *zero, const float *wscale, const int32_t *wsum,
                                      float *y, ptrdiff_t ldy, int accumulate) {
    for (ptrdiff_t r = r0; r < r1; r++) {
        const int32_t *in = c + r * ldc;
        float *out = y + r * ldy;
        float s = xscale[r];
        int32_t z = zero[r];
        if (accumulate) {
            for (ptrdiff_t j = 0; j < n; j++) out[j] += s * wscale[j] * (float)(in[j] - z * wsum[j]);
        } else {
            for (ptrdiff_t j = 0; j < n; j++) out[j] = s * wscale[j] * (float)(in[j] - z * wsum[j]);
        }
    }
}
