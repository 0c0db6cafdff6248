/* qdot_avx512.c — GEMV kernels for quantized weights, AVX-512 (F, BW, VL, DQ).
 *
 * Weights stay packed in memory and are widened to int16 in registers; activations
 * come as 15-bit integers (struct rwkv_xq), so each 32 weights cost one vpmaddwd
 * and scales are applied in f32 once per block (or once per sub-block for K
 * types). The maths is unpack.h's; the scalar twins in dot_scalar.c are the
 * reference these kernels are tested against.
 */
#if defined(__x86_64__) && defined(__GNUC__)
#pragma GCC target("avx512f,avx512bw,avx512vl,avx512dq,avx2,fma,f16c")
#include <immintrin.h>

#include "qdot.h"
#include "unpack.h"

#define PREFETCH_AHEAD 2048 /* bytes: rows are streamed sequentially */

/* 16 f16 values held in the low halves of 32-bit lanes, as f32. */
static inline __m512 f16x16_to_f32(__m512i lanes32) {
    return _mm512_cvtph_ps(_mm512_cvtepi32_epi16(lanes32));
}

/* Tokens per pass of the GEMMs: each block's weights are widened once for them and every
 * token runs the operations it runs alone, so the GEMV (tb = 1) and the GEMM agree to the
 * bit. */
#define QTB 4

/* ---------------------------------------------------------------- Q8_0 -- */

static inline __attribute__((always_inline)) void gemm_q8_0(const void *w, size_t rb, const struct rwkv_xq *x,
                                                           float *y, int64_t ys, int64_t nr, int64_t nc, const int tb) {
    const int64_t nb = nc / 32;
    const __m512i vidx = _mm512_mullo_epi32(_mm512_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15),
                                            _mm512_set1_epi32(34));
    float f[QTB][16] __attribute__((aligned(64)));
    for (int64_t r = 0; r < nr; r++) {
        const uint8_t *row = (const uint8_t *)w + (size_t)r * rb;
        /* four accumulators: one FMA chain would be bound by FMA latency, not bandwidth */
        __m512 acc[QTB][4];
        for (int k = 0; k < tb; k++)
            for (int a = 0; a < 4; a++) acc[k][a] = _mm512_setzero_ps();
        for (int64_t b0 = 0; b0 < nb; b0 += 16) {
            const int64_t n = nb - b0 < 16 ? nb - b0 : 16;
            const __mmask16 m = (__mmask16)((1u << n) - 1u);
            const uint8_t *base = row + b0 * 34;
            __m512i g = _mm512_mask_i32gather_epi32(_mm512_setzero_si512(), m, vidx, base, 1);
            __m512 dv = f16x16_to_f32(_mm512_and_si512(g, _mm512_set1_epi32(0xffff)));
            for (int k = 0; k < tb; k++) _mm512_store_ps(f[k], _mm512_mul_ps(dv, _mm512_maskz_loadu_ps(m, x[k].d + b0)));
#define Q8_0_BLOCK(b, a)                                                                              \
    do {                                                                                              \
        const uint8_t *blk = base + (b) * 34;                                                         \
        _mm_prefetch((const char *)blk + PREFETCH_AHEAD, _MM_HINT_T0);                                \
        const __m512i wv = _mm512_cvtepi8_epi16(_mm256_loadu_si256((const __m256i *)(blk + 2)));      \
        for (int k = 0; k < tb; k++) {                                                                \
            const __m512i p = _mm512_madd_epi16(wv, _mm512_loadu_si512(x[k].q + (b0 + (b)) * 32));    \
            acc[k][a] = _mm512_fmadd_ps(_mm512_cvtepi32_ps(p), _mm512_set1_ps(f[k][b]), acc[k][a]);   \
        }                                                                                             \
    } while (0)
            int64_t b = 0;
            for (; b + 4 <= n; b += 4) {
                Q8_0_BLOCK(b, 0);
                Q8_0_BLOCK(b + 1, 1);
                Q8_0_BLOCK(b + 2, 2);
                Q8_0_BLOCK(b + 3, 3);
            }
            for (; b < n; b++) Q8_0_BLOCK(b, 0);
#undef Q8_0_BLOCK
        }
        for (int k = 0; k < tb; k++)
            y[k * ys + r] =
                _mm512_reduce_add_ps(_mm512_add_ps(_mm512_add_ps(acc[k][0], acc[k][1]), _mm512_add_ps(acc[k][2], acc[k][3])));
    }
}

/* ------------------------------------------------ Q4_0, Q4_1, Q5_0, Q5_1 -- */

/* Two blocks A, B per step: their 16 packed bytes each widen into one zmm of 32
 * int16 lanes; `& 15` gives elements 0..15 of A and B, `>> 4` elements 16..31, which
 * is exactly the pair order of x->qp. vpmaddwd then leaves A's sums in lanes 0..7
 * and B's in lanes 8..15, scaled by one permute of the 16 block scales.
 * HAS_M: value = d*q + m (Q4_1, Q5_1); else value = d*(q - BIAS) (Q4_0: 8, Q5_0: 16),
 * with the bias applied once per block through the integer sum of x. */
static inline __attribute__((always_inline)) void gemm_q4q5(const void *w, size_t rb, const struct rwkv_xq *x,
                                                           float *y, int64_t ys, int64_t nr, int64_t nc, const int tb,
                                                           const int BB, const int QS, const int QH, const int HAS_M,
                                                           const int BIAS,
                                                           void (*unpack)(const uint8_t *, int16_t *, float *,
                                                                          float *)) {
    const int64_t nb = nc / 32, npairs = nb / 2;
    const __m512i vidx = _mm512_mullo_epi32(_mm512_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15),
                                            _mm512_set1_epi32(BB));
    const __m512i low4 = _mm512_set1_epi16(0x0f), sixteen = _mm512_set1_epi16(16);
    const __m512i sel = _mm512_setr_epi32(0, 0, 0, 0, 0, 0, 0, 0, 1, 1, 1, 1, 1, 1, 1, 1);
    for (int64_t r = 0; r < nr; r++) {
        const uint8_t *row = (const uint8_t *)w + (size_t)r * rb;
        __m512 acc[QTB][2], side[QTB];
        for (int k = 0; k < tb; k++) acc[k][0] = acc[k][1] = side[k] = _mm512_setzero_ps();
        for (int64_t b0 = 0; b0 < 2 * npairs; b0 += 16) {
            const int64_t n = 2 * npairs - b0 < 16 ? 2 * npairs - b0 : 16;
            const __mmask16 m = (__mmask16)((1u << n) - 1u);
            const uint8_t *base = row + b0 * BB;
            __m512i g = _mm512_mask_i32gather_epi32(_mm512_setzero_si512(), m, vidx, base, 1);
            const __m512 dv = f16x16_to_f32(_mm512_and_si512(g, _mm512_set1_epi32(0xffff)));
            const __m512 mv = HAS_M ? f16x16_to_f32(_mm512_srli_epi32(g, 16)) : _mm512_setzero_ps();
            __m512 f[QTB];
            for (int k = 0; k < tb; k++) {
                f[k] = _mm512_mul_ps(dv, _mm512_maskz_loadu_ps(m, x[k].d + b0));
                if (HAS_M) side[k] = _mm512_fmadd_ps(mv, _mm512_maskz_loadu_ps(m, x[k].sum32 + b0), side[k]);
                else side[k] = _mm512_fmadd_ps(f[k], _mm512_cvtepi32_ps(_mm512_maskz_loadu_epi32(m, x[k].qsum + b0)), side[k]);
            }
            for (int64_t i = 0; i < n / 2; i++) {
                const int ai = (int)(i & 1);
                const uint8_t *a = base + 2 * i * BB, *bb = a + BB;
                _mm_prefetch((const char *)a + PREFETCH_AHEAD, _MM_HINT_T0);
                __m256i packed = _mm256_inserti128_si256(
                    _mm256_castsi128_si256(_mm_loadu_si128((const __m128i *)(a + QS))),
                    _mm_loadu_si128((const __m128i *)(bb + QS)), 1);
                __m512i wide = _mm512_cvtepu8_epi16(packed);
                __m512i lo = _mm512_and_si512(wide, low4), hi = _mm512_srli_epi16(wide, 4);
                if (QH) {
                    uint32_t ha, hb;
                    memcpy(&ha, a + QH, 4);
                    memcpy(&hb, bb + QH, 4);
                    __mmask32 mlo = (ha & 0xffffu) | (hb << 16), mhi = (ha >> 16) | (hb & 0xffff0000u);
                    lo = _mm512_mask_add_epi16(lo, mlo, lo, sixteen);
                    hi = _mm512_mask_add_epi16(hi, mhi, hi, sixteen);
                }
                const __m512i pick = _mm512_add_epi32(sel, _mm512_set1_epi32((int)(2 * i)));
                for (int k = 0; k < tb; k++) {
                    const int16_t *qp = x[k].qp + (b0 + 2 * i) * 32;
                    __m512i p = _mm512_add_epi32(_mm512_madd_epi16(lo, _mm512_loadu_si512(qp)),
                                                 _mm512_madd_epi16(hi, _mm512_loadu_si512(qp + 32)));
                    __m512 fk = _mm512_permutexvar_ps(pick, f[k]);
                    if (ai) acc[k][1] = _mm512_fmadd_ps(_mm512_cvtepi32_ps(p), fk, acc[k][1]);
                    else acc[k][0] = _mm512_fmadd_ps(_mm512_cvtepi32_ps(p), fk, acc[k][0]);
                }
            }
        }
        for (int k = 0; k < tb; k++) {
            float out = _mm512_reduce_add_ps(_mm512_add_ps(acc[k][0], acc[k][1])) +
                        (HAS_M ? 1.0f : -(float)BIAS) * _mm512_reduce_add_ps(side[k]);
            if (nb & 1) out += block32_dot(unpack, row + (nb - 1) * BB, &x[k], (nb - 1) * 32);
            y[k * ys + r] = out;
        }
    }
}


/* ---------------------------------------------------------- Q4_K, Q5_K -- */

/* Per 64 elements, 32 packed bytes widen to 32 int16 lanes: `& 15` is sub-block 2j
 * (elements 64j..64j+31 in natural order), `>> 4` is sub-block 2j+1. Each sub-block's
 * vpmaddwd sums are scaled in f32 by d * dx * sc. Mins go through sum32(x). */
static inline __attribute__((always_inline)) void gemm_q45k(const void *w, size_t rb, const struct rwkv_xq *x,
                                                           float *y, int64_t ys, int64_t nr, int64_t nc, const int tb,
                                                           const int BB, const int QS, const int QH) {
    const int64_t nsb = nc / 256;
    const __m512i low4 = _mm512_set1_epi16(0x0f), sixteen = _mm512_set1_epi16(16);
    float fs[QTB][8] __attribute__((aligned(32)));
    for (int64_t r = 0; r < nr; r++) {
        const uint8_t *row = (const uint8_t *)w + (size_t)r * rb;
        __m512 acc[QTB][4];
        __m256 side[QTB];
        for (int k = 0; k < tb; k++) {
            for (int a = 0; a < 4; a++) acc[k][a] = _mm512_setzero_ps();
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
            __m512i qh = QH ? _mm512_cvtepu8_epi16(_mm256_loadu_si256((const __m256i *)(blk + QH)))
                            : _mm512_setzero_si512();
            for (int j = 0; j < 4; j++) {
                __m512i wide = _mm512_cvtepu8_epi16(_mm256_loadu_si256((const __m256i *)(blk + QS + 32 * j)));
                __m512i lo = _mm512_and_si512(wide, low4), hi = _mm512_srli_epi16(wide, 4);
                if (QH) {
                    lo = _mm512_mask_add_epi16(lo, _mm512_test_epi16_mask(qh, _mm512_set1_epi16((short)(1 << (2 * j)))),
                                               lo, sixteen);
                    hi = _mm512_mask_add_epi16(hi,
                                               _mm512_test_epi16_mask(qh, _mm512_set1_epi16((short)(2 << (2 * j)))),
                                               hi, sixteen);
                }
                for (int k = 0; k < tb; k++) {
                    const int16_t *q = x[k].q + sb * 256;
                    __m512i plo = _mm512_madd_epi16(lo, _mm512_loadu_si512(q + 64 * j));
                    __m512i phi = _mm512_madd_epi16(hi, _mm512_loadu_si512(q + 64 * j + 32));
                    acc[k][(2 * j) & 3] =
                        _mm512_fmadd_ps(_mm512_cvtepi32_ps(plo), _mm512_set1_ps(fs[k][2 * j]), acc[k][(2 * j) & 3]);
                    acc[k][(2 * j + 1) & 3] = _mm512_fmadd_ps(_mm512_cvtepi32_ps(phi), _mm512_set1_ps(fs[k][2 * j + 1]),
                                                              acc[k][(2 * j + 1) & 3]);
                }
            }
        }
        for (int k = 0; k < tb; k++) {
            __m128 s4 = _mm_add_ps(_mm256_castps256_ps128(side[k]), _mm256_extractf128_ps(side[k], 1));
            s4 = _mm_add_ps(s4, _mm_movehl_ps(s4, s4));
            s4 = _mm_add_ss(s4, _mm_movehdup_ps(s4));
            y[k * ys + r] = _mm512_reduce_add_ps(_mm512_add_ps(_mm512_add_ps(acc[k][0], acc[k][1]),
                                                               _mm512_add_ps(acc[k][2], acc[k][3]))) -
                            _mm_cvtss_f32(s4);
        }
    }
}


/* ---------------------------------------------------------- Q2_K, Q3_K -- */

/* Both store 2 low bits per element in four bit-planes of 32 bytes per 128 elements:
 * element 128n + 32j + l is bits 2j..2j+1 of qs[32n + l]. Widened to int16 once per
 * 128 elements, each plane is a shift and a mask; the 16 sub-blocks of 16 elements
 * have their own scales, applied in f32 by a permute (lanes 0..7 and 8..15 of each
 * vpmaddwd result are two sub-blocks). */
static inline __m512 pair_scale(__m512 f, int is) {
    const __m512i sel = _mm512_setr_epi32(0, 0, 0, 0, 0, 0, 0, 0, 1, 1, 1, 1, 1, 1, 1, 1);
    return _mm512_permutexvar_ps(_mm512_add_epi32(sel, _mm512_set1_epi32(is)), f);
}

/* Q2_K, 84 bytes: scales[16] (low 4 bits scale, high 4 bits min) | qs[64] | f16 d | f16 dmin. */
static inline __attribute__((always_inline)) void gemm_q2k(const void *w, size_t rb, const struct rwkv_xq *x,
                                                          float *y, int64_t ys, int64_t nr, int64_t nc, const int tb) {
    const int64_t nsb = nc / 256;
    const __m512i three = _mm512_set1_epi16(3);
    for (int64_t r = 0; r < nr; r++) {
        const uint8_t *row = (const uint8_t *)w + (size_t)r * rb;
        __m512 acc[QTB][4], side[QTB];
        for (int k = 0; k < tb; k++) {
            for (int a = 0; a < 4; a++) acc[k][a] = _mm512_setzero_ps();
            side[k] = _mm512_setzero_ps();
        }
        for (int64_t sb = 0; sb < nsb; sb++) {
            const uint8_t *blk = row + sb * 84;
            _mm_prefetch((const char *)blk + PREFETCH_AHEAD, _MM_HINT_T0);
            _mm_prefetch((const char *)blk + PREFETCH_AHEAD + 64, _MM_HINT_T0);
            __m512i sc = _mm512_cvtepu8_epi32(_mm_loadu_si128((const __m128i *)blk));
            const __m512 scf = _mm512_cvtepi32_ps(_mm512_and_si512(sc, _mm512_set1_epi32(15)));
            __m512 mins = _mm512_mul_ps(_mm512_cvtepi32_ps(_mm512_srli_epi32(sc, 4)), _mm512_set1_ps(rd_f16(blk + 82)));
            __m512 f[QTB];
            for (int k = 0; k < tb; k++) {
                f[k] = _mm512_mul_ps(scf, _mm512_set1_ps(rd_f16(blk + 80) * x[k].d[sb]));
                side[k] = _mm512_fmadd_ps(mins, _mm512_loadu_ps(x[k].sum16 + sb * 16), side[k]);
            }
            for (int n = 0; n < 2; n++) {
                __m512i bits = _mm512_cvtepu8_epi16(_mm256_loadu_si256((const __m256i *)(blk + 16 + 32 * n)));
                for (int j = 0; j < 4; j++) {
                    __m512i v = _mm512_and_si512(_mm512_srli_epi16(bits, 2 * j), three);
                    for (int k = 0; k < tb; k++) {
                        __m512i p = _mm512_madd_epi16(v, _mm512_loadu_si512(x[k].q + sb * 256 + 128 * n + 32 * j));
                        acc[k][j] = _mm512_fmadd_ps(_mm512_cvtepi32_ps(p), pair_scale(f[k], 8 * n + 2 * j), acc[k][j]);
                    }
                }
            }
        }
        for (int k = 0; k < tb; k++)
            y[k * ys + r] = _mm512_reduce_add_ps(_mm512_add_ps(_mm512_add_ps(acc[k][0], acc[k][1]),
                                                               _mm512_add_ps(acc[k][2], acc[k][3]))) -
                            _mm512_reduce_add_ps(side[k]);
    }
}

/* The 16 six-bit Q3_K scales, minus their bias of 32, as f32. */
static inline __m512 q3_k_scales_f32(const uint8_t *blk) {
    __m512i s = _mm512_cvtepu8_epi32(q3_k_scales_biased(blk));
    return _mm512_cvtepi32_ps(_mm512_sub_epi32(s, _mm512_set1_epi32(32)));
}

/* Q3_K, 110 bytes: hmask[32] (bit 4n+j of byte l: the 3rd bit of element 128n+32j+l; clear
 * means minus 4) | qs[64] | scales[12] | f16 d. */
static inline __attribute__((always_inline)) void gemm_q3k(const void *w, size_t rb, const struct rwkv_xq *x,
                                                          float *y, int64_t ys, int64_t nr, int64_t nc, const int tb) {
    const int64_t nsb = nc / 256;
    const __m512i three = _mm512_set1_epi16(3), four = _mm512_set1_epi16(4);
    for (int64_t r = 0; r < nr; r++) {
        const uint8_t *row = (const uint8_t *)w + (size_t)r * rb;
        __m512 acc[QTB][4];
        for (int k = 0; k < tb; k++)
            for (int a = 0; a < 4; a++) acc[k][a] = _mm512_setzero_ps();
        for (int64_t sb = 0; sb < nsb; sb++) {
            const uint8_t *blk = row + sb * 110;
            _mm_prefetch((const char *)blk + PREFETCH_AHEAD, _MM_HINT_T0);
            _mm_prefetch((const char *)blk + PREFETCH_AHEAD + 64, _MM_HINT_T0);
            const __m512 scf = q3_k_scales_f32(blk);
            __m512 f[QTB];
            for (int k = 0; k < tb; k++) f[k] = _mm512_mul_ps(scf, _mm512_set1_ps(rd_f16(blk + 108) * x[k].d[sb]));
            __m512i hm = _mm512_cvtepu8_epi16(_mm256_loadu_si256((const __m256i *)blk));
            for (int n = 0; n < 2; n++) {
                __m512i bits = _mm512_cvtepu8_epi16(_mm256_loadu_si256((const __m256i *)(blk + 32 + 32 * n)));
                for (int j = 0; j < 4; j++) {
                    __m512i v = _mm512_and_si512(_mm512_srli_epi16(bits, 2 * j), three);
                    __mmask32 clear = _mm512_testn_epi16_mask(hm, _mm512_set1_epi16((short)(1 << (4 * n + j))));
                    v = _mm512_mask_sub_epi16(v, clear, v, four);
                    for (int k = 0; k < tb; k++) {
                        __m512i p = _mm512_madd_epi16(v, _mm512_loadu_si512(x[k].q + sb * 256 + 128 * n + 32 * j));
                        acc[k][j] = _mm512_fmadd_ps(_mm512_cvtepi32_ps(p), pair_scale(f[k], 8 * n + 2 * j), acc[k][j]);
                    }
                }
            }
        }
        for (int k = 0; k < tb; k++)
            y[k * ys + r] = _mm512_reduce_add_ps(_mm512_add_ps(_mm512_add_ps(acc[k][0], acc[k][1]),
                                                               _mm512_add_ps(acc[k][2], acc[k][3])));
    }
}

/* ---------------------------------------------------------------- Q6_K -- */

/* Per 128 elements: ql[0..63] as one zmm of bytes gives elements 0..63 (`& 15`) and
 * 64..127 (`>> 4`); qh[0..31] supplies bits 4..5 (pairs of bits, in four planes).
 * Values are made in bytes (0..63, minus 32), widened to int16, and each 32 lanes
 * (two 16-element sub-blocks with int8 scales) scaled by a permute of 16 floats. */
static inline __attribute__((always_inline)) void gemm_q6k(const void *w, size_t rb, const struct rwkv_xq *x,
                                                          float *y, int64_t ys, int64_t nr, int64_t nc, const int tb) {
    const int64_t nsb = nc / 256;
    const __m512i low4 = _mm512_set1_epi8(0x0f), three = _mm512_set1_epi8(3), b32 = _mm512_set1_epi8(32);
    const __m512i sel = _mm512_setr_epi32(0, 0, 0, 0, 0, 0, 0, 0, 1, 1, 1, 1, 1, 1, 1, 1);
    for (int64_t r = 0; r < nr; r++) {
        const uint8_t *row = (const uint8_t *)w + (size_t)r * rb;
        __m512 acc[QTB][4];
        for (int k = 0; k < tb; k++)
            for (int a = 0; a < 4; a++) acc[k][a] = _mm512_setzero_ps();
        for (int64_t sb = 0; sb < nsb; sb++) {
            const uint8_t *blk = row + sb * 210;
            _mm_prefetch((const char *)blk + PREFETCH_AHEAD, _MM_HINT_T0);
            _mm_prefetch((const char *)blk + PREFETCH_AHEAD + 64, _MM_HINT_T0);
            _mm_prefetch((const char *)blk + PREFETCH_AHEAD + 128, _MM_HINT_T0);
            _mm_prefetch((const char *)blk + PREFETCH_AHEAD + 192, _MM_HINT_T0);
            const __m512 scf = _mm512_cvtepi32_ps(_mm512_cvtepi8_epi32(_mm_loadu_si128((const __m128i *)(blk + 192))));
            __m512 f[QTB];
            for (int k = 0; k < tb; k++) f[k] = _mm512_mul_ps(scf, _mm512_set1_ps(rd_f16(blk + 208) * x[k].d[sb]));
            for (int h = 0; h < 2; h++) {
                __m512i ql = _mm512_loadu_si512(blk + 64 * h);
                __m256i qh = _mm256_loadu_si256((const __m256i *)(blk + 128 + 32 * h));
                /* high bits of elements 0..63 (planes 0, 1) and 64..127 (planes 2, 3) */
                __m512i qh01 = _mm512_inserti64x4(_mm512_castsi256_si512(qh), _mm256_srli_epi16(qh, 2), 1);
                __m512i h_lo = _mm512_slli_epi16(_mm512_and_si512(qh01, three), 4);
                __m512i h_hi = _mm512_slli_epi16(_mm512_and_si512(_mm512_srli_epi16(qh01, 4), three), 4);
                __m512i v_lo = _mm512_sub_epi8(_mm512_or_si512(_mm512_and_si512(ql, low4), h_lo), b32);
                __m512i v_hi = _mm512_sub_epi8(
                    _mm512_or_si512(_mm512_and_si512(_mm512_srli_epi16(ql, 4), low4), h_hi), b32);
                const __m512i parts[4] = {
                    _mm512_cvtepi8_epi16(_mm512_castsi512_si256(v_lo)), _mm512_cvtepi8_epi16(_mm512_extracti64x4_epi64(v_lo, 1)),
                    _mm512_cvtepi8_epi16(_mm512_castsi512_si256(v_hi)), _mm512_cvtepi8_epi16(_mm512_extracti64x4_epi64(v_hi, 1))};
                for (int j = 0; j < 4; j++) {
                    const __m512i pick = _mm512_add_epi32(sel, _mm512_set1_epi32(8 * h + 2 * j));
                    for (int k = 0; k < tb; k++) {
                        __m512i p = _mm512_madd_epi16(parts[j], _mm512_loadu_si512(x[k].q + sb * 256 + 128 * h + 32 * j));
                        acc[k][j] = _mm512_fmadd_ps(_mm512_cvtepi32_ps(p), _mm512_permutexvar_ps(pick, f[k]), acc[k][j]);
                    }
                }
            }
        }
        for (int k = 0; k < tb; k++)
            y[k * ys + r] = _mm512_reduce_add_ps(_mm512_add_ps(_mm512_add_ps(acc[k][0], acc[k][1]),
                                                               _mm512_add_ps(acc[k][2], acc[k][3])));
    }
}

/* ------------------------------------------------- entry points by type -- */

RWKV_DEFINE_QDOT_LEVEL(avx512, QTB)
RWKV_DEFINE_QDOT_TYPE(q8_0, avx512, QTB, gemm_q8_0)
#endif
