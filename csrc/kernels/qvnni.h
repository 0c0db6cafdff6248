/* qvnni.h — what the AVX512-VNNI GEMVs (qdot_avx512vnni.c) and panel GEMMs (qgemm_avx512vnni.c) of
 * the block-32 types read alike: a pair of blocks' weight bytes, a 4-block step's scales, and the
 * 8-lane sum; and Q8_0's block step. Include after the files' target pragma and immintrin.h. */
#ifndef RWKV_QVNNI_H
#define RWKV_QVNNI_H

#include <stdint.h>
#include <string.h>

/* Q8_0's f32 step of one block for 16 rows (lanes) of one token: acc += (float)T * (d * dx). Its
 * VNNI GEMV and GEMMs (q8_0_avx512vnni.c) and its tile GEMM (q8_0_amx.c) all take it from here, so
 * they stay bit-identical. */
static inline __m512 q8_0_step(__m512 acc, __m512i T, __m512 d, float dx) {
    return _mm512_fmadd_ps(_mm512_cvtepi32_ps(T), _mm512_mul_ps(d, _mm512_set1_ps(dx)), acc);
}

static inline float hsum256(__m256 v) {
    __m128 s4 = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
    s4 = _mm_add_ps(s4, _mm_movehl_ps(s4, s4));
    s4 = _mm_add_ss(s4, _mm_movehdup_ps(s4));
    return _mm_cvtss_f32(s4);
}

/* Blocks A (at a) and B (at a + BB) as unsigned bytes: [A0..15 | B0..15] in *plo, [A16..31 |
 * B16..31] in *phi, the pair order of the activation planes. Packed nibbles give them with `& 15`
 * and `>> 4` (plus Q5's fifth bits). */
static inline __attribute__((always_inline)) void q4q5_weights(const uint8_t *a, const int BB, const int QS,
                                                              const int QH, __m256i *plo, __m256i *phi) {
    const __m256i low4 = _mm256_set1_epi8(0x0f), b16 = _mm256_set1_epi8(16);
    const uint8_t *bb = a + BB;
    const __m256i packed = _mm256_loadu2_m128i((const __m128i *)(bb + QS), (const __m128i *)(a + QS));
    __m256i lo = _mm256_and_si256(packed, low4);
    __m256i hi = _mm256_and_si256(_mm256_srli_epi16(packed, 4), low4);
    if (QH) {
        uint32_t ha, hb;
        memcpy(&ha, a + QH, 4);
        memcpy(&hb, bb + QH, 4);
        lo = _mm256_mask_add_epi8(lo, (__mmask32)((ha & 0xffffu) | (hb << 16)), lo, b16);
        hi = _mm256_mask_add_epi8(hi, (__mmask32)((ha >> 16) | (hb & 0xffff0000u)), hi, b16);
    }
    *plo = lo, *phi = hi;
}

/* The f16 scales of the blocks at b, b + BB (, b + 2 BB, b + 3 BB) packed into 64
 * bits with scalar loads and shifts: those run on the integer ports, while a gather
 * is a long microcoded sequence on Zen 4. */
static inline uint64_t f16x2(const uint8_t *b, const int BB) {
    uint16_t h0, h1;
    memcpy(&h0, b, 2);
    memcpy(&h1, b + BB, 2);
    return (uint64_t)h0 | (uint64_t)h1 << 16;
}
static inline uint64_t f16x4(const uint8_t *b, const int BB) { return f16x2(b, BB) | f16x2(b + 2 * BB, BB) << 32; }
/* The 32-bit (d, m) fields of the blocks at b and b + BB. */
static inline uint64_t dm2(const uint8_t *b, const int BB) {
    uint32_t u0, u1;
    memcpy(&u0, b, 4);
    memcpy(&u1, b + BB, 4);
    return (uint64_t)u0 | (uint64_t)u1 << 32;
}

/* The scales of the 4-block step at a (`two`: its last 2 blocks are past the row's pairs):
 * HAS_M, [d0 m0 d1 m1 d2 m2 d3 m3]; else d0..d3 in the low lanes, zeros above. */
static inline __m256 step_scales(const uint8_t *a, const int BB, const int HAS_M, const int two) {
    if (HAS_M) return _mm256_cvtph_ps(_mm_set_epi64x(two ? 0 : (long long)dm2(a + 2 * BB, BB), (long long)dm2(a, BB)));
    return _mm256_zextps128_ps256(_mm_cvtph_ps(_mm_cvtsi64_si128((long long)(two ? f16x2(a, BB) : f16x4(a, BB)))));
}

#endif
