// y = x · Wᵀ with both sides int8 per block of 32 columns (Q8_0 × Q8_0, llama.cpp's arithmetic for
// its quantized products): the decode path's LM head on CPUs with AVX-512 VNNI, where vpdpbusd does
// 64 integer multiply-adds an instruction against 16 for an f32 FMA.
//
// Each output is defined exactly, whatever the kernel, tile, m or output range: per block b,
//   s_b = Σ_{c in b} q_w[c] · q_x[c]            (int32: exact, so its order is free)
//   acc = fmaf((float)s_b, ws_b · d_b, acc)      (blocks in order, acc from 0; ws_b · d_b one f32 product)
// |s_b| ≤ 32 · 127² < 2²⁴, so (float)s_b is exact too. The scalar and VNNI kernels agree bit for bit,
// on every CPU, and a row's result never depends on the other rows of its batch.
//
// Weights are stored for vpdpbusd, whose unsigned operand is the vector: u8 = q + 128 (q in −127…127),
// 16 output rows to a group, and in a group, per block, 8 vectors of 16 rows × 4 consecutive columns
// (vector t of block b: row r's columns 32b + 4t … 32b + 4t + 3 at bytes 4r … 4r + 3). The +128 is
// taken out with comp_b = 128 · Σ q_x over the block, computed once per activation row. Rows past
// the matrix and columns past k hold q = 0 (u8 128) with scale 0.
#include "CKernels.h"

#include <stdlib.h>
#include <string.h>

#if defined(__x86_64__)
#include <cpuid.h>
#include <immintrin.h>
#endif

#define ALWAYS_INLINE static inline __attribute__((always_inline))
#define GROUP AXON_W8A8_GROUP
#define BLOCK AXON_WEIGHT_BLOCK
#define PREFETCH_GROUPS 2
#define PREFETCH_ROWS 4

static inline ptrdiff_t blocks_of(ptrdiff_t k) { return (k + BLOCK - 1) / BLOCK; }

ptrdiff_t axon_w8a8_weight_bytes(ptrdiff_t n, ptrdiff_t k) {
    return (n + GROUP - 1) / GROUP * GROUP * blocks_of(k) * BLOCK;
}

ptrdiff_t axon_w8a8_scale_count(ptrdiff_t n, ptrdiff_t k) {
    return (n + GROUP - 1) / GROUP * GROUP * blocks_of(k);
}

ptrdiff_t axon_w8a8_pack(const float *w, ptrdiff_t n, ptrdiff_t k, ptrdiff_t g0, ptrdiff_t g1, uint8_t *values,
                         float *scales) {
    const ptrdiff_t blocks = blocks_of(k);
    int8_t *q = malloc((size_t)k);
    float *s = malloc(sizeof(float) * (size_t)blocks);
    if (!q || !s) {
        free(q);
        free(s);
        return -1;
    }
    ptrdiff_t nonFinite = 0;
    for (ptrdiff_t g = g0; g < g1; g++) {
        for (ptrdiff_t r = 0; r < GROUP; r++) {
            const ptrdiff_t row = g * GROUP + r;
            // Q8_0's rounding, shared with the int8Block32 format (a Q8_0 tensor comes back exactly).
            if (row < n) nonFinite += axon_quantize_s8_blocks(w + row * k, k, 0, 1, q, s);
            for (ptrdiff_t column = 0; column < blocks * BLOCK; column++) {
                if (column % BLOCK == 0) scales[axon_w8a8_scale_offset(blocks, row, column)] = row < n ? s[column / BLOCK] : 0;
                const int value = row < n && column < k ? q[column] : 0;
                values[axon_w8a8_offset(blocks, row, column)] = (uint8_t)(value + 128);
            }
        }
    }
    free(q);
    free(s);
    return nonFinite;
}

ptrdiff_t axon_w8a8_quantize_rows(const float *x, ptrdiff_t ldx, ptrdiff_t m, ptrdiff_t k, int8_t *q, float *d,
                                  int32_t *comp) {
    const ptrdiff_t blocks = blocks_of(k), stride = blocks * BLOCK;
    ptrdiff_t nonFinite = 0;
    for (ptrdiff_t i = 0; i < m; i++) {
        int8_t *qi = q + i * stride;
        nonFinite += axon_quantize_s8_blocks(x + i * ldx, k, 0, 1, qi, d + i * blocks);
        memset(qi + k, 0, (size_t)(stride - k));
        for (ptrdiff_t b = 0; b < blocks; b++) {
            int32_t sum = 0;
            for (ptrdiff_t c = 0; c < BLOCK; c++) sum += qi[b * BLOCK + c];
            comp[i * blocks + b] = 128 * sum;
        }
    }
    return nonFinite;
}

ALWAYS_INLINE void store(float *o, float v, int accumulate) { *o = accumulate ? *o + v : v; }

// MARK: - Scalar (any CPU)

static void w8a8_scalar(const int8_t *q, const float *d, const int32_t *comp, ptrdiff_t m, const uint8_t *w,
                        const float *ws, ptrdiff_t k, ptrdiff_t n0, ptrdiff_t n1, float *y, ptrdiff_t ldy,
                        int accumulate) {
    const ptrdiff_t blocks = blocks_of(k), stride = blocks * BLOCK;
    for (ptrdiff_t j = n0; j < n1; j++) {
        for (ptrdiff_t i = 0; i < m; i++) {
            float acc = 0;
            for (ptrdiff_t b = 0; b < blocks; b++) {
                const int8_t *qb = q + i * stride + b * BLOCK;
                int32_t s = 0;
                for (int c = 0; c < BLOCK; c++) s += (int32_t)w[axon_w8a8_offset(blocks, j, b * BLOCK + c)] * qb[c];
                s -= comp[i * blocks + b];
                acc = __builtin_fmaf((float)s, ws[axon_w8a8_scale_offset(blocks, j, b * BLOCK)] * d[i * blocks + b], acc);
            }
            store(y + i * ldy + j, acc, accumulate);
        }
    }
}

#if defined(__x86_64__)

// MARK: - AVX-512 VNNI: 16 outputs a vector

#define VNNI __attribute__((target("avx512f,avx512vnni,avx2,fma")))

// Rows [i0, i0 + MR) against the GROUP outputs of group g: the block's 8 weight vectors stay in
// registers while each row's 8 products run (MR independent chains).
ALWAYS_INLINE VNNI void vnni_tile(const int MR, const int8_t *q, const float *d, const int32_t *comp, ptrdiff_t m, ptrdiff_t i0,
                                  const uint8_t *w, const float *ws, ptrdiff_t blocks, ptrdiff_t g, ptrdiff_t n0,
                                  ptrdiff_t n1, float *y, ptrdiff_t ldy, int accumulate) {
    const ptrdiff_t stride = blocks * BLOCK;
    __m512 acc[8];
    for (int i = 0; i < MR; i++) acc[i] = _mm512_setzero_ps();
    // From PREFETCH_ROWS rows the first row tile fetches the group PREFETCH_GROUPS ahead, a block's
    // weights (8 lines) and scales (1 line) per block: at 16 rows a group takes about half a
    // microsecond, and the hardware prefetcher alone left the kernel waiting on memory (one thread,
    // 262144 × 640 at 16 rows: 16.5 ms without, 9.8 with). At 1 row it streams faster without.
    const int fetch = i0 == 0 && m >= PREFETCH_ROWS && (g + PREFETCH_GROUPS + 1) * GROUP <= n1;
    for (ptrdiff_t b = 0; b < blocks; b++) {
        const uint8_t *vb = w + (g * blocks + b) * GROUP * BLOCK;
        if (fetch) {
            const char *ahead = (const char *)(vb + PREFETCH_GROUPS * blocks * GROUP * BLOCK);
            for (int line = 0; line < 8; line++) _mm_prefetch(ahead + line * 64, _MM_HINT_T0);
            _mm_prefetch((const char *)(ws + ((g + PREFETCH_GROUPS) * blocks + b) * GROUP), _MM_HINT_T0);
        }
        __m512i wv[8];
        for (int t = 0; t < 8; t++) wv[t] = _mm512_load_si512((const void *)(vb + t * 64));
        const __m512 scale = _mm512_loadu_ps(ws + (g * blocks + b) * GROUP);
        for (int i = 0; i < MR; i++) {
            const int8_t *qb = q + (i0 + i) * stride + b * BLOCK;
            __m512i s = _mm512_setzero_si512();
            for (int t = 0; t < 8; t++) {
                int32_t four;
                memcpy(&four, qb + 4 * t, 4);
                s = _mm512_dpbusd_epi32(s, wv[t], _mm512_set1_epi32(four));
            }
            s = _mm512_sub_epi32(s, _mm512_set1_epi32(comp[(i0 + i) * blocks + b]));
            const __m512 dv = _mm512_mul_ps(scale, _mm512_set1_ps(d[(i0 + i) * blocks + b]));
            acc[i] = _mm512_fmadd_ps(_mm512_cvtepi32_ps(s), dv, acc[i]);
        }
    }
    // Outputs of the group inside [n0, n1) only.
    const ptrdiff_t first = g * GROUP;
    const int lo = n0 > first ? (int)(n0 - first) : 0;
    const int hi = n1 < first + GROUP ? (int)(n1 - first) : GROUP;
    const __mmask16 mask = (__mmask16)(((1u << hi) - 1) & ~((1u << lo) - 1));
    for (int i = 0; i < MR; i++) {
        float *o = y + (i0 + i) * ldy + first;
        __m512 v = acc[i];
        if (accumulate) v = _mm512_add_ps(_mm512_maskz_loadu_ps(mask, o), v);
        _mm512_mask_storeu_ps(o, mask, v);
    }
}

static VNNI void w8a8_vnni(const int8_t *q, const float *d, const int32_t *comp, ptrdiff_t m, const uint8_t *w,
                           const float *ws, ptrdiff_t k, ptrdiff_t n0, ptrdiff_t n1, float *y, ptrdiff_t ldy,
                           int accumulate) {
    const ptrdiff_t blocks = blocks_of(k);
    // Groups outer, rows inner: a group's weights (blocks · 512 bytes) stay in L1 while every row passes.
    for (ptrdiff_t g = n0 / GROUP; g * GROUP < n1; g++) {
        for (ptrdiff_t i0 = 0; i0 < m; i0 += 8) {
#define VNNI_TILE(MR) vnni_tile(MR, q, d, comp, m, i0, w, ws, blocks, g, n0, n1, y, ldy, accumulate)
            switch (m - i0 < 8 ? m - i0 : 8) {
            case 8: VNNI_TILE(8); break;
            case 7: VNNI_TILE(7); break;
            case 6: VNNI_TILE(6); break;
            case 5: VNNI_TILE(5); break;
            case 4: VNNI_TILE(4); break;
            case 3: VNNI_TILE(3); break;
            case 2: VNNI_TILE(2); break;
            default: VNNI_TILE(1); break;
            }
#undef VNNI_TILE
        }
    }
}

static int detect_vnni(void) {
    if (!axon_isa_supported(AXON_ISA_AVX512)) return 0;
    unsigned a, b, c, dx;
    if (!__get_cpuid_count(7, 0, &a, &b, &c, &dx)) return 0;
    return (c >> 11) & 1;   // AVX512_VNNI
}
#endif  // __x86_64__

int axon_w8a8_vnni_supported(void) {
#if defined(__x86_64__)
    static int cache = -1;   // benign race: every thread computes the same value
    if (cache < 0) cache = detect_vnni();
    return cache;
#else
    return 0;
#endif
}

void axon_w8a8_gemm(int vnni, const int8_t *q, const float *d, const int32_t *comp, ptrdiff_t m, const uint8_t *w,
                    const float *ws, ptrdiff_t k, ptrdiff_t n0, ptrdiff_t n1, float *y, ptrdiff_t ldy, int accumulate) {
    if (m <= 0 || n1 <= n0) return;
#if defined(__x86_64__)
    if (vnni && axon_w8a8_vnni_supported()) {
        w8a8_vnni(q, d, comp, m, w, ws, k, n0, n1, y, ldy, accumulate);
        return;
    }
#endif
    (void)vnni;
    w8a8_scalar(q, d, comp, m, w, ws, k, n0, n1, y, ldy, accumulate);
}
