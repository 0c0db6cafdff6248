/* unpack.h — ggml quantized blocks as integers: the one description of every
 * block layout that the integer GEMV kernels share.
 *
 * A block of 32 (Q4_0..Q8_0) or a super-block of 256 (K types) unpacks to
 *     value_i = s[i / 32] * w[i] + c[i / 16]
 * with w[i] an int16 that already includes the K types' integer sub-block scale
 * (|w| <= 4096, so int16 x int16 products summed in int32 cannot overflow over a
 * 256-element block with activations |q| <= 16383), s the float block scale and
 * c the float offset (ggml's "min" or "m") per 16 elements. A dot product with
 * activations x is then sum_b s_b * dot_int(w, xq) * dx + sum c * sum16(x).
 *
 * Layouts (byte offsets) are ggml's (ggml-common.h); field comments give them.
 * Static inline so each ISA file compiles (and may vectorise) its own copy.
 */
#ifndef RWKV_UNPACK_H
#define RWKV_UNPACK_H

#include <stdint.h>
#include <string.h>

#include "../ggml_types.h"
#include "kernels.h"

/* One f16 field. SIMD files include this after their target pragma and immintrin.h,
 * so with F16C it is one instruction; a call here would make the compiler spill every
 * vector register in the kernels' loops. */
static inline float rd_f16(const uint8_t *p) {
    uint16_t h;
    memcpy(&h, p, 2);
#if defined(__F16C__)
    return _cvtsh_ss(h);
#else
    return rwkv_f16_to_f32(h);
#endif
}

/* Q4_0, 18 bytes: f16 d | u8 qs[16]; w[j] = low nibble - 8, w[j+16] = high nibble - 8. */
static inline void unpack_q4_0(const uint8_t *b, int16_t *w, float *s, float *c) {
    const uint8_t *qs = b + 2;
    for (int j = 0; j < 16; j++) {
        w[j] = (int16_t)((qs[j] & 0xF) - 8);
        w[j + 16] = (int16_t)((qs[j] >> 4) - 8);
    }
    s[0] = rd_f16(b);
    c[0] = c[1] = 0.0f;
}

/* Q4_1, 20 bytes: f16 d | f16 m | u8 qs[16]; value = d * nibble + m. */
static inline void unpack_q4_1(const uint8_t *b, int16_t *w, float *s, float *c) {
    const uint8_t *qs = b + 4;
    for (int j = 0; j < 16; j++) {
        w[j] = (int16_t)(qs[j] & 0xF);
        w[j + 16] = (int16_t)(qs[j] >> 4);
    }
    s[0] = rd_f16(b);
    c[0] = c[1] = rd_f16(b + 2);
}

/* Q5_0, 22 bytes: f16 d | u32 qh (bit j = 5th bit of element j) | u8 qs[16]; value = d * (q - 16). */
static inline void unpack_q5_0(const uint8_t *b, int16_t *w, float *s, float *c) {
    uint32_t qh;
    memcpy(&qh, b + 2, 4);
    const uint8_t *qs = b + 6;
    for (int j = 0; j < 16; j++) {
        w[j] = (int16_t)(((qs[j] & 0xF) | (((qh >> j) & 1u) << 4)) - 16);
        w[j + 16] = (int16_t)(((qs[j] >> 4) | (((qh >> (j + 16)) & 1u) << 4)) - 16);
    }
    s[0] = rd_f16(b);
    c[0] = c[1] = 0.0f;
}

/* Q5_1, 24 bytes: f16 d | f16 m | u32 qh | u8 qs[16]; value = d * q + m. */
static inline void unpack_q5_1(const uint8_t *b, int16_t *w, float *s, float *c) {
    uint32_t qh;
    memcpy(&qh, b + 4, 4);
    const uint8_t *qs = b + 8;
    for (int j = 0; j < 16; j++) {
        w[j] = (int16_t)((qs[j] & 0xF) | (((qh >> j) & 1u) << 4));
        w[j + 16] = (int16_t)((qs[j] >> 4) | (((qh >> (j + 16)) & 1u) << 4));
    }
    s[0] = rd_f16(b);
    c[0] = c[1] = rd_f16(b + 2);
}

/* Q8_0, 34 bytes: f16 d | i8 qs[32]. */
static inline void unpack_q8_0(const uint8_t *b, int16_t *w, float *s, float *c) {
    const int8_t *qs = (const int8_t *)(b + 2);
    for (int j = 0; j < 32; j++) w[j] = qs[j];
    s[0] = rd_f16(b);
    c[0] = c[1] = 0.0f;
}

/* Q2_K, 84 bytes: u8 scales[16] (low 4 bits scale, high 4 bits min, per 16) | u8 qs[64]
 * (2-bit, four 32-byte planes per 128 elements) | f16 d | f16 dmin;
 * value = d * sc * q - dmin * m. */
static inline void unpack_q2_k(const uint8_t *b, int16_t *w, float *s, float *c) {
    const uint8_t *sc = b, *q = b + 16;
    const float d = rd_f16(b + 80), dmin = rd_f16(b + 82);
    int is = 0, out = 0;
    for (int n = 0; n < 256; n += 128, q += 32)
        for (int shift = 0; shift < 8; shift += 2)
            for (int half = 0; half < 2; half++, is++) {
                const int scale = sc[is] & 0xF;
                c[is] = -dmin * (float)(sc[is] >> 4);
                for (int l = 0; l < 16; l++) w[out++] = (int16_t)(scale * ((q[l + 16 * half] >> shift) & 3));
            }
    for (int i = 0; i < 8; i++) s[i] = d;
}

/* The 16 six-bit scales of Q3_K, packed in 12 bytes: low 4 bits in bytes 0..7
 * (nibbles), high 2 bits in bytes 8..11. Returned with the bias of 32 removed. */
static inline void q3_k_scales(const uint8_t *p, int *out) {
    for (int i = 0; i < 16; i++) {
        int low = i < 8 ? (p[i] & 0xF) : (p[i - 8] >> 4);
        int high = (p[8 + (i & 3)] >> (2 * (i >> 2))) & 3;
        out[i] = (low | (high << 4)) - 32;
    }
}

/* Q3_K, 110 bytes: u8 hmask[32] | u8 qs[64] (2 low bits) | u8 scales[12] | f16 d;
 * q = low bits - (high bit clear ? 4 : 0), value = d * scale * q. */
static inline void unpack_q3_k(const uint8_t *b, int16_t *w, float *s, float *c) {
    const uint8_t *hm = b, *q = b + 32;
    int sc[16];
    q3_k_scales(b + 96, sc);
    const float d = rd_f16(b + 108);
    int is = 0, out = 0;
    uint8_t m = 1;
    for (int n = 0; n < 256; n += 128, q += 32)
        for (int shift = 0; shift < 8; shift += 2, m = (uint8_t)(m << 1))
            for (int half = 0; half < 2; half++, is++)
                for (int l = 0; l < 16; l++) {
                    const int k = l + 16 * half;
                    const int v = ((q[k] >> shift) & 3) - ((hm[k] & m) ? 0 : 4);
                    w[out++] = (int16_t)(sc[is] * v);
                }
    for (int i = 0; i < 8; i++) s[i] = d;
    for (int i = 0; i < 16; i++) c[i] = 0.0f;
}

/* Scale and min j (0..7) of Q4_K/Q5_K: 6 bits each, packed in 12 bytes. */
static inline void k4_scale_min(int j, const uint8_t *q, int *sc, int *mn) {
    if (j < 4) {
        *sc = q[j] & 63;
        *mn = q[j + 4] & 63;
    } else {
        *sc = (q[j + 4] & 0xF) | ((q[j - 4] >> 6) << 4);
        *mn = (q[j + 4] >> 4) | ((q[j] >> 6) << 4);
    }
}

#if defined(__AVX2__)
/* Half h of a Q6_K super-block (ql[128] | qh[64] | ...) as unsigned 6-bit bytes: u[k] holds
 * elements 128h + 32k .. + 31 (nibble k >> 1 of ql[64h + 32(k & 1) + l], bits 2k..2k+1 of
 * qh[32h + l] moved to bits 4..5; epi16 shifts are safe under the masks). */
static inline void q6_k_half(const uint8_t *blk, int h, __m256i u[4]) {
    const __m256i low4 = _mm256_set1_epi8(0x0f), m30 = _mm256_set1_epi8(0x30);
    const __m256i ql0 = _mm256_loadu_si256((const __m256i *)(blk + 64 * h));
    const __m256i ql1 = _mm256_loadu_si256((const __m256i *)(blk + 64 * h + 32));
    const __m256i qh = _mm256_loadu_si256((const __m256i *)(blk + 128 + 32 * h));
    u[0] = _mm256_or_si256(_mm256_and_si256(ql0, low4), _mm256_and_si256(_mm256_slli_epi16(qh, 4), m30));
    u[1] = _mm256_or_si256(_mm256_and_si256(ql1, low4), _mm256_and_si256(_mm256_slli_epi16(qh, 2), m30));
    u[2] = _mm256_or_si256(_mm256_and_si256(_mm256_srli_epi16(ql0, 4), low4), _mm256_and_si256(qh, m30));
    u[3] = _mm256_or_si256(_mm256_and_si256(_mm256_srli_epi16(ql1, 4), low4), _mm256_and_si256(_mm256_srli_epi16(qh, 2), m30));
}

/* The same 8 scales (bytes 0..7) and 8 mins (8..15) of the 12 bytes at p, in
 * registers: built in memory with scalar stores and reloaded as a vector, they
 * would wait on a failed store-to-load forward every super-block. Reads 16 bytes. */
static inline __m128i k4_scales_mins(const uint8_t *p) {
    const __m128i u = _mm_loadu_si128((const __m128i *)p); /* dwords u0 u1 u2 */
    const __m128i a = _mm_and_si128(_mm_srlv_epi32(_mm_shuffle_epi32(u, _MM_SHUFFLE(2, 1, 2, 0)), _mm_setr_epi32(0, 0, 0, 4)),
                                    _mm_setr_epi32(0x3f3f3f3f, 0x0f0f0f0f, 0x3f3f3f3f, 0x0f0f0f0f));
    const __m128i b = _mm_and_si128(_mm_srli_epi32(_mm_shuffle_epi32(u, _MM_SHUFFLE(1, 1, 0, 0)), 6),
                                    _mm_setr_epi32(0, 0x03030303, 0, 0x03030303));
    return _mm_or_si128(a, _mm_slli_epi32(b, 4));
}

/* The 16 six-bit Q3_K scales of the 12 bytes at blk + 96, as bytes still carrying
 * their bias of 32 (0..63), in registers. Reads blk[94..109] (inside the block). */
static inline __m128i q3_k_scales_biased(const uint8_t *blk) {
    const __m128i u = _mm_srli_si128(_mm_loadu_si128((const __m128i *)(blk + 94)), 2);
    const __m128i lo = _mm_and_si128(_mm_srlv_epi32(_mm_shuffle_epi32(u, _MM_SHUFFLE(1, 0, 1, 0)), _mm_setr_epi32(0, 0, 4, 4)),
                                     _mm_set1_epi32(0x0f0f0f0f));
    const __m128i hi = _mm_and_si128(_mm_srlv_epi32(_mm_shuffle_epi32(u, _MM_SHUFFLE(2, 2, 2, 2)), _mm_setr_epi32(0, 2, 4, 6)),
                                     _mm_set1_epi32(0x03030303));
    return _mm_or_si128(lo, _mm_slli_epi32(hi, 4));
}

/* SIMD kernels' per-super-block work for Q4_K/Q5_K: returns the 8 scales as bytes 0..7
 * (mins in 8..15) and adds dmin * sum_j m_j * sum32(x)_j (the mins' term) into *side. */
static inline __m128i k4_superblock(const uint8_t *blk, const float *sum32, __m256 *side) {
    const __m128i bytes = k4_scales_mins(blk + 4);
    const __m256 mnf = _mm256_cvtepi32_ps(_mm256_cvtepu8_epi32(_mm_srli_si128(bytes, 8)));
    *side = _mm256_fmadd_ps(_mm256_mul_ps(mnf, _mm256_set1_ps(rd_f16(blk + 2))), _mm256_loadu_ps(sum32), *side);
    return bytes;
}

/* The f32 sub-block scales d * dx * sc_j of k4_superblock's bytes. */
static inline __m256 k4_scales_f32(__m128i bytes, float d_dx) {
    return _mm256_mul_ps(_mm256_cvtepi32_ps(_mm256_cvtepu8_epi32(bytes)), _mm256_set1_ps(d_dx));
}
#endif

/* Q4_K, 144 bytes: f16 d | f16 dmin | u8 scales[12] | u8 qs[128]; per 64 elements the
 * low nibbles of 32 bytes are sub-block 2k and the high nibbles sub-block 2k+1;
 * value = d * sc * q - dmin * m. */
static inline void unpack_q4_k(const uint8_t *b, int16_t *w, float *s, float *c) {
    const float d = rd_f16(b), dmin = rd_f16(b + 2);
    const uint8_t *scales = b + 4, *q = b + 16;
    for (int j = 0; j < 4; j++, q += 32) {
        int sc0, m0, sc1, m1;
        k4_scale_min(2 * j, scales, &sc0, &m0);
        k4_scale_min(2 * j + 1, scales, &sc1, &m1);
        for (int l = 0; l < 32; l++) {
            w[64 * j + l] = (int16_t)(sc0 * (q[l] & 0xF));
            w[64 * j + 32 + l] = (int16_t)(sc1 * (q[l] >> 4));
        }
        c[4 * j] = c[4 * j + 1] = -dmin * (float)m0;
        c[4 * j + 2] = c[4 * j + 3] = -dmin * (float)m1;
    }
    for (int i = 0; i < 8; i++) s[i] = d;
}

/* Q5_K, 176 bytes: f16 d | f16 dmin | u8 scales[12] | u8 qh[32] | u8 qs[128]; as Q4_K
 * with a 5th bit from qh (bits 2k and 2k+1 for the k-th group of 64). */
static inline void unpack_q5_k(const uint8_t *b, int16_t *w, float *s, float *c) {
    const float d = rd_f16(b), dmin = rd_f16(b + 2);
    const uint8_t *scales = b + 4, *qh = b + 16, *q = b + 48;
    for (int j = 0; j < 4; j++, q += 32) {
        int sc0, m0, sc1, m1;
        k4_scale_min(2 * j, scales, &sc0, &m0);
        k4_scale_min(2 * j + 1, scales, &sc1, &m1);
        for (int l = 0; l < 32; l++) {
            w[64 * j + l] = (int16_t)(sc0 * ((q[l] & 0xF) | (((qh[l] >> (2 * j)) & 1) << 4)));
            w[64 * j + 32 + l] = (int16_t)(sc1 * ((q[l] >> 4) | (((qh[l] >> (2 * j + 1)) & 1) << 4)));
        }
        c[4 * j] = c[4 * j + 1] = -dmin * (float)m0;
        c[4 * j + 2] = c[4 * j + 3] = -dmin * (float)m1;
    }
    for (int i = 0; i < 8; i++) s[i] = d;
}

/* Q6_K, 210 bytes: u8 ql[128] (low 4 bits) | u8 qh[64] (high 2 bits) | i8 scales[16] | f16 d;
 * per 128 elements, element l (+32, +64, +96) takes nibble/bit-pair k of ql/qh; q - 32. */
static inline void unpack_q6_k(const uint8_t *b, int16_t *w, float *s, float *c) {
    const uint8_t *ql = b, *qh = b + 128;
    const int8_t *sc = (const int8_t *)(b + 192);
    const float d = rd_f16(b + 208);
    for (int n = 0; n < 2; n++, ql += 64, qh += 32, sc += 8, w += 128)
        for (int l = 0; l < 32; l++) {
            const int is = l / 16;
            const int q1 = ((ql[l] & 0xF) | (((qh[l] >> 0) & 3) << 4)) - 32;
            const int q2 = ((ql[l + 32] & 0xF) | (((qh[l] >> 2) & 3) << 4)) - 32;
            const int q3 = ((ql[l] >> 4) | (((qh[l] >> 4) & 3) << 4)) - 32;
            const int q4 = ((ql[l + 32] >> 4) | (((qh[l] >> 6) & 3) << 4)) - 32;
            w[l] = (int16_t)(sc[is] * q1);
            w[l + 32] = (int16_t)(sc[is + 2] * q2);
            w[l + 64] = (int16_t)(sc[is + 4] * q3);
            w[l + 96] = (int16_t)(sc[is + 6] * q4);
        }
    for (int i = 0; i < 8; i++) s[i] = d;
    for (int i = 0; i < 16; i++) c[i] = 0.0f;
}

/* One block of 32 at blk against activations from element i0: the odd last block
 * of a row, which the SIMD kernels that step over pairs of blocks leave over. */
static inline float block32_dot(void (*unpack)(const uint8_t *, int16_t *, float *, float *), const uint8_t *blk,
                                const struct rwkv_xq *x, int64_t i0) {
    int16_t w[32];
    float s[8], c[16];
    unpack(blk, w, s, c);
    int32_t dot = 0;
    for (int j = 0; j < 32; j++) dot += (int32_t)w[j] * x->q[i0 + j];
    return s[0] * x->d[i0 / 32] * (float)dot + c[0] * x->sum16[i0 / 16] + c[1] * x->sum16[i0 / 16 + 1];
}

#endif
