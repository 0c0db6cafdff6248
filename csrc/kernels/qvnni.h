/* qvnni.h — what the AVX512-VNNI kernels share: the block-32 types' f32 block steps (their VNNI
 * GEMVs and GEMMs in q32_avx512vnni.c, the tile GEMMs in q32_amx.c) and the 8-lane sum. Include
 * after the files' target pragma and immintrin.h. */
#ifndef RWKV_QVNNI_H
#define RWKV_QVNNI_H

#include <stdint.h>
#include <string.h>

/* Q8_0's f32 step of one block for 16 rows (lanes) of one token: acc += (float)T * (d * dx). Its
 * VNNI GEMV and GEMMs (q32_avx512vnni.c) and its tile GEMM (q32_amx.c) all take it from here, so
 * they stay bit-identical. */
static inline __m512 q8_0_step(__m512 acc, __m512i T, __m512 d, float dx) {
    return _mm512_fmadd_ps(_mm512_cvtepi32_ps(T), _mm512_mul_ps(d, _mm512_set1_ps(dx)), acc);
}
/* The same step 8 rows wide (the 4- and 5-bit types' GEMVs): lane for lane the same operations, so
 * the same bits as the 16-row form of their panel and tile GEMMs. */
static inline __m256 q32_step8(__m256 acc, __m256i T, __m256 d, float dx) {
    return _mm256_fmadd_ps(_mm256_cvtepi32_ps(T), _mm256_mul_ps(d, _mm256_set1_ps(dx)), acc);
}
/* Q4_1, Q5_1: the mins' term of one block, side += m * sum32 (the f32 sum of its activations). */
static inline __m512 q32_side(__m512 side, __m512 m, float sum32) {
    return _mm512_fmadd_ps(m, _mm512_set1_ps(sum32), side);
}
static inline __m256 q32_side8(__m256 side, __m256 m, float sum32) {
    return _mm256_fmadd_ps(m, _mm256_set1_ps(sum32), side);
}

static inline float hsum256(__m256 v) {
    __m128 s4 = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
    s4 = _mm_add_ps(s4, _mm_movehl_ps(s4, s4));
    s4 = _mm_add_ss(s4, _mm_movehdup_ps(s4));
    return _mm_cvtss_f32(s4);
}

#endif
