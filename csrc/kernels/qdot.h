/* qdot.h — quantized-weight GEMV kernels of the SIMD levels (tables in dot_*.c). */
#ifndef RWKV_QDOT_H
#define RWKV_QDOT_H

#include "kernels.h"

#define RWKV_DECLARE_QDOT(level)                                                                            \
    void rwkv_gemv_q4_0_##level(const void *, size_t, const struct rwkv_xq *, float *, int64_t, int64_t); \
    void rwkv_gemv_q4_1_##level(const void *, size_t, const struct rwkv_xq *, float *, int64_t, int64_t); \
    void rwkv_gemv_q5_0_##level(const void *, size_t, const struct rwkv_xq *, float *, int64_t, int64_t); \
    void rwkv_gemv_q5_1_##level(const void *, size_t, const struct rwkv_xq *, float *, int64_t, int64_t); \
    void rwkv_gemv_q8_0_##level(const void *, size_t, const struct rwkv_xq *, float *, int64_t, int64_t); \
    void rwkv_gemv_q2_k_##level(const void *, size_t, const struct rwkv_xq *, float *, int64_t, int64_t); \
    void rwkv_gemv_q3_k_##level(const void *, size_t, const struct rwkv_xq *, float *, int64_t, int64_t); \
    void rwkv_gemv_q4_k_##level(const void *, size_t, const struct rwkv_xq *, float *, int64_t, int64_t); \
    void rwkv_gemv_q5_k_##level(const void *, size_t, const struct rwkv_xq *, float *, int64_t, int64_t); \
    void rwkv_gemv_q6_k_##level(const void *, size_t, const struct rwkv_xq *, float *, int64_t, int64_t);

RWKV_DECLARE_QDOT(avx2)
RWKV_DECLARE_QDOT(avx512)

/* AVX512-VNNI kernels (the avx512vnni level's table). */
void rwkv_gemv_q4_k_avx512vnni(const void *, size_t, const struct rwkv_xq *, float *, int64_t, int64_t);
void rwkv_gemv_q5_k_avx512vnni(const void *, size_t, const struct rwkv_xq *, float *, int64_t, int64_t);

#endif
