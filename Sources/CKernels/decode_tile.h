// The decode kernels' tile and driver, written once and instantiated per instruction set by
// decode_gemm.c, which defines before each inclusion:
//   ISA(name)            the function name prefix (avx2_name, avx512_name)
//   TARGET               the target attribute
//   VEC, LANES           the f32 vector type and its lane count
//   V_ZERO(), V_SET1(f), V_LOADX(p), V_LOADX_TAIL(p, rem), V_MUL(a, b), V_FMA(a, b, c), V_SUM(v)
//   V_WEIGHTS(format, w, i)   LANES weights from element i, as f32
//   TILE_MR, TILE_NR_ONE      tile rows for m > 1 (3 outputs: NR3_CASES), and tile outputs for m = 1
// Each output is one vector accumulator over k in steps of LANES, its lanes then summed by V_SUM's
// fixed tree: the same order for every tile.

// One MR × NR tile: rows [0, MR) of x against outputs [j0, j0 + NR).
ALWAYS_INLINE TARGET void ISA(tile)(const int MR, const int NR, const int format, const float *x, ptrdiff_t ldx,
                                    const void *w, const float *scales, ptrdiff_t k, ptrdiff_t j0, ptrdiff_t n_end,
                                    float *y, ptrdiff_t ldy, int accumulate) {
    const int blocked = format == AXON_WEIGHT_S8_BLOCK32;
    const ptrdiff_t blocks = (k + AXON_WEIGHT_BLOCK - 1) / AXON_WEIGHT_BLOCK;
    VEC acc[8][TILE_NR_ONE];
    for (int i = 0; i < MR; i++)
        for (int j = 0; j < NR; j++) acc[i][j] = V_ZERO();
    // The hardware prefetchers cannot learn NR interleaved row streams of k elements each: fetch the
    // weight block PREFETCH_TILES tiles ahead (contiguous, NR·k elements) at the rate this tile reads
    // its own. Near the end of the outputs it fetches the current block again, which costs nothing.
    const ptrdiff_t size = element_size(format);
    const ptrdiff_t ahead_tiles = j0 + (PREFETCH_TILES + 1) * NR <= n_end ? PREFETCH_TILES : 0;
    const char *ahead = (const char *)w + (j0 + ahead_tiles * NR) * k * size;
    const ptrdiff_t step = NR * LANES * size;
// One step of LANES columns from column c, x loaded by LOADX. S8_BLOCK32 weights are q · (their
// block's scale), rounded once to f32 (a step never straddles two blocks: LANES divides 32).
#define STEP(LOADX)                                                                            \
    do {                                                                                       \
        VEC wv[TILE_NR_ONE];                                                                   \
        for (int j = 0; j < NR; j++) {                                                         \
            wv[j] = V_WEIGHTS(format, w, (j0 + j) * k + c);                                    \
            if (blocked) wv[j] = V_MUL(wv[j], V_SET1(scales[(j0 + j) * blocks + c / AXON_WEIGHT_BLOCK])); \
        }                                                                                      \
        for (int i = 0; i < MR; i++) {                                                         \
            VEC xv = LOADX;                                                                    \
            for (int j = 0; j < NR; j++) acc[i][j] = V_FMA(xv, wv[j], acc[i][j]);              \
        }                                                                                      \
    } while (0)
    ptrdiff_t c = 0;
    for (; c + LANES <= k; c += LANES) {
        for (ptrdiff_t b = 0; b < step; b += 64) _mm_prefetch(ahead + c * NR * size + b, PREFETCH_HINT);
        STEP(V_LOADX(x + i * ldx + c));
    }
    // The last step reads a full vector of weights past the row: see decode_gemm.c.
    if (c < k) STEP(V_LOADX_TAIL(x + i * ldx + c, k - c));
#undef STEP
    for (int i = 0; i < MR; i++) {
        for (int j = 0; j < NR; j++) {
            float s = V_SUM(acc[i][j]);
            if (format == AXON_WEIGHT_S8) s *= scales[j0 + j];
            float *o = y + i * ldy + j0 + j;
            *o = accumulate ? *o + s : s;
        }
    }
}

#define ISA_TILE(MR, NR) ISA(tile)(MR, NR, format, xi, ldx, w, scales, k, j0, n1, yi, ldy, accumulate)

// m = 1: tiles of NR_ONE outputs, then one tile of the remainder.
ALWAYS_INLINE TARGET void ISA(gemv)(const int NR_ONE, const int format, const float *x, ptrdiff_t ldx,
                                    const void *w, const float *scales, ptrdiff_t k, ptrdiff_t n0, ptrdiff_t n1,
                                    float *y, ptrdiff_t ldy, int accumulate) {
    const float *xi = x;
    float *yi = y;
    ptrdiff_t j0 = n0;
    for (; j0 + NR_ONE <= n1; j0 += NR_ONE) ISA_TILE(1, NR_ONE);
    switch (n1 - j0) {
    case 7: if (NR_ONE > 7) ISA_TILE(1, 7); break;
    case 6: if (NR_ONE > 6) ISA_TILE(1, 6); break;
    case 5: if (NR_ONE > 5) ISA_TILE(1, 5); break;
    case 4: if (NR_ONE > 4) ISA_TILE(1, 4); break;
    case 3: ISA_TILE(1, 3); break;
    case 2: ISA_TILE(1, 2); break;
    case 1: ISA_TILE(1, 1); break;
    default: break;
    }
}

// m > 1: outputs outer, rows inner, so a block of NR weight rows stays in L1 while every x row passes it.
ALWAYS_INLINE TARGET void ISA(gemm_rows)(const int MR, const int format, const float *x, ptrdiff_t ldx,
                                         ptrdiff_t m, const void *w, const float *scales, ptrdiff_t k,
                                         ptrdiff_t n0, ptrdiff_t n1, float *y, ptrdiff_t ldy, int accumulate) {
    for (ptrdiff_t j0 = n0; j0 < n1; j0 += 3) {
        ptrdiff_t nr = n1 - j0 < 3 ? n1 - j0 : 3;
        for (ptrdiff_t i0 = 0; i0 < m; i0 += MR) {
            ptrdiff_t mr = m - i0 < MR ? m - i0 : MR;
            const float *xi = x + i0 * ldx;
            float *yi = y + i0 * ldy;
            switch (mr * 4 + nr) {
                NR3_CASES(ISA_TILE, 8, MR)
                NR3_CASES(ISA_TILE, 7, MR)
                NR3_CASES(ISA_TILE, 6, MR)
                NR3_CASES(ISA_TILE, 5, MR)
                NR3_CASES(ISA_TILE, 4, MR)
                NR3_CASES(ISA_TILE, 3, MR)
                NR3_CASES(ISA_TILE, 2, MR)
                NR3_CASES(ISA_TILE, 1, MR)
            default: break;
            }
        }
    }
}

#define ISA_FORMAT(FORMAT, SUFFIX)                                                                              \
    TARGET static void ISA(gemm_##SUFFIX)(const float *x, ptrdiff_t ldx, ptrdiff_t m, const void *w,              \
                                          const float *scales, ptrdiff_t k, ptrdiff_t n0, ptrdiff_t n1, float *y,  \
                                          ptrdiff_t ldy, int accumulate) {                                         \
        if (m == 1)                                                                                               \
            ISA(gemv)(TILE_NR_ONE, FORMAT, x, ldx, w, scales, k, n0, n1, y, ldy, accumulate);                     \
        else                                                                                                      \
            ISA(gemm_rows)(TILE_MR, FORMAT, x, ldx, m, w, scales, k, n0, n1, y, ldy, accumulate);                 \
    }
ISA_FORMAT(AXON_WEIGHT_S8, s8)
ISA_FORMAT(AXON_WEIGHT_F16, f16)
ISA_FORMAT(AXON_WEIGHT_BF16, bf16)
ISA_FORMAT(AXON_WEIGHT_S8_BLOCK32, s8_block32)
#undef ISA_FORMAT
#undef ISA_TILE

// The entry point of this instruction set, by format.
TARGET static void ISA(gemm)(int format, const float *x, ptrdiff_t ldx, ptrdiff_t m, const void *w,
                             const float *scales, ptrdiff_t k, ptrdiff_t n0, ptrdiff_t n1, float *y,
                             ptrdiff_t ldy, int accumulate) {
    switch (format) {
    case AXON_WEIGHT_S8: ISA(gemm_s8)(x, ldx, m, w, scales, k, n0, n1, y, ldy, accumulate); break;
    case AXON_WEIGHT_F16: ISA(gemm_f16)(x, ldx, m, w, scales, k, n0, n1, y, ldy, accumulate); break;
    case AXON_WEIGHT_BF16: ISA(gemm_bf16)(x, ldx, m, w, scales, k, n0, n1, y, ldy, accumulate); break;
    default: ISA(gemm_s8_block32)(x, ldx, m, w, scales, k, n0, n1, y, ldy, accumulate); break;
    }
}
