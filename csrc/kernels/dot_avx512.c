/* dot_avx512.c — AVX-512 (F, BW, VL, DQ) kernels (Skylake-X, Zen 4 and later).
 *
 * Same structure as dot_avx2.c with 16 lanes; the column tail uses masked loads
 * instead of a scalar loop. Compiled for this ISA by the pragma before any include.
 */
#if defined(__x86_64__) && defined(__GNUC__)
#pragma GCC target("avx512f,avx512bw,avx512vl,avx512dq,avx2,fma,f16c")
#include <immintrin.h>

#include "../ggml_types.h"
#include "expf.h"
#include "kernels.h"

/* The sum of 16 lanes, paired as GCC's _mm512_reduce_add_ps pairs them (i with i + 8, then + 4,
 * + 2, + 1), written out so that every compiler adds in that order: the 16-row reduction of the
 * LoRA products and the AVX2 kernels' hsum8 reproduce it. */
static inline float hsum16(__m512 v) {
    const __m256 s8 = _mm256_add_ps(_mm512_extractf32x8_ps(v, 1), _mm512_castps512_ps256(v));
    __m128 s4 = _mm_add_ps(_mm256_extractf128_ps(s8, 1), _mm256_castps256_ps128(s8));
    s4 = _mm_add_ps(s4, _mm_shuffle_ps(s4, s4, _MM_SHUFFLE(1, 0, 3, 2)));
    return _mm_cvtss_f32(_mm_add_ss(s4, _mm_movehdup_ps(s4)));
}

static inline __m512 load16_f32(const float *p, __mmask16 m) { return _mm512_maskz_loadu_ps(m, p); }
static inline __m512 load16_f16(const uint16_t *p, __mmask16 m) {
    return _mm512_cvtph_ps(_mm256_maskz_loadu_epi16(m, p));
}
static inline __m512 load16_bf16(const uint16_t *p, __mmask16 m) {
    __m512i u = _mm512_cvtepu16_epi32(_mm256_maskz_loadu_epi16(m, p));
    return _mm512_castsi512_ps(_mm512_slli_epi32(u, 16));
}

/* Rows up to ROW_ALONE_MAX_COLS wide are read one at a time, front to back: a single
 * sequential stream per thread is what the hardware prefetchers follow best (on Zen 4
 * it streamed 1.3-1.6x faster than four interleaved rows), and x (at most 16 KiB)
 * stays in L1 across rows. Wider rows would push x out of L1 between rows, so four
 * rows share each load of x instead. No software prefetch: it only took load slots
 * from the demand stream. The column tail is masked. */
#define ROW_ALONE_MAX_COLS 4096
/* One row alone: accumulator j takes the 16 columns at 64i + 16j, then a0 the full 16-blocks past
 * the last 64 and a1 the masked tail; the four are added as (a0 + a1) + (a2 + a3). */
#define DEFINE_ROW_SUM(NAME, T, LOAD16)                                                     \
    static inline __attribute__((always_inline)) __m512 NAME(const T *w0, const float *x, const int64_t nc) { \
        const __mmask16 all = 0xffff, tail = (__mmask16)((1u << (nc & 15)) - 1u);          \
        const int64_t nfull = nc & ~(int64_t)15, n64 = nc & ~(int64_t)63;                   \
        __m512 a0 = _mm512_setzero_ps(), a1 = a0, a2 = a0, a3 = a0;                         \
        int64_t c = 0;                                                                      \
        for (; c < n64; c += 64) {                                                          \
            a0 = _mm512_fmadd_ps(LOAD16(w0 + c, all), _mm512_loadu_ps(x + c), a0);          \
            a1 = _mm512_fmadd_ps(LOAD16(w0 + c + 16, all), _mm512_loadu_ps(x + c + 16), a1); \
            a2 = _mm512_fmadd_ps(LOAD16(w0 + c + 32, all), _mm512_loadu_ps(x + c + 32), a2); \
            a3 = _mm512_fmadd_ps(LOAD16(w0 + c + 48, all), _mm512_loadu_ps(x + c + 48), a3); \
        }                                                                                   \
        for (; c < nfull; c += 16) a0 = _mm512_fmadd_ps(LOAD16(w0 + c, all), _mm512_loadu_ps(x + c), a0); \
        if (tail) a1 = _mm512_fmadd_ps(LOAD16(w0 + nfull, tail), _mm512_maskz_loadu_ps(tail, x + nfull), a1); \
        return _mm512_add_ps(_mm512_add_ps(a0, a1), _mm512_add_ps(a2, a3));                \
    }
DEFINE_ROW_SUM(row_sum_f32, float, load16_f32)
DEFINE_ROW_SUM(row_sum_f16, uint16_t, load16_f16)
DEFINE_ROW_SUM(row_sum_bf16, uint16_t, load16_bf16)
#define DEFINE_GEMV(NAME, T, LOAD16, ROW_SUM)                                               \
    static void NAME(const void *w, size_t rb, const float *x, float *y, int64_t nr,       \
                     int64_t nc) {                                                          \
        const __mmask16 all = 0xffff;                                                       \
        const __mmask16 tail = (__mmask16)((1u << (nc & 15)) - 1u);                         \
        const int64_t nfull = nc & ~(int64_t)15;                                            \
        int64_t r = 0;                                                                      \
        if (nc > ROW_ALONE_MAX_COLS)                                                        \
            for (; r + 4 <= nr; r += 4) {                                                   \
                const T *w0 = (const T *)((const char *)w + (size_t)r * rb);                \
                const T *w1 = (const T *)((const char *)w0 + rb);                           \
                const T *w2 = (const T *)((const char *)w1 + rb);                           \
                const T *w3 = (const T *)((const char *)w2 + rb);                           \
                __m512 a0 = _mm512_setzero_ps(), a1 = a0, a2 = a0, a3 = a0;                 \
                for (int64_t c = 0; c < nfull; c += 16) {                                   \
                    __m512 xv = _mm512_loadu_ps(x + c);                                     \
                    a0 = _mm512_fmadd_ps(LOAD16(w0 + c, all), xv, a0);                      \
                    a1 = _mm512_fmadd_ps(LOAD16(w1 + c, all), xv, a1);                      \
                    a2 = _mm512_fmadd_ps(LOAD16(w2 + c, all), xv, a2);                      \
                    a3 = _mm512_fmadd_ps(LOAD16(w3 + c, all), xv, a3);                      \
                }                                                                           \
                if (tail) {                                                                 \
                    __m512 xv = _mm512_maskz_loadu_ps(tail, x + nfull);                     \
                    a0 = _mm512_fmadd_ps(LOAD16(w0 + nfull, tail), xv, a0);                 \
                    a1 = _mm512_fmadd_ps(LOAD16(w1 + nfull, tail), xv, a1);                 \
                    a2 = _mm512_fmadd_ps(LOAD16(w2 + nfull, tail), xv, a2);                 \
                    a3 = _mm512_fmadd_ps(LOAD16(w3 + nfull, tail), xv, a3);                 \
                }                                                                           \
                y[r] = hsum16(a0);                                            \
                y[r + 1] = hsum16(a1);                                        \
                y[r + 2] = hsum16(a2);                                        \
                y[r + 3] = hsum16(a3);                                        \
            }                                                                               \
        for (; r < nr; r++) y[r] = hsum16(ROW_SUM((const T *)((const char *)w + (size_t)r * rb), x, nc)); \
    }

DEFINE_GEMV(rwkv_gemv_f32_avx512, float, load16_f32, row_sum_f32)
DEFINE_GEMV(rwkv_gemv_f16_avx512, uint16_t, load16_f16, row_sum_f16)
DEFINE_GEMV(rwkv_gemv_bf16_avx512, uint16_t, load16_bf16, row_sum_bf16)

/* Several tokens: register blocks of 4 rows x up to 4 tokens, one accumulator per (row,
 * token), so each weight vector loaded (and converted) serves four tokens and each
 * activation vector four rows: 16 FMAs per 8 loads, which keeps the FMA unit busy from L1
 * and L2. Every (row, token) sum is the GEMV's, operation for operation, so the results
 * are bit-identical to it:
 * - rows up to ROW_ALONE_MAX_COLS: the GEMV keeps four accumulators per row, accumulator j
 *   taking the 16 columns at 64i + 16j (plus, for j = 0, the full 16-blocks past the last
 *   64 and, for j = 1, the masked tail), then adds them as (a0 + a1) + (a2 + a3). The GEMM
 *   runs one pass per j over the block (16 accumulators in registers), keeps the four
 *   partial vectors of each (row, token) and adds them the same way.
 * - wider rows: the GEMV's 4-row blocks have one accumulator per row over every 16
 *   columns: one pass.
 * Leftover rows (fewer than 4 at the end) go through the GEMV itself; one or two tokens
 * (rows up to ROW_ALONE_MAX_COLS) through the row form below (GEMM_ROW_MAX_TOK). */
#define GEMM_RB 4
#define GEMM_TB 4
/* Columns per panel of the multi-pass blocks: the four passes over a panel find its 4 rows
 * (4 KiB of F16) and 4 tokens (8 KiB) in L1; across panels each (row, token) carries its
 * four partial sums in memory. 20% faster than passes over whole rows (1 thread, 2048
 * columns). */
#define GEMM_PANEL 512
/* Below this many columns the blocks' fixed cost (64 partial sums to clear, carry and add
 * per 16 outputs) outweighs the loads they save: the LoRA products with 32 or 64 columns
 * ran 4x slower as blocks than as 2 x 2 register blocks (narrow). */
#define GEMM_MIN_COLS 256
/* One 16-column step (mask M) of a block: 4 weight vectors against tb token vectors. */
#define GEMM_STEP(LOAD16, C, M)                                                                     \
    {                                                                                              \
        __m512 wv[GEMM_RB];                                                                         \
        for (int r = 0; r < GEMM_RB; r++) wv[r] = LOAD16(wr[r] + (C), M);                            \
        for (int t = 0; t < tb; t++) {                                                              \
            const __m512 xv = _mm512_maskz_loadu_ps(M, xt[t] + (C));                                \
            for (int r = 0; r < GEMM_RB; r++) acc[r][t] = _mm512_fmadd_ps(wv[r], xv, acc[r][t]);    \
        }                                                                                           \
    }
/* acc <-> one of the four partial sums of every (row, token) */
#define GEMM_ACC_LOAD(P)                                                                            \
    for (int r = 0; r < GEMM_RB; r++)                                                               \
        for (int t = 0; t < tb; t++) acc[r][t] = (P)[r][t];
#define GEMM_ACC_STORE(P)                                                                           \
    for (int r = 0; r < GEMM_RB; r++)                                                               \
        for (int t = 0; t < tb; t++) (P)[r][t] = acc[r][t];
#define DEFINE_GEMM_BLOCK(NAME, T, LOAD16)                                                          \
    static inline __attribute__((always_inline)) void NAME(                                         \
        const T *const *wr, const float *x, int64_t xs, float *y, int64_t ys, int64_t nc, const int tb) { \
        const __mmask16 all = 0xffff;                                                               \
        const __mmask16 tail = (__mmask16)((1u << (nc & 15)) - 1u);                                 \
        const int64_t nfull = nc & ~(int64_t)15, n64 = nc & ~(int64_t)63;                           \
        const float *xt[GEMM_TB];                                                                   \
        for (int t = 0; t < tb; t++) xt[t] = x + t * xs;                                            \
        __m512 acc[GEMM_RB][GEMM_TB];                                                               \
        if (nc > ROW_ALONE_MAX_COLS) {                                                              \
            for (int r = 0; r < GEMM_RB; r++)                                                       \
                for (int t = 0; t < tb; t++) acc[r][t] = _mm512_setzero_ps();                       \
            for (int64_t c = 0; c < nfull; c += 16) GEMM_STEP(LOAD16, c, all)                       \
            if (tail) GEMM_STEP(LOAD16, nfull, tail)                                                \
            for (int t = 0; t < tb; t++)                                                            \
                for (int r = 0; r < GEMM_RB; r++) y[t * ys + r] = hsum16(acc[r][t]);   \
            return;                                                                                 \
        }                                                                                           \
        __m512 part[4][GEMM_RB][GEMM_TB];                                                           \
        for (int j = 0; j < 4; j++)                                                                 \
            for (int r = 0; r < GEMM_RB; r++)                                                       \
                for (int t = 0; t < tb; t++) part[j][r][t] = _mm512_setzero_ps();                   \
        for (int64_t c0 = 0; c0 < n64; c0 += GEMM_PANEL) {                                          \
            const int64_t c1 = c0 + GEMM_PANEL < n64 ? c0 + GEMM_PANEL : n64;                       \
            for (int j = 0; j < 4; j++) {                                                           \
                GEMM_ACC_LOAD(part[j])                                                              \
                for (int64_t c = c0 + 16 * j; c < c1; c += 64) GEMM_STEP(LOAD16, c, all)            \
                GEMM_ACC_STORE(part[j])                                                             \
            }                                                                                       \
        }                                                                                           \
        /* as the GEMV: full 16-blocks past the last 64 into the first sum, the tail into the second */ \
        GEMM_ACC_LOAD(part[0])                                                                      \
        for (int64_t c = n64; c < nfull; c += 16) GEMM_STEP(LOAD16, c, all)                         \
        GEMM_ACC_STORE(part[0])                                                                     \
        if (tail) {                                                                                 \
            GEMM_ACC_LOAD(part[1])                                                                  \
            GEMM_STEP(LOAD16, nfull, tail)                                                          \
            GEMM_ACC_STORE(part[1])                                                                 \
        }                                                                                           \
        for (int t = 0; t < tb; t++)                                                                \
            for (int r = 0; r < GEMM_RB; r++)                                                       \
                y[t * ys + r] = hsum16(_mm512_add_ps(_mm512_add_ps(part[0][r][t], part[1][r][t]), \
                                                                   _mm512_add_ps(part[2][r][t], part[3][r][t]))); \
    }
/* Narrow rows (the LoRA products, 32 or 64 columns): 2 rows x 2 tokens with the GEMV's four
 * accumulators each, all in registers (16 zmm), in one pass. */
#define GEMM_FMA4(LOAD16, J, C)                                                                          \
    {                                                                                              \
        const __m512 wa = LOAD16(wa_ + (C) + 16 * (J), all), wb = LOAD16(wb_ + (C) + 16 * (J), all); \
        const __m512 xa = _mm512_loadu_ps(xa_ + (C) + 16 * (J)), xb = _mm512_loadu_ps(xb_ + (C) + 16 * (J)); \
        A0[J] = _mm512_fmadd_ps(wa, xa, A0[J]);                                                      \
        A1[J] = _mm512_fmadd_ps(wa, xb, A1[J]);                                                      \
        B0[J] = _mm512_fmadd_ps(wb, xa, B0[J]);                                                      \
        B1[J] = _mm512_fmadd_ps(wb, xb, B1[J]);                                                      \
    }
#define GEMM_SUM4(A) hsum16(_mm512_add_ps(_mm512_add_ps(A[0], A[1]), _mm512_add_ps(A[2], A[3])))
#define DEFINE_GEMM_NARROW(NAME, T, LOAD16)                                                         \
    static void NAME(const T *wa_, const T *wb_, const float *xa_, const float *xb_, float *y, int64_t ys, \
                     int64_t nc) {                                                                  \
        const __mmask16 all = 0xffff;                                                               \
        const __mmask16 tail = (__mmask16)((1u << (nc & 15)) - 1u);                                 \
        const int64_t nfull = nc & ~(int64_t)15, n64 = nc & ~(int64_t)63;                           \
        __m512 A0[4], A1[4], B0[4], B1[4];                                                          \
        for (int j = 0; j < 4; j++) A0[j] = A1[j] = B0[j] = B1[j] = _mm512_setzero_ps();            \
        int64_t c = 0;                                                                              \
        for (; c < n64; c += 64) {                                                                  \
            GEMM_FMA4(LOAD16, 0, c) GEMM_FMA4(LOAD16, 1, c) GEMM_FMA4(LOAD16, 2, c) GEMM_FMA4(LOAD16, 3, c) \
        }                                                                                           \
        for (; c < nfull; c += 16) GEMM_FMA4(LOAD16, 0, c)                                           \
        if (tail) {                                                                                 \
            const __m512 wa = LOAD16(wa_ + nfull, tail), wb = LOAD16(wb_ + nfull, tail);             \
            const __m512 xa = _mm512_maskz_loadu_ps(tail, xa_ + nfull), xb = _mm512_maskz_loadu_ps(tail, xb_ + nfull); \
            A0[1] = _mm512_fmadd_ps(wa, xa, A0[1]);                                                  \
            A1[1] = _mm512_fmadd_ps(wa, xb, A1[1]);                                                  \
            B0[1] = _mm512_fmadd_ps(wb, xa, B0[1]);                                                  \
            B1[1] = _mm512_fmadd_ps(wb, xb, B1[1]);                                                  \
        }                                                                                           \
        y[0] = GEMM_SUM4(A0), y[ys] = GEMM_SUM4(A1), y[1] = GEMM_SUM4(B0), y[ys + 1] = GEMM_SUM4(B1); \
    }
/* The horizontal sums of 16 vectors at once, each pairing exactly as hsum16 (lane i with i + 8,
 * then + 4, + 2, + 1): a tree of shuffles across vectors instead of 16 trees
 * inside one. Lane r of the result is the sum of v[r]. */
static inline __m512 reduce_add_16(const __m512 v[16]) {
    __m512 u[8], w[4], z[2];
    for (int k = 0; k < 8; k++) /* [v2k lanes i + (i + 8) | v2k+1's], i < 8 */
        u[k] = _mm512_add_ps(_mm512_shuffle_f32x4(v[2 * k], v[2 * k + 1], _MM_SHUFFLE(3, 2, 3, 2)),
                             _mm512_shuffle_f32x4(v[2 * k], v[2 * k + 1], _MM_SHUFFLE(1, 0, 1, 0)));
    for (int m = 0; m < 4; m++) /* block j: row 4m + j's i + (i + 4), i < 4 */
        w[m] = _mm512_add_ps(_mm512_shuffle_f32x4(u[2 * m], u[2 * m + 1], _MM_SHUFFLE(3, 1, 3, 1)),
                             _mm512_shuffle_f32x4(u[2 * m], u[2 * m + 1], _MM_SHUFFLE(2, 0, 2, 0)));
    for (int n = 0; n < 2; n++) /* block j: rows 8n + j, 8n + 4 + j, two lanes each */
        z[n] = _mm512_add_ps(_mm512_shuffle_ps(w[2 * n], w[2 * n + 1], _MM_SHUFFLE(1, 0, 1, 0)),
                             _mm512_shuffle_ps(w[2 * n], w[2 * n + 1], _MM_SHUFFLE(3, 2, 3, 2)));
    /* block j: rows j, 4 + j, 8 + j, 12 + j */
    const __m512 r = _mm512_add_ps(_mm512_shuffle_ps(z[0], z[1], _MM_SHUFFLE(2, 0, 2, 0)),
                                   _mm512_shuffle_ps(z[0], z[1], _MM_SHUFFLE(3, 1, 3, 1)));
    return _mm512_permutexvar_ps(_mm512_setr_epi32(0, 4, 8, 12, 1, 5, 9, 13, 2, 6, 10, 14, 3, 7, 11, 15), r);
}
/* Narrow rows (the LoRA products), 16 at a time for one token: each row's four partial sums as
 * the GEMV forms them, then the 16 horizontal sums together (one reduction tree costs as much
 * as the row's products at 32 or 64 columns). */
#define DEFINE_GEMM_NARROW16(NAME, T, ROW_SUM)                                                      \
    static inline __attribute__((always_inline)) void NAME##_n(const void *w, size_t rb, const float *x, float *y, \
                                                               const int64_t nc) {                  \
        __m512 v[16];                                                                               \
        for (int i = 0; i < 16; i++) v[i] = ROW_SUM((const T *)((const char *)w + (size_t)i * rb), x, nc); \
        _mm512_storeu_ps(y, reduce_add_16(v));                                                      \
    }                                                                                               \
    /* the LoRA widths as constants: the 16 rows unrolled, their sums in registers */               \
    static void NAME(const void *w, size_t rb, const float *x, float *y, int64_t nc) {              \
        if (nc == 32) NAME##_n(w, rb, x, y, 32);                                                    \
        else if (nc == 64) NAME##_n(w, rb, x, y, 64);                                               \
        else NAME##_n(w, rb, x, y, nc);                                                             \
    }
/* One or two tokens (batched decoding of two sequences, a tile's last tokens): each row up
 * to ROW_ALONE_MAX_COLS streams once, front to back as in the GEMV, with the GEMV's four
 * partial sums of each token in registers; each weight vector is loaded and converted once
 * for both. Memory-bound like the GEMV, so two tokens cost about one: 1.3x the 4 x 4 blocks'
 * speed for 2 tokens (F16, 2048 columns, threaded); equal for 3, slower from 4 (load-bound). */
#define GEMM_ROW_MAX_TOK 2
#define DEFINE_GEMM_ROW(NAME, T, LOAD16)                                                            \
    static inline __attribute__((always_inline)) void NAME(const T *w0, const float *x, int64_t xs, float *y, \
                                                           int64_t ys, int64_t nc, const int tb) {  \
        const __mmask16 all = 0xffff;                                                               \
        const __mmask16 tail = (__mmask16)((1u << (nc & 15)) - 1u);                                 \
        const int64_t nfull = nc & ~(int64_t)15, n64 = nc & ~(int64_t)63;                           \
        __m512 a[4][GEMM_ROW_MAX_TOK];                                                              \
        for (int j = 0; j < 4; j++)                                                                 \
            for (int t = 0; t < tb; t++) a[j][t] = _mm512_setzero_ps();                             \
        int64_t c = 0;                                                                              \
        for (; c < n64; c += 64)                                                                    \
            for (int j = 0; j < 4; j++) {                                                           \
                const __m512 wv = LOAD16(w0 + c + 16 * j, all);                                     \
                for (int t = 0; t < tb; t++)                                                        \
                    a[j][t] = _mm512_fmadd_ps(wv, _mm512_loadu_ps(x + t * xs + c + 16 * j), a[j][t]); \
            }                                                                                       \
        for (; c < nfull; c += 16) {                                                                \
            const __m512 wv = LOAD16(w0 + c, all);                                                  \
            for (int t = 0; t < tb; t++) a[0][t] = _mm512_fmadd_ps(wv, _mm512_loadu_ps(x + t * xs + c), a[0][t]); \
        }                                                                                           \
        if (tail) {                                                                                 \
            const __m512 wv = LOAD16(w0 + nfull, tail);                                             \
            for (int t = 0; t < tb; t++)                                                            \
                a[1][t] = _mm512_fmadd_ps(wv, _mm512_maskz_loadu_ps(tail, x + t * xs + nfull), a[1][t]); \
        }                                                                                           \
        for (int t = 0; t < tb; t++)                                                                \
            y[t * ys] = hsum16(                                                       \
                _mm512_add_ps(_mm512_add_ps(a[0][t], a[1][t]), _mm512_add_ps(a[2][t], a[3][t])));   \
    }
#define DEFINE_GEMM(NAME, GEMV, T, LOAD16, ROW_SUM)                                                 \
    DEFINE_GEMM_BLOCK(NAME##_block, T, LOAD16)                                                      \
    DEFINE_GEMM_NARROW(NAME##_narrow, T, LOAD16)                                                    \
    DEFINE_GEMM_NARROW16(NAME##_narrow16, T, ROW_SUM)                                               \
    DEFINE_GEMM_ROW(NAME##_row, T, LOAD16)                                                          \
    static void NAME(const void *w, size_t rb, const float *x, int64_t xs, float *y, int64_t ys, int64_t nr, \
                     int64_t nc, int64_t nt) {                                                      \
        int64_t r = 0;                                                                              \
        if (nc >= GEMM_MIN_COLS && nc <= ROW_ALONE_MAX_COLS && nt <= GEMM_ROW_MAX_TOK) {             \
            for (; r < nr; r++) {                                                                   \
                const T *w0 = (const T *)((const char *)w + (size_t)r * rb);                        \
                if (nt == 2) NAME##_row(w0, x, xs, y + r, ys, nc, 2); /* constant: sums in registers */ \
                else NAME##_row(w0, x, xs, y + r, ys, nc, 1);                                       \
            }                                                                                       \
            return;                                                                                 \
        }                                                                                           \
        if (nc < GEMM_MIN_COLS) {                                                                   \
            for (; r + 16 <= nr; r += 16)                                                           \
                for (int64_t t = 0; t < nt; t++)                                                    \
                    NAME##_narrow16((const char *)w + (size_t)r * rb, rb, x + t * xs, y + t * ys + r, nc); \
            const int64_t tpair = nt & ~(int64_t)1, r16 = r;                                        \
            for (; r + 2 <= nr; r += 2) {                                                           \
                const T *wa = (const T *)((const char *)w + (size_t)r * rb), *wb = (const T *)((const char *)wa + rb); \
                for (int64_t t = 0; t < tpair; t += 2)                                              \
                    NAME##_narrow(wa, wb, x + t * xs, x + (t + 1) * xs, y + t * ys + r, ys, nc);    \
            }                                                                                       \
            if (tpair < nt && r > r16)                                                              \
                GEMV((const char *)w + (size_t)r16 * rb, rb, x + tpair * xs, y + tpair * ys + r16, r - r16, nc); \
        }                                                                                           \
        for (; nc >= GEMM_MIN_COLS && r + GEMM_RB <= nr; r += GEMM_RB) {                            \
            const T *wr[GEMM_RB];                                                                   \
            for (int i = 0; i < GEMM_RB; i++) wr[i] = (const T *)((const char *)w + (size_t)(r + i) * rb); \
            int64_t t = 0;                                                                          \
            for (; t + GEMM_TB <= nt; t += GEMM_TB) NAME##_block(wr, x + t * xs, xs, y + t * ys + r, ys, nc, GEMM_TB); \
            switch (nt - t) { /* constant block widths, so the accumulators stay in registers */   \
            case 3: NAME##_block(wr, x + t * xs, xs, y + t * ys + r, ys, nc, 3); break;             \
            case 2: NAME##_block(wr, x + t * xs, xs, y + t * ys + r, ys, nc, 2); break;             \
            case 1: NAME##_block(wr, x + t * xs, xs, y + t * ys + r, ys, nc, 1); break;             \
            default: break;                                                                         \
            }                                                                                       \
        }                                                                                           \
        if (r < nr)                                                                                 \
            for (int64_t t = 0; t < nt; t++)                                                        \
                GEMV((const char *)w + (size_t)r * rb, rb, x + t * xs, y + t * ys + r, nr - r, nc); \
    }

DEFINE_GEMM(rwkv_gemm_f32_avx512, rwkv_gemv_f32_avx512, float, load16_f32, row_sum_f32)
DEFINE_GEMM(rwkv_gemm_f16_avx512, rwkv_gemv_f16_avx512, uint16_t, load16_f16, row_sum_f16)
DEFINE_GEMM(rwkv_gemm_bf16_avx512, rwkv_gemv_bf16_avx512, uint16_t, load16_bf16, row_sum_bf16)

/* WKV6 for one head: the value vector and the output stay in registers for N = 64
 * (RWKV-6's head size); other N multiple of 16 keep y in memory. Separate multiplies
 * and adds (no FMA), rounded exactly like the scalar twin: the recurrence feeds every
 * later token, and fused rounding measurably moved the logits away from the reference. */
static void rwkv_wkv6_avx512(int64_t N, const float *r, const float *k, const float *v, const float *w,
                             const float *u, float *S, float *y) {
    if (N == 64) {
        __m512 v0 = _mm512_loadu_ps(v), v1 = _mm512_loadu_ps(v + 16), v2 = _mm512_loadu_ps(v + 32),
               v3 = _mm512_loadu_ps(v + 48);
        __m512 y0 = _mm512_setzero_ps(), y1 = y0, y2 = y0, y3 = y0;
        for (int64_t i = 0; i < 64; i++) {
            const __m512 ri = _mm512_set1_ps(r[i]), ki = _mm512_set1_ps(k[i]), wi = _mm512_set1_ps(w[i]),
                         uki = _mm512_set1_ps(u[i] * k[i]);
            float *Si = S + i * 64;
#define WKV_LANE(o, vv, yy)                                                        \
    {                                                                              \
        const __m512 s_ = _mm512_loadu_ps(Si + o);                                 \
        yy = _mm512_add_ps(yy, _mm512_mul_ps(ri, _mm512_add_ps(_mm512_mul_ps(uki, vv), s_)));             \
        _mm512_storeu_ps(Si + o, _mm512_add_ps(_mm512_mul_ps(wi, s_), _mm512_mul_ps(ki, vv)));          \
    }
            WKV_LANE(0, v0, y0) WKV_LANE(16, v1, y1) WKV_LANE(32, v2, y2) WKV_LANE(48, v3, y3)
#undef WKV_LANE
        }
        _mm512_storeu_ps(y, y0), _mm512_storeu_ps(y + 16, y1), _mm512_storeu_ps(y + 32, y2),
            _mm512_storeu_ps(y + 48, y3);
        return;
    }
    if (N % 16) { /* not an RWKV-6 head size: let the scalar twin do it */
        rwkv_kernels_scalar.wkv6(N, r, k, v, w, u, S, y);
        return;
    }
    for (int64_t j = 0; j < N; j += 16) _mm512_storeu_ps(y + j, _mm512_setzero_ps());
    for (int64_t i = 0; i < N; i++) {
        const __m512 ri = _mm512_set1_ps(r[i]), ki = _mm512_set1_ps(k[i]), wi = _mm512_set1_ps(w[i]),
                     uki = _mm512_set1_ps(u[i] * k[i]);
        float *Si = S + i * N;
        for (int64_t j = 0; j < N; j += 16) {
            const __m512 vv = _mm512_loadu_ps(v + j), s_ = _mm512_loadu_ps(Si + j);
            const __m512 t = _mm512_mul_ps(ri, _mm512_add_ps(_mm512_mul_ps(uki, vv), s_));
            _mm512_storeu_ps(y + j, _mm512_add_ps(_mm512_loadu_ps(y + j), t));
            _mm512_storeu_ps(Si + j, _mm512_add_ps(_mm512_mul_ps(wi, s_), _mm512_mul_ps(ki, vv)));
        }
    }
}

/* WKV7 for one head (see rwkv_wkv7_fn), 16 keys per vector along each value row of the
 * value-major state; N not a multiple of 16 goes to the scalar twin. Separate multiplies and
 * adds, as in WKV6. */
static void rwkv_wkv7_avx512(int64_t N, const float *r, const float *w, const float *k, const float *v,
                             const float *a, const float *b, float *S, float *y) {
    if (N % 16) {
        rwkv_kernels_scalar.wkv7(N, r, w, k, v, a, b, S, y);
        return;
    }
    for (int64_t i = 0; i < N; i++) {
        float *Si = S + i * N;
        __m512 acc = _mm512_setzero_ps();
        for (int64_t j = 0; j < N; j += 16) acc = _mm512_add_ps(acc, _mm512_mul_ps(_mm512_loadu_ps(Si + j),
                                                                                 _mm512_loadu_ps(a + j)));
        const __m512 sa = _mm512_set1_ps(hsum16(acc)), vi = _mm512_set1_ps(v[i]);
        __m512 yi = _mm512_setzero_ps();
        for (int64_t j = 0; j < N; j += 16) {
            __m512 s_ = _mm512_mul_ps(_mm512_loadu_ps(Si + j), _mm512_loadu_ps(w + j));
            s_ = _mm512_add_ps(s_, _mm512_mul_ps(sa, _mm512_loadu_ps(b + j)));
            s_ = _mm512_add_ps(s_, _mm512_mul_ps(vi, _mm512_loadu_ps(k + j)));
            _mm512_storeu_ps(Si + j, s_);
            yi = _mm512_add_ps(yi, _mm512_mul_ps(s_, _mm512_loadu_ps(r + j)));
        }
        y[i] = hsum16(yi);
    }
}

/* The exp slot (kernels.h), 16 lanes: the scalar twin's operations; vscalefps is ldexpf's
 * single rounding, subnormal results included. */
static inline __m512 exp16(__m512 v) {
    v = _mm512_max_ps(_mm512_set1_ps(RWKV_EXP_MIN), _mm512_min_ps(_mm512_set1_ps(RWKV_EXP_MAX), v));
    const __m512 k = _mm512_roundscale_ps(_mm512_mul_ps(v, _mm512_set1_ps(RWKV_EXP_LOG2E)), _MM_FROUND_TO_NEAREST_INT);
    const __m512 r = _mm512_fmadd_ps(k, _mm512_set1_ps(-RWKV_EXP_LN2_LO),
                                     _mm512_fmadd_ps(k, _mm512_set1_ps(-RWKV_EXP_LN2_HI), v));
    __m512 p = _mm512_fmadd_ps(_mm512_set1_ps(RWKV_EXP_C7), r, _mm512_set1_ps(RWKV_EXP_C6));
    p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(RWKV_EXP_C5));
    p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(RWKV_EXP_C4));
    p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(RWKV_EXP_C3));
    p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(RWKV_EXP_C2));
    p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(1.0f));
    p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(1.0f));
    return _mm512_scalef_ps(p, k);
}

static void rwkv_exp_avx512(const float *x, float *y, int64_t n) {
    int64_t i = 0;
    for (; i + 16 <= n; i += 16) _mm512_storeu_ps(y + i, exp16(_mm512_loadu_ps(x + i)));
    if (i < n) {
        const __mmask16 m = (__mmask16)((1u << (n - i)) - 1u);
        _mm512_mask_storeu_ps(y + i, m, exp16(_mm512_maskz_loadu_ps(m, x + i)));
    }
}

/* Quantized weights: qdot_avx512.c. */
#include "qdot.h"


const struct rwkv_kernels rwkv_kernels_avx512 = {
    .level = "avx512",
    .wkv6 = rwkv_wkv6_avx512,
    .wkv7 = rwkv_wkv7_avx512,
    .exp = rwkv_exp_avx512,
    .gemv_f32 = rwkv_gemv_f32_avx512,
    .gemv_f16 = rwkv_gemv_f16_avx512,
    .gemv_bf16 = rwkv_gemv_bf16_avx512,
    .gemm_f32 = rwkv_gemm_f32_avx512,
    .gemm_f16 = rwkv_gemm_f16_avx512,
    .gemm_bf16 = rwkv_gemm_bf16_avx512,
    .gemv_q4_0 = rwkv_gemv_q4_0_avx512,
    .gemv_q4_1 = rwkv_gemv_q4_1_avx512,
    .gemv_q5_0 = rwkv_gemv_q5_0_avx512,
    .gemv_q5_1 = rwkv_gemv_q5_1_avx512,
    .gemv_q8_0 = rwkv_gemv_q8_0_avx512,
    .gemv_q2_k = rwkv_gemv_q2_k_avx512,
    .gemv_q3_k = rwkv_gemv_q3_k_avx512,
    .gemv_q4_k = rwkv_gemv_q4_k_avx512,
    .gemv_q5_k = rwkv_gemv_q5_k_avx512,
    .gemv_q6_k = rwkv_gemv_q6_k_avx512,
    .gemm_q4_0 = rwkv_gemm_q4_0_avx512,
    .gemm_q4_1 = rwkv_gemm_q4_1_avx512,
    .gemm_q5_0 = rwkv_gemm_q5_0_avx512,
    .gemm_q5_1 = rwkv_gemm_q5_1_avx512,
    .gemm_q8_0 = rwkv_gemm_q8_0_avx512,
    .gemm_q2_k = rwkv_gemm_q2_k_avx512,
    .gemm_q3_k = rwkv_gemm_q3_k_avx512,
    .gemm_q4_k = rwkv_gemm_q4_k_avx512,
    .gemm_q5_k = rwkv_gemm_q5_k_avx512,
    .gemm_q6_k = rwkv_gemm_q6_k_avx512,
};
#else
#include "kernels.h"
const struct rwkv_kernels rwkv_kernels_avx512 = {0};
#endif
