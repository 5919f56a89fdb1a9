#include "Int8Activations.h"
#include <math.h>

#if defined(__x86_64__)
#define AXON_V3 __attribute__((target("avx2,fma")))
#else
#define AXON_V3
#endif

AXON_V3 ptrdiff_t axon_quantize_u8_rows(const float *x, ptrdiff_t ldx, ptrdiff_t k, ptrdiff_t r0, ptrdiff_t r1,
                                        int levels, uint8_t *u, ptrdiff_t ldu, float *scale, int32_t *zero) {
    ptrdiff_t bad = 0;
    for (ptrdiff_t r = r0; r < r1; r++) {
        const float *row = x + r * ldx;
        uint8_t *out = u + r * ldu;
        float lo = 0, hi = 0, nonFinite = 0;
        for (ptrdiff_t i = 0; i < k; i++) {
            float v = row[i];
            lo = v < lo ? v : lo;
            hi = v > hi ? v : hi;
            nonFinite += (v - v != 0) ? 1.0f : 0.0f;   // NaN or ±inf
        }
        if (nonFinite > 0 || !(hi - lo > 0)) {
            bad += (ptrdiff_t)nonFinite;
            scale[r] = 0;
            zero[r] = 0;
            for (ptrdiff_t i = 0; i < k; i++) out[i] = 0;
            continue;
        }
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
