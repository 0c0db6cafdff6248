/* quants_impl.h — shared by the reference block codecs (quants.c, quants_k.c) and the
 * traits table (ggml_types.c); not part of the public API.
 *
 * Every codec takes a count of blocks (elements for the plain F32/F16/BF16 rows).
 */
#ifndef RWKV_QUANTS_IMPL_H
#define RWKV_QUANTS_IMPL_H

#include <stdint.h>
#include <string.h>

#include "ggml_types.h"

#define QK 32
#define QK_K 256
#define GROUP_MAX_EPS 1e-15f /* ggml: a (sub-)block whose |max| is below this is all zero */

#define MAX(a, b) ((a) > (b) ? (a) : (b))
#define MIN(a, b) ((a) < (b) ? (a) : (b))

static inline float h2f(uint16_t h) { return rwkv_f16_to_f32(h); }

/* ggml's nearest_int: adding 1.5*2^23 makes the FPU round to nearest even into the low
 * mantissa bits. Exact for |f| <= 4194303; beyond that (or NaN) the result is garbage but
 * defined, and every caller clamps it. */
static inline int nearest_int(float f) {
    float v = f + 12582912.f;
    int32_t i;
    memcpy(&i, &v, sizeof i);
    return (i & 0x007fffff) - 0x00400000;
}

#define RWKV_CODEC(t)                                                    \
    void rwkv_dequant_##t(const uint8_t *src, float *y, int64_t n_blocks); \
    void rwkv_quant_##t(const float *x, uint8_t *dst, int64_t n_blocks);
RWKV_CODEC(f32)
RWKV_CODEC(f16)
RWKV_CODEC(bf16)
RWKV_CODEC(q4_0)
RWKV_CODEC(q4_1)
RWKV_CODEC(q5_0)
RWKV_CODEC(q5_1)
RWKV_CODEC(q8_0)
RWKV_CODEC(q2_k)
RWKV_CODEC(q3_k)
RWKV_CODEC(q4_k)
RWKV_CODEC(q5_k)
RWKV_CODEC(q6_k)
#undef RWKV_CODEC

#endif
