/* q32_avx2.c — the block-32 types (Q4_0, Q4_1, Q5_0, Q5_1, Q8_0) on AVX2: the GEMV, the GEMM of
 * a few tokens and the panel GEMM of many, with one integer per block.
 *
 * Every (row, token) is summed the same way, whichever kernel runs it:
 *
 *     acc = side = 0
 *     for each block b, in order:
 *         T    = sum over the block's 32 elements of u_j * q_j          (exact int32)
 *         acc  = fma((float)T, d_b * dx_b, acc)
 *         side = fma(m_b, sum32_b, side)                              (Q4_1, Q5_1)
 *     y = acc + side
 *
 * with u the weight's integer (q - 8 for Q4_0, q - 16 for Q5_0, the bytes of Q8_0) and sum32 the
 * f32 sum of the block's activations; so a prompt, a batch and one-token decoding give the same
 * bits (as q32_avx512vnni.c does at AVX512-VNNI).
 *
 * GEMV (and the GEMM of a few tokens): 8 rows at a time, one row per lane of the f32 steps. Each
 * row's block is widened to int16 (unsigned nibbles for the 4- and 5-bit types: the bias comes
 * back once per 8 rows through the integer sum of q) and two vpmaddwd against the activations
 * leave 8 int32 partial sums; a transposing reduction (unpack, add; 21 operations per 8 rows)
 * turns the 8 rows' vectors into their T. That costs what the per-lane f32 scaling it replaces
 * did, and the f32 work is one step per 8 rows.
 *
 * Panel GEMM: 16 rows' blocks widened once per 64 tokens and transposed, so that one vector
 * holds element pair k of 8 rows; vpmaddwd against token t's pair k (broadcast) and an add sum the
 * rows' T in the lanes: 16 multiply-adds per 8 x 32 products of a token, against the GEMV's
 * unpacking, two multiply-adds and reduction per row.
 */
#if defined(__x86_64__) && defined(__GNUC__)
#pragma GCC target("avx2,fma,f16c")
#include <immintrin.h>
#include <string.h>

#include "qdot.h"
#include "unpack.h"

#define QTB 2              /* tokens per pass of the few-token GEMM */

/* --------------------------------------------- 8 rows in the lanes -- */

/* Rows r0 .. r0 + 7 (past nr: the last row again) from w. */
static inline void group_rows(const void *w, size_t rb, int64_t r0, int64_t nr, const uint8_t *rows[8]) {
    for (int i = 0; i < 8; i++) rows[i] = (const uint8_t *)w + (size_t)(r0 + i < nr ? r0 + i : nr - 1) * rb;
}

/* Where the bytes read after row i of a group (rows from r0) at byte `at` lie, for a prefetch: the next
 * row's, or after the 8th the first row's next chunk (at byte `next_chunk`, -1 if none), or the row
 * after the group (past the caller's rows: its next rows, or past the matrix, which a prefetch may
 * name). The GEMVs read each row of a group front to back, a chunk at a time. */
static inline const uint8_t *next_rows(const void *w, size_t rb, const uint8_t *const rows[8], int i, int64_t r0,
                                       int64_t at, int64_t next_chunk) {
    if (i < 7) return rows[i + 1] + at;
    if (next_chunk >= 0) return rows[0] + next_chunk;
    return (const uint8_t *)w + (size_t)(r0 + 8) * rb;
}

/* 8 rows' f16 pairs (a scale d, and m where the block has one), one row per int32 lane, as f32. */
static inline void split_dm(__m256i all, __m256 *d, __m256 *m) {
    /* low halves (d) in the first 8 int16 of each 128-bit lane, high halves (m) after them */
    const __m256i split = _mm256_shuffle_epi8(all, _mm256_setr_epi8(0, 1, 4, 5, 8, 9, 12, 13, 2, 3, 6, 7, 10, 11, 14, 15,
                                                                    0, 1, 4, 5, 8, 9, 12, 13, 2, 3, 6, 7, 10, 11, 14, 15));
    const __m256i q = _mm256_permute4x64_epi64(split, _MM_SHUFFLE(3, 1, 2, 0));
    *d = _mm256_cvtph_ps(_mm256_castsi256_si128(q));
    *m = _mm256_cvtph_ps(_mm256_extracti128_si256(q, 1));
}

/* The f16 pair at byte `at` of 8 rows' blocks as f32. */
static inline void gather_dm(const uint8_t *const rows[8], int64_t at, __m256 *d, __m256 *m) {
    int32_t v[8];
    for (int i = 0; i < 8; i++) memcpy(&v[i], rows[i] + at, 4);
    split_dm(_mm256_setr_epi32(v[0], v[1], v[2], v[3], v[4], v[5], v[6], v[7]), d, m);
}

/* The 8 lane sums of each of 8 vectors: lane i of the result is the sum of v[i]'s lanes. */
static inline __m256i reduce8(const __m256i v[8]) {
    __m256i a[4], b[2];
    for (int k = 0; k < 4; k++) /* [v2k: 0+1.. | v2k+1 ..] pairs interleaved */
        a[k] = _mm256_add_epi32(_mm256_unpacklo_epi32(v[2 * k], v[2 * k + 1]), _mm256_unpackhi_epi32(v[2 * k], v[2 * k + 1]));
    for (int k = 0; k < 2; k++) /* per 128-bit half: rows 4k..4k+3, one partial each */
        b[k] = _mm256_add_epi32(_mm256_unpacklo_epi64(a[2 * k], a[2 * k + 1]), _mm256_unpackhi_epi64(a[2 * k], a[2 * k + 1]));
    /* b[0] = [rows 0 1 2 3 (half 0) | rows 0 1 2 3 (half 1)], b[1] the same for rows 4..7 */
    return _mm256_add_epi32(_mm256_permute2x128_si256(b[0], b[1], 0x20), _mm256_permute2x128_si256(b[0], b[1], 0x31));
}

/* 8 vectors (one per row, 8 int32 lanes each) transposed: v[k] lane r = old v[r] lane k. */
static inline void transpose8(__m256i v[8]) {
    __m256i t[8], s[8];
    for (int i = 0; i < 8; i += 2) {
        t[i] = _mm256_unpacklo_epi32(v[i], v[i + 1]);
        t[i + 1] = _mm256_unpackhi_epi32(v[i], v[i + 1]);
    }
    for (int i = 0; i < 8; i += 4)
        for (int j = 0; j < 2; j++) {
            s[i + 2 * j] = _mm256_unpacklo_epi64(t[i + j], t[i + 2 + j]);
            s[i + 2 * j + 1] = _mm256_unpackhi_epi64(t[i + j], t[i + 2 + j]);
        }
    /* s[c] (c < 4) holds, per 128-bit half h, column 4h + c of rows 0..3; s[4 + c] of rows 4..7 */
    for (int c = 0; c < 4; c++) {
        v[c] = _mm256_permute2x128_si256(s[c], s[4 + c], 0x20);
        v[4 + c] = _mm256_permute2x128_si256(s[c], s[4 + c], 0x31);
    }
}

/* An exact integer's f32 step for 8 rows (lanes) of one token, the rows' scale d times the token's
 * dx; the GEMV and the panel GEMM both take their steps from here, so they stay bit-identical. */
static inline __m256 step_acc(__m256 acc, __m256i T, __m256 d, float dx) {
    return _mm256_fmadd_ps(_mm256_cvtepi32_ps(T), _mm256_mul_ps(d, _mm256_set1_ps(dx)), acc);
}
/* The mins' term: the rows' m (already scaled) times the token's f32 sum of the block. */
static inline __m256 step_side(__m256 side, __m256 m, float sum) {
    return _mm256_fmadd_ps(m, _mm256_set1_ps(sum), side);
}

/* y[r0 + i] = lane i of v, for the rows that exist. */
static inline void store_rows(float *y, __m256 v, int64_t r0, int64_t nr) {
    if (nr - r0 >= 8) {
        _mm256_storeu_ps(y + r0, v);
        return;
    }
    float t[8];
    _mm256_storeu_ps(t, v);
    for (int64_t i = 0; i < nr - r0; i++) y[r0 + i] = t[i];
}

/* acc + the int16 pair products of a and b; in asm, as a loop written with intrinsics had GCC copy
 * every accumulator out and back around each step, and unrolled it spilled them. */
static inline __m256i madd_acc(__m256i acc, __m256i a, __m256i b) {
    __m256i t;
    __asm__("vpmaddwd %3, %2, %1\n\tvpaddd %1, %0, %0" : "+x"(acc), "=&x"(t) : "x"(a), "x"(b));
    return acc;
}

/* ------------------------------------------------------- one block -- */

/* One block of one row as int16: elements 0..15 in *lo, 16..31 in *hi. Q8_0 (BB 34) signed;
 * the others the unsigned nibbles (plus the fifth bit at QH), bias not taken off. */
static inline __attribute__((always_inline)) void widen(const uint8_t *blk, const int BB, const int QS, const int QH,
                                                       __m256i *lo, __m256i *hi) {
    if (BB == 34) {
        *lo = _mm256_cvtepi8_epi16(_mm_loadu_si128((const __m128i *)(blk + 2)));
        *hi = _mm256_cvtepi8_epi16(_mm_loadu_si128((const __m128i *)(blk + 18)));
        return;
    }
    const __m256i wide = _mm256_cvtepu8_epi16(_mm_loadu_si128((const __m128i *)(blk + QS)));
    __m256i l = _mm256_and_si256(wide, _mm256_set1_epi16(0x0f)), h = _mm256_srli_epi16(wide, 4);
    if (QH) {
        /* lane j gets 16 where bit j of the 16 bits is set */
        const __m256i sel = _mm256_setr_epi16(1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1024, 2048, 4096, 8192,
                                              (short)16384, (short)-32768);
        uint32_t qh;
        memcpy(&qh, blk + QH, 4);
        const __m256i bl = _mm256_and_si256(_mm256_set1_epi16((short)(qh & 0xffffu)), sel);
        const __m256i bh = _mm256_and_si256(_mm256_set1_epi16((short)(qh >> 16)), sel);
        l = _mm256_add_epi16(l, _mm256_and_si256(_mm256_cmpeq_epi16(bl, sel), _mm256_set1_epi16(16)));
        h = _mm256_add_epi16(h, _mm256_and_si256(_mm256_cmpeq_epi16(bh, sel), _mm256_set1_epi16(16)));
    }
    *lo = l, *hi = h;
}

/* The GEMV (tb = 1) and the few-token GEMM. Each of 8 rows is read front to back, CHUNK blocks at a
 * time (a whole row of 2048 columns), leaving each block's 8-lane partial sums; then a transposing
 * reduction per block gives the 8 rows' T. Reading the 8 rows side by side instead, a block of each
 * in turn, cost a third of the decoding speed on Zen 3. */
#define CHUNK 64
static inline __attribute__((always_inline)) void gemv32(const void *w, size_t rb, const struct rwkv_xq *x, float *y,
                                                        int64_t ys, int64_t nr, int64_t nc, const int tb, const int BB,
                                                        const int QS, const int QH, const int HAS_M, const int BIAS) {
    const int64_t nb = nc / 32;
    _Alignas(32) __m256i part[QTB][CHUNK][8];
    _Alignas(32) int32_t dm[CHUNK][8]; /* each row's f16 pair, kept as it is read (a gather costs more) */
    for (int64_t r0 = 0; r0 < nr; r0 += 8) {
        const uint8_t *rows[8];
        group_rows(w, rb, r0, nr, rows);
        __m256 acc[QTB], side[QTB];
        for (int k = 0; k < tb; k++) acc[k] = side[k] = _mm256_setzero_ps();
        for (int64_t c0 = 0; c0 < nb; c0 += CHUNK) {
            const int n = nb - c0 < CHUNK ? (int)(nb - c0) : CHUNK;
            for (int i = 0; i < 8; i++) {
                const uint8_t *next = next_rows(w, rb, rows, i, r0, c0 * BB, nb - c0 > CHUNK ? (c0 + CHUNK) * BB : -1);
                for (int b = 0; b < n; b++) {
                    const uint8_t *blk = rows[i] + (c0 + b) * BB;
                    if (BB > 32 || !(b & 1)) /* a line per 64 bytes read */
                        _mm_prefetch((const char *)next + b * BB, _MM_HINT_T0);
                    __m256i lo, hi;
                    widen(blk, BB, QS, QH, &lo, &hi);
                    memcpy(&dm[b][i], blk, 4);
                    for (int k = 0; k < tb; k++) {
                        const int16_t *q = x[k].q + (c0 + b) * 32;
                        part[k][b][i] = _mm256_add_epi32(_mm256_madd_epi16(lo, _mm256_loadu_si256((const __m256i *)q)),
                                                         _mm256_madd_epi16(hi, _mm256_loadu_si256((const __m256i *)(q + 16))));
                    }
                }
            }
            for (int j = 0; j < n; j++) {
                const int64_t b = c0 + j;
                __m256 d, m;
                split_dm(_mm256_load_si256((const __m256i *)dm[j]), &d, &m);
                for (int k = 0; k < tb; k++) {
                    __m256i T = reduce8(part[k][j]);
                    if (BIAS) T = _mm256_sub_epi32(T, _mm256_set1_epi32(BIAS * x[k].qsum[b]));
                    acc[k] = step_acc(acc[k], T, d, x[k].d[b]);
                    if (HAS_M) side[k] = step_side(side[k], m, x[k].sum32[b]);
                }
            }
        }
        for (int k = 0; k < tb; k++) store_rows(y + k * ys, HAS_M ? _mm256_add_ps(acc[k], side[k]) : acc[k], r0, nr);
    }
}

/* ------------------------------------------------------------ panel GEMM -- */

#define G 2            /* 8-row groups per panel */
#define PB 8           /* blocks per panel: 2 x 8 x 512 bytes of int16 pairs */
#define TOK_BLOCK 64   /* tokens per pass over a panel (their f32 state on the stack) */
#define TB 4           /* tokens per microkernel call: G TB accumulators beside the broadcasts */
#define PANEL_MIN_TOK 3 /* below it the few-token GEMM */

struct panel {
    int32_t w[G][PB][16][8]; /* [group][block][element pair k][row]: the int16 pair (u_2k, u_2k+1) */
    float d[G][PB][8], m[G][PB][8];
};

/* Blocks [b0, b0 + n) of the 8 G rows from r0 into the panel, as u - BIAS. */
static inline __attribute__((always_inline)) void build_panel(struct panel *p, const void *w, size_t rb, int64_t r0,
                                                             int64_t nr, int64_t b0, int n, const int BB, const int QS,
                                                             const int QH, const int BIAS) {
    for (int g = 0; g < G; g++) {
        const uint8_t *rows[8]; /* a group past the last row: copies of it, never stored */
        group_rows(w, rb, r0 + 8 * g, nr, rows);
        for (int j = 0; j < n; j++) {
            __m256i lo[8], hi[8];
            for (int i = 0; i < 8; i++) {
                widen(rows[i] + (b0 + j) * BB, BB, QS, QH, &lo[i], &hi[i]);
                if (BIAS) {
                    lo[i] = _mm256_sub_epi16(lo[i], _mm256_set1_epi16(BIAS));
                    hi[i] = _mm256_sub_epi16(hi[i], _mm256_set1_epi16(BIAS));
                }
            }
            transpose8(lo); /* lo[k]: pair k (elements 2k, 2k + 1) of the 8 rows */
            transpose8(hi);
            for (int k = 0; k < 8; k++) {
                _mm256_store_si256((__m256i *)p->w[g][j][k], lo[k]);
                _mm256_store_si256((__m256i *)p->w[g][j][8 + k], hi[k]);
            }
            __m256 d, m;
            gather_dm(rows, (b0 + j) * BB, &d, &m);
            _mm256_store_ps(p->d[g][j], d);
            _mm256_store_ps(p->m[g][j], m);
        }
    }
}

/* Panel blocks [0, n) (the matrix's b0 + j) for tb tokens; acc[t][g], side[t][g]: token t's 8 rows
 * of group g. */
static inline __attribute__((always_inline)) void kernel(const struct panel *p, int n, int64_t b0,
                                                        const struct rwkv_xq *x, const int tb, __m256 (*acc)[G],
                                                        __m256 (*side)[G], const int HAS_M) {
    for (int j = 0; j < n; j++) {
        const int64_t b = b0 + j;
        __m256i a[G][TB];
        for (int g = 0; g < G; g++)
            for (int t = 0; t < tb; t++) a[g][t] = _mm256_setzero_si256();
#pragma GCC unroll 4
        for (int k = 0; k < 16; k++) {
            __m256i xb[TB];
            for (int t = 0; t < tb; t++) {
                int32_t pair;
                memcpy(&pair, x[t].q + b * 32 + 2 * k, 4);
                xb[t] = _mm256_set1_epi32(pair);
            }
            for (int g = 0; g < G; g++) {
                const __m256i wv = _mm256_load_si256((const __m256i *)p->w[g][j][k]);
                for (int t = 0; t < tb; t++) a[g][t] = madd_acc(a[g][t], wv, xb[t]);
            }
        }
        for (int t = 0; t < tb; t++)
            for (int g = 0; g < G; g++) {
                acc[t][g] = step_acc(acc[t][g], a[g][t], _mm256_load_ps(p->d[g][j]), x[t].d[b]);
                if (HAS_M) side[t][g] = step_side(side[t][g], _mm256_load_ps(p->m[g][j]), x[t].sum32[b]);
            }
    }
}

static inline __attribute__((always_inline)) void gemm_panel(const void *w, size_t rb, const struct rwkv_xq *x,
                                                            float *y, int64_t ys, int64_t nr, int64_t nc, int64_t nt,
                                                            const int BB, const int QS, const int QH, const int HAS_M,
                                                            const int BIAS) {
    const int64_t nb = nc / 32;
    _Alignas(64) struct panel p;
    _Alignas(64) __m256 acc[TOK_BLOCK][G], side[TOK_BLOCK][G];
    for (int64_t t0 = 0; t0 < nt; t0 += TOK_BLOCK) {
        const int64_t tn = nt - t0 < TOK_BLOCK ? nt - t0 : TOK_BLOCK;
        for (int64_t r0 = 0; r0 < nr; r0 += 8 * G) {
            memset(acc, 0, (size_t)tn * sizeof acc[0]);
            if (HAS_M) memset(side, 0, (size_t)tn * sizeof side[0]);
            for (int64_t b0 = 0; b0 < nb; b0 += PB) {
                const int n = nb - b0 < PB ? (int)(nb - b0) : PB;
                build_panel(&p, w, rb, r0, nr, b0, n, BB, QS, QH, BIAS);
                int64_t t = 0;
                for (; t + TB <= tn; t += TB) kernel(&p, n, b0, x + t0 + t, TB, acc + t, side + t, HAS_M);
                if (t + 2 <= tn) kernel(&p, n, b0, x + t0 + t, 2, acc + t, side + t, HAS_M), t += 2;
                if (t < tn) kernel(&p, n, b0, x + t0 + t, 1, acc + t, side + t, HAS_M);
            }
            for (int g = 0; g < G && r0 + 8 * g < nr; g++)
                for (int64_t t = 0; t < tn; t++)
                    store_rows(y + (t0 + t) * ys, HAS_M ? _mm256_add_ps(acc[t][g], side[t][g]) : acc[t][g], r0 + 8 * g, nr);
        }
    }
}

/* ------------------------------------------------- entry points by type -- */

#define Q32_ENTRIES(type, ...) Q32_ENTRIES_(type, __VA_ARGS__)
#define Q32_ENTRIES_(type, BB, QS, QH, HAS_M, BIAS, unpack)                                                     \
    void rwkv_gemv_##type##_avx2(const void *w, size_t rb, const struct rwkv_xq *x, float *y, int64_t nr,       \
                                 int64_t nc) {                                                                  \
        gemv32(w, rb, x, y, 0, nr, nc, 1, BB, QS, QH, HAS_M, BIAS);                                             \
    }                                                                                                           \
    void rwkv_gemm_##type##_avx2(const void *w, size_t rb, const struct rwkv_xq *x, float *y, int64_t ys,       \
                                 int64_t nr, int64_t nc, int64_t nt) {                                          \
        if (nt >= PANEL_MIN_TOK) {                                                                              \
            gemm_panel(w, rb, x, y, ys, nr, nc, nt, BB, QS, QH, HAS_M, BIAS);                                   \
            return;                                                                                             \
        }                                                                                                       \
        if (nt == 2) gemv32(w, rb, x, y, ys, nr, nc, 2, BB, QS, QH, HAS_M, BIAS);                               \
        else gemv32(w, rb, x, y, ys, nr, nc, 1, BB, QS, QH, HAS_M, BIAS);                                       \
    }
Q32_ENTRIES(q8_0, RWKV_Q8_0_LAYOUT)
Q32_ENTRIES(q4_0, RWKV_Q4_0_LAYOUT)
Q32_ENTRIES(q4_1, RWKV_Q4_1_LAYOUT)
Q32_ENTRIES(q5_0, RWKV_Q5_0_LAYOUT)
Q32_ENTRIES(q5_1, RWKV_Q5_1_LAYOUT)
#endif
