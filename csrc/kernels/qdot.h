/* qdot.h — quantized-weight GEMV and GEMM kernels of the SIMD levels (tables in dot_*.c and
 * qdot_avx512vnni.c). */
#ifndef RWKV_QDOT_H
#define RWKV_QDOT_H

#include "kernels.h"

#define RWKV_QDOT_ARGS const void *, size_t, const struct rwkv_xq *, float *
#define RWKV_DECLARE_QDOT_TYPE(type, level)                                                                  \
    void rwkv_gemv_##type##_##level(RWKV_QDOT_ARGS, int64_t, int64_t);                                      \
    void rwkv_gemm_##type##_##level(RWKV_QDOT_ARGS, int64_t, int64_t, int64_t, int64_t);
#define RWKV_DECLARE_QDOT(level)                                                                             \
    RWKV_DECLARE_QDOT_TYPE(q4_0, level) RWKV_DECLARE_QDOT_TYPE(q4_1, level) RWKV_DECLARE_QDOT_TYPE(q5_0, level) \
    RWKV_DECLARE_QDOT_TYPE(q5_1, level) RWKV_DECLARE_QDOT_TYPE(q8_0, level) RWKV_DECLARE_QDOT_TYPE(q2_k, level) \
    RWKV_DECLARE_QDOT_TYPE(q3_k, level) RWKV_DECLARE_QDOT_TYPE(q4_k, level) RWKV_DECLARE_QDOT_TYPE(q5_k, level) \
    RWKV_DECLARE_QDOT_TYPE(q6_k, level)

/* The block layouts as each level's kernel bodies take them, written once: (block bytes, offset
 * of qs, offset of qh or 0, has a min, bias of the unsigned nibbles, unpack.h decoder for odd
 * tails) for gemm_q4q5 and (super-block bytes, qs, qh) for gemm_q45k. */
#define RWKV_Q4_0_LAYOUT 18, 2, 0, 0, 8, unpack_q4_0
#define RWKV_Q4_1_LAYOUT 20, 4, 0, 1, 0, unpack_q4_1
#define RWKV_Q5_0_LAYOUT 22, 6, 2, 0, 16, unpack_q5_0
#define RWKV_Q5_1_LAYOUT 24, 8, 4, 1, 0, unpack_q5_1
/* signed bytes, no bias (the block-32 kernels with one integer per block, q32_*.c) */
#define RWKV_Q8_0_LAYOUT 34, 2, 0, 0, 0, unpack_q8_0
#define RWKV_Q4_K_LAYOUT 144, 16, 0
#define RWKV_Q5_K_LAYOUT 176, 48, 16

/* The GEMV and the GEMM of one type through its body BODY(w, rb, x, y, ys, nr, nc, tb, LAYOUT...),
 * which runs tb tokens per pass with each token doing exactly its operations alone: so the GEMV
 * (tb = 1) and the GEMM (passes of TB tokens, then 2, then 1) agree to the bit. */
#define RWKV_DEFINE_QDOT_GEMV(type, level, BODY, ...)                                                        \
    void rwkv_gemv_##type##_##level(const void *w, size_t rb, const struct rwkv_xq *x, float *y, int64_t nr, \
                                    int64_t nc) {                                                            \
        BODY(w, rb, x, y, 0, nr, nc, 1, ##__VA_ARGS__);                                                      \
    }
#define RWKV_DEFINE_QDOT_TYPE(type, level, TB, BODY, ...)                                                    \
    RWKV_DEFINE_QDOT_GEMV(type, level, BODY, ##__VA_ARGS__)                                                  \
    RWKV_DEFINE_QDOT_GEMM(rwkv_gemm_##type##_##level, TB, BODY, ##__VA_ARGS__)
/* The GEMM NAME of a body alone (AVX512-VNNI: the few-token path beside the panel GEMMs). */
#define RWKV_DEFINE_QDOT_GEMM(NAME, TB, BODY, ...)                                                           \
    void NAME(const void *w, size_t rb, const struct rwkv_xq *x, float *y, int64_t ys, int64_t nr, int64_t nc,  \
              int64_t nt) {                                                                                  \
        int64_t t = 0;                                                                                       \
        for (; t + (TB) <= nt; t += (TB)) BODY(w, rb, x + t, y + t * ys, ys, nr, nc, (TB), ##__VA_ARGS__);    \
        if ((TB) > 2 && t + 2 <= nt) BODY(w, rb, x + t, y + t * ys, ys, nr, nc, 2, ##__VA_ARGS__), t += 2;   \
        if (t < nt) BODY(w, rb, x + t, y + t * ys, ys, nr, nc, 1, ##__VA_ARGS__);                            \
    }
/* Every type but Q8_0, from a level's bodies gemm_q4q5, gemm_q45k, gemm_q2k, gemm_q3k, gemm_q6k. */
#define RWKV_DEFINE_QDOT_LEVEL(level, TB)                                                                    \
    RWKV_DEFINE_QDOT_TYPE(q4_0, level, TB, gemm_q4q5, RWKV_Q4_0_LAYOUT)                                      \
    RWKV_DEFINE_QDOT_TYPE(q4_1, level, TB, gemm_q4q5, RWKV_Q4_1_LAYOUT)                                      \
    RWKV_DEFINE_QDOT_TYPE(q5_0, level, TB, gemm_q4q5, RWKV_Q5_0_LAYOUT)                                      \
    RWKV_DEFINE_QDOT_TYPE(q5_1, level, TB, gemm_q4q5, RWKV_Q5_1_LAYOUT)                                      \
    RWKV_DEFINE_QDOT_K_TYPES(level, TB)
/* The K types (part of RWKV_DEFINE_QDOT_LEVEL). */
#define RWKV_DEFINE_QDOT_K_TYPES(level, TB)                                                                  \
    RWKV_DEFINE_QDOT_TYPE(q4_k, level, TB, gemm_q45k, RWKV_Q4_K_LAYOUT)                                      \
    RWKV_DEFINE_QDOT_TYPE(q5_k, level, TB, gemm_q45k, RWKV_Q5_K_LAYOUT)                                      \
    RWKV_DEFINE_QDOT_TYPE(q2_k, level, TB, gemm_q2k)                                                         \
    RWKV_DEFINE_QDOT_TYPE(q3_k, level, TB, gemm_q3k)                                                         \
    RWKV_DEFINE_QDOT_TYPE(q6_k, level, TB, gemm_q6k)

#define RWKV_DECLARE_QDOT_FEW(type) void rwkv_gemm_##type##_avx512vnni_few(RWKV_QDOT_ARGS, int64_t, int64_t, int64_t, int64_t);
RWKV_DECLARE_QDOT_FEW(q4_0) RWKV_DECLARE_QDOT_FEW(q4_1) RWKV_DECLARE_QDOT_FEW(q5_0) RWKV_DECLARE_QDOT_FEW(q5_1)
RWKV_DECLARE_QDOT_FEW(q2_k) RWKV_DECLARE_QDOT_FEW(q3_k) RWKV_DECLARE_QDOT_FEW(q4_k) RWKV_DECLARE_QDOT_FEW(q5_k)
RWKV_DECLARE_QDOT_FEW(q6_k)

/* q32_amx.c: the tile GEMMs and their twins with the tile instructions emulated */
#define RWKV_DECLARE_TILES(type)                                                                             \
    void rwkv_gemm_##type##_amx(RWKV_QDOT_ARGS, int64_t, int64_t, int64_t, int64_t);                        \
    void rwkv_gemm_##type##_amx_emulated(RWKV_QDOT_ARGS, int64_t, int64_t, int64_t, int64_t);
RWKV_DECLARE_TILES(q8_0) RWKV_DECLARE_TILES(q4_0) RWKV_DECLARE_TILES(q4_1) RWKV_DECLARE_TILES(q5_0)
RWKV_DECLARE_TILES(q5_1)
int rwkv_amx_selftest(void);

RWKV_DECLARE_QDOT(avx2)
RWKV_DECLARE_QDOT(avx512)
RWKV_DECLARE_QDOT(avx512vnni)

#endif
