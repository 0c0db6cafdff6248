/* q8_0_avx512vnni.c — Q8_0 on AVX512-VNNI: the GEMV, the GEMM of a few tokens and the panel GEMM of
 * many, with one integer per block.
 *
 * Every (row, token) is summed the same way, whichever kernel runs it:
 *
 *     acc = 0
 *     for each block b, in order:
 *         T   = sum over the block's 32 elements of w_j * q_j        (exact int32)
 *         acc = fma((float)T, d_b * dx_b, acc)
 *     y = acc
 *
 * so a prompt, a batch and one-token decoding give the same bits, and any kernel that gets the
 * exact block integers T (AMX tiles among them) can join them. One f32 step per block is what
 * lets the panel GEMM spend its time in vpdpwssd (the byte-plane lanes of the 4-bit types'
 * kernels, qdot_avx512vnni.c, need four f32 steps per block and a panel GEMM 40% slower).
 *
 * GEMV: 16 rows at a time, one row per lane of the f32 vectors. Per row and pair of blocks, two
 * vpdpbusd of the weight bytes (offset by 128 to unsigned) against the activation's byte planes
 * (q = 128 hi + lo, pair order, struct rwkv_xq) leave 16 int32 partial sums; a three-step
 * transposing reduction (shuffle, add) turns the 16 rows' vectors into two, block b's T of every
 * row and block b+1's, and the bias is taken back through the integer sum of q. The f32 steps
 * then run 16 rows wide, the rows' scales gathered per block. The 4- and 5-bit block types keep
 * their byte-plane GEMVs: decoding them is bound by the core's arithmetic more than by memory,
 * and with this reduction it ran 10-15% slower (1.6B model, Xeon VM, alternated runs); Q8_0 reads
 * twice the bytes per weight and decoded at 0.9-1.04x, this VM's noise.
 *
 * Panel GEMM: 32 rows' weights are unpacked once per 64 tokens into int16, transposed so that one
 * vector holds element pair k of 16 rows; vpdpwssd against token t's pair k (broadcast) sums 16
 * rows' T in the lanes: the GEMV's integers, then its f32 steps.
 */
#if defined(__x86_64__) && defined(__GNUC__)
#pragma GCC target("avx512f,avx512bw,avx512vl,avx512dq,avx512vnni,avx2,fma,f16c")
#include <immintrin.h>
#include <string.h>

#include "qdot.h"
#include "qvnni.h"
#include "unpack.h"

#define BB 34                /* bytes per block: f16 d | int8 q[32] */
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

/* Blocks A (at a) and B (at a + BB) as 64 unsigned bytes [A0..15 B0..15 A16..31 B16..31], the
 * pair order of the planes: loaded whole, 16-byte quarters reordered, offset by 128. */
static inline __m512i pair_bytes(const uint8_t *a) {
    const __m512i v = _mm512_inserti64x4(_mm512_castsi256_si512(_mm256_loadu_si256((const __m256i *)(a + 2))),
                                         _mm256_loadu_si256((const __m256i *)(a + BB + 2)), 1);
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
                _mm_prefetch((const char *)rows[i] + b * BB + PREFETCH_AHEAD, _MM_HINT_T0);
                _mm_prefetch((const char *)rows[i] + b * BB + PREFETCH_FAR, _MM_HINT_T1);
                wv[i] = pair_bytes(rows[i] + b * BB);
            }
            const __m512 d0 = gather_d(base, off, b * BB), d1 = gather_d(base, off, (b + 1) * BB);
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
            const __m512 d = gather_d(base, off, b * BB);
            for (int k = 0; k < tb; k++) {
                int32_t t[16];
                for (int i = 0; i < 16; i++) t[i] = block_T(base + (r0 + i < nr ? i : nr - 1 - r0) * rb + b * BB, x[k].q + b * 32);
                acc[k] = q8_0_step(acc[k], _mm512_loadu_si512(t), d, x[k].d[b]);
            }
        }
        const __mmask16 valid = nr - r0 >= 16 ? 0xffff : (__mmask16)((1u << (nr - r0)) - 1);
        for (int k = 0; k < tb; k++) _mm512_mask_storeu_ps(y + k * ys + r0, valid, acc[k]);
    }
}

/* ------------------------------------------------------------ panel GEMM -- */

#define G 2            /* 16-row groups per panel */
#define PB 8           /* blocks per panel: 2 x 8 x 1 KiB of int16 pairs */
#define TOK_BLOCK 64   /* tokens per pass over a panel (their f32 state on the stack) */
#define TB 8           /* tokens per microkernel call: G TB chains of vpdpwssd hide its latency */
#define PANEL_MIN_TOK 5 /* below it the few-token GEMM (measured crossover, 2048 x 2048, one thread) */

struct panel {
    int32_t w[G][PB][16][16]; /* [group][block][element pair k][row]: the int16 pair (w_2k, w_2k+1) */
    float d[G][PB][16];
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

/* Blocks [b0, b0 + n) of the 16 G rows from r0 into the panel. */
static void build_panel(struct panel *p, const void *w, size_t rb, int64_t r0, int64_t nr, int64_t b0, int n) {
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
                v[i] = _mm512_cvtepi8_epi16(_mm256_loadu_si256((const __m256i *)(rows[i] + j * BB + 2)));
            }
            transpose16(v);
            for (int k = 0; k < 16; k++) _mm512_store_si512(p->w[g][j][k], v[k]);
        }
    }
}

/* acc += int16 pair products of a and b (in asm: see qgemm_avx512vnni.c). */
static inline __m512i dpw(__m512i acc, __m512i a, __m512i b) {
    __asm__("vpdpwssd %2, %1, %0" : "+v"(acc) : "v"(a), "v"(b));
    return acc;
}

/* Panel blocks [0, n) (the matrix's b0 + j) for tb tokens; acc[t][g]: token t's 16 rows of group g. */
static inline __attribute__((always_inline)) void kernel(const struct panel *p, int n, int64_t b0,
                                                        const struct rwkv_xq *x, const int tb, __m512 (*acc)[G]) {
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
            for (int g = 0; g < G; g++) acc[t][g] = q8_0_step(acc[t][g], a[g][t], _mm512_load_ps(p->d[g][j]), x[t].d[b]);
    }
}

static void gemm_panel(const void *w, size_t rb, const struct rwkv_xq *x, float *y, int64_t ys, int64_t nr,
                       int64_t nc, int64_t nt) {
    const int64_t nb = nc / 32;
    _Alignas(64) struct panel p;
    _Alignas(64) __m512 acc[TOK_BLOCK][G];
    for (int64_t t0 = 0; t0 < nt; t0 += TOK_BLOCK) {
        const int64_t tn = nt - t0 < TOK_BLOCK ? nt - t0 : TOK_BLOCK;
        for (int64_t r0 = 0; r0 < nr; r0 += 16 * G) {
            memset(acc, 0, (size_t)tn * sizeof acc[0]);
            for (int64_t b0 = 0; b0 < nb; b0 += PB) {
                const int n = nb - b0 < PB ? (int)(nb - b0) : PB;
                build_panel(&p, w, rb, r0, nr, b0, n);
                if (b0 + PB < nb) /* the next panel's bytes on their way to L2 */
                    for (int i = 0; i < 16 * G && r0 + i < nr; i++)
                        for (int64_t o = 0; o < PB * BB; o += 64)
                            _mm_prefetch((const char *)w + (size_t)(r0 + i) * rb + (b0 + PB) * BB + o, _MM_HINT_T1);
                int64_t t = 0;
                for (; t + TB <= tn; t += TB) kernel(&p, n, b0, x + t0 + t, TB, acc + t);
                if (t + 4 <= tn) kernel(&p, n, b0, x + t0 + t, 4, acc + t), t += 4;
                if (t + 2 <= tn) kernel(&p, n, b0, x + t0 + t, 2, acc + t), t += 2;
                if (t < tn) kernel(&p, n, b0, x + t0 + t, 1, acc + t);
            }
            for (int g = 0; g < G && r0 + 16 * g < nr; g++) {
                const int64_t left = nr - r0 - 16 * g;
                const __mmask16 valid = left >= 16 ? 0xffff : (__mmask16)((1u << left) - 1);
                for (int64_t t = 0; t < tn; t++) _mm512_mask_storeu_ps(y + (t0 + t) * ys + r0 + 16 * g, valid, acc[t][g]);
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
        gemm_panel(w, rb, x, y, ys, nr, nc, nt);
        return;
    }
    int64_t t = 0;
    for (; t + QTB <= nt; t += QTB) gemv_q8(w, rb, x + t, y + t * ys, ys, nr, nc, QTB);
    if (t + 2 <= nt) gemv_q8(w, rb, x + t, y + t * ys, ys, nr, nc, 2), t += 2;
    if (t < nt) gemv_q8(w, rb, x + t, y + t * ys, ys, nr, nc, 1);
}
#endif
