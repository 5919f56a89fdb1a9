#ifndef AXON_CKERNELS_H
#define AXON_CKERNELS_H

#include <stddef.h>
#include <stdint.h>

#include "Int8Activations.h"   // the int8 prefill path's activation kernels

// Reduced-precision weight kernels for the engine's decode path (few activation rows, weights read
// once per step). Weights are row-major [n][k] (a weight stored [out][in]); activations are f32.
// Wrapped by Swift types in Sources/Engine (QuantizedMatrix, DecodeKernelPath): call from there.

/// Bytes past a weight matrix the kernels may read (one AVX-512 vector of f16).
#define AXON_WEIGHT_PADDING 64

/// Columns per scale of AXON_WEIGHT_S8_BLOCK32 (Q8_0's block).
#define AXON_WEIGHT_BLOCK 32

/// Weight element formats. S8: int8 symmetric per output row, value = q · scales[row].
/// F16: IEEE binary16. BF16: the high half of an f32. S8_BLOCK32: int8 symmetric per block of 32
/// columns, value = q · scales[row · ⌈k/32⌉ + column / 32] (Q8_0's values, its scales in f32 apart).
typedef enum {
    AXON_WEIGHT_S8 = 0,
    AXON_WEIGHT_F16 = 1,
    AXON_WEIGHT_BF16 = 2,
    AXON_WEIGHT_S8_BLOCK32 = 3,
} axon_weight_format;

/// Instruction-set paths, slowest first. Scalar runs on any CPU (and any architecture).
typedef enum {
    AXON_ISA_SCALAR = 0,
    AXON_ISA_AVX2 = 1,     // AVX2 + FMA + F16C (x86-64-v3)
    AXON_ISA_AVX512 = 2,   // AVX-512 F (with OS support for the zmm state)
} axon_isa;

/// 1 when this CPU and OS can run `isa` (CPUID and XGETBV, checked at run time), else 0.
int axon_isa_supported(int isa);

/// Vector lanes of `isa`'s accumulators: each output is the sum, in a fixed order, of that many
/// lane partial sums, each over ceil(k / lanes) products.
int axon_isa_lanes(int isa);

/// y[i·ldy + j] = Σ_k x[i·ldx + k] · W[j][k] (with W's scales), for rows i < m and outputs
/// n0 ≤ j < n1; with `accumulate`, y += that instead. W is row-major with row stride k.
/// Each output's summation order depends only on `isa` and k, never on m, n0 or n1.
/// `isa` must be supported (see axon_isa_supported); scales is ignored for F16 and BF16.
/// W must be readable for AXON_WEIGHT_PADDING bytes past its last element, holding finite values
/// there (zeros): a row's last step reads a full vector (QuantizedMatrix allocates the padding).
void axon_decode_gemm(int isa, int format, const float *x, ptrdiff_t ldx, ptrdiff_t m,
                      const void *w, const float *scales, ptrdiff_t k, ptrdiff_t n0, ptrdiff_t n1,
                      float *y, ptrdiff_t ldy, int accumulate);

/// A pool of persistent threads for short parallel sections (worker_pool.c): `threads` counts the
/// caller, which runs a share of every job, so threads − 1 are started. After a job a worker spins
/// for `spin_ns` waiting for the next one, then parks until woken.
typedef struct axon_pool axon_pool;

/// One part of a job: part < parts.
typedef void (*axon_pool_task)(void *context, ptrdiff_t part, ptrdiff_t parts);

/// A new pool, or NULL when out of memory. Threads that cannot start are left out (at worst the
/// caller runs every part).
axon_pool *axon_pool_create(int threads, int64_t spin_ns);

/// Stops and joins the workers. No job may be running.
void axon_pool_destroy(axon_pool *pool);

/// Threads that run a job's parts, the caller included.
int axon_pool_threads(const axon_pool *pool);

/// Runs task(context, p, parts) for every p < parts, each once, on the caller and the workers
/// (parts claimed one at a time from a shared counter), and returns when all are done. A call while
/// the pool runs another job (another thread, or from inside a task) runs its parts on the calling
/// thread instead, as does a NULL pool.
void axon_pool_run(axon_pool *pool, axon_pool_task task, void *context, ptrdiff_t parts);

/// Start of part `part` of `count` items split into `parts` contiguous blocks whose starts are
/// multiples of `alignment` (count for part ≥ parts).
ptrdiff_t axon_split(ptrdiff_t count, ptrdiff_t part, ptrdiff_t parts, ptrdiff_t alignment);

/// axon_decode_gemm over outputs [n0, n1), split by axon_split into `parts` blocks aligned to
/// `alignment`, run on `pool`. The results equal one axon_decode_gemm call's bit for bit.
void axon_decode_gemm_pooled(axon_pool *pool, ptrdiff_t parts, ptrdiff_t alignment, int isa, int format,
                             const float *x, ptrdiff_t ldx, ptrdiff_t m, const void *w, const float *scales,
                             ptrdiff_t k, ptrdiff_t n0, ptrdiff_t n1, float *y, ptrdiff_t ldy, int accumulate);

/// Output rows per group of the W8A8 weight layout (w8a8_gemm.c).
#define AXON_W8A8_GROUP 16

/// Bytes and f32 scales of an [n][k] matrix in the W8A8 layout: rows padded to a multiple of
/// AXON_W8A8_GROUP, columns to a multiple of AXON_WEIGHT_BLOCK.
ptrdiff_t axon_w8a8_weight_bytes(ptrdiff_t n, ptrdiff_t k);
ptrdiff_t axon_w8a8_scale_count(ptrdiff_t n, ptrdiff_t k);

/// Where W[row][column] of a W8A8 matrix with `blocks` blocks a row lives: its byte (u8 = q + 128)
/// and its block's scale.
static inline ptrdiff_t axon_w8a8_offset(ptrdiff_t blocks, ptrdiff_t row, ptrdiff_t column) {
    const ptrdiff_t g = row / AXON_W8A8_GROUP, r = row % AXON_W8A8_GROUP, c = column % AXON_WEIGHT_BLOCK;
    return (g * blocks + column / AXON_WEIGHT_BLOCK) * AXON_W8A8_GROUP * AXON_WEIGHT_BLOCK
        + (c / 4) * AXON_W8A8_GROUP * 4 + r * 4 + c % 4;
}
static inline ptrdiff_t axon_w8a8_scale_offset(ptrdiff_t blocks, ptrdiff_t row, ptrdiff_t column) {
    return (row / AXON_W8A8_GROUP * blocks + column / AXON_WEIGHT_BLOCK) * AXON_W8A8_GROUP + row % AXON_W8A8_GROUP;
}

/// Groups [g0, g1) of the f32 matrix w [n][k] rounded as axon_quantize_s8_blocks rounds them and
/// stored in the W8A8 layout (see w8a8_gemm.c). Returns the non-finite weights met, or −1 when out
/// of memory (load time only: it allocates a row's scratch).
ptrdiff_t axon_w8a8_pack(const float *w, ptrdiff_t n, ptrdiff_t k, ptrdiff_t g0, ptrdiff_t g1, uint8_t *values,
                         float *scales);

/// m activation rows x (row stride ldx, k columns) to int8 per block of 32, as
/// axon_quantize_s8_blocks rounds weights: q (m rows of ⌈k/32⌉·32, zero past k), d (m × ⌈k/32⌉
/// scales) and comp (m × ⌈k/32⌉: 128 · the block's Σ q). Returns the non-finite values met.
ptrdiff_t axon_w8a8_quantize_rows(const float *x, ptrdiff_t ldx, ptrdiff_t m, ptrdiff_t k, int8_t *q, float *d,
                                  int32_t *comp);

/// 1 when this CPU and OS can run the AVX-512 VNNI W8A8 kernel.
int axon_w8a8_vnni_supported(void);

/// y[i·ldy + j] = Σ_b fmaf(s_b, ws_b · d_b, …) for rows i < m of quantized activations and outputs
/// n0 ≤ j < n1 of a W8A8 matrix (or y += that with `accumulate`): bit for bit the same with
/// `vnni` (when supported) as without, whatever m, n0 and n1.
void axon_w8a8_gemm(int vnni, const int8_t *q, const float *d, const int32_t *comp, ptrdiff_t m, const uint8_t *w,
                    const float *ws, ptrdiff_t k, ptrdiff_t n0, ptrdiff_t n1, float *y, ptrdiff_t ldy, int accumulate);

/// Positions per block of the engine's KV cache (KVCache.blockTokens).
#define AXON_KV_BLOCK 16

/// One decode query's attention scores over a sequence's cached keys and its step's new keys
/// (decode_attention.c), for the `group` query heads (rows of q, hd apart) sharing one KV head:
/// scores[j·n + i] = scale · q_j · key_i for the `cached` positions first, first + 1, … (position
/// pos in block table[pos / AXON_KV_BLOCK] of `pool`, `block_floats` apart: that head's keys
/// transposed, dimension d of position pos at d · AXON_KV_BLOCK + pos % AXON_KV_BLOCK), then for
/// the `new_count` keys at new_keys + i · new_stride (at i = cached + i). The pool's elements are f32,
/// or binary16 when `half` (`block_floats` and offsets count elements). `isa` as axon_decode_gemm's
/// (falls back to scalar when hd is not a multiple of the lanes); per output one sum over d in order
/// of lanes, the same for every call. It fetches each next block's keys and values (its values
/// `value_offset` elements after its keys) ahead of use.
void axon_attend_scores(int isa, int half, const float *q, ptrdiff_t group, ptrdiff_t hd, float scale, const void *pool,
                        const int32_t *table, ptrdiff_t block_floats, ptrdiff_t value_offset, ptrdiff_t first,
                        ptrdiff_t cached, const float *new_keys, ptrdiff_t new_stride, ptrdiff_t new_count, float *scores,
                        ptrdiff_t n);

/// out[j·hd + d] = Σ_i p[j·n + i] · value_i[d] over the same positions as axon_attend_scores (the
/// cached values, (AXON_KV_BLOCK, hd) rows, `value_offset` floats after their block's keys, then
/// the new ones at new_values + i · new_stride), summed in position order.
void axon_attend_values(int isa, int half, const float *p, ptrdiff_t group, ptrdiff_t n, ptrdiff_t hd, const void *pool,
                        const int32_t *table, ptrdiff_t block_floats, ptrdiff_t value_offset, ptrdiff_t first,
                        ptrdiff_t cached, const float *new_values, ptrdiff_t new_stride, ptrdiff_t new_count, float *out);

/// What one decode step's attention shares across its items (axon_attend_decode).
typedef struct {
    int isa, half;                 // as axon_attend_scores'
    ptrdiff_t group, head_dim;
    float scale;
    ptrdiff_t block_elements, value_offset;
    ptrdiff_t new_stride;          // between the step's new tokens' rows (Q|K|V width)
    ptrdiff_t new_value_offset;    // from a new key to its value in that row
    float *scratch;                // per part: group · (most keys) scores
    ptrdiff_t scratch_stride;      // floats between parts' scratch
} axon_decode_attention_job;

/// One query's attention for the query heads of one KV head: q (group rows), out (group rows of
/// head_dim), the cache (`keys`: the pool at this KV head's keys, `table`: the sequence's blocks of
/// this layer), positions first ..< first + cached from the cache, then new_count new ones at new_keys.
typedef struct {
    const float *q;
    float *out;
    const void *keys;
    const int32_t *table;
    const float *new_keys;
    ptrdiff_t first, cached, new_count;
} axon_decode_attention_item;

/// Every item: scores (axon_attend_scores), the softmax of each head's row (the engine's exp
/// polynomial), values (axon_attend_values), items claimed one at a time by `parts` parts on `pool`
/// (part p uses scratch + p · scratch_stride; parts ≤ the scratch's parts). NULL pool or parts ≤ 1:
/// all on the calling thread. The softmax is 8-lane AVX2 when `isa` is AVX2 or wider, else libm's expf.
void axon_attend_decode(axon_pool *pool, ptrdiff_t parts, const axon_decode_attention_job *job,
                        const axon_decode_attention_item *items, ptrdiff_t count);

/// Rows [r0, r1) of the f32 matrix w [n][k] to int8: scales[r] = max|w[r]| / 127 (0 for a zero
/// row), q = round-to-nearest-even(w / scale) computed in double, in [-127, 127].
/// Returns the number of non-finite weights met (their rows get scale NaN).
ptrdiff_t axon_quantize_s8_rows(const float *w, ptrdiff_t k, ptrdiff_t r0, ptrdiff_t r1,
                                int8_t *q, float *scales);

/// As axon_quantize_s8_rows, with one scale per block of AXON_WEIGHT_BLOCK columns (the last block
/// of a row may be shorter): scales[r · ⌈k/32⌉ + b].
ptrdiff_t axon_quantize_s8_blocks(const float *w, ptrdiff_t k, ptrdiff_t r0, ptrdiff_t r1,
                                  int8_t *q, float *scales);

/// count values to binary16, round to nearest even (overflow to ±inf, NaN kept NaN), with F16C
/// when `isa` is AVX2 or wider and supported, else in integer arithmetic (the same results).
/// Returns the number of finite inputs that became infinite (|v| ≥ 65520).
ptrdiff_t axon_convert_f16(int isa, const float *src, ptrdiff_t count, uint16_t *dst);

/// count values to bfloat16, round to nearest even (NaN kept NaN).
void axon_convert_bf16(const float *src, ptrdiff_t count, uint16_t *dst);

/// binary16 to f32 (exact).
float axon_f16_to_f32(uint16_t h);

#endif
