/* q32_avx512vnni.c — the block-32 types (Q4_0, Q4_1, Q5_0, Q5_1, Q8_0) on AVX512-VNNI: the GEMVs,
 * the GEMMs of a few tokens and the panel GEMM of many, with one integer per block.
 *
 * Every (row, token) is summed the same way, whichever kernel runs it:
 *
 *     acc = side = 0
 *     for each block b, in order:
 *         T    = sum over the block's 32 elements of u_j * q_j         (exact int32)
 *         acc  = fma((float)T, d_b * dx_b, acc)
 *         side = fma(m_b, sum32_b, side)                             (Q4_1, Q5_1)
 *     y = acc + side
 *
 * with u the weight's integer (Q8_0's bytes, q - 8 for Q4_0, q - 16 for Q5_0, the unsigned q of
 * Q4_1 and Q5_1); so a prompt, a batch and one-token decoding give the same bits, and any kernel
 * that gets the exact block integers T (AMX tiles among them) can join them. One f32 step per
 * block is what lets the panel GEMM spend its time in vpdpwssd (the former byte-plane lanes of
 * the 4- and 5-bit types needed four f32 steps per block and ran their panel GEMM at half this
 * speed).
 *
 * Q8_0 GEMV: 16 rows at a time, one row per lane of the f32 vectors. Per row and pair of blocks,
 * two vpdpbusd of the weight bytes (offset by 128 to unsigned) against the activation's byte
 * planes (q = 128 hi + lo, pair order, struct rwkv_xq) leave 16 int32 partial sums; a three-step
 * transposing reduction (shuffle, add) turns the 16 rows' vectors into two, block b's T of every
 * row and block b+1's, and the bias is taken back through the integer sum of q. The f32 steps
 * then run 16 rows wide, the rows' scales gathered per block.
 *
 * 4- and 5-bit GEMVs (gemv45): decoding them is bound by the core's arithmetic nearly as much as
 * by memory, and the 16-row form above ran them 10-15% slower than their byte-plane kernels; 8
 * rows in 256-bit lanes, the partial sums of a row kept while it is read front to back and the
 * reduction after, decode at their speed.
 *
 * Panel GEMM: 32 rows' weights are unpacked once per 64 tokens into int16 u, transposed so that
 * one vector holds element pair k of 16 rows; vpdpwssd against token t's pair k (broadcast) sums
 * 16 rows' T in the lanes: the GEMVs' integers, then their f32 steps (lane for lane the same
 * operations at 512 bits as the 4- and 5-bit GEMVs' at 256).
 */
#if defined(__x86_64__) && defined(__GNUC__)
#pragma GCC target("avx512f,avx512bw,avx512vl,avx512dq,avx512vnni,avx2,fma,f16c")
#include <immintrin.h>
#include <string.h>

#include "qdot.h"
#include "qvnni.h"
#include "unpack.h"

#define Q8_BB 34                /* bytes per block: f16 d | int8 q[32] */
#define PREFETCH_AHEAD 256   /* bytes ahead in each of the 16 rows read side by side (to L1) */
#define PREFETCH_FAR 1024    /* and further ahead, to L2 */
#define QTB 4                /* tokens per pass of the few-token GEMM */

/* The exact integer T of one block of one row (an odd last block). */
static inline int32_t block_T(const uint8_t *blk, const int16_t *q) {
    int32_t t = 0;
    for (int j = 0; j < 32; j++) t += (int32_t)(int8_t)blk[2 + j] * q[j];
    return t;
}

/* Row offsets (from row r0) of 16 rows, rows past nr repeating the last. */
static inline __m512i row_offsets(size_t rb, int64_t r0, int64_t nr) {
    int32_t off[16];
    for (int i = 0; i < 16; i++) off[i] = (int32_t)((r0 + i < nr ? i : nr - 1 - r0) * (int64_t)rb);
    return _mm512_loadu_si512(off);
}

/* The f16 d of 16 rows' block at byte `at` of each row, as f32. */
static inline __m512 gather_d(const uint8_t *base, __m512i off, int64_t at) {
    return _mm512_cvtph_ps(_mm512_cvtepi32_epi16(_mm512_i32gather_epi32(off, base + at, 1)));
}

/* The order in which rows enter the reduction, so that lane l of its result is row l. */
static const int FEED[16] = {0, 4, 1, 5, 2, 6, 3, 7, 8, 12, 9, 13, 10, 14, 11, 15};

/* Blocks A (at a) and B (at a + Q8_BB) as 64 unsigned bytes [A0..15 B0..15 A16..31 B16..31], the
 * pair order of the planes: loaded whole, 16-byte quarters reordered, offset by 128. */
static inline __m512i pair_bytes(const uint8_t *a) {
    const __m512i v = _mm512_inserti64x4(_mm512_castsi256_si512(_mm256_loadu_si256((const __m256i *)(a + 2))),
                                         _mm256_loadu_si256((const __m256i *)(a + Q8_BB + 2)), 1);
    return _mm512_xor_si512(_mm512_shuffle_i32x4(v, v, 0xd8), _mm512_set1_epi8((char)0x80));
}

/* A pair of blocks of 16 rows (w in FEED order) against one token's planes: block A's sum of u * q
 * for the 16 rows in *ta, B's in *tb. Lanes of a row's vector: A in 0..3 and 8..11, B in 4..7 and
 * 12..15. Step 1 adds quarters (0 + 2, 1 + 3) of two rows, step 2 the 32-bit and step 3 the 64-bit
 * halves of four quarters, leaving per quarter four rows' totals; a last shuffle picks A's and B's. */
static inline __attribute__((always_inline)) void pair_T(const __m512i w[16], const int8_t *xl, const int8_t *xh,
                                                        __m512i *ta, __m512i *tb) {
    const __m512i l = _mm512_loadu_si512(xl), h = _mm512_loadu_si512(xh), z = _mm512_setzero_si512();
    __m512i W[8], Z[4], S[2];
    for (int k = 0; k < 8; k++) {
        __m512i v[2];
        for (int i = 0; i < 2; i++)
            v[i] = _mm512_add_epi32(_mm512_slli_epi32(_mm512_dpbusd_epi32(z, w[2 * k + i], h), 7),
                                    _mm512_dpbusd_epi32(z, w[2 * k + i], l));
        W[k] = _mm512_add_epi32(_mm512_shuffle_i32x4(v[0], v[1], 0x44), _mm512_shuffle_i32x4(v[0], v[1], 0xee));
    }
    for (int k = 0; k < 4; k++)
        Z[k] = _mm512_add_epi32(_mm512_unpacklo_epi32(W[2 * k], W[2 * k + 1]), _mm512_unpackhi_epi32(W[2 * k], W[2 * k + 1]));
    for (int k = 0; k < 2; k++)
        S[k] = _mm512_add_epi32(_mm512_unpacklo_epi64(Z[2 * k], Z[2 * k + 1]), _mm512_unpackhi_epi64(Z[2 * k], Z[2 * k + 1]));
    *ta = _mm512_shuffle_i32x4(S[0], S[1], 0x88);
    *tb = _mm512_shuffle_i32x4(S[0], S[1], 0xdd);
}

/* The GEMV (tb = 1) and the few-token GEMM: each pair of blocks of 16 rows unpacked once for tb
 * tokens. */
static inline __attribute__((always_inline)) void gemv_q8(const void *w, size_t rb, const struct rwkv_xq *x, float *y,
                                                         int64_t ys, int64_t nr, int64_t nc, const int tb) {
    const int64_t nb = nc / 32;
    for (int64_t r0 = 0; r0 < nr; r0 += 16) {
        const uint8_t *base = (const uint8_t *)w + (size_t)r0 * rb;
        const __m512i off = row_offsets(rb, r0, nr);
        const uint8_t *rows[16];
        for (int i = 0; i < 16; i++) rows[i] = base + (r0 + FEED[i] < nr ? FEED[i] : nr - 1 - r0) * rb;
        __m512 acc[QTB];
        for (int k = 0; k < tb; k++) acc[k] = _mm512_setzero_ps();
        for (int64_t b = 0; b + 2 <= nb; b += 2) {
            __m512i wv[16];
            for (int i = 0; i < 16; i++) {
                _mm_prefetch((const char *)rows[i] + b * Q8_BB + PREFETCH_AHEAD, _MM_HINT_T0);
                _mm_prefetch((const char *)rows[i] + b * Q8_BB + PREFETCH_FAR, _MM_HINT_T1);
                wv[i] = pair_bytes(rows[i] + b * Q8_BB);
            }
            const __m512 d0 = gather_d(base, off, b * Q8_BB), d1 = gather_d(base, off, (b + 1) * Q8_BB);
            for (int k = 0; k < tb; k++) {
                __m512i ta, tb_;
                pair_T(wv, x[k].lo + b * 32, x[k].hi + b * 32, &ta, &tb_);
                ta = _mm512_sub_epi32(ta, _mm512_set1_epi32(128 * x[k].qsum[b]));
                tb_ = _mm512_sub_epi32(tb_, _mm512_set1_epi32(128 * x[k].qsum[b + 1]));
                acc[k] = q8_0_step(q8_0_step(acc[k], ta, d0, x[k].d[b]), tb_, d1, x[k].d[b + 1]);
            }
        }
        if (nb & 1) {
            const int64_t b = nb - 1;
            const __m512 d = gather_d(base, off, b * Q8_BB);
            for (int k = 0; k < tb; k++) {
                int32_t t[16];
                for (int i = 0; i < 16; i++) t[i] = block_T(base + (r0 + i < nr ? i : nr - 1 - r0) * rb + b * Q8_BB, x[k].q + b * 32);
                acc[k] = q8_0_step(acc[k], _mm512_loadu_si512(t), d, x[k].d[b]);
            }
        }
        const __mmask16 valid = nr - r0 >= 16 ? 0xffff : (__mmask16)((1u << (nr - r0)) - 1);
        for (int k = 0; k < tb; k++) _mm512_mask_storeu_ps(y + k * ys + r0, valid, acc[k]);
    }
}

/* ----------------------------------------- Q4_0, Q4_1, Q5_0, Q5_1 GEMV -- */

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

/* The 32-bit (d, m) fields of 8 rows' block (m: garbage where the block has none) as f32. */
static inline void split_dm8(const uint32_t v[8], __m256 *d, __m256 *m) {
    const __m256i all = _mm256_loadu_si256((const __m256i *)v);
    /* d (low halves) of the 8 rows to the low 128 bits, m (high halves) to the high */
    const __m256i q = _mm256_permutexvar_epi16(
        _mm256_setr_epi16(0, 2, 4, 6, 8, 10, 12, 14, 1, 3, 5, 7, 9, 11, 13, 15), all);
    *d = _mm256_cvtph_ps(_mm256_castsi256_si128(q));
    *m = _mm256_cvtph_ps(_mm256_extracti128_si256(q, 1));
}

/* The d (and m) of 8 rows' block at byte `at` of each row, as f32. */
static inline void gather_dm8(const uint8_t *const rows[8], int64_t at, __m256 *d, __m256 *m) {
    uint32_t v[8];
    for (int i = 0; i < 8; i++) memcpy(&v[i], rows[i] + at, 4);
    split_dm8(v, d, m);
}

/* A pair of blocks A, B of 8 rows (p[i]: row i's 8 int32 partial sums, A's in lanes 0..3, B's in
 * 4..7) to A's T of the 8 rows in *ta and B's in *tb: 20 operations for 16 integers. */
static inline void pair_T8(const __m256i p[8], __m256i *ta, __m256i *tb) {
    __m256i a[4], c[2];
    for (int k = 0; k < 4; k++) /* per 128-bit half: rows 2k, 2k+1 interleaved, two partials each */
        a[k] = _mm256_add_epi32(_mm256_unpacklo_epi32(p[2 * k], p[2 * k + 1]), _mm256_unpackhi_epi32(p[2 * k], p[2 * k + 1]));
    for (int k = 0; k < 2; k++) /* per half: rows 4k..4k+3, one total each */
        c[k] = _mm256_add_epi32(_mm256_unpacklo_epi64(a[2 * k], a[2 * k + 1]), _mm256_unpackhi_epi64(a[2 * k], a[2 * k + 1]));
    *ta = _mm256_permute2x128_si256(c[0], c[1], 0x20);
    *tb = _mm256_permute2x128_si256(c[0], c[1], 0x31);
}

/* The exact T of one block of one row (an odd last block): u - BIAS from unpack.h. */
static inline int32_t block_T_unpacked(void (*unpack)(const uint8_t *, int16_t *, float *, float *),
                                       const uint8_t *blk, const int16_t *q) {
    int16_t u[32];
    float s[1], c[2];
    unpack(blk, u, s, c);
    int32_t t = 0;
    for (int j = 0; j < 32; j++) t += (int32_t)u[j] * q[j];
    return t;
}

/* Block pairs per chunk of gemv45: a row's chunk is read front to back before the next row's. */
#define CHUNK_PAIRS 32

/* The GEMV (tb = 1) and the few-token GEMM of the 4- and 5-bit types, 8 rows at a time in the lanes
 * of the f32 steps. Per row and pair of blocks: the weights as unsigned bytes in the planes' pair
 * order (q4q5_weights), four vpdpbusd, 128 hi + lo: 8 partial sums, kept in L1 while the row is read
 * front to back (one memory stream, as the former byte-plane kernels read; 8 rows side by side ran
 * 20% slower); then per pair pair_T8 gives the 8 rows' integers of both blocks and the bias comes
 * back through the integer sums of q. 256-bit vectors: three ports on Intel cores, where 512-bit
 * operations have two. */
static inline __attribute__((always_inline)) void gemv45(const void *w, size_t rb, const struct rwkv_xq *x, float *y,
                                                        int64_t ys, int64_t nr, int64_t nc, const int tb, const int BB,
                                                        const int QS, const int QH, const int HAS_M, const int BIAS,
                                                        void (*unpack)(const uint8_t *, int16_t *, float *, float *)) {
    const int64_t nb = nc / 32, np = nb / 2;
    _Alignas(32) __m256i part[QTB][CHUNK_PAIRS][8];
    _Alignas(32) uint32_t dm[CHUNK_PAIRS][2][8]; /* the blocks' (d, m) fields, [pair][A or B][row] */
    for (int64_t r0 = 0; r0 < nr; r0 += 8) {
        const uint8_t *rows[8];
        for (int i = 0; i < 8; i++) rows[i] = (const uint8_t *)w + (size_t)(r0 + i < nr ? r0 + i : nr - 1) * rb;
        __m256 acc[QTB], side[QTB];
        for (int k = 0; k < tb; k++) acc[k] = side[k] = _mm256_setzero_ps();
        for (int64_t c0 = 0; c0 < np; c0 += CHUNK_PAIRS) {
            const int cn = np - c0 < CHUNK_PAIRS ? (int)(np - c0) : CHUNK_PAIRS;
            for (int i = 0; i < 8; i++)
                for (int c = 0; c < cn; c++) {
                    const int64_t b = 2 * (c0 + c);
                    __m256i lo, hi;
                    /* the same bytes of the next 8 rows, to L2: the pass below reads no memory, so
                     * a distance in bytes would leave the memory idle through it */
                    _mm_prefetch((const char *)rows[i] + b * BB + 8 * rb, _MM_HINT_T1);
                    memcpy(&dm[c][0][i], rows[i] + b * BB, 4);
                    memcpy(&dm[c][1][i], rows[i] + (b + 1) * BB, 4);
                    q4q5_weights(rows[i] + b * BB, BB, QS, QH, &lo, &hi);
                    for (int k = 0; k < tb; k++) {
                        const int8_t *xl = x[k].lo + b * 32, *xh = x[k].hi + b * 32;
                        /* 128 (u . hi) + u . lo in one chain (|u . hi| < 2^16 per lane) */
                        __m256i t = _mm256_dpbusd_epi32(_mm256_setzero_si256(), lo, _mm256_loadu_si256((const __m256i *)xh));
                        t = _mm256_slli_epi32(_mm256_dpbusd_epi32(t, hi, _mm256_loadu_si256((const __m256i *)(xh + 32))), 7);
                        t = _mm256_dpbusd_epi32(t, lo, _mm256_loadu_si256((const __m256i *)xl));
                        part[k][c][i] = _mm256_dpbusd_epi32(t, hi, _mm256_loadu_si256((const __m256i *)(xl + 32)));
                    }
                }
            for (int c = 0; c < cn; c++) {
                const int64_t b = 2 * (c0 + c);
                __m256 d0, m0, d1, m1;
                split_dm8(dm[c][0], &d0, &m0);
                split_dm8(dm[c][1], &d1, &m1);
                for (int k = 0; k < tb; k++) {
                    __m256i ta, tb_;
                    pair_T8(part[k][c], &ta, &tb_);
                    if (BIAS) {
                        ta = _mm256_sub_epi32(ta, _mm256_set1_epi32(BIAS * x[k].qsum[b]));
                        tb_ = _mm256_sub_epi32(tb_, _mm256_set1_epi32(BIAS * x[k].qsum[b + 1]));
                    }
                    acc[k] = q32_step8(q32_step8(acc[k], ta, d0, x[k].d[b]), tb_, d1, x[k].d[b + 1]);
                    if (HAS_M) side[k] = q32_side8(q32_side8(side[k], m0, x[k].sum32[b]), m1, x[k].sum32[b + 1]);
                }
            }
        }
        if (nb & 1) {
            const int64_t b = nb - 1;
            __m256 d, m;
            gather_dm8(rows, b * BB, &d, &m);
            for (int k = 0; k < tb; k++) {
                int32_t t[8];
                for (int i = 0; i < 8; i++) t[i] = block_T_unpacked(unpack, rows[i] + b * BB, x[k].q + b * 32);
                acc[k] = q32_step8(acc[k], _mm256_loadu_si256((const __m256i *)t), d, x[k].d[b]);
                if (HAS_M) side[k] = q32_side8(side[k], m, x[k].sum32[b]);
            }
        }
        const __mmask8 valid = nr - r0 >= 8 ? 0xff : (__mmask8)((1u << (nr - r0)) - 1);
        for (int k = 0; k < tb; k++)
            _mm256_mask_storeu_ps(y + k * ys + r0, valid, HAS_M ? _mm256_add_ps(acc[k], side[k]) : acc[k]);
    }
}

/* ------------------------------------------------------------ panel GEMM -- */

#define G 2            /* 16-row groups per panel */
#define PB 8           /* blocks per panel: 2 x 8 x 1 KiB of int16 pairs */
#define TOK_BLOCK 64   /* tokens per pass over a panel (their f32 state on the stack) */
#define TB 8           /* tokens per microkernel call: G TB chains of vpdpwssd hide its latency */
#define PANEL_MIN_TOK 5 /* below it the few-token GEMM (measured crossover, 2048 x 2048, one thread) */
#define PANEL45_MIN_TOK 4 /* the same for the 4- and 5-bit types */

struct panel {
    int32_t w[G][PB][16][16]; /* [group][block][element pair k][row]: the int16 pair (u_2k, u_2k+1) */
    float d[G][PB][16], m[G][PB][16];
};

/* 16 vectors (one per row, 16 int32 lanes each) transposed in place: v[k] lane r = old v[r] lane k. */
static inline __attribute__((always_inline)) void transpose16(__m512i v[16]) {
    __m512i t[16];
    for (int i = 0; i < 16; i += 2) {
        t[i] = _mm512_unpacklo_epi32(v[i], v[i + 1]);
        t[i + 1] = _mm512_unpackhi_epi32(v[i], v[i + 1]);
    }
    for (int i = 0; i < 16; i += 4)
        for (int j = 0; j < 2; j++) {
            v[i + 2 * j] = _mm512_unpacklo_epi64(t[i + j], t[i + 2 + j]);
            v[i + 2 * j + 1] = _mm512_unpackhi_epi64(t[i + j], t[i + 2 + j]);
        }
    /* v[4a + c] now holds, per 128-bit quarter q, column 4q + c of rows 4a..4a+3 */
    for (int a = 0; a < 2; a++)
        for (int c = 0; c < 4; c++) {
            const __m512i x0 = v[8 * a + c], x1 = v[8 * a + 4 + c];
            t[8 * a + c] = _mm512_shuffle_i32x4(x0, x1, 0x88);     /* columns c, 8 + c of rows 8a..8a+7 */
            t[8 * a + 4 + c] = _mm512_shuffle_i32x4(x0, x1, 0xdd); /* columns 4 + c, 12 + c */
        }
    for (int h = 0; h < 2; h++)
        for (int c = 0; c < 4; c++) {
            const __m512i x0 = t[4 * h + c], x1 = t[8 + 4 * h + c];
            v[4 * h + c] = _mm512_shuffle_i32x4(x0, x1, 0x88);
            v[8 + 4 * h + c] = _mm512_shuffle_i32x4(x0, x1, 0xdd);
        }
}

/* One block of one row as 32 int16 u - BIAS (the order of the elements). */
static inline __attribute__((always_inline)) __m512i block_u16(const uint8_t *blk, const int BB, const int QS,
                                                              const int QH, const int BIAS) {
    if (BB == Q8_BB) return _mm512_cvtepi8_epi16(_mm256_loadu_si256((const __m256i *)(blk + 2)));
    const __m256i wide = _mm256_cvtepu8_epi16(_mm_loadu_si128((const __m128i *)(blk + QS)));
    __m512i u = _mm512_inserti64x4(_mm512_castsi256_si512(_mm256_and_si256(wide, _mm256_set1_epi16(0x0f))),
                                   _mm256_srli_epi16(wide, 4), 1);
    if (QH) {
        uint32_t qh;
        memcpy(&qh, blk + QH, 4);
        u = _mm512_mask_add_epi16(u, (__mmask32)qh, u, _mm512_set1_epi16(16));
    }
    return BIAS ? _mm512_sub_epi16(u, _mm512_set1_epi16(BIAS)) : u;
}

/* Blocks [b0, b0 + n) of the 16 G rows from r0 into the panel. */
static inline __attribute__((always_inline)) void build_panel(struct panel *p, const void *w, size_t rb, int64_t r0,
                                                             int64_t nr, int64_t b0, int n, const int BB, const int QS,
                                                             const int QH, const int HAS_M, const int BIAS) {
    for (int g = 0; g < G; g++) {
        const uint8_t *rows[16];
        for (int i = 0; i < 16; i++) {
            const int64_t r = r0 + 16 * g + i < nr ? r0 + 16 * g + i : nr - 1;
            rows[i] = (const uint8_t *)w + (size_t)r * rb + b0 * BB;
        }
        for (int j = 0; j < n; j++) {
            __m512i v[16];
            for (int i = 0; i < 16; i++) {
                p->d[g][j][i] = rd_f16(rows[i] + j * BB);
                if (HAS_M) p->m[g][j][i] = rd_f16(rows[i] + j * BB + 2);
                v[i] = block_u16(rows[i] + j * BB, BB, QS, QH, BIAS);
            }
            transpose16(v);
            for (int k = 0; k < 16; k++) _mm512_store_si512(p->w[g][j][k], v[k]);
        }
    }
}

/* Panel blocks [0, n) (the matrix's b0 + j) for tb tokens; acc[t][g] (side[t][g]): token t's 16 rows
 * of group g. */
static inline __attribute__((always_inline)) void kernel(const struct panel *p, int n, int64_t b0,
                                                        const struct rwkv_xq *x, const int tb, __m512 (*acc)[G],
                                                        __m512 (*side)[G], const int HAS_M) {
    for (int j = 0; j < n; j++) {
        const int64_t b = b0 + j;
        __m512i a[G][TB];
        for (int g = 0; g < G; g++)
            for (int t = 0; t < tb; t++) a[g][t] = _mm512_setzero_si512();
        /* unrolled: with a loop GCC copies each accumulator out and back around its vpdpwssd */
#pragma GCC unroll 16
        for (int k = 0; k < 16; k++) {
            __m512i xb[TB];
            for (int t = 0; t < tb; t++) {
                int32_t pair;
                memcpy(&pair, x[t].q + b * 32 + 2 * k, 4);
                xb[t] = _mm512_set1_epi32(pair);
            }
            for (int g = 0; g < G; g++) {
                const __m512i wv = _mm512_load_si512(p->w[g][j][k]);
                for (int t = 0; t < tb; t++) a[g][t] = _mm512_dpwssd_epi32(a[g][t], wv, xb[t]);
            }
        }
        for (int t = 0; t < tb; t++)
            for (int g = 0; g < G; g++) {
                acc[t][g] = q8_0_step(acc[t][g], a[g][t], _mm512_load_ps(p->d[g][j]), x[t].d[b]);
                if (HAS_M) side[t][g] = q32_side(side[t][g], _mm512_load_ps(p->m[g][j]), x[t].sum32[b]);
            }
    }
}

static inline __attribute__((always_inline)) void gemm_panel(const void *w, size_t rb, const struct rwkv_xq *x,
                                                            float *y, int64_t ys, int64_t nr, int64_t nc, int64_t nt,
                                                            const int BB, const int QS, const int QH, const int HAS_M,
                                                            const int BIAS) {
    const int64_t nb = nc / 32;
    _Alignas(64) struct panel p;
    _Alignas(64) __m512 acc[TOK_BLOCK][G], side[HAS_M ? TOK_BLOCK : 1][G];
    for (int64_t t0 = 0; t0 < nt; t0 += TOK_BLOCK) {
        const int64_t tn = nt - t0 < TOK_BLOCK ? nt - t0 : TOK_BLOCK;
        for (int64_t r0 = 0; r0 < nr; r0 += 16 * G) {
            memset(acc, 0, (size_t)tn * sizeof acc[0]);
            if (HAS_M) memset(side, 0, (size_t)tn * sizeof side[0]);
            for (int64_t b0 = 0; b0 < nb; b0 += PB) {
                const int n = nb - b0 < PB ? (int)(nb - b0) : PB;
                build_panel(&p, w, rb, r0, nr, b0, n, BB, QS, QH, HAS_M, BIAS);
                if (b0 + PB < nb) /* the next panel's bytes on their way to L2 */
                    for (int i = 0; i < 16 * G && r0 + i < nr; i++)
                        for (int64_t o = 0; o < PB * BB; o += 64)
                            _mm_prefetch((const char *)w + (size_t)(r0 + i) * rb + (b0 + PB) * BB + o, _MM_HINT_T1);
                int64_t t = 0;
                for (; t + TB <= tn; t += TB) kernel(&p, n, b0, x + t0 + t, TB, acc + t, side + (HAS_M ? t : 0), HAS_M);
                if (t + 4 <= tn) kernel(&p, n, b0, x + t0 + t, 4, acc + t, side + (HAS_M ? t : 0), HAS_M), t += 4;
                if (t + 2 <= tn) kernel(&p, n, b0, x + t0 + t, 2, acc + t, side + (HAS_M ? t : 0), HAS_M), t += 2;
                if (t < tn) kernel(&p, n, b0, x + t0 + t, 1, acc + t, side + (HAS_M ? t : 0), HAS_M);
            }
            for (int g = 0; g < G && r0 + 16 * g < nr; g++) {
                const int64_t left = nr - r0 - 16 * g;
                const __mmask16 valid = left >= 16 ? 0xffff : (__mmask16)((1u << left) - 1);
                for (int64_t t = 0; t < tn; t++)
                    _mm512_mask_storeu_ps(y + (t0 + t) * ys + r0 + 16 * g, valid,
                                          HAS_M ? _mm512_add_ps(acc[t][g], side[t][g]) : acc[t][g]);
            }
        }
    }
}

void rwkv_gemv_q8_0_avx512vnni(const void *w, size_t rb, const struct rwkv_xq *x, float *y, int64_t nr, int64_t nc) {
    gemv_q8(w, rb, x, y, 0, nr, nc, 1);
}

void rwkv_gemm_q8_0_avx512vnni(const void *w, size_t rb, const struct rwkv_xq *x, float *y, int64_t ys, int64_t nr,
                               int64_t nc, int64_t nt) {
    if (nt >= PANEL_MIN_TOK) {
        gemm_panel(w, rb, x, y, ys, nr, nc, nt, Q8_BB, 2, 0, 0, 0); /* RWKV_Q8_0_LAYOUT */
        return;
    }
    int64_t t = 0;
    for (; t + QTB <= nt; t += QTB) gemv_q8(w, rb, x + t, y + t * ys, ys, nr, nc, QTB);
    if (t + 2 <= nt) gemv_q8(w, rb, x + t, y + t * ys, ys, nr, nc, 2), t += 2;
    if (t < nt) gemv_q8(w, rb, x + t, y + t * ys, ys, nr, nc, 1);
}

#define Q45_ENTRIES(type, ...) Q45_ENTRIES_(type, __VA_ARGS__)
#define Q45_ENTRIES_(type, BB, QS, QH, HAS_M, BIAS, unpack)                                                      \
    void rwkv_gemv_##type##_avx512vnni(const void *w, size_t rb, const struct rwkv_xq *x, float *y, int64_t nr, \
                                       int64_t nc) {                                                            \
        gemv45(w, rb, x, y, 0, nr, nc, 1, BB, QS, QH, HAS_M, BIAS, unpack);                                     \
    }                                                                                                           \
    void rwkv_gemm_##type##_avx512vnni(const void *w, size_t rb, const struct rwkv_xq *x, float *y, int64_t ys, \
                                       int64_t nr, int64_t nc, int64_t nt) {                                    \
        if (nt >= PANEL45_MIN_TOK) {                                                                            \
            gemm_panel(w, rb, x, y, ys, nr, nc, nt, BB, QS, QH, HAS_M, BIAS);                                   \
            return;                                                                                             \
        }                                                                                                       \
        int64_t t = 0;                                                                                          \
        for (; t + QTB <= nt; t += QTB) gemv45(w, rb, x + t, y + t * ys, ys, nr, nc, QTB, BB, QS, QH, HAS_M, BIAS, unpack); \
        if (t + 2 <= nt) gemv45(w, rb, x + t, y + t * ys, ys, nr, nc, 2, BB, QS, QH, HAS_M, BIAS, unpack), t += 2; \
        if (t < nt) gemv45(w, rb, x + t, y + t * ys, ys, nr, nc, 1, BB, QS, QH, HAS_M, BIAS, unpack);          \
    }
Q45_ENTRIES(q4_0, RWKV_Q4_0_LAYOUT)
Q45_ENTRIES(q4_1, RWKV_Q4_1_LAYOUT)
Q45_ENTRIES(q5_0, RWKV_Q5_0_LAYOUT)
Q45_ENTRIES(q5_1, RWKV_Q5_1_LAYOUT)
#endif
