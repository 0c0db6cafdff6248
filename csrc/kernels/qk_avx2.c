/* qk_avx2.c — the K types (Q2_K, Q3_K, Q4_K, Q5_K, Q6_K) on AVX2: the GEMV, the GEMM of a few
 * tokens and the panel GEMM of many.
 *
 * Every (row, token) is summed the same way, whichever kernel runs it, in 8 f32 lanes:
 *
 *     acc = 0
 *     for each super-block, in order:
 *         T   = 8 int32 lanes, lane k the sum of sc u q over the elements e with e mod 32 in
 *               4k .. 4k + 3                                                    (exact)
 *         acc = fma((float)T, d * dx, acc)
 *         acc = acc - M * S      (the mins: Q4_K, Q5_K M = dmin m_j and S = sum32_j, lane j;
 *                                 Q2_K the same twice, with sum16)
 *     y = hsum8(acc)
 *
 * with u the weight's integer (signed for Q3_K and Q6_K), sc its sub-block's integer scale and q
 * the 15-bit activations. A lane sums 32 products per super-block, |sc u| <= 4096 (Q6_K) and
 * |q| <= 16383, so T fits int32 with all 256 products in it; the f32 work is one step per
 * super-block, and a prompt, a batch and one-token decoding give the same bits.
 *
 * GEMV (and the GEMM of two tokens): one row at a time, front to back. Each 32 weights stay bytes
 * (u plus a bias making them unsigned) and meet the activations' two byte planes (q = 128 hi + lo)
 * in vpmaddubsw; vpmaddwd by the pairs' scales then leaves exactly the lanes above. The bias of
 * Q3_K and Q6_K comes off through the token's pair sums of q, the same vpmaddwd.
 *
 * Panel GEMM: 16 rows' super-blocks unpacked once per 64 tokens into int16 sc u, in the order of
 * the activations' quad copy (x->qp: per 32, pairs {4k, 4k+1} then {4k+2, 4k+3}), so one vpmaddwd
 * of a row's vector and a token's gives lane k's products; 2 rows x 4 tokens per microkernel.
 */
#if defined(__x86_64__) && defined(__GNUC__)
#pragma GCC target("avx2,fma,f16c")
#include <immintrin.h>
#include <string.h>

#include "qdot.h"
#include "unpack.h"

/* The layout of each type: super-block bytes, offset of the f16 d (dmin follows it where there are
 * mins), number of mins, and the bias that makes u unsigned. */
enum { KQ2 = 2, KQ3 = 3, KQ4 = 4, KQ5 = 5, KQ6 = 6 };
#define K_BYTES(T) ((T) == KQ2 ? 84 : (T) == KQ3 ? 110 : (T) == KQ4 ? 144 : (T) == KQ5 ? 176 : 210)
#define K_DOFF(T) ((T) == KQ2 ? 80 : (T) == KQ3 ? 108 : (T) == KQ6 ? 208 : 0)
#define K_MINS(T) ((T) == KQ2 ? 16 : (T) == KQ4 || (T) == KQ5 ? 8 : 0)
#define K_BIAS(T) ((T) == KQ6 ? 32 : (T) == KQ3 ? 4 : 0)

#define PREFETCH_AHEAD 2048

static inline float hsum8(__m256 v) {
    __m128 s = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
    s = _mm_add_ps(s, _mm_movehl_ps(s, s));
    s = _mm_add_ss(s, _mm_movehdup_ps(s));
    return _mm_cvtss_f32(s);
}

/* --------------------------------------------------- one super-block -- */

static inline __m256i wide_u8(const uint8_t *p) { return _mm256_cvtepu8_epi16(_mm_loadu_si128((const __m128i *)p)); }

/* The super-block's integer sub-block scales as two int16 tables, each 8 scales repeated in both
 * 128-bit halves (for in-lane shuffles): tab[0] scales 0..7, tab[1] 8..15. Q4_K and Q5_K have 8
 * scales (tab[1]: their mins). Built in registers: scalar scale bytes moved into vectors cost
 * failed store forwards. */
static inline __attribute__((always_inline)) __m256i scale_bytes(const uint8_t *blk, const int T) {
    if (T == KQ4 || T == KQ5) return _mm256_cvtepu8_epi16(k4_scales_mins(blk + 4));
    if (T == KQ6) return _mm256_cvtepi8_epi16(_mm_loadu_si128((const __m128i *)(blk + 192)));
    if (T == KQ3) return _mm256_sub_epi16(_mm256_cvtepu8_epi16(q3_k_scales_biased(blk)), _mm256_set1_epi16(32));
    return _mm256_and_si256(wide_u8(blk), _mm256_set1_epi16(15)); /* Q2_K: the low nibbles */
}
static inline void scale_tables(__m256i st, __m256i tab[2]) {
    tab[0] = _mm256_permute2x128_si256(st, st, 0x00);
    tab[1] = _mm256_permute2x128_si256(st, st, 0x11);
}

/* Bit b (0..7) of each byte of v moved to bit `to` (16-bit shifts: the bits they carry across a
 * byte's edge are masked off). */
static inline __m256i bit_to(__m256i v, const int b, const int to) {
    const __m256i s = b <= to ? _mm256_slli_epi16(v, to - b) : _mm256_srli_epi16(v, b - to);
    return _mm256_and_si256(s, _mm256_set1_epi8((char)(1 << to)));
}

/* Unit v (elements 32 v .. 32 v + 31) of one row's super-block: *w the bytes u + K_BIAS, *sc the
 * int16 scale of each int16 lane there (Q4_K, Q5_K: sub-block v's; the others sub-block 2 v in the
 * low 128 bits, 2 v + 1 in the high), as the elements' pairs and the quad order both need. */
static inline __attribute__((always_inline)) void unit(const uint8_t *blk, const __m256i tab[2], const int v,
                                                      __m256i *w, __m256i *sc, const int T) {
    const __m256i low4 = _mm256_set1_epi8(15);
    if (T == KQ4 || T == KQ5) { /* the low (v even) or high nibbles of qs[32 (v / 2) ..], fifth bit v of qh */
        const __m256i qs = _mm256_loadu_si256((const __m256i *)(blk + (T == KQ4 ? 16 : 48) + 32 * (v / 2)));
        *w = _mm256_and_si256(v & 1 ? _mm256_srli_epi16(qs, 4) : qs, low4);
        if (T == KQ5) *w = _mm256_or_si256(*w, bit_to(_mm256_loadu_si256((const __m256i *)(blk + 16)), v, 4));
        *sc = _mm256_shuffle_epi8(tab[0], _mm256_set1_epi16((short)(((2 * v + 1) << 8) | (2 * v))));
        return;
    }
    if (T == KQ6) { /* element 128h + 32k + l: nibble of ql, bit pair k of qh */
        const int h = v >> 2, k = v & 3;
        const __m256i ql = _mm256_loadu_si256((const __m256i *)(blk + 64 * h + 32 * (k & 1)));
        const __m256i qh = _mm256_loadu_si256((const __m256i *)(blk + 128 + 32 * h));
        const __m256i hi = 2 * k <= 4 ? _mm256_slli_epi16(qh, 4 - 2 * k) : _mm256_srli_epi16(qh, 2 * k - 4);
        *w = _mm256_or_si256(_mm256_and_si256(k < 2 ? ql : _mm256_srli_epi16(ql, 4), low4),
                             _mm256_and_si256(hi, _mm256_set1_epi8(0x30)));
    } else { /* Q2_K, Q3_K: element 128n + 32j + l is bits 2j of qs[32n + l] */
        const int n = v >> 2, j = v & 3;
        const __m256i qs = _mm256_loadu_si256((const __m256i *)(blk + (T == KQ2 ? 16 : 32) + 32 * n));
        *w = _mm256_and_si256(_mm256_srli_epi16(qs, 2 * j), _mm256_set1_epi8(3));
        if (T == KQ3) /* hmask bit 4n + j set: u is the two bits, else they minus 4 (so u + 4 here) */
            *w = _mm256_or_si256(*w, bit_to(_mm256_loadu_si256((const __m256i *)blk), 4 * n + j, 2));
    }
    const int a = 2 * (2 * v & 7), b = 2 * ((2 * v + 1) & 7); /* byte offsets of scales 2v, 2v + 1 in tab */
    *sc = _mm256_shuffle_epi8(tab[v >> 2], _mm256_setr_epi8(a, a + 1, a, a + 1, a, a + 1, a, a + 1, a, a + 1, a, a + 1, a,
                                                            a + 1, a, a + 1, b, b + 1, b, b + 1, b, b + 1, b, b + 1, b,
                                                            b + 1, b, b + 1, b, b + 1, b, b + 1));
}

/* The mins' factors dmin * m_j of one row's super-block, lane j (st: its scale_bytes): m[0] j < 8,
 * m[1] j = 8..15 for Q2_K (m the scale bytes' high nibbles). */
static inline void row_mins(const uint8_t *blk, __m256i st, __m256 m[2], const int T) {
    const __m256 dmin = _mm256_set1_ps(rd_f16(blk + (T == KQ2 ? 82 : 2)));
    const __m256i mt = T == KQ2 ? _mm256_srli_epi16(wide_u8(blk), 4) : st;
    m[0] = _mm256_mul_ps(_mm256_cvtepi32_ps(_mm256_cvtepi16_epi32(_mm256_extracti128_si256(mt, T != KQ2))), dmin);
    if (T == KQ2) m[1] = _mm256_mul_ps(_mm256_cvtepi32_ps(_mm256_cvtepi16_epi32(_mm256_extracti128_si256(mt, 1))), dmin);
}

/* The f32 step of a super-block for one (row, token): the exact lanes T times d dx (the row's d
 * times the token's dx, one f32 product), then the mins. */
static inline __attribute__((always_inline)) __m256 step(__m256 acc, __m256i t, float ddx, const struct rwkv_xq *x,
                                                        int64_t sb, const __m256 m[2], const int T) {
    acc = _mm256_fmadd_ps(_mm256_cvtepi32_ps(t), _mm256_set1_ps(ddx), acc);
    if (T == KQ4 || T == KQ5) acc = _mm256_fnmadd_ps(m[0], _mm256_loadu_ps(x->sum32 + sb * 8), acc);
    if (T == KQ2) {
        acc = _mm256_fnmadd_ps(m[0], _mm256_loadu_ps(x->sum16 + sb * 16), acc);
        acc = _mm256_fnmadd_ps(m[1], _mm256_loadu_ps(x->sum16 + sb * 16 + 8), acc);
    }
    return acc;
}

/* ------------------------------------------------------------- GEMV -- */

#define QTB 3 /* tokens per pass of the few-token GEMM */

/* The GEMV (tb = 1) and the GEMM of tb tokens: each row's weights stay bytes, each 32 of them
 * unpacked once for the tb tokens. Per unit and plane, vpmaddubsw gives the elements' pair sums
 * of (u + bias) q (|u + bias| <= 63, so they fit int16), and vpmaddwd by the pairs' scales adds
 * neighbouring pairs into lane k's quad; the bias comes off as the same vpmaddwd of the token's
 * pair sums of q (x->q2), times the bias. The panel's T, modulo 2^32 on the way and so exactly. */
static inline __attribute__((always_inline)) void gemvk(const void *w, size_t rb, const struct rwkv_xq *x, float *y,
                                                       int64_t ys, int64_t nr, int64_t nc, const int tb, const int T) {
    const int BB = K_BYTES(T);
    const int64_t nsb = nc / 256;
    const int bias_shift = K_BIAS(T) == 32 ? 5 : 2; /* the bias, a power of two */
    for (int64_t r = 0; r < nr; r++) {
        const uint8_t *row = (const uint8_t *)w + (size_t)r * rb;
        __m256 acc[QTB];
        for (int k = 0; k < tb; k++) acc[k] = _mm256_setzero_ps();
        for (int64_t sb = 0; sb < nsb; sb++) {
            const uint8_t *blk = row + sb * BB;
            for (int l = 0; l < BB; l += 64) _mm_prefetch((const char *)blk + PREFETCH_AHEAD + l, _MM_HINT_T0);
            const __m256i st = scale_bytes(blk, T);
            __m256i tab[2];
            scale_tables(st, tab);
            __m256i al[QTB], ah[QTB], ab[QTB];
            for (int k = 0; k < tb; k++) al[k] = ah[k] = ab[k] = _mm256_setzero_si256();
#pragma GCC unroll 8
            for (int v = 0; v < 8; v++) {
                __m256i wv, sc;
                unit(blk, tab, v, &wv, &sc, T);
                for (int k = 0; k < tb; k++) {
                    const __m256i l = _mm256_loadu_si256((const __m256i *)(x[k].lo + sb * 256 + 32 * v));
                    const __m256i h = _mm256_loadu_si256((const __m256i *)(x[k].hi + sb * 256 + 32 * v));
                    al[k] = _mm256_add_epi32(al[k], _mm256_madd_epi16(_mm256_maddubs_epi16(wv, l), sc));
                    ah[k] = _mm256_add_epi32(ah[k], _mm256_madd_epi16(_mm256_maddubs_epi16(wv, h), sc));
                    if (K_BIAS(T)) {
                        const __m256i q2 = _mm256_loadu_si256((const __m256i *)(x[k].q2 + sb * 128 + 16 * v));
                        ab[k] = _mm256_add_epi32(ab[k], _mm256_madd_epi16(q2, sc));
                    }
                }
            }
            __m256 m[2] = {_mm256_setzero_ps(), _mm256_setzero_ps()};
            if (K_MINS(T)) row_mins(blk, st, m, T);
            const float d = rd_f16(blk + K_DOFF(T));
            for (int k = 0; k < tb; k++) {
                __m256i t = _mm256_add_epi32(al[k], _mm256_slli_epi32(ah[k], 7));
                if (K_BIAS(T)) t = _mm256_sub_epi32(t, _mm256_slli_epi32(ab[k], bias_shift));
                acc[k] = step(acc[k], t, d * x[k].d[sb], &x[k], sb, m, T);
            }
        }
        for (int k = 0; k < tb; k++) y[k * ys + r] = hsum8(acc[k]);
    }
}

/* ------------------------------------------------------------ panel GEMM -- */

#define PR 16           /* rows per panel */
#define TOK_BLOCK 64    /* tokens per pass over a panel (their f32 lanes on the stack, 32 KiB) */
#define TB 4            /* tokens per microkernel call, beside 2 rows: 8 accumulators */
#define PANEL_MIN_TOK 4 /* below it the few-token GEMM */
#define PANEL_AHEAD 2   /* super-blocks a panel's build prefetches ahead */

/* One super-block of PR rows as int16 sc u in quad order: w[row][2 v] the pairs {4k, 4k + 1} of
 * unit v, w[row][2 v + 1] the pairs {4k + 2, 4k + 3}. */
struct panel {
    int16_t w[PR][16][16];
    _Alignas(32) float d[PR];
    __m256 m[PR][2];
};

static inline __attribute__((always_inline)) void build_panel(struct panel *p, const void *w, size_t rb, int64_t r0,
                                                             int64_t nr, int64_t sb, const int T) {
    /* per 128 bits: the bytes of pairs {4k, 4k + 1}, then of {4k + 2, 4k + 3} */
    const __m256i quad = _mm256_setr_epi8(0, 1, 4, 5, 8, 9, 12, 13, 2, 3, 6, 7, 10, 11, 14, 15, 0, 1, 4, 5, 8, 9, 12, 13, 2,
                                          3, 6, 7, 10, 11, 14, 15);
    const __m256i bias = _mm256_set1_epi16(K_BIAS(T));
    for (int i = 0; i < PR; i++) { /* rows past the last: copies of it, never stored */
        const uint8_t *blk = (const uint8_t *)w + (size_t)(r0 + i < nr ? r0 + i : nr - 1) * rb + sb * K_BYTES(T);
        for (int l = 0; l < K_BYTES(T); l += 64) /* the row's next super-block: rows apart, unseen by the hardware */
            _mm_prefetch((const char *)blk + PANEL_AHEAD * K_BYTES(T) + l, _MM_HINT_T0);
        const __m256i st = scale_bytes(blk, T);
        __m256i tab[2];
        scale_tables(st, tab);
#pragma GCC unroll 8
        for (int v = 0; v < 8; v++) {
            __m256i wv, sc;
            unit(blk, tab, v, &wv, &sc, T);
            const __m256i qb = _mm256_permute4x64_epi64(_mm256_shuffle_epi8(wv, quad), _MM_SHUFFLE(3, 1, 2, 0));
            const __m256i u0 = _mm256_sub_epi16(_mm256_cvtepu8_epi16(_mm256_castsi256_si128(qb)), bias);
            const __m256i u1 = _mm256_sub_epi16(_mm256_cvtepu8_epi16(_mm256_extracti128_si256(qb, 1)), bias);
            _mm256_store_si256((__m256i *)p->w[i][2 * v], _mm256_mullo_epi16(u0, sc));
            _mm256_store_si256((__m256i *)p->w[i][2 * v + 1], _mm256_mullo_epi16(u1, sc));
        }
        p->d[i] = rd_f16(blk + K_DOFF(T));
        if (K_MINS(T)) row_mins(blk, st, p->m[i], T);
    }
}

/* a0[t] += w0 . x_t and a1[t] += w1 . x_t (int16 pair products) for 4 tokens; in asm, as GCC kept
 * copying the 8 accumulators between registers and the stack. */
#define M256(p) (*(const __m256i *)(p))
static inline void madd_2x4(__m256i a0[4], __m256i a1[4], const int16_t *w0, const int16_t *w1, const int16_t *x0,
                            const int16_t *x1, const int16_t *x2, const int16_t *x3) {
    __m256i v0, v1, t;
    __asm__("vmovdqa %[w0], %[v0]\n\t"
            "vmovdqa %[w1], %[v1]\n\t"
            "vpmaddwd %[x0], %[v0], %[t]\n\tvpaddd %[t], %[a00], %[a00]\n\t"
            "vpmaddwd %[x0], %[v1], %[t]\n\tvpaddd %[t], %[a10], %[a10]\n\t"
            "vpmaddwd %[x1], %[v0], %[t]\n\tvpaddd %[t], %[a01], %[a01]\n\t"
            "vpmaddwd %[x1], %[v1], %[t]\n\tvpaddd %[t], %[a11], %[a11]\n\t"
            "vpmaddwd %[x2], %[v0], %[t]\n\tvpaddd %[t], %[a02], %[a02]\n\t"
            "vpmaddwd %[x2], %[v1], %[t]\n\tvpaddd %[t], %[a12], %[a12]\n\t"
            "vpmaddwd %[x3], %[v0], %[t]\n\tvpaddd %[t], %[a03], %[a03]\n\t"
            "vpmaddwd %[x3], %[v1], %[t]\n\tvpaddd %[t], %[a13], %[a13]"
            : [a00] "+x"(a0[0]), [a01] "+x"(a0[1]), [a02] "+x"(a0[2]), [a03] "+x"(a0[3]), [a10] "+x"(a1[0]),
              [a11] "+x"(a1[1]), [a12] "+x"(a1[2]), [a13] "+x"(a1[3]), [v0] "=&x"(v0), [v1] "=&x"(v1), [t] "=&x"(t)
            : [w0] "m"(M256(w0)), [w1] "m"(M256(w1)), [x0] "m"(M256(x0)), [x1] "m"(M256(x1)), [x2] "m"(M256(x2)),
              [x3] "m"(M256(x3)));
}

/* Rows i, i + 1 of the panel times tb tokens' super-block sb; acc[t][i]: token t's lanes of row i,
 * ddx[t][i] its d dx. */
static inline __attribute__((always_inline)) void kernel(const struct panel *p, int i, int64_t sb,
                                                        const struct rwkv_xq *x, const int tb, __m256 (*acc)[PR],
                                                        const float (*ddx)[PR], const int T) {
    __m256i a[2][TB];
    for (int t = 0; t < tb; t++) a[0][t] = a[1][t] = _mm256_setzero_si256();
    if (tb == TB) {
        const int16_t *xs[TB];
        for (int t = 0; t < TB; t++) xs[t] = x[t].qp + sb * 256;
        for (int v = 0; v < 16; v++)
            madd_2x4(a[0], a[1], p->w[i][v], p->w[i + 1][v], xs[0] + 16 * v, xs[1] + 16 * v, xs[2] + 16 * v, xs[3] + 16 * v);
    } else {
        for (int v = 0; v < 16; v++) {
            const __m256i w0 = _mm256_load_si256((const __m256i *)p->w[i][v]);
            const __m256i w1 = _mm256_load_si256((const __m256i *)p->w[i + 1][v]);
            for (int t = 0; t < tb; t++) {
                const __m256i xq = _mm256_loadu_si256((const __m256i *)(x[t].qp + sb * 256 + 16 * v));
                a[0][t] = _mm256_add_epi32(a[0][t], _mm256_madd_epi16(w0, xq));
                a[1][t] = _mm256_add_epi32(a[1][t], _mm256_madd_epi16(w1, xq));
            }
        }
    }
    for (int t = 0; t < tb; t++)
        for (int j = 0; j < 2; j++) acc[t][i + j] = step(acc[t][i + j], a[j][t], ddx[t][i + j], &x[t], sb, p->m[i + j], T);
}

static inline __attribute__((always_inline)) void gemm_panel(const void *w, size_t rb, const struct rwkv_xq *x,
                                                            float *y, int64_t ys, int64_t nr, int64_t nc, int64_t nt,
                                                            const int T) {
    const int64_t nsb = nc / 256;
    _Alignas(64) struct panel p;
    _Alignas(64) __m256 acc[TOK_BLOCK][PR];
    for (int64_t t0 = 0; t0 < nt; t0 += TOK_BLOCK) {
        const int64_t tn = nt - t0 < TOK_BLOCK ? nt - t0 : TOK_BLOCK;
        for (int64_t r0 = 0; r0 < nr; r0 += PR) {
            memset(acc, 0, (size_t)tn * sizeof acc[0]);
            for (int64_t sb = 0; sb < nsb; sb++) {
                build_panel(&p, w, rb, r0, nr, sb, T);
                /* tokens outside, rows inside: a few tokens' activations stay in L1 across the panel */
                for (int64_t t = 0; t < tn; t += TB) {
                    const int tb = tn - t >= TB ? TB : (int)(tn - t);
                    _Alignas(32) float ddx[TB][PR]; /* the panel's d times each token's dx, 8 rows a product */
                    for (int k = 0; k < tb; k++)
                        for (int h = 0; h < PR; h += 8)
                            _mm256_store_ps(ddx[k] + h, _mm256_mul_ps(_mm256_load_ps(p.d + h), _mm256_set1_ps(x[t0 + t + k].d[sb])));
                    for (int i = 0; i < PR && r0 + i < nr; i += 2) {
                        if (tb == TB) kernel(&p, i, sb, x + t0 + t, TB, acc + t, ddx, T);
                        else if (tb == 3) kernel(&p, i, sb, x + t0 + t, 3, acc + t, ddx, T);
                        else if (tb == 2) kernel(&p, i, sb, x + t0 + t, 2, acc + t, ddx, T);
                        else kernel(&p, i, sb, x + t0 + t, 1, acc + t, ddx, T);
                    }
                }
            }
            for (int64_t t = 0; t < tn; t++)
                for (int i = 0; i < PR && r0 + i < nr; i++) y[(t0 + t) * ys + r0 + i] = hsum8(acc[t][i]);
        }
    }
}

/* ------------------------------------------------- entry points by type -- */

#define QK_ENTRIES(type, T)                                                                                     \
    void rwkv_gemv_##type##_avx2(const void *w, size_t rb, const struct rwkv_xq *x, float *y, int64_t nr,       \
                                 int64_t nc) {                                                                  \
        gemvk(w, rb, x, y, 0, nr, nc, 1, T);                                                                    \
    }                                                                                                           \
    void rwkv_gemm_##type##_avx2(const void *w, size_t rb, const struct rwkv_xq *x, float *y, int64_t ys,       \
                                 int64_t nr, int64_t nc, int64_t nt) {                                          \
        if (nt >= PANEL_MIN_TOK) gemm_panel(w, rb, x, y, ys, nr, nc, nt, T);                                    \
        else if (nt == 3) gemvk(w, rb, x, y, ys, nr, nc, 3, T);                                                 \
        else if (nt == 2) gemvk(w, rb, x, y, ys, nr, nc, 2, T);                                                 \
        else gemvk(w, rb, x, y, ys, nr, nc, 1, T);                                                              \
    }
QK_ENTRIES(q2_k, KQ2)
QK_ENTRIES(q3_k, KQ3)
QK_ENTRIES(q4_k, KQ4)
QK_ENTRIES(q5_k, KQ5)
QK_ENTRIES(q6_k, KQ6)
#endif
