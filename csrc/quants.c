/* quants.c — reference dequantize / quantize of ggml block formats (plain rows and blocks of
 * 32; the K types are in quants_k.c), bit-compatible with ggml, and the row entry points.
 *
 * Block layouts are ggml-common.h's (file-format facts); the quantizers follow ggml-quants.c's
 * `quantize_row_*_ref` step by step, because llama-quantize (without an imatrix) writes exactly
 * what they compute and we want the same bytes. That is why the float expressions below keep
 * ggml's evaluation order (a*b*c is (a*b)*c) and why this file must not be built with FMA
 * contraction (-std=c11 turns it off in GCC; -march=native alone would not enable it either,
 * as GCC only contracts in GNU mode).
 *
 * Glossary: QK = 32 (simple blocks), QK_K = 256 (K-quant super-blocks, split into 8 or 16
 * sub-blocks that each get a 4/6/8-bit scale relative to the super-block's f16 scale `d`).
 * A "min" type stores x = d*q - m (q >= 0); a symmetric type stores x = d*q (q signed).
 *
 * Every block is memcpy'd in and out of a local struct, so src/dst need no alignment.
 */
#include "quants.h"

#include <float.h>
#include <math.h>
#include <stdbool.h>
#include <string.h>

#include "quants_impl.h"
#include "rwkvfast.h"

/* ------------------------------------------------------------ block layouts -- */

typedef struct { uint16_t d; uint8_t qs[QK / 2]; } block_q4_0;                /* x = d*(q-8)  */
typedef struct { uint16_t d, m; uint8_t qs[QK / 2]; } block_q4_1;             /* x = d*q + m  */
typedef struct { uint16_t d; uint8_t qh[4]; uint8_t qs[QK / 2]; } block_q5_0; /* x = d*(q-16) */
typedef struct { uint16_t d, m; uint8_t qh[4]; uint8_t qs[QK / 2]; } block_q5_1;
typedef struct { uint16_t d; int8_t qs[QK]; } block_q8_0;

_Static_assert(sizeof(block_q4_0) == 18, "q4_0 layout");
_Static_assert(sizeof(block_q4_1) == 20, "q4_1 layout");
_Static_assert(sizeof(block_q5_0) == 22, "q5_0 layout");
_Static_assert(sizeof(block_q5_1) == 24, "q5_1 layout");
_Static_assert(sizeof(block_q8_0) == 34, "q8_0 layout");

/* ------------------------------------------------------------ scalar helpers -- */


uint16_t rwkv_f32_to_f16(float f) {
    uint32_t x;
    memcpy(&x, &f, sizeof x);
    uint16_t sign = (uint16_t)((x >> 16) & 0x8000u);
    uint32_t ax = x & 0x7fffffffu;
    if (ax > 0x7f800000u) return sign | 0x7e00u;         /* NaN */
    if (ax >= 0x477ff000u) return sign | 0x7c00u;        /* >= 65520 rounds to inf */
    if (ax >= 0x38800000u) {                             /* normal half: drop 13 bits, RNE */
        ax += 0xfffu + ((ax >> 13) & 1u);
        return sign | (uint16_t)((ax - 0x38000000u) >> 13); /* rebias exponent 127 -> 15 */
    }
    if (ax <= 0x33000000u) return sign;                  /* <= 2^-25 (a tie) rounds to 0 */
    /* subnormal half: units of 2^-24; the result 0x400 is the smallest normal, encoded right */
    uint32_t e = ax >> 23, m = (ax & 0x7fffffu) | 0x800000u, shift = 126 - e; /* 14..24 */
    uint32_t q = m >> shift, rem = m & ((1u << shift) - 1), half = 1u << (shift - 1);
    if (rem > half || (rem == half && (q & 1u))) q++;
    return sign | (uint16_t)q;
}

uint16_t rwkv_f32_to_bf16(float f) {
    uint32_t x;
    memcpy(&x, &f, sizeof x);
    if ((x & 0x7fffffffu) > 0x7f800000u) return (uint16_t)((x >> 16) | 64u); /* quiet NaN */
    return (uint16_t)((x + (0x7fffu + ((x >> 16) & 1u))) >> 16);
}

/* C truncation of a float to int32 as x86's cvttss2si does it: NaN and out-of-range give
 * INT32_MIN (C leaves these undefined). ggml's `(int8_t)(x + 8.5f)` compiles to this plus
 * keeping the low byte, which the casts at the call sites reproduce. */
static inline int32_t trunc_i32(float f) {
    if (!(f > -2147483904.0f && f < 2147483648.0f)) return INT32_MIN;
    return (int32_t)f;
}

/* ------------------------------------------------------------ 32-element blocks -- */

void rwkv_dequant_q4_0(const uint8_t *src, float *y, int64_t nb) {
    for (int64_t i = 0; i < nb; i++, src += sizeof(block_q4_0), y += QK) {
        block_q4_0 b;
        memcpy(&b, src, sizeof b);
        const float d = h2f(b.d);
        for (int j = 0; j < QK / 2; j++) {
            y[j] = ((b.qs[j] & 0x0f) - 8) * d;
            y[j + QK / 2] = ((b.qs[j] >> 4) - 8) * d;
        }
    }
}

void rwkv_dequant_q4_1(const uint8_t *src, float *y, int64_t nb) {
    for (int64_t i = 0; i < nb; i++, src += sizeof(block_q4_1), y += QK) {
        block_q4_1 b;
        memcpy(&b, src, sizeof b);
        const float d = h2f(b.d), m = h2f(b.m);
        for (int j = 0; j < QK / 2; j++) {
            y[j] = (b.qs[j] & 0x0f) * d + m;
            y[j + QK / 2] = (b.qs[j] >> 4) * d + m;
        }
    }
}

/* Q5: bit j of the little-endian 32-bit qh is the 5th bit of element j. */
void rwkv_dequant_q5_0(const uint8_t *src, float *y, int64_t nb) {
    for (int64_t i = 0; i < nb; i++, src += sizeof(block_q5_0), y += QK) {
        block_q5_0 b;
        memcpy(&b, src, sizeof b);
        const float d = h2f(b.d);
        const uint32_t qh = (uint32_t)b.qh[0] | (uint32_t)b.qh[1] << 8 | (uint32_t)b.qh[2] << 16 |
                            (uint32_t)b.qh[3] << 24;
        for (int j = 0; j < QK / 2; j++) {
            const int h0 = (qh >> j) & 1, h1 = (qh >> (j + QK / 2)) & 1;
            y[j] = (((b.qs[j] & 0x0f) | h0 << 4) - 16) * d;
            y[j + QK / 2] = (((b.qs[j] >> 4) | h1 << 4) - 16) * d;
        }
    }
}

void rwkv_dequant_q5_1(const uint8_t *src, float *y, int64_t nb) {
    for (int64_t i = 0; i < nb; i++, src += sizeof(block_q5_1), y += QK) {
        block_q5_1 b;
        memcpy(&b, src, sizeof b);
        const float d = h2f(b.d), m = h2f(b.m);
        const uint32_t qh = (uint32_t)b.qh[0] | (uint32_t)b.qh[1] << 8 | (uint32_t)b.qh[2] << 16 |
                            (uint32_t)b.qh[3] << 24;
        for (int j = 0; j < QK / 2; j++) {
            const int h0 = (qh >> j) & 1, h1 = (qh >> (j + QK / 2)) & 1;
            y[j] = ((b.qs[j] & 0x0f) | h0 << 4) * d + m;
            y[j + QK / 2] = ((b.qs[j] >> 4) | h1 << 4) * d + m;
        }
    }
}

void rwkv_dequant_q8_0(const uint8_t *src, float *y, int64_t nb) {
    for (int64_t i = 0; i < nb; i++, src += sizeof(block_q8_0), y += QK) {
        block_q8_0 b;
        memcpy(&b, src, sizeof b);
        const float d = h2f(b.d);
        for (int j = 0; j < QK; j++) y[j] = b.qs[j] * d;
    }
}

/* Symmetric 4/5-bit: d = max / -2^(bits-1) where max is the signed value of largest |x|,
 * so that value maps exactly to q = 0 (the one level with no positive twin). */
void rwkv_quant_q4_0(const float *x, uint8_t *dst, int64_t nb) {
    for (int64_t i = 0; i < nb; i++, x += QK, dst += sizeof(block_q4_0)) {
        float amax = 0.0f, max = 0.0f;
        for (int j = 0; j < QK; j++) {
            if (amax < fabsf(x[j])) { amax = fabsf(x[j]); max = x[j]; }
        }
        const float d = max / -8, id = d ? 1.0f / d : 0.0f;
        block_q4_0 b;
        b.d = rwkv_f32_to_f16(d);
        for (int j = 0; j < QK / 2; j++) {
            const uint8_t q0 = (uint8_t)MIN(15, (int8_t)trunc_i32(x[j] * id + 8.5f));
            const uint8_t q1 = (uint8_t)MIN(15, (int8_t)trunc_i32(x[j + QK / 2] * id + 8.5f));
            b.qs[j] = (uint8_t)(q0 | q1 << 4);
        }
        memcpy(dst, &b, sizeof b);
    }
}

void rwkv_quant_q4_1(const float *x, uint8_t *dst, int64_t nb) {
    for (int64_t i = 0; i < nb; i++, x += QK, dst += sizeof(block_q4_1)) {
        float min = FLT_MAX, max = -FLT_MAX;
        for (int j = 0; j < QK; j++) {
            if (x[j] < min) min = x[j];
            if (x[j] > max) max = x[j];
        }
        const float d = (max - min) / 15, id = d ? 1.0f / d : 0.0f;
        block_q4_1 b;
        b.d = rwkv_f32_to_f16(d);
        b.m = rwkv_f32_to_f16(min);
        for (int j = 0; j < QK / 2; j++) {
            const uint8_t q0 = (uint8_t)MIN(15, (int8_t)trunc_i32((x[j] - min) * id + 0.5f));
            const uint8_t q1 = (uint8_t)MIN(15, (int8_t)trunc_i32((x[j + QK / 2] - min) * id + 0.5f));
            b.qs[j] = (uint8_t)(q0 | q1 << 4);
        }
        memcpy(dst, &b, sizeof b);
    }
}

void rwkv_quant_q5_0(const float *x, uint8_t *dst, int64_t nb) {
    for (int64_t i = 0; i < nb; i++, x += QK, dst += sizeof(block_q5_0)) {
        float amax = 0.0f, max = 0.0f;
        for (int j = 0; j < QK; j++) {
            if (amax < fabsf(x[j])) { amax = fabsf(x[j]); max = x[j]; }
        }
        const float d = max / -16, id = d ? 1.0f / d : 0.0f;
        block_q5_0 b;
        b.d = rwkv_f32_to_f16(d);
        uint32_t qh = 0;
        for (int j = 0; j < QK / 2; j++) {
            const uint8_t q0 = (uint8_t)MIN(31, (int8_t)trunc_i32(x[j] * id + 16.5f));
            const uint8_t q1 = (uint8_t)MIN(31, (int8_t)trunc_i32(x[j + QK / 2] * id + 16.5f));
            b.qs[j] = (uint8_t)((q0 & 0x0f) | (q1 & 0x0f) << 4);
            qh |= (uint32_t)((q0 >> 4) & 1) << j | (uint32_t)((q1 >> 4) & 1) << (j + QK / 2);
        }
        for (int k = 0; k < 4; k++) b.qh[k] = (uint8_t)(qh >> (8 * k));
        memcpy(dst, &b, sizeof b);
    }
}

void rwkv_quant_q5_1(const float *x, uint8_t *dst, int64_t nb) {
    for (int64_t i = 0; i < nb; i++, x += QK, dst += sizeof(block_q5_1)) {
        float min = FLT_MAX, max = -FLT_MAX;
        for (int j = 0; j < QK; j++) {
            if (x[j] < min) min = x[j];
            if (x[j] > max) max = x[j];
        }
        const float d = (max - min) / 31, id = d ? 1.0f / d : 0.0f;
        block_q5_1 b;
        b.d = rwkv_f32_to_f16(d);
        b.m = rwkv_f32_to_f16(min);
        uint32_t qh = 0;
        for (int j = 0; j < QK / 2; j++) {
            /* ggml has no MIN(31, .) here: (max-min)*id rounds to at most 31 + 0.5 */
            const uint8_t q0 = (uint8_t)trunc_i32((x[j] - min) * id + 0.5f);
            const uint8_t q1 = (uint8_t)trunc_i32((x[j + QK / 2] - min) * id + 0.5f);
            b.qs[j] = (uint8_t)((q0 & 0x0f) | (q1 & 0x0f) << 4);
            qh |= (uint32_t)((q0 >> 4) & 1) << j | (uint32_t)((q1 >> 4) & 1) << (j + QK / 2);
        }
        for (int k = 0; k < 4; k++) b.qh[k] = (uint8_t)(qh >> (8 * k));
        memcpy(dst, &b, sizeof b);
    }
}

void rwkv_quant_q8_0(const float *x, uint8_t *dst, int64_t nb) {
    for (int64_t i = 0; i < nb; i++, x += QK, dst += sizeof(block_q8_0)) {
        float amax = 0.0f;
        for (int j = 0; j < QK; j++) amax = MAX(amax, fabsf(x[j]));
        const float d = amax / 127, id = d ? 1.0f / d : 0.0f;
        block_q8_0 b;
        b.d = rwkv_f32_to_f16(d);
        for (int j = 0; j < QK; j++) b.qs[j] = (int8_t)trunc_i32(roundf(x[j] * id)); /* half away from 0 */
        memcpy(dst, &b, sizeof b);
    }
}

/* ------------------------------------------------------------ plain rows -- */

void rwkv_dequant_f32(const uint8_t *src, float *y, int64_t n) { memcpy(y, src, (size_t)n * 4); }

void rwkv_dequant_f16(const uint8_t *src, float *y, int64_t n) {
    for (int64_t i = 0; i < n; i++) y[i] = h2f((uint16_t)(src[2 * i] | src[2 * i + 1] << 8));
}

void rwkv_dequant_bf16(const uint8_t *src, float *y, int64_t n) {
    for (int64_t i = 0; i < n; i++) y[i] = rwkv_bf16_to_f32((uint16_t)(src[2 * i] | src[2 * i + 1] << 8));
}

void rwkv_quant_f32(const float *x, uint8_t *dst, int64_t n) { memcpy(dst, x, (size_t)n * 4); }

void rwkv_quant_f16(const float *x, uint8_t *dst, int64_t n) {
    for (int64_t i = 0; i < n; i++) {
        const uint16_t h = rwkv_f32_to_f16(x[i]);
        dst[2 * i] = (uint8_t)h;
        dst[2 * i + 1] = (uint8_t)(h >> 8);
    }
}

void rwkv_quant_bf16(const float *x, uint8_t *dst, int64_t n) {
    for (int64_t i = 0; i < n; i++) {
        const uint16_t h = rwkv_f32_to_bf16(x[i]);
        dst[2 * i] = (uint8_t)h;
        dst[2 * i + 1] = (uint8_t)(h >> 8);
    }
}

/* ------------------------------------------------------------ row entry points -- */

int rwkv_quant_type_supported(uint32_t type) {
    const struct rwkv_type_traits *tr = rwkv_type_traits_get(type);
    return tr != NULL && tr->to_float != NULL && tr->from_float != NULL;
}

size_t rwkv_quant_row_size(uint32_t type, int64_t n) {
    const struct rwkv_type_traits *tr = rwkv_type_traits_get(type);
    if (tr == NULL || n < 0 || n % tr->block_size != 0) return 0;
    return (size_t)(n / tr->block_size) * tr->block_bytes;
}

void rwkv_dequantize_row(uint32_t type, const void *src, float *dst, int64_t n) {
    if (n <= 0) return;
    if (!rwkv_quant_type_supported(type) || n % rwkv_type_traits_get(type)->block_size != 0) {
        memset(dst, 0, (size_t)n * sizeof *dst);
        return;
    }
    const struct rwkv_type_traits *tr = rwkv_type_traits_get(type);
    tr->to_float((const uint8_t *)src, dst, n / tr->block_size);
}

int rwkv_quantize_row(uint32_t type, const float *src, void *dst, int64_t n) {
    if (!rwkv_quant_type_supported(type) || n < 0 || n % rwkv_type_traits_get(type)->block_size != 0) {
        return RWKV_ERR_FORMAT;
    }
    const struct rwkv_type_traits *tr = rwkv_type_traits_get(type);
    if (n > 0) tr->from_float(src, (uint8_t *)dst, n / tr->block_size);
    return RWKV_OK;
}
