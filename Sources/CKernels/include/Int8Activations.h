#ifndef AXON_INT8_ACTIVATIONS_H
#define AXON_INT8_ACTIVATIONS_H

#include <stddef.h>
#include <stdint.h>

// The f32 sides of the int8 prefill path (Engine's Int8Projections): activations to u8 per token
// before oneDNN's dnnl_gemm_u8s8s32, and its int32 products back to f32 after. AVX2 + FMA
// (x86-64-v3) code: callers check axon_isa_supported(AXON_ISA_AVX2) first.

/// Rows [r0, r1) of x (row stride ldx, k columns) to u8 with a zero point per row, asymmetric over
/// the row's range [min(lo, 0), max(hi, 0)] (0 exactly representable): scale[r] = range / levels,
/// zero[r] = round(−min / scale), u = clamp(round(x / scale) + zero, 0, levels). A row of zeros gets
/// scale 0, zero 0 and u 0. `levels` is 255, or 127 where the GEMM's u8·s8 pair sums saturate at
/// int16 (oneDNN without VNNI). Returns the number of non-finite values met (their row is zeroed).
/// With peak_ratio > 0, fallback[r] = 1 for a finite row whose peak |x| exceeds peak_ratio times its
/// rms (a range set by a few extreme channels, which leaves the others few levels): it is quantized
/// all the same, and its residual takes a second product (axon_u8_residual_rows, then this function
/// again); otherwise fallback[r] = 0. fallback may be NULL (no flags wanted) when peak_ratio is 0.
ptrdiff_t axon_quantize_u8_rows(const float *x, ptrdiff_t ldx, ptrdiff_t k, ptrdiff_t r0, ptrdiff_t r1,
                                int levels, uint8_t *u, ptrdiff_t ldu, float *scale, int32_t *zero,
                                float peak_ratio, uint8_t *fallback);

/// The rounding residuals of rows quantized by axon_quantize_u8_rows, gathered: for i in [i0, i1) and
/// r = rows[i], row i of e (row stride lde) = row r of x − (u − zero[r])·scale[r], each |e| ≤ scale[r]/2.
void axon_u8_residual_rows(const float *x, ptrdiff_t ldx, ptrdiff_t k, const int32_t *rows, ptrdiff_t i0,
                           ptrdiff_t i1, const uint8_t *u, ptrdiff_t ldu, const float *scale,
                           const int32_t *zero, float *e, ptrdiff_t lde);

/// Rows [r0, r1) of y (row stride ldy, n columns) = xscale[r] · wscale[j] · (c[r][j] − zero[r] · wsum[j]),
/// or y += that with `accumulate`: the f32 value of Σ_k (u − zero)·q from Σ_k u·q, where wsum[j] is
/// Σ_k q[j][k] (the zero-point compensation).
void axon_dequantize_s32_rows(const int32_t *c, ptrdiff_t ldc, ptrdiff_t n, ptrdiff_t r0, ptrdiff_t r1,
                              const float *xscale, const int32_t *zero, const float *wscale, const int32_t *wsum,
                              float *y, ptrdiff_t ldy, int accumulate);

#endif
