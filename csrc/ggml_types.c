/* ggml_types.c — the traits table of every ggml type (sizes, reference codecs) and f16
 * decoding. Supporting a type is one row here plus its codecs and kernel slot.
 */
#include "ggml_types.h"

#include "quants_impl.h"

#include <string.h>

static const struct rwkv_type_traits TRAITS[RWKV_TYPE_COUNT] = {
    [RWKV_TYPE_F32] = {"F32", 1, 4, rwkv_dequant_f32, rwkv_quant_f32},
    [RWKV_TYPE_F16] = {"F16", 1, 2, rwkv_dequant_f16, rwkv_quant_f16},
    [RWKV_TYPE_Q4_0] = {"Q4_0", 32, 18, rwkv_dequant_q4_0, rwkv_quant_q4_0},
    [RWKV_TYPE_Q4_1] = {"Q4_1", 32, 20, rwkv_dequant_q4_1, rwkv_quant_q4_1},
    [RWKV_TYPE_Q5_0] = {"Q5_0", 32, 22, rwkv_dequant_q5_0, rwkv_quant_q5_0},
    [RWKV_TYPE_Q5_1] = {"Q5_1", 32, 24, rwkv_dequant_q5_1, rwkv_quant_q5_1},
    [RWKV_TYPE_Q8_0] = {"Q8_0", 32, 34, rwkv_dequant_q8_0, rwkv_quant_q8_0},
    [RWKV_TYPE_Q8_1] = {"Q8_1", 32, 36},
    [RWKV_TYPE_Q2_K] = {"Q2_K", 256, 84, rwkv_dequant_q2_k, rwkv_quant_q2_k},
    [RWKV_TYPE_Q3_K] = {"Q3_K", 256, 110, rwkv_dequant_q3_k, rwkv_quant_q3_k},
    [RWKV_TYPE_Q4_K] = {"Q4_K", 256, 144, rwkv_dequant_q4_k, rwkv_quant_q4_k},
    [RWKV_TYPE_Q5_K] = {"Q5_K", 256, 176, rwkv_dequant_q5_k, rwkv_quant_q5_k},
    [RWKV_TYPE_Q6_K] = {"Q6_K", 256, 210, rwkv_dequant_q6_k, rwkv_quant_q6_k},
    [RWKV_TYPE_Q8_K] = {"Q8_K", 256, 292},
    [RWKV_TYPE_IQ2_XXS] = {"IQ2_XXS", 256, 66},
    [RWKV_TYPE_IQ2_XS] = {"IQ2_XS", 256, 74},
    [RWKV_TYPE_IQ3_XXS] = {"IQ3_XXS", 256, 98},
    [RWKV_TYPE_IQ1_S] = {"IQ1_S", 256, 50},
    [RWKV_TYPE_IQ4_NL] = {"IQ4_NL", 32, 18},
    [RWKV_TYPE_IQ3_S] = {"IQ3_S", 256, 110},
    [RWKV_TYPE_IQ2_S] = {"IQ2_S", 256, 82},
    [RWKV_TYPE_IQ4_XS] = {"IQ4_XS", 256, 136},
    [RWKV_TYPE_I8] = {"I8", 1, 1},
    [RWKV_TYPE_I16] = {"I16", 1, 2},
    [RWKV_TYPE_I32] = {"I32", 1, 4},
    [RWKV_TYPE_I64] = {"I64", 1, 8},
    [RWKV_TYPE_F64] = {"F64", 1, 8},
    [RWKV_TYPE_IQ1_M] = {"IQ1_M", 256, 56},
    [RWKV_TYPE_BF16] = {"BF16", 1, 2, rwkv_dequant_bf16, rwkv_quant_bf16},
    [RWKV_TYPE_TQ1_0] = {"TQ1_0", 256, 54},
    [RWKV_TYPE_TQ2_0] = {"TQ2_0", 256, 66},
    [RWKV_TYPE_MXFP4] = {"MXFP4", 32, 17},
};

const struct rwkv_type_traits *rwkv_type_traits_get(uint32_t t) {
    if (t >= RWKV_TYPE_COUNT || TRAITS[t].name == NULL) return NULL;
    return &TRAITS[t];
}

const char *rwkv_type_name(uint32_t t) {
    const struct rwkv_type_traits *tr = rwkv_type_traits_get(t);
    return tr ? tr->name : "?";
}

float rwkv_f16_to_f32(uint16_t h) {
    /* Bit-exact decoding of IEEE binary16, subnormals and NaN payloads included. */
    uint32_t sign = (uint32_t)(h & 0x8000u) << 16;
    uint32_t exp = (h >> 10) & 0x1fu;
    uint32_t man = h & 0x3ffu;
    uint32_t bits;
    if (exp == 0x1f) {
        bits = sign | 0x7f800000u | (man << 13);
    } else if (exp != 0) {
        bits = sign | ((exp + 112u) << 23) | (man << 13);
    } else if (man == 0) {
        bits = sign;
    } else { /* subnormal: normalise the mantissa */
        int e = -1;
        do {
            e++;
            man <<= 1;
        } while ((man & 0x400u) == 0);
        bits = sign | ((uint32_t)(112 - e) << 23) | ((man & 0x3ffu) << 13);
    }
    float f;
    memcpy(&f, &bits, sizeof f);
    return f;
}
