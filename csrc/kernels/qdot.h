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

/* The block layouts of the 4- and 5-bit types as each level's two kernel families
 * take them: (block bytes, offset of qs, offset of qh or 0, has a min, bias of the
 * unsigned nibbles, unpack.h decoder for odd tails) and (super-block bytes, qs, qh).
 * A level defines static gemv_q4q5 and gemv_q45k with these parameters and then
 * this macro, so the offsets are written once. */
#define RWKV_DEFINE_Q4Q5_WRAPPERS(level)                                                                      \
    void rwkv_gemv_q4_0_##level(const void *w, size_t rb, const struct rwkv_xq *x, float *y, int64_t nr,    \
                                int64_t nc) {                                                              \
        gemv_q4q5(w, rb, x, y, nr, nc, 18, 2, 0, 0, 8, unpack_q4_0);                                        \
    }                                                                                                      \
    void rwkv_gemv_q4_1_##level(const void *w, size_t rb, const struct rwkv_xq *x, float *y, int64_t nr,    \
                                int64_t nc) {                                                              \
        gemv_q4q5(w, rb, x, y, nr, nc, 20, 4, 0, 1, 0, unpack_q4_1);                                        \
    }                                                                                                      \
    void rwkv_gemv_q5_0_##level(const void *w, size_t rb, const struct rwkv_xq *x, float *y, int64_t nr,    \
                                int64_t nc) {                                                              \
        gemv_q4q5(w, rb, x, y, nr, nc, 22, 6, 2, 0, 16, unpack_q5_0);                                       \
    }                                                                                                      \
    void rwkv_gemv_q5_1_##level(const void *w, size_t rb, const struct rwkv_xq *x, float *y, int64_t nr,    \
                                int64_t nc) {                                                              \
        gemv_q4q5(w, rb, x, y, nr, nc, 24, 8, 4, 1, 0, unpack_q5_1);                                        \
    }
#define RWKV_DEFINE_Q45K_WRAPPERS(level)                                                                      \
    void rwkv_gemv_q4_k_##level(const void *w, size_t rb, const struct rwkv_xq *x, float *y, int64_t nr,    \
                                int64_t nc) {                                                              \
        gemv_q45k(w, rb, x, y, nr, nc, 144, 16, 0);                                                         \
    }                                                                                                      \
    void rwkv_gemv_q5_k_##level(const void *w, size_t rb, const struct rwkv_xq *x, float *y, int64_t nr,    \
                                int64_t nc) {                                                              \
        gemv_q45k(w, rb, x, y, nr, nc, 176, 48, 16);                                                        \
    }

RWKV_DECLARE_QDOT(avx2)
/* AVX2 and AVX-512 GEMMs: qdot_avx2.c, qdot_avx512.c (the AVX512-VNNI ones are static in
 * their own file, beside its table). */
#define RWKV_DECLARE_QGEMM(level, type)                                                                     \
    void rwkv_gemm_##type##_##level(const void *, size_t, const struct rwkv_xq *, float *, int64_t, int64_t, \
                                    int64_t, int64_t);
RWKV_DECLARE_QGEMM(avx2, q4_0)
RWKV_DECLARE_QGEMM(avx2, q4_1)
RWKV_DECLARE_QGEMM(avx2, q5_0)
RWKV_DECLARE_QGEMM(avx2, q5_1)
RWKV_DECLARE_QGEMM(avx2, q8_0)
RWKV_DECLARE_QGEMM(avx2, q2_k)
RWKV_DECLARE_QGEMM(avx2, q3_k)
RWKV_DECLARE_QGEMM(avx2, q4_k)
RWKV_DECLARE_QGEMM(avx2, q5_k)
RWKV_DECLARE_QGEMM(avx2, q6_k)
RWKV_DECLARE_QGEMM(avx512, q4_0)
RWKV_DECLARE_QGEMM(avx512, q4_1)
RWKV_DECLARE_QGEMM(avx512, q5_0)
RWKV_DECLARE_QGEMM(avx512, q5_1)
RWKV_DECLARE_QGEMM(avx512, q8_0)
RWKV_DECLARE_QGEMM(avx512, q2_k)
RWKV_DECLARE_QGEMM(avx512, q3_k)
RWKV_DECLARE_QGEMM(avx512, q4_k)
RWKV_DECLARE_QGEMM(avx512, q5_k)
RWKV_DECLARE_QGEMM(avx512, q6_k)
RWKV_DECLARE_QDOT(avx512)

RWKV_DECLARE_QDOT(avx512vnni)

#endif
