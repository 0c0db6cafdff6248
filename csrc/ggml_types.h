/* ggml_types.h — the ggml tensor types a GGUF can hold: one traits row per type.
 *
 * The numbers are ggml's on-disk type ids and block layouts (ggml-common.h);
 * they are file-format facts, so they must never be renumbered.
 */
#ifndef RWKV_GGML_TYPES_H
#define RWKV_GGML_TYPES_H

#include <stdint.h>

enum rwkv_type {
    RWKV_TYPE_F32 = 0,
    RWKV_TYPE_F16 = 1,
    RWKV_TYPE_Q4_0 = 2,
    RWKV_TYPE_Q4_1 = 3,
    RWKV_TYPE_Q5_0 = 6,
    RWKV_TYPE_Q5_1 = 7,
    RWKV_TYPE_Q8_0 = 8,
    RWKV_TYPE_Q8_1 = 9,
    RWKV_TYPE_Q2_K = 10,
    RWKV_TYPE_Q3_K = 11,
    RWKV_TYPE_Q4_K = 12,
    RWKV_TYPE_Q5_K = 13,
    RWKV_TYPE_Q6_K = 14,
    RWKV_TYPE_Q8_K = 15,
    RWKV_TYPE_IQ2_XXS = 16,
    RWKV_TYPE_IQ2_XS = 17,
    RWKV_TYPE_IQ3_XXS = 18,
    RWKV_TYPE_IQ1_S = 19,
    RWKV_TYPE_IQ4_NL = 20,
    RWKV_TYPE_IQ3_S = 21,
    RWKV_TYPE_IQ2_S = 22,
    RWKV_TYPE_IQ4_XS = 23,
    RWKV_TYPE_I8 = 24,
    RWKV_TYPE_I16 = 25,
    RWKV_TYPE_I32 = 26,
    RWKV_TYPE_I64 = 27,
    RWKV_TYPE_F64 = 28,
    RWKV_TYPE_IQ1_M = 29,
    RWKV_TYPE_BF16 = 30,
    RWKV_TYPE_TQ1_0 = 34,
    RWKV_TYPE_TQ2_0 = 35,
    RWKV_TYPE_MXFP4 = 39,
    RWKV_TYPE_COUNT = 40,
};

struct rwkv_type_traits {
    const char *name;     /* NULL: not a type we know */
    uint32_t block_size;  /* elements per block */
    uint32_t block_bytes; /* bytes per block */
    /* reference codecs over n_blocks blocks (quants.c, quants_k.c); NULL when a type is
     * only known by size. The GEMV kernels of a type are slots in kernels/kernels.h. */
    void (*to_float)(const uint8_t *src, float *dst, int64_t n_blocks);
    void (*from_float)(const float *src, uint8_t *dst, int64_t n_blocks);
};

/* Traits of type id `t`, or NULL when `t` is not a known ggml type. */
const struct rwkv_type_traits *rwkv_type_traits_get(uint32_t t);
const char *rwkv_type_name(uint32_t t); /* "?" when unknown */

/* Exact IEEE conversions (scalar reference; the kernels have vector twins). */
static inline float rwkv_bf16_to_f32(uint16_t h) {
    union { uint32_t u; float f; } v = {.u = (uint32_t)h << 16};
    return v.f;
}

float rwkv_f16_to_f32(uint16_t h);

#endif
