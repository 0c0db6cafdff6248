/* qdot_avx2.c — GEMV kernels for the K types, AVX2 + FMA + F16C (the block-32 types, with one
 * integer per block and a panel GEMM, are in q32_avx2.c).
 *
 * The same scheme as qdot_avx512.c at 256 bits: packed weights widen to int16 in
 * registers (16 lanes per ymm), vpmaddwd against the 15-bit activations, f32 scales
 * per block or sub-block. AVX2 has no mask registers, so the 5th bits of Q5 types
 * are expanded with a compare against per-lane bit masks.
 */
#if defined(__x86_64__) && defined(__GNUC__)
#pragma GCC target("avx2,fma,f16c")
#include <immintrin.h>

#include "qdot.h"
#include "unpack.h"

#define PREFETCH_AHEAD 2048

static inline float hsum8(__m256 v) {
    __m128 s = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
    s = _mm_add_ps(s, _mm_movehl_ps(s, s));
    s = _mm_add_ss(s, _mm_movehdup_ps(s));
    return _mm_cvtss_f32(s);
}

static inline __m256i madd16(__m256i w, const int16_t *q) {
    return _mm256_madd_epi16(w, _mm256_loadu_si256((const __m256i *)q));
}

/* Tokens per pass of the GEMMs: the weights of each block are widened once for them and
 * every token runs the operations it runs alone (so the GEMV, tb = 1, and the GEMM agree
 * to the bit). Two, as 16 ymm registers hold two tokens' accumulators beside the widened
 * weights. */
#define QTB 2

/* ---------------------------------------------------------- Q4_K, Q5_K -- */

static inline __attribute__((always_inline)) void gemm_q45k(const void *w, size_t rb, const struct rwkv_xq *x,
                                                           float *y, int64_t ys, int64_t nr, int64_t nc, const int tb,
                                                           const int BB, const int QS, const int QH) {
    const int64_t nsb = nc / 256;
    const __m256i low4 = _mm256_set1_epi16(0x0f), sixteen = _mm256_set1_epi16(16);
    float fs[QTB][8] __attribute__((aligned(32)));
    for (int64_t r = 0; r < nr; r++) {
        const uint8_t *row = (const uint8_t *)w + (size_t)r * rb;
        __m256 acc[QTB][4], side[QTB];
        for (int k = 0; k < tb; k++) {
            for (int a = 0; a < 4; a++) acc[k][a] = _mm256_setzero_ps();
            side[k] = _mm256_setzero_ps();
        }
        for (int64_t sb = 0; sb < nsb; sb++) {
            const uint8_t *blk = row + sb * BB;
            _mm_prefetch((const char *)blk + PREFETCH_AHEAD, _MM_HINT_T0);
            _mm_prefetch((const char *)blk + PREFETCH_AHEAD + 64, _MM_HINT_T0);
            _mm_prefetch((const char *)blk + PREFETCH_AHEAD + 128, _MM_HINT_T0);
            for (int k = 0; k < tb; k++)
                _mm256_store_ps(fs[k], k4_scales_f32(k4_superblock(blk, x[k].sum32 + sb * 8, &side[k]),
                                                     rd_f16(blk) * x[k].d[sb]));
            for (int j = 0; j < 4; j++) {
                const uint8_t *qs = blk + QS + 32 * j;
                __m256i wa = _mm256_cvtepu8_epi16(_mm_loadu_si128((const __m128i *)qs));
                __m256i wb = _mm256_cvtepu8_epi16(_mm_loadu_si128((const __m128i *)(qs + 16)));
                __m256i la = _mm256_and_si256(wa, low4), lb = _mm256_and_si256(wb, low4);
                __m256i ha = _mm256_srli_epi16(wa, 4), hb = _mm256_srli_epi16(wb, 4);
                if (QH) {
                    __m256i qa = _mm256_cvtepu8_epi16(_mm_loadu_si128((const __m128i *)(blk + QH)));
                    __m256i qb = _mm256_cvtepu8_epi16(_mm_loadu_si128((const __m128i *)(blk + QH + 16)));
                    const __m256i bl = _mm256_set1_epi16((short)(1 << (2 * j))), bh = _mm256_set1_epi16((short)(2 << (2 * j)));
                    la = _mm256_add_epi16(la, _mm256_and_si256(_mm256_cmpeq_epi16(_mm256_and_si256(qa, bl), bl), sixteen));
                    lb = _mm256_add_epi16(lb, _mm256_and_si256(_mm256_cmpeq_epi16(_mm256_and_si256(qb, bl), bl), sixteen));
                    ha = _mm256_add_epi16(ha, _mm256_and_si256(_mm256_cmpeq_epi16(_mm256_and_si256(qa, bh), bh), sixteen));
                    hb = _mm256_add_epi16(hb, _mm256_and_si256(_mm256_cmpeq_epi16(_mm256_and_si256(qb, bh), bh), sixteen));
                }
                for (int k = 0; k < tb; k++) {
                    const int16_t *qj = x[k].q + sb * 256 + 64 * j;
                    __m256i plo = _mm256_add_epi32(madd16(la, qj), madd16(lb, qj + 16));
                    __m256i phi = _mm256_add_epi32(madd16(ha, qj + 32), madd16(hb, qj + 48));
                    acc[k][(2 * j) & 3] =
                        _mm256_fmadd_ps(_mm256_cvtepi32_ps(plo), _mm256_set1_ps(fs[k][2 * j]), acc[k][(2 * j) & 3]);
                    acc[k][(2 * j + 1) & 3] = _mm256_fmadd_ps(_mm256_cvtepi32_ps(phi), _mm256_set1_ps(fs[k][2 * j + 1]),
                                                              acc[k][(2 * j + 1) & 3]);
                }
            }
        }
        for (int k = 0; k < tb; k++)
            y[k * ys + r] = hsum8(_mm256_add_ps(_mm256_add_ps(acc[k][0], acc[k][1]), _mm256_add_ps(acc[k][2], acc[k][3]))) -
                            hsum8(side[k]);
    }
}


/* ---------------------------------------------------------------- Q6_K -- */

static inline __attribute__((always_inline)) void gemm_q6k(const void *w, size_t rb, const struct rwkv_xq *x,
                                                          float *y, int64_t ys, int64_t nr, int64_t nc, const int tb) {
    const int64_t nsb = nc / 256;
    const __m256i low4 = _mm256_set1_epi8(0x0f), three = _mm256_set1_epi8(3), b32 = _mm256_set1_epi8(32);
    for (int64_t r = 0; r < nr; r++) {
        const uint8_t *row = (const uint8_t *)w + (size_t)r * rb;
        __m256 acc[QTB][4];
        for (int k = 0; k < tb; k++)
            for (int a = 0; a < 4; a++) acc[k][a] = _mm256_setzero_ps();
        for (int64_t sb = 0; sb < nsb; sb++) {
            const uint8_t *blk = row + sb * 210;
            _mm_prefetch((const char *)blk + PREFETCH_AHEAD, _MM_HINT_T0);
            _mm_prefetch((const char *)blk + PREFETCH_AHEAD + 64, _MM_HINT_T0);
            _mm_prefetch((const char *)blk + PREFETCH_AHEAD + 128, _MM_HINT_T0);
            _mm_prefetch((const char *)blk + PREFETCH_AHEAD + 192, _MM_HINT_T0);
            const float dw = rd_f16(blk + 208);
            const int8_t *sc = (const int8_t *)(blk + 192);
            for (int h = 0; h < 2; h++) {
                const uint8_t *ql = blk + 64 * h;
                __m256i qh = _mm256_loadu_si256((const __m256i *)(blk + 128 + 32 * h));
                /* four 32-element planes: (ql[0..31] & 15 | qh bits 0-1), (ql[32..63] & 15 | bits 2-3),
                 * (ql[0..31] >> 4 | bits 4-5), (ql[32..63] >> 4 | bits 6-7) */
                __m256i l0 = _mm256_loadu_si256((const __m256i *)ql), l1 = _mm256_loadu_si256((const __m256i *)(ql + 32));
                __m256i v[4];
                v[0] = _mm256_or_si256(_mm256_and_si256(l0, low4), _mm256_slli_epi16(_mm256_and_si256(qh, three), 4));
                v[1] = _mm256_or_si256(_mm256_and_si256(l1, low4),
                                       _mm256_slli_epi16(_mm256_and_si256(_mm256_srli_epi16(qh, 2), three), 4));
                v[2] = _mm256_or_si256(_mm256_and_si256(_mm256_srli_epi16(l0, 4), low4),
                                       _mm256_slli_epi16(_mm256_and_si256(_mm256_srli_epi16(qh, 4), three), 4));
                v[3] = _mm256_or_si256(_mm256_and_si256(_mm256_srli_epi16(l1, 4), low4),
                                       _mm256_slli_epi16(_mm256_and_si256(_mm256_srli_epi16(qh, 6), three), 4));
                for (int j = 0; j < 4; j++) {
                    const __m256i vj = _mm256_sub_epi8(v[j], b32);
                    const __m256i a = _mm256_cvtepi8_epi16(_mm256_castsi256_si128(vj));
                    const __m256i b = _mm256_cvtepi8_epi16(_mm256_extracti128_si256(vj, 1));
                    const int is = 8 * h + 2 * j;
                    for (int k = 0; k < tb; k++) {
                        const float d = dw * x[k].d[sb];
                        const int16_t *qk = x[k].q + sb * 256 + 128 * h + 32 * j;
                        acc[k][(2 * j) & 3] = _mm256_fmadd_ps(_mm256_cvtepi32_ps(madd16(a, qk)), _mm256_set1_ps(d * sc[is]),
                                                              acc[k][(2 * j) & 3]);
                        acc[k][(2 * j + 1) & 3] = _mm256_fmadd_ps(_mm256_cvtepi32_ps(madd16(b, qk + 16)),
                                                                  _mm256_set1_ps(d * sc[is + 1]), acc[k][(2 * j + 1) & 3]);
                    }
                }
            }
        }
        for (int k = 0; k < tb; k++)
            y[k * ys + r] = hsum8(_mm256_add_ps(_mm256_add_ps(acc[k][0], acc[k][1]), _mm256_add_ps(acc[k][2], acc[k][3])));
    }
}

/* ---------------------------------------------------------- Q2_K, Q3_K -- */

/* Element 128n + 32j + l is bits 2j..2j+1 of qs[32n + l]; a ymm of 16 int16 lanes is
 * exactly one 16-element sub-block, so each vpmaddwd gets one broadcast scale. */

/* Q2_K, 84 bytes: scales[16] (low 4 bits scale, high 4 bits min) | qs[64] | f16 d | f16 dmin;
 * value = d * sc * u - dmin * m, mins through sum16(x).
 * Q3_K (Q3), 110 bytes: hmask[32] (bit 4n+j of byte l clear: minus 4) | qs[64] | scales[12] |
 * f16 d; value = d * sc * (u - 4 * !hbit). */
static inline __attribute__((always_inline)) void gemm_q23k(const void *w, size_t rb, const struct rwkv_xq *x,
                                                           float *y, int64_t ys, int64_t nr, int64_t nc, const int tb,
                                                           const int Q3) {
    const int64_t nsb = nc / 256;
    const int BB = Q3 ? 110 : 84, QS = Q3 ? 32 : 16;
    const __m256i three = _mm256_set1_epi16(3), four = _mm256_set1_epi16(4), zero = _mm256_setzero_si256();
    float f[QTB][16];
    int sc[16];
    for (int64_t r = 0; r < nr; r++) {
        const uint8_t *row = (const uint8_t *)w + (size_t)r * rb;
        __m256 acc[QTB][4];
        float side[QTB];
        for (int k = 0; k < tb; k++) {
            for (int a = 0; a < 4; a++) acc[k][a] = _mm256_setzero_ps();
            side[k] = 0.0f;
        }
        for (int64_t sb = 0; sb < nsb; sb++) {
            const uint8_t *blk = row + sb * BB;
            _mm_prefetch((const char *)blk + PREFETCH_AHEAD, _MM_HINT_T0);
            _mm_prefetch((const char *)blk + PREFETCH_AHEAD + 64, _MM_HINT_T0);
            if (Q3) {
                q3_k_scales(blk + 96, sc);
                for (int k = 0; k < tb; k++) {
                    const float d = rd_f16(blk + 108) * x[k].d[sb];
                    for (int i = 0; i < 16; i++) f[k][i] = d * (float)sc[i];
                }
            } else {
                const float dmin = rd_f16(blk + 82);
                for (int k = 0; k < tb; k++) {
                    const float d = rd_f16(blk + 80) * x[k].d[sb];
                    for (int i = 0; i < 16; i++) {
                        f[k][i] = d * (float)(blk[i] & 15);
                        side[k] += dmin * (float)(blk[i] >> 4) * x[k].sum16[sb * 16 + i];
                    }
                }
            }
            const __m256i h0 = Q3 ? _mm256_cvtepu8_epi16(_mm_loadu_si128((const __m128i *)blk)) : zero;
            const __m256i h1 = Q3 ? _mm256_cvtepu8_epi16(_mm_loadu_si128((const __m128i *)(blk + 16))) : zero;
            for (int n = 0; n < 2; n++) {
                const uint8_t *qs = blk + QS + 32 * n;
                __m256i b0 = _mm256_cvtepu8_epi16(_mm_loadu_si128((const __m128i *)qs));
                __m256i b1 = _mm256_cvtepu8_epi16(_mm_loadu_si128((const __m128i *)(qs + 16)));
                for (int j = 0; j < 4; j++) {
                    const int is = 8 * n + 2 * j;
                    __m256i v0 = _mm256_and_si256(_mm256_srli_epi16(b0, 2 * j), three);
                    __m256i v1 = _mm256_and_si256(_mm256_srli_epi16(b1, 2 * j), three);
                    if (Q3) {
                        const __m256i bit = _mm256_set1_epi16((short)(1 << (4 * n + j)));
                        v0 = _mm256_sub_epi16(v0, _mm256_and_si256(_mm256_cmpeq_epi16(_mm256_and_si256(h0, bit), zero), four));
                        v1 = _mm256_sub_epi16(v1, _mm256_and_si256(_mm256_cmpeq_epi16(_mm256_and_si256(h1, bit), zero), four));
                    }
                    for (int k = 0; k < tb; k++) {
                        const int16_t *qj = x[k].q + sb * 256 + 128 * n + 32 * j;
                        acc[k][(2 * j) & 3] = _mm256_fmadd_ps(_mm256_cvtepi32_ps(madd16(v0, qj)), _mm256_set1_ps(f[k][is]),
                                                              acc[k][(2 * j) & 3]);
                        acc[k][(2 * j + 1) & 3] = _mm256_fmadd_ps(_mm256_cvtepi32_ps(madd16(v1, qj + 16)),
                                                                  _mm256_set1_ps(f[k][is + 1]), acc[k][(2 * j + 1) & 3]);
                    }
                }
            }
        }
        for (int k = 0; k < tb; k++) {
            const float s = hsum8(_mm256_add_ps(_mm256_add_ps(acc[k][0], acc[k][1]), _mm256_add_ps(acc[k][2], acc[k][3])));
            y[k * ys + r] = Q3 ? s : s - side[k];
        }
    }
}

static inline __attribute__((always_inline)) void gemm_q2k(const void *w, size_t rb, const struct rwkv_xq *x,
                                                          float *y, int64_t ys, int64_t nr, int64_t nc, const int tb) {
    gemm_q23k(w, rb, x, y, ys, nr, nc, tb, 0);
}
static inline __attribute__((always_inline)) void gemm_q3k(const void *w, size_t rb, const struct rwkv_xq *x,
                                                          float *y, int64_t ys, int64_t nr, int64_t nc, const int tb) {
    gemm_q23k(w, rb, x, y, ys, nr, nc, tb, 1);
}

/* ------------------------------------------------- entry points by type -- */

RWKV_DEFINE_QDOT_K_TYPES(avx2, QTB)
#endif
