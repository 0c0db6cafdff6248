/* qdot_avx512vnni.c — the K types' GEMV kernels with byte-operand integer dot products, for
 * CPUs with AVX512-VNNI (Ice Lake, Zen 4 and later).
 *
 * The int16-operand kernels of qdot_avx512.c widen every weight to 16 bits and are
 * compute-bound on 4- and 5-bit types. Here weights stay bytes: the activations come
 * split into two int8 planes, q = 128 * hi + lo (struct rwkv_xq), and each 32 weight
 * bytes cost one dot product per plane over 32 lanes, with no widening. The integer
 * sums are exactly those of the int16 kernels and of the scalar twin; only the f32
 * scaling order differs. Unsigned weight bytes are required by both instructions, so
 * signed formats are offset (Q4_0: +8, Q5_0: +16, Q3_K: +4, Q6_K: +32) and
 * the offset is taken back once per block through the integer sums of q.
 *
 * The block-32 types have their own kernels (q32_avx512vnni.c), with one integer per block.
 *
 * K types use vpmaddubsw (u8 x s8 pairs to int16;
 * |2 * 63 * 128| < 2^15, so it never saturates) then vpdpwssd against a vector of the
 * sub-block scales, so scales cost nothing per product and a whole super-block sums in
 * int32. The int32 lane sums are bounded below 2^31 for every format (worst case Q6_K:
 * 16 * 63 * 16383 * 128 per 128 elements, hence its flush per half super-block); the
 * separate hi/lo accumulators may wrap, but modular addition makes 128 * hi + lo exact.
 *
 * 256-bit vectors: on Zen 4 a 512-bit op takes two 256-bit slots anyway, and on Intel
 * cores the 256-bit forms issue on two ports instead of one. AVX512-VL/BW provide the
 * 256-bit VNNI forms and byte masks. Mask registers are slow on Zen 4 (a vptestmb +
 * masked add costs more than shift, and, or), so they are used only where bits must
 * be spread from a bit field (Q5_0, Q5_1), where every other form measured slower.
 */
#if defined(__x86_64__) && defined(__GNUC__)
#pragma GCC target("avx512f,avx512bw,avx512vl,avx512dq,avx512vnni,avx2,fma,f16c")
#include <immintrin.h>
#include <string.h>

#include "qdot.h"
#include "qvnni.h"
#include "unpack.h"

#define PREFETCH_AHEAD 2048 /* bytes: rows are streamed sequentially */

/* 128 * hi + lo of two int32 accumulators, as f32. */
static inline __m256 planes_f32(__m256i hi, __m256i lo) {
    return _mm256_cvtepi32_ps(_mm256_add_epi32(_mm256_slli_epi32(hi, 7), lo));
}

/* ------------------------------------------------------------- K types -- */

/* Tokens per pass of every GEMM here: each step's weights are unpacked once for them. */
#define QTB 4

/* 32 weight bytes u against 32 activations (both planes) with int16 scales S per
 * pair of products: aH += S * (u . hi), aL += S * (u . lo). Callers alternate two
 * pairs of accumulators: one chain of dependent vpdpwssd per super-block would
 * bound the loop by its latency. */
static inline void k_group(__m256i u, const int8_t *xl, const int8_t *xh, __m256i S, __m256i *aL, __m256i *aH) {
    *aL = _mm256_dpwssd_epi32(*aL, _mm256_maddubs_epi16(u, _mm256_loadu_si256((const __m256i *)xl)), S);
    *aH = _mm256_dpwssd_epi32(*aH, _mm256_maddubs_epi16(u, _mm256_loadu_si256((const __m256i *)xh)), S);
}

/* Index vectors for vpermw: scale pair p (16-element sub-blocks 2p and 2p+1) as
 * int16 lanes [s_2p x 8, s_2p+1 x 8], the lane order of vpmaddubsw over 32 bytes. */
static inline __m256i pair_index(int p) {
    return _mm256_setr_epi16((short)(2 * p), (short)(2 * p), (short)(2 * p), (short)(2 * p), (short)(2 * p),
                             (short)(2 * p), (short)(2 * p), (short)(2 * p), (short)(2 * p + 1),
                             (short)(2 * p + 1), (short)(2 * p + 1), (short)(2 * p + 1), (short)(2 * p + 1),
                             (short)(2 * p + 1), (short)(2 * p + 1), (short)(2 * p + 1));
}

/* vpshufb indices that broadcast int16 lane s of a 128-bit lane. */
static inline __m256i scale_bytes(int s) { return _mm256_set1_epi16((short)(0x0202 * s + 0x0100)); }

/* Bit b of every byte of v moved to bit t, the other bits cleared (16-bit shifts: the
 * mask drops what crosses into the neighbouring byte). Plain ALU ops: on Zen 4 the
 * vptestmb + masked add that the obvious form takes cost 17% of Q5_K's speed. */
static inline __m256i bit_to(__m256i v, const int b, const int t) {
    const __m256i s = b > t ? _mm256_srli_epi16(v, b - t) : b < t ? _mm256_slli_epi16(v, t - b) : v;
    return _mm256_and_si256(s, _mm256_set1_epi8((char)(1 << t)));
}

/* Group j (64 elements) of a Q4_K/Q5_K super-block as unsigned bytes: sub-block 2j in *lo,
 * 2j + 1 in *hi, each with its fifth bit from qh for Q5_K. */
static inline __attribute__((always_inline)) void k45_weights(const uint8_t *blk, int j, const int QS, const int QH,
                                                             __m256i qh, __m256i *lo, __m256i *hi) {
    const __m256i low4 = _mm256_set1_epi8(0x0f);
    const __m256i v = _mm256_loadu_si256((const __m256i *)(blk + QS + 32 * j));
    *lo = _mm256_and_si256(v, low4);
    *hi = _mm256_and_si256(_mm256_srli_epi16(v, 4), low4);
    if (QH) {
        *lo = _mm256_or_si256(*lo, bit_to(qh, 2 * j, 4));
        *hi = _mm256_or_si256(*hi, bit_to(qh, 2 * j + 1, 4));
    }
}


/* Q4_K, Q5_K: per 64 elements 32 bytes of nibbles: `& 15` is sub-block 2j (natural
 * order), `>> 4` sub-block 2j+1; Q5_K's fifth bits are bits 2j, 2j+1 of qh[l]. The
 * mins' term goes through sum32(x) (as k4_superblock). tb tokens per pass (x[k], y + k * ys):
 * each super-block's scales, nibbles and fifth bits are unpacked once and every token runs
 * the operations it runs alone, so the GEMV (tb = 1) and the GEMM agree to the bit. */
static inline __attribute__((always_inline)) void gemm_q45k(const void *w, size_t rb, const struct rwkv_xq *x,
                                                           float *y, int64_t ys, int64_t nr, int64_t nc, const int tb,
                                                           const int BB, const int QS, const int QH) {
    const int64_t nsb = nc / 256;
    for (int64_t r = 0; r < nr; r++) {
        const uint8_t *row = (const uint8_t *)w + (size_t)r * rb;
        __m256 acc[QTB], side[QTB];
        for (int k = 0; k < tb; k++) acc[k] = side[k] = _mm256_setzero_ps();
        for (int64_t sb = 0; sb < nsb; sb++) {
            const uint8_t *blk = row + sb * BB;
            _mm_prefetch((const char *)blk + PREFETCH_AHEAD, _MM_HINT_T0);
            _mm_prefetch((const char *)blk + PREFETCH_AHEAD + 64, _MM_HINT_T0);
            _mm_prefetch((const char *)blk + PREFETCH_AHEAD + 128, _MM_HINT_T0);
            const __m128i bytes = k4_scales_mins(blk + 4);
            const __m256 md = _mm256_mul_ps(_mm256_cvtepi32_ps(_mm256_cvtepu8_epi32(_mm_srli_si128(bytes, 8))),
                                            _mm256_set1_ps(rd_f16(blk + 2)));
            /* the 8 scales as int16 in both 128-bit lanes: vpshufb then broadcasts one of them
             * (a lane-local shuffle, cheaper than vpermw on Zen 4) */
            const __m256i sc16 = _mm256_broadcastsi128_si256(_mm_cvtepu8_epi16(bytes));
            const __m256i qh = QH ? _mm256_loadu_si256((const __m256i *)(blk + QH)) : _mm256_setzero_si256();
            __m256i aL[QTB][2], aH[QTB][2];
            for (int k = 0; k < tb; k++) {
                side[k] = _mm256_fmadd_ps(md, _mm256_loadu_ps(x[k].sum32 + sb * 8), side[k]);
                aL[k][0] = aL[k][1] = aH[k][0] = aH[k][1] = _mm256_setzero_si256();
            }
            for (int j = 0; j < 4; j++) {
                __m256i ulo, uhi;
                k45_weights(blk, j, QS, QH, qh, &ulo, &uhi);
                const __m256i s0 = _mm256_shuffle_epi8(sc16, scale_bytes(2 * j));
                const __m256i s1 = _mm256_shuffle_epi8(sc16, scale_bytes(2 * j + 1));
                for (int k = 0; k < tb; k++) {
                    const int8_t *xl = x[k].lo + sb * 256 + 64 * j, *xh = x[k].hi + sb * 256 + 64 * j;
                    k_group(ulo, xl, xh, s0, &aL[k][0], &aH[k][0]);
                    k_group(uhi, xl + 32, xh + 32, s1, &aL[k][1], &aH[k][1]);
                }
            }
            const float d = rd_f16(blk);
            for (int k = 0; k < tb; k++)
                acc[k] = _mm256_fmadd_ps(planes_f32(_mm256_add_epi32(aH[k][0], aH[k][1]), _mm256_add_epi32(aL[k][0], aL[k][1])),
                                         _mm256_set1_ps(d * x[k].d[sb]), acc[k]);
        }
        for (int k = 0; k < tb; k++) y[k * ys + r] = hsum256(_mm256_sub_ps(acc[k], side[k]));
    }
}


/* The bias term of Q3_K/Q6_K's offset weights: sum over the 16 sub-blocks of
 * sc_s * qsum16_s (int32: |sc| <= 128, |qsum16| <= 16 * 16383), scaled by d * dx. */
static inline __m512 k_bias(__m512i sc32, const int32_t *qsum16, float d_dx, __m512 side) {
    const __m512i p = _mm512_mullo_epi32(sc32, _mm512_loadu_si512(qsum16));
    return _mm512_fmadd_ps(_mm512_cvtepi32_ps(p), _mm512_set1_ps(d_dx), side);
}


/* Q6_K, 210 bytes: ql[128] | qh[64] | i8 scales[16] | f16 d. Per 128 elements (half
 * h), element 32k + l (k = 0..3) is nibble (k >> 1) of ql[64h + 32(k & 1) + l] with
 * bits 2k..2k+1 of qh[32h + l] on top; value = d * sc * (u - 32). tb tokens per pass, each
 * running the operations it runs alone (as gemm_q45k). */
static inline __attribute__((always_inline)) void gemm_q6k(const void *w, size_t rb, const struct rwkv_xq *x,
                                                          float *y, int64_t ys, int64_t nr, int64_t nc, const int tb) {
    const int64_t nsb = nc / 256;
    __m256i idx[8];
    for (int p = 0; p < 8; p++) idx[p] = pair_index(p);
    for (int64_t r = 0; r < nr; r++) {
        const uint8_t *row = (const uint8_t *)w + (size_t)r * rb;
        __m256 acc[QTB];
        __m512 side[QTB];
        for (int k = 0; k < tb; k++) acc[k] = _mm256_setzero_ps(), side[k] = _mm512_setzero_ps();
        for (int64_t sb = 0; sb < nsb; sb++) {
            const uint8_t *blk = row + sb * 210;
            _mm_prefetch((const char *)blk + PREFETCH_AHEAD, _MM_HINT_T0);
            _mm_prefetch((const char *)blk + PREFETCH_AHEAD + 64, _MM_HINT_T0);
            _mm_prefetch((const char *)blk + PREFETCH_AHEAD + 128, _MM_HINT_T0);
            _mm_prefetch((const char *)blk + PREFETCH_AHEAD + 192, _MM_HINT_T0);
            const __m128i scb = _mm_loadu_si128((const __m128i *)(blk + 192));
            const __m256i sc16 = _mm256_cvtepi8_epi16(scb);
            const __m512i sc32 = _mm512_cvtepi8_epi32(scb);
            const float d = rd_f16(blk + 208);
            __m256 vd[QTB];
            for (int k = 0; k < tb; k++) {
                const float d_dx = d * x[k].d[sb];
                side[k] = k_bias(sc32, x[k].qsum16 + sb * 16, d_dx, side[k]);
                vd[k] = _mm256_set1_ps(d_dx);
            }
            for (int h = 0; h < 2; h++) {
                __m256i u[4];
                q6_k_half(blk, h, u);
                __m256i S[4];
                for (int j = 0; j < 4; j++) S[j] = _mm256_permutexvar_epi16(idx[4 * h + j], sc16);
                for (int k = 0; k < tb; k++) {
                    const int8_t *xl = x[k].lo + sb * 256 + 128 * h, *xh = x[k].hi + sb * 256 + 128 * h;
                    __m256i aL[2] = {_mm256_setzero_si256(), _mm256_setzero_si256()}, aH[2] = {aL[0], aL[0]};
                    for (int j = 0; j < 4; j++) k_group(u[j], xl + 32 * j, xh + 32 * j, S[j], &aL[j & 1], &aH[j & 1]);
                    acc[k] = _mm256_fmadd_ps(planes_f32(_mm256_add_epi32(aH[0], aH[1]), _mm256_add_epi32(aL[0], aL[1])),
                                             vd[k], acc[k]);
                }
            }
        }
        for (int k = 0; k < tb; k++) y[k * ys + r] = hsum256(acc[k]) - 32.0f * _mm512_reduce_add_ps(side[k]);
    }
}

/* Q2_K, 84 bytes: scales[16] (low 4 bits scale, high 4 bits min) | qs[64] | f16 d |
 * f16 dmin. Element 128n + 32j + l is bits 2j..2j+1 of qs[32n + l], in sub-block
 * 8n + 2j + l / 16; value = d * sc * u - dmin * m, mins through sum16(x). */
static inline __attribute__((always_inline)) void gemm_q2k(const void *w, size_t rb, const struct rwkv_xq *x,
                                                          float *y, int64_t ys, int64_t nr, int64_t nc, const int tb) {
    const int64_t nsb = nc / 256;
    const __m256i three = _mm256_set1_epi8(3);
    __m256i idx[8];
    for (int p = 0; p < 8; p++) idx[p] = pair_index(p);
    for (int64_t r = 0; r < nr; r++) {
        const uint8_t *row = (const uint8_t *)w + (size_t)r * rb;
        __m256 acc[QTB];
        __m512 side[QTB];
        for (int k = 0; k < tb; k++) acc[k] = _mm256_setzero_ps(), side[k] = _mm512_setzero_ps();
        for (int64_t sb = 0; sb < nsb; sb++) {
            const uint8_t *blk = row + sb * 84;
            _mm_prefetch((const char *)blk + PREFETCH_AHEAD, _MM_HINT_T0);
            _mm_prefetch((const char *)blk + PREFETCH_AHEAD + 64, _MM_HINT_T0);
            const __m128i scb = _mm_loadu_si128((const __m128i *)blk);
            const __m256i sc16 = _mm256_cvtepu8_epi16(_mm_and_si128(scb, _mm_set1_epi8(15)));
            const __m512 mins = _mm512_cvtepi32_ps(_mm512_srli_epi32(_mm512_cvtepu8_epi32(scb), 4));
            const __m512 md = _mm512_mul_ps(mins, _mm512_set1_ps(rd_f16(blk + 82)));
            const float d = rd_f16(blk + 80);
            __m256i aL[QTB][2], aH[QTB][2];
            for (int k = 0; k < tb; k++) {
                side[k] = _mm512_fmadd_ps(md, _mm512_loadu_ps(x[k].sum16 + sb * 16), side[k]);
                aL[k][0] = aL[k][1] = aH[k][0] = aH[k][1] = _mm256_setzero_si256();
            }
            for (int n = 0; n < 2; n++) {
                const __m256i bits = _mm256_loadu_si256((const __m256i *)(blk + 16 + 32 * n));
                for (int j = 0; j < 4; j++) {
                    const __m256i u = _mm256_and_si256(_mm256_srli_epi16(bits, 2 * j), three);
                    const __m256i S = _mm256_permutexvar_epi16(idx[4 * n + j], sc16);
                    const int o = 128 * n + 32 * j;
                    for (int k = 0; k < tb; k++)
                        k_group(u, x[k].lo + sb * 256 + o, x[k].hi + sb * 256 + o, S, &aL[k][j & 1], &aH[k][j & 1]);
                }
            }
            for (int k = 0; k < tb; k++)
                acc[k] = _mm256_fmadd_ps(planes_f32(_mm256_add_epi32(aH[k][0], aH[k][1]), _mm256_add_epi32(aL[k][0], aL[k][1])),
                                         _mm256_set1_ps(d * x[k].d[sb]), acc[k]);
        }
        for (int k = 0; k < tb; k++) y[k * ys + r] = hsum256(acc[k]) - _mm512_reduce_add_ps(side[k]);
    }
}

/* Q3_K, 110 bytes: hmask[32] | qs[64] | scales[12] | f16 d. Element 128n + 32j + l has
 * low bits 2j..2j+1 of qs[32n + l] and high bit 4n + j of hmask[l]; value =
 * d * sc * (u - 4) with u = low | high << 2 and sc six-bit signed (q3_k_scales). */
static inline __attribute__((always_inline)) void gemm_q3k(const void *w, size_t rb, const struct rwkv_xq *x,
                                                          float *y, int64_t ys, int64_t nr, int64_t nc, const int tb) {
    const int64_t nsb = nc / 256;
    const __m256i three = _mm256_set1_epi8(3);
    __m256i idx[8];
    for (int p = 0; p < 8; p++) idx[p] = pair_index(p);
    for (int64_t r = 0; r < nr; r++) {
        const uint8_t *row = (const uint8_t *)w + (size_t)r * rb;
        __m256 acc[QTB];
        __m512 side[QTB];
        for (int k = 0; k < tb; k++) acc[k] = _mm256_setzero_ps(), side[k] = _mm512_setzero_ps();
        for (int64_t sb = 0; sb < nsb; sb++) {
            const uint8_t *blk = row + sb * 110;
            _mm_prefetch((const char *)blk + PREFETCH_AHEAD, _MM_HINT_T0);
            _mm_prefetch((const char *)blk + PREFETCH_AHEAD + 64, _MM_HINT_T0);
            const __m128i scb = _mm_sub_epi8(q3_k_scales_biased(blk), _mm_set1_epi8(32));
            const __m512i sc32 = _mm512_cvtepi8_epi32(scb);
            const __m256i sc16 = _mm256_cvtepi8_epi16(scb);
            const float d = rd_f16(blk + 108);
            float d_dx[QTB];
            __m256i aL[QTB][2], aH[QTB][2];
            for (int k = 0; k < tb; k++) {
                d_dx[k] = d * x[k].d[sb];
                side[k] = k_bias(sc32, x[k].qsum16 + sb * 16, d_dx[k], side[k]);
                aL[k][0] = aL[k][1] = aH[k][0] = aH[k][1] = _mm256_setzero_si256();
            }
            const __m256i hm = _mm256_loadu_si256((const __m256i *)blk);
            for (int n = 0; n < 2; n++) {
                const __m256i bits = _mm256_loadu_si256((const __m256i *)(blk + 32 + 32 * n));
                for (int j = 0; j < 4; j++) {
                    __m256i u = _mm256_and_si256(_mm256_srli_epi16(bits, 2 * j), three);
                    u = _mm256_or_si256(u, bit_to(hm, 4 * n + j, 2));
                    const __m256i S = _mm256_permutexvar_epi16(idx[4 * n + j], sc16);
                    const int o = 128 * n + 32 * j;
                    for (int k = 0; k < tb; k++)
                        k_group(u, x[k].lo + sb * 256 + o, x[k].hi + sb * 256 + o, S, &aL[k][j & 1], &aH[k][j & 1]);
                }
            }
            for (int k = 0; k < tb; k++)
                acc[k] = _mm256_fmadd_ps(planes_f32(_mm256_add_epi32(aH[k][0], aH[k][1]), _mm256_add_epi32(aL[k][0], aL[k][1])),
                                         _mm256_set1_ps(d_dx[k]), acc[k]);
        }
        for (int k = 0; k < tb; k++) y[k * ys + r] = hsum256(acc[k]) - 4.0f * _mm512_reduce_add_ps(side[k]);
    }
}

/* The GEMVs, and the GEMMs of few tokens (the byte planes unpacked once per 4 tokens); the
 * GEMMs of many tokens, over int16 panels in the same integer lanes with the same f32 steps,
 * are in qgemm_avx512vnni.c, which calls these below its threshold. */
#define VNNI_TYPE(type, BODY, ...)                                   \
    RWKV_DEFINE_QDOT_GEMV(type, avx512vnni, BODY, ##__VA_ARGS__) \
    RWKV_DEFINE_QDOT_GEMM(rwkv_gemm_##type##_avx512vnni_few, QTB, BODY, ##__VA_ARGS__)
VNNI_TYPE(q4_k, gemm_q45k, RWKV_Q4_K_LAYOUT)
VNNI_TYPE(q5_k, gemm_q45k, RWKV_Q5_K_LAYOUT)
VNNI_TYPE(q2_k, gemm_q2k)
VNNI_TYPE(q3_k, gemm_q3k)
VNNI_TYPE(q6_k, gemm_q6k)
#undef VNNI_TYPE

const struct rwkv_kernels rwkv_kernels_avx512vnni = {
    .level = "avx512vnni",
    .gemv_q4_0 = rwkv_gemv_q4_0_avx512vnni,
    .gemv_q4_1 = rwkv_gemv_q4_1_avx512vnni,
    .gemv_q5_0 = rwkv_gemv_q5_0_avx512vnni,
    .gemv_q5_1 = rwkv_gemv_q5_1_avx512vnni,
    .gemv_q8_0 = rwkv_gemv_q8_0_avx512vnni,
    .gemm_q8_0 = rwkv_gemm_q8_0_avx512vnni,
    .gemv_q2_k = rwkv_gemv_q2_k_avx512vnni,
    .gemv_q3_k = rwkv_gemv_q3_k_avx512vnni,
    .gemv_q4_k = rwkv_gemv_q4_k_avx512vnni,
    .gemm_q4_0 = rwkv_gemm_q4_0_avx512vnni,
    .gemm_q4_1 = rwkv_gemm_q4_1_avx512vnni,
    .gemm_q5_0 = rwkv_gemm_q5_0_avx512vnni,
    .gemm_q5_1 = rwkv_gemm_q5_1_avx512vnni,
    .gemm_q4_k = rwkv_gemm_q4_k_avx512vnni,
    .gemm_q5_k = rwkv_gemm_q5_k_avx512vnni,
    .gemm_q2_k = rwkv_gemm_q2_k_avx512vnni,
    .gemm_q3_k = rwkv_gemm_q3_k_avx512vnni,
    .gemm_q6_k = rwkv_gemm_q6_k_avx512vnni,
    .gemv_q5_k = rwkv_gemv_q5_k_avx512vnni,
    .gemv_q6_k = rwkv_gemv_q6_k_avx512vnni,
};
#else
#include "kernels.h"
const struct rwkv_kernels rwkv_kernels_avx512vnni = {0};
#endif
