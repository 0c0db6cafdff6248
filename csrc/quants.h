/* quants.h — reference (scalar) dequantize / quantize of one row of a ggml block type.
 *
 * Types: Q4_0, Q4_1, Q5_0, Q5_1, Q8_0 (blocks of 32), Q2_K, Q3_K, Q4_K, Q5_K, Q6_K
 * (super-blocks of 256), plus the plain F32, F16 and BF16 rows. Type ids and block
 * sizes come from ggml_types.h (enum rwkv_type, rwkv_type_traits_get).
 *
 * Compatibility: the output is bit-identical to ggml's `dequantize_row_*` and
 * `quantize_row_*_ref` (what llama-quantize writes when it has no imatrix) on an
 * x86-64 build without FMA contraction. These are the reference the fast kernels and
 * the whole-file quantizer are tested against; they are written for clarity, not speed.
 *
 * All functions are pure: no global state, thread-safe, no allocation. `src`/`dst`
 * need no alignment. Blocks are read and written little-endian, as GGUF stores them.
 */
#ifndef RWKV_QUANTS_H
#define RWKV_QUANTS_H

#include <stddef.h>
#include <stdint.h>

#include "ggml_types.h"

/* 1 when rwkv_dequantize_row and rwkv_quantize_row handle `type` (enum rwkv_type), else 0. */
int rwkv_quant_type_supported(uint32_t type);

/* Bytes that n elements of `type` take, or 0 when `type` is unknown, n < 0, or n is not
 * a multiple of the type's block size. */
size_t rwkv_quant_row_size(uint32_t type, int64_t n);

/* src: n elements of `type` ((n / block_size) blocks) -> dst: n floats.
 * Reads exactly rwkv_quant_row_size(type, n) bytes and writes exactly n floats.
 * Preconditions (checked, never UB): a supported type and n a multiple of the block
 * size; otherwise the whole blocks are skipped and dst[0..n) is filled with zeros. */
void rwkv_dequantize_row(uint32_t type, const void *src, float *dst, int64_t n);

/* src: n floats -> dst: rwkv_quant_row_size(type, n) bytes of `type`.
 * Returns RWKV_OK, or RWKV_ERR_FORMAT (nothing written) when `type` is not supported
 * or n is negative / not a multiple of the block size. Any finite input is safe
 * (all-zero, tiny, huge); non-finite input gives unspecified but in-bounds output. */
int rwkv_quantize_row(uint32_t type, const float *src, void *dst, int64_t n);

/* IEEE binary32 -> binary16, round to nearest even (ggml's GGML_FP32_TO_FP16 / F16C's
 * _cvtss_sh): overflow gives +-inf, NaN gives a quiet NaN (0x7e00 with the sign). */
uint16_t rwkv_f32_to_f16(float f);

/* binary32 -> bfloat16, round to nearest even, NaN kept quiet (ggml_compute_fp32_to_bf16). */
uint16_t rwkv_f32_to_bf16(float f);

#endif
