/* dot_avx2.c — AVX2 + FMA + F16C kernels (x86-64 from Haswell on).
 *
 * The target pragma comes before every include so that the intrinsics headers
 * and the inline helpers below are compiled for this ISA only; cpu.c calls these
 * functions only after CPUID/XGETBV said the CPU and OS support them.
 */
#if defined(__x86_64__) && defined(__GNUC__)
#pragma GCC target("avx2,fma,f16c")
#include <immintrin.h>
#include <string.h>

#include "../ggml_types.h"
#include "expf.h"
#include "kernels.h"

static inline float hsum8(__m256 v) {
    __m128 s = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
    s = _mm_add_ps(s, _mm_movehl_ps(s, s));
    s = _mm_add_ss(s, _mm_movehdup_ps(s));
    return _mm_cvtss_f32(s);
}

static inline __m256 load8_f32(const float *p) { return _mm256_loadu_ps(p); }
static inline __m256 load8_f16(const uint16_t *p) {
    return _mm256_cvtph_ps(_mm_loadu_si128((const __m128i *)p));
}
static inline __m256 load8_bf16(const uint16_t *p) {
    __m256i u = _mm256_cvtepu16_epi32(_mm_loadu_si128((const __m128i *)p));
    return _mm256_castsi256_ps(_mm256_slli_epi32(u, 16));
}

/* The sums of dot_avx512.c, lane for lane, so float products give the same bits at both
 * levels: each zmm accumulator there is a pair of ymm here (columns +0..7 and +8..15 of
 * each 16), the column tail is zero-filled to 16 as its masked loads do, and hsum8 of the
 * pair's sum adds in _mm512_reduce_add_ps's order. (An order of our own, 8 lanes wide, put
 * the F16 fixture one rounding further from the rwkv reference than llama.cpp's F32 run.)
 * Rows up to ROW_ALONE_MAX_COLS wide one at a time (one sequential stream per thread, x
 * stays in L1) with four accumulators at 64i + 16j; wider rows four at a time sharing each
 * load of x, one accumulator per row. No software prefetch. */
#define ROW_ALONE_MAX_COLS 4096
/* The last nc & 15 elements at p, zero-filled to 16, as two vectors. */
#define TAIL16(T, LOAD8, p, n, lo, hi)                                                             \
    {                                                                                              \
        T buf_[16] = {0};                                                                          \
        memcpy(buf_, (p), (size_t)(n) * sizeof(T));                                                \
        lo = LOAD8(buf_);                                                                          \
        hi = LOAD8(buf_ + 8);                                                                      \
    }
#define DEFINE_GEMV(NAME, T, LOAD8)                                                                 \
    /* One row alone: accumulators j on columns 64i + 16j (halves h), the 16-blocks past the       \
     * 64-blocks into j = 0 and the tail (xt0, xt1: x's, zero-filled) into j = 1. */               \
    static inline __attribute__((always_inline)) float NAME##_row(const T *w0, const float *x, int64_t nc, \
                                                                  __m256 xt0, __m256 xt1) {        \
        const int64_t nfull = nc & ~(int64_t)15, n64 = nc & ~(int64_t)63;                          \
        const int ntail = (int)(nc & 15);                                                          \
        __m256 a[4][2];                                                                            \
        for (int j = 0; j < 4; j++) a[j][0] = a[j][1] = _mm256_setzero_ps();                       \
        int64_t c = 0;                                                                             \
        for (; c < n64; c += 64)                                                                   \
            for (int j = 0; j < 4; j++) {                                                          \
                a[j][0] = _mm256_fmadd_ps(LOAD8(w0 + c + 16 * j), _mm256_loadu_ps(x + c + 16 * j), a[j][0]);\
                a[j][1] = _mm256_fmadd_ps(LOAD8(w0 + c + 16 * j + 8), _mm256_loadu_ps(x + c + 16 * j + 8), a[j][1]);\
            }                                                                                      \
        for (; c < nfull; c += 16) {                                                               \
            a[0][0] = _mm256_fmadd_ps(LOAD8(w0 + c), _mm256_loadu_ps(x + c), a[0][0]);             \
            a[0][1] = _mm256_fmadd_ps(LOAD8(w0 + c + 8), _mm256_loadu_ps(x + c + 8), a[0][1]);     \
        }                                                                                          \
        if (ntail) {                                                                               \
            __m256 t0, t1;                                                                         \
            TAIL16(T, LOAD8, w0 + nfull, ntail, t0, t1)                                            \
            a[1][0] = _mm256_fmadd_ps(t0, xt0, a[1][0]);                                           \
            a[1][1] = _mm256_fmadd_ps(t1, xt1, a[1][1]);                                           \
        }                                                                                          \
        const __m256 s0 = _mm256_add_ps(_mm256_add_ps(a[0][0], a[1][0]), _mm256_add_ps(a[2][0], a[3][0]));\
        const __m256 s1 = _mm256_add_ps(_mm256_add_ps(a[0][1], a[1][1]), _mm256_add_ps(a[2][1], a[3][1]));\
        return hsum8(_mm256_add_ps(s0, s1));                                                       \
    }                                                                                              \
    static void NAME(const void *w, size_t rb, const float *x, float *y, int64_t nr, int64_t nc) { \
        const int64_t nfull = nc & ~(int64_t)15, n64 = nc & ~(int64_t)63;                          \
        const int ntail = (int)(nc & 15);                                                          \
        __m256 xt0 = _mm256_setzero_ps(), xt1 = xt0;                                               \
        if (ntail) TAIL16(float, _mm256_loadu_ps, x + nfull, ntail, xt0, xt1)                      \
        int64_t r = 0;                                                                             \
        if (nc > ROW_ALONE_MAX_COLS)                                                               \
            for (; r + 4 <= nr; r += 4) {                                                          \
                const T *wr[4];                                                                    \
                for (int i = 0; i < 4; i++) wr[i] = (const T *)((const char *)w + (size_t)(r + i) * rb); \
                __m256 a[4][2];                                                                    \
                for (int i = 0; i < 4; i++) a[i][0] = a[i][1] = _mm256_setzero_ps();               \
                for (int64_t c = 0; c < nfull; c += 16) {                                          \
                    const __m256 x0 = _mm256_loadu_ps(x + c), x1 = _mm256_loadu_ps(x + c + 8);     \
                    for (int i = 0; i < 4; i++) {                                                  \
                        a[i][0] = _mm256_fmadd_ps(LOAD8(wr[i] + c), x0, a[i][0]);                  \
                        a[i][1] = _mm256_fmadd_ps(LOAD8(wr[i] + c + 8), x1, a[i][1]);              \
                    }                                                                              \
                }                                                                                  \
                if (ntail)                                                                         \
                    for (int i = 0; i < 4; i++) {                                                  \
                        __m256 w0, w1;                                                             \
                        TAIL16(T, LOAD8, wr[i] + nfull, ntail, w0, w1)                             \
                        a[i][0] = _mm256_fmadd_ps(w0, xt0, a[i][0]);                               \
                        a[i][1] = _mm256_fmadd_ps(w1, xt1, a[i][1]);                               \
                    }                                                                              \
                for (int i = 0; i < 4; i++) y[r + i] = hsum8(_mm256_add_ps(a[i][0], a[i][1]));     \
            }                                                                                      \
        for (; r < nr; r++) y[r] = NAME##_row((const T *)((const char *)w + (size_t)r * rb), x, nc, xt0, xt1);\
    }

DEFINE_GEMV(rwkv_gemv_f32_avx2, float, load8_f32)
DEFINE_GEMV(rwkv_gemv_f16_avx2, uint16_t, load8_f16)
DEFINE_GEMV(rwkv_gemv_bf16_avx2, uint16_t, load8_bf16)

/* Several tokens, bit-identical to the GEMV per token: every (row, token) keeps the GEMV's
 * accumulators and runs each one's fused multiply-adds in its column order, then adds them as
 * the GEMV does. An accumulator's columns are 8-wide steps of a fixed stride (the GEMV's 64 for
 * rows alone, 16 for its 4-row blocks of wide rows), so the GEMM runs one accumulator at a time
 * for GR rows x GT tokens, 12 ymm of sums beside the rows' weights and one token's activations:
 * each weight vector is loaded and converted once for 4 tokens, each activation vector loaded
 * once for 3 rows (7 loads per 12 multiply-adds; 2 x 6 took 8 and ran ~20% slower on Zen 3).
 * Columns go in chunks of CHUNK_COLS, whose activations are copied in the order the accumulators
 * read them: they stay in L1, and tokens 4 KiB apart no longer share its sets. The accumulators
 * wait on the stack between chunks; rows go in blocks of ROW_BLOCK per token group, so the
 * block's weights stay in L2 while the tokens' activations are copied once per block. */
#define GR 3
#define GT 4 /* the dispatch below names each token count up to it */
#define CHUNK_COLS 1024
#define ROW_BLOCK 48
#define NARROW_MAX_COLS 256
#define DEFINE_GEMM(NAME, GEMV, T, LOAD8)                                                           \
    /* acc[r][t] += w_r[c] * x_t for the n columns c = c0 + stride i, 8 at a time, x_t at x + t xs \
     * and xstep further each step */                                                            \
    static inline __attribute__((always_inline)) void NAME##_run(const T *const w[GR], const float *x, \
                                                                 int64_t xs, int64_t xstep, int64_t c, int64_t stride, \
                                                                 int64_t n, __m256 (*st)[GT][8], int g, const int tb) { \
        __m256 a[GR][GT];                                                                           \
        for (int r = 0; r < GR; r++)                                                                \
            for (int t = 0; t < tb; t++) a[r][t] = st[r][t][g];                                     \
        for (int64_t i = 0; i < n; i++, c += stride, x += xstep) {                                  \
            __m256 v[GR];                                                                           \
            for (int r = 0; r < GR; r++) v[r] = LOAD8(w[r] + c);                                    \
            for (int t = 0; t < tb; t++) {                                                          \
                __m256 xv = _mm256_loadu_ps(x + t * xs);                                            \
                __asm__("" : "+x"(xv)); /* one load for the rows: GCC would fold it into each */    \
                for (int r = 0; r < GR; r++) a[r][t] = _mm256_fmadd_ps(v[r], xv, a[r][t]);          \
            }                                                                                       \
        }                                                                                           \
        for (int r = 0; r < GR; r++)                                                                \
            for (int t = 0; t < tb; t++) st[r][t][g] = a[r][t];                                     \
    }                                                                                               \
    /* The zero-filled tail (nc & 15 columns from nfull) into accumulators g and g + 1. */         \
    static inline void NAME##_tail(const T *const w[GR], const float *x, int64_t xs, int64_t nfull, int ntail, \
                                   __m256 (*st)[GT][8], int g, int tb) {                            \
        for (int r = 0; r < GR; r++) {                                                              \
            __m256 w_[2];                                                                           \
            TAIL16(T, LOAD8, w[r] + nfull, ntail, w_[0], w_[1])                                     \
            for (int t = 0; t < tb; t++) {                                                          \
                __m256 x_[2];                                                                       \
                TAIL16(float, _mm256_loadu_ps, x + t * xs + nfull, ntail, x_[0], x_[1])             \
                for (int h = 0; h < 2; h++) st[r][t][g + h] = _mm256_fmadd_ps(w_[h], x_[h], st[r][t][g + h]); \
            }                                                                                       \
        }                                                                                           \
    }                                                                                               \
    /* The rest of the row alone's columns (16-blocks into j = 0, the tail into j = 1; wide rows: \
     * the tail), then the GEMV's additions. */                                                    \
    static inline __attribute__((always_inline)) void NAME##_finish(const T *const w[GR], const float *x, int64_t xs, \
                                                                    float *y, int64_t ys, int nrows, int64_t nc, \
                                                                    __m256 (*st)[GT][8], int alone, const int tb) { \
        const int64_t nfull = nc & ~(int64_t)15, n64 = nc & ~(int64_t)63;                           \
        const int ntail = (int)(nc & 15);                                                           \
        if (alone)                                                                                  \
            for (int h = 0; h < 2; h++) NAME##_run(w, x + n64 + 8 * h, xs, 16, n64 + 8 * h, 16, (nfull - n64) / 16, st, h, tb); \
        if (ntail) NAME##_tail(w, x, xs, nfull, ntail, st, alone ? 2 : 0, tb);                      \
        for (int r = 0; r < nrows; r++)                                                             \
            for (int t = 0; t < tb; t++) {                                                          \
                __m256 *a = st[r][t];                                                               \
                if (!alone) {                                                                       \
                    y[t * ys + r] = hsum8(_mm256_add_ps(a[0], a[1]));                               \
                    continue;                                                                       \
                }                                                                                   \
                const __m256 s0 = _mm256_add_ps(_mm256_add_ps(a[0], a[2]), _mm256_add_ps(a[4], a[6])); \
                const __m256 s1 = _mm256_add_ps(_mm256_add_ps(a[1], a[3]), _mm256_add_ps(a[5], a[7])); \
                y[t * ys + r] = hsum8(_mm256_add_ps(s0, s1));                                       \
            }                                                                                       \
    }                                                                                               \
    /* Rows [r0, r1) (at most ROW_BLOCK) x tb tokens: the 64-blocks (alone: the GEMV's row-alone \
     * form, accumulators g = 2j + h on columns 64i + 16j + 8h) or the 16-blocks (its 4-row form, \
     * accumulators g = h on columns 16i + 8h), a chunk of columns at a time, one accumulator at a \
     * time; then the rest. The chunk's activations are copied in the order the accumulators read \
     * them (per g, per column step, the tokens' 8 floats side by side), so they stay in L1. */    \
    static inline __attribute__((always_inline)) void NAME##_rows(const void *w, size_t rb, const float *x, int64_t xs, \
                                                                  float *y, int64_t ys, int64_t r0, int64_t r1, \
                                                                  int64_t nc, int alone, const int tb) { \
        _Alignas(32) __m256 st[ROW_BLOCK / GR][GR][GT][8];                                          \
        _Alignas(32) float xb[CHUNK_COLS * GT];                                                     \
        const T *wr[ROW_BLOCK / GR][GR];                                                            \
        const int np = (int)((r1 - r0 + GR - 1) / GR), G = alone ? 8 : 2, S = alone ? 64 : 16;      \
        for (int p = 0; p < np; p++)                                                                \
            for (int i = 0; i < GR; i++) { /* past r1: row r0 + GR p again, never stored */         \
                const int64_t r = r0 + GR * p + i < r1 ? r0 + GR * p + i : r0 + GR * p;             \
                wr[p][i] = (const T *)((const char *)w + (size_t)r * rb);                           \
                for (int t = 0; t < tb; t++)                                                        \
                    for (int g = 0; g < 8; g++) st[p][i][t][g] = _mm256_setzero_ps();               \
            }                                                                                       \
        const int64_t end = alone ? nc & ~(int64_t)63 : nc & ~(int64_t)15;                          \
        for (int64_t c0 = 0; c0 < end; c0 += CHUNK_COLS) {                                          \
            const int64_t n = ((c0 + CHUNK_COLS < end ? c0 + CHUNK_COLS : end) - c0) / S;           \
            float *o = xb;                                                                          \
            for (int g = 0; g < G; g++)                                                             \
                for (int64_t i = 0; i < n; i++)                                                     \
                    for (int t = 0; t < tb; t++, o += 8)                                            \
                        _mm256_store_ps(o, _mm256_loadu_ps(x + t * xs + c0 + S * i + 8 * g));       \
            for (int p = 0; p < np; p++)                                                            \
                for (int g = 0; g < G; g++)                                                         \
                    NAME##_run(wr[p], xb + g * n * tb * 8, 8, 8 * tb, c0 + 8 * g, S, n, st[p], g, tb); \
        }                                                                                           \
        for (int p = 0; p < np; p++) {                                                              \
            const int64_t r = r0 + GR * p;                                                          \
            NAME##_finish(wr[p], x, xs, y + r, ys, r1 - r < GR ? (int)(r1 - r) : GR, nc, st[p], alone, tb); \
        }                                                                                           \
    }                                                                                               \
    static void NAME(const void *w, size_t rb, const float *x, int64_t xs, float *y, int64_t ys, int64_t nr, \
                     int64_t nc, int64_t nt) {                                                      \
        if (nc <= NARROW_MAX_COLS) { /* the row alone's sums, row after row per token: no chunks */\
            for (int64_t r0 = 0; r0 < nr; r0 += ROW_BLOCK)                                         \
                for (int64_t t = 0; t < nt; t++) {                                                 \
                    const float *xt = x + t * xs;                                                  \
                    __m256 xt0 = _mm256_setzero_ps(), xt1 = xt0;                                   \
                    if (nc & 15) TAIL16(float, _mm256_loadu_ps, xt + (nc & ~(int64_t)15), nc & 15, xt0, xt1)\
                    for (int64_t r = r0; r < nr && r < r0 + ROW_BLOCK; r++)                        \
                        y[t * ys + r] = GEMV##_row((const T *)((const char *)w + (size_t)r * rb), xt, nc, xt0, xt1);\
                }                                                                                  \
            return;                                                                                \
        }                                                                                          \
        const int alone = nc <= ROW_ALONE_MAX_COLS;                                                 \
        const int64_t nrb = alone ? nr : nr & ~(int64_t)3; /* wide rows past the 4-row blocks: the GEMV */ \
        for (int64_t r0 = 0; r0 < nrb; r0 += ROW_BLOCK) {                                           \
            const int64_t r1 = r0 + ROW_BLOCK < nrb ? r0 + ROW_BLOCK : nrb;                         \
            for (int64_t t = 0; t < nt; t += GT) {                                                  \
                const float *xt = x + t * xs;                                                       \
                float *yt = y + t * ys;                                                             \
                switch (nt - t < GT ? (int)(nt - t) : GT) {                                         \
                case 4: NAME##_rows(w, rb, xt, xs, yt, ys, r0, r1, nc, alone, 4); break;           \
                case 3: NAME##_rows(w, rb, xt, xs, yt, ys, r0, r1, nc, alone, 3); break;           \
                case 2: NAME##_rows(w, rb, xt, xs, yt, ys, r0, r1, nc, alone, 2); break;           \
                default: NAME##_rows(w, rb, xt, xs, yt, ys, r0, r1, nc, alone, 1); break;           \
                }                                                                                   \
            }                                                                                       \
        }                                                                                           \
        if (nrb < nr)                                                                               \
            for (int64_t t = 0; t < nt; t++)                                                        \
                GEMV((const char *)w + (size_t)nrb * rb, rb, x + t * xs, y + t * ys + nrb, nr - nrb, nc); \
    }

DEFINE_GEMM(rwkv_gemm_f32_avx2, rwkv_gemv_f32_avx2, float, load8_f32)
DEFINE_GEMM(rwkv_gemm_f16_avx2, rwkv_gemv_f16_avx2, uint16_t, load8_f16)
DEFINE_GEMM(rwkv_gemm_bf16_avx2, rwkv_gemv_bf16_avx2, uint16_t, load8_bf16)

/* WKV6 for one head, 8 values per vector (see rwkv_wkv6_fn); N not a multiple of 8
 * goes to the scalar twin. No FMA: rounded exactly like the scalar twin. */
static void rwkv_wkv6_avx2(int64_t N, const float *r, const float *k, const float *v, const float *w,
                           const float *u, float *S, float *y) {
    if (N % 8) {
        rwkv_kernels_scalar.wkv6(N, r, k, v, w, u, S, y);
        return;
    }
    for (int64_t j = 0; j < N; j += 8) _mm256_storeu_ps(y + j, _mm256_setzero_ps());
    for (int64_t i = 0; i < N; i++) {
        const __m256 ri = _mm256_set1_ps(r[i]), ki = _mm256_set1_ps(k[i]), wi = _mm256_set1_ps(w[i]),
                     uki = _mm256_set1_ps(u[i] * k[i]);
        float *Si = S + i * N;
        for (int64_t j = 0; j < N; j += 8) {
            const __m256 vv = _mm256_loadu_ps(v + j), s_ = _mm256_loadu_ps(Si + j);
            const __m256 t = _mm256_mul_ps(ri, _mm256_add_ps(_mm256_mul_ps(uki, vv), s_));
            _mm256_storeu_ps(y + j, _mm256_add_ps(_mm256_loadu_ps(y + j), t));
            _mm256_storeu_ps(Si + j, _mm256_add_ps(_mm256_mul_ps(wi, s_), _mm256_mul_ps(ki, vv)));
        }
    }
}

/* WKV7 for one head (see rwkv_wkv7_fn), 8 keys per vector along each value row of the
 * value-major state; N not a multiple of 8 goes to the scalar twin. No FMA, as in WKV6. */
static void rwkv_wkv7_avx2(int64_t N, const float *r, const float *w, const float *k, const float *v,
                           const float *a, const float *b, float *S, float *y) {
    if (N % 8) {
        rwkv_kernels_scalar.wkv7(N, r, w, k, v, a, b, S, y);
        return;
    }
    for (int64_t i = 0; i < N; i++) {
        float *Si = S + i * N;
        __m256 acc = _mm256_setzero_ps();
        for (int64_t j = 0; j < N; j += 8) acc = _mm256_add_ps(acc, _mm256_mul_ps(_mm256_loadu_ps(Si + j),
                                                                                _mm256_loadu_ps(a + j)));
        const __m256 sa = _mm256_set1_ps(hsum8(acc)), vi = _mm256_set1_ps(v[i]);
        __m256 yi = _mm256_setzero_ps();
        for (int64_t j = 0; j < N; j += 8) {
            __m256 s_ = _mm256_mul_ps(_mm256_loadu_ps(Si + j), _mm256_loadu_ps(w + j));
            s_ = _mm256_add_ps(s_, _mm256_mul_ps(sa, _mm256_loadu_ps(b + j)));
            s_ = _mm256_add_ps(s_, _mm256_mul_ps(vi, _mm256_loadu_ps(k + j)));
            _mm256_storeu_ps(Si + j, s_);
            yi = _mm256_add_ps(yi, _mm256_mul_ps(s_, _mm256_loadu_ps(r + j)));
        }
        y[i] = hsum8(yi);
    }
}

/* The exp slot (kernels.h), 8 lanes: the scalar twin's operations. ldexpf is two exact
 * powers of two, 2^(k >> 1) and 2^(k - (k >> 1)), both normal for k in [-150, 128]: the first
 * product is exact (p is near 1), so the second rounds once, subnormal results included. */
static inline __m256 exp8(__m256 v) {
    v = _mm256_max_ps(_mm256_set1_ps(RWKV_EXP_MIN), _mm256_min_ps(_mm256_set1_ps(RWKV_EXP_MAX), v));
    const __m256 k = _mm256_round_ps(_mm256_mul_ps(v, _mm256_set1_ps(RWKV_EXP_LOG2E)),
                                     _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
    const __m256 r = _mm256_fmadd_ps(k, _mm256_set1_ps(-RWKV_EXP_LN2_LO),
                                     _mm256_fmadd_ps(k, _mm256_set1_ps(-RWKV_EXP_LN2_HI), v));
    __m256 p = _mm256_fmadd_ps(_mm256_set1_ps(RWKV_EXP_C7), r, _mm256_set1_ps(RWKV_EXP_C6));
    p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(RWKV_EXP_C5));
    p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(RWKV_EXP_C4));
    p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(RWKV_EXP_C3));
    p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(RWKV_EXP_C2));
    p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(1.0f));
    p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(1.0f));
    const __m256i ki = _mm256_cvtps_epi32(k), k1 = _mm256_srai_epi32(ki, 1), k2 = _mm256_sub_epi32(ki, k1);
    const __m256i bias = _mm256_set1_epi32(127);
    p = _mm256_mul_ps(p, _mm256_castsi256_ps(_mm256_slli_epi32(_mm256_add_epi32(k1, bias), 23)));
    p = _mm256_mul_ps(p, _mm256_castsi256_ps(_mm256_slli_epi32(_mm256_add_epi32(k2, bias), 23)));
    return _mm256_blendv_ps(p, k, _mm256_cmp_ps(k, k, _CMP_UNORD_Q)); /* NaN in, k (NaN) out */
}

static void rwkv_exp_avx2(const float *x, float *y, int64_t n) {
    int64_t i = 0;
    for (; i + 8 <= n; i += 8) _mm256_storeu_ps(y + i, exp8(_mm256_loadu_ps(x + i)));
    if (i < n) {
        _Alignas(32) float b[8] = {0};
        for (int64_t j = i; j < n; j++) b[j - i] = x[j];
        _mm256_store_ps(b, exp8(_mm256_load_ps(b)));
        for (int64_t j = i; j < n; j++) y[j] = b[j - i];
    }
}

/* Quantized weights: q32_avx2.c (block-32 types) and qk_avx2.c (K types). */
#include "qdot.h"


const struct rwkv_kernels rwkv_kernels_avx2 = {
    .level = "avx2",
    .wkv6 = rwkv_wkv6_avx2,
    .wkv7 = rwkv_wkv7_avx2,
    .exp = rwkv_exp_avx2,
    .gemv_f32 = rwkv_gemv_f32_avx2,
    .gemv_f16 = rwkv_gemv_f16_avx2,
    .gemv_bf16 = rwkv_gemv_bf16_avx2,
    .gemm_f32 = rwkv_gemm_f32_avx2,
    .gemm_f16 = rwkv_gemm_f16_avx2,
    .gemm_bf16 = rwkv_gemm_bf16_avx2,
    .gemv_q4_0 = rwkv_gemv_q4_0_avx2,
    .gemv_q4_1 = rwkv_gemv_q4_1_avx2,
    .gemv_q5_0 = rwkv_gemv_q5_0_avx2,
    .gemv_q5_1 = rwkv_gemv_q5_1_avx2,
    .gemv_q8_0 = rwkv_gemv_q8_0_avx2,
    .gemv_q2_k = rwkv_gemv_q2_k_avx2,
    .gemv_q3_k = rwkv_gemv_q3_k_avx2,
    .gemv_q4_k = rwkv_gemv_q4_k_avx2,
    .gemv_q5_k = rwkv_gemv_q5_k_avx2,
    .gemv_q6_k = rwkv_gemv_q6_k_avx2,
    .gemm_q4_0 = rwkv_gemm_q4_0_avx2,
    .gemm_q4_1 = rwkv_gemm_q4_1_avx2,
    .gemm_q5_0 = rwkv_gemm_q5_0_avx2,
    .gemm_q5_1 = rwkv_gemm_q5_1_avx2,
    .gemm_q8_0 = rwkv_gemm_q8_0_avx2,
    .gemm_q2_k = rwkv_gemm_q2_k_avx2,
    .gemm_q3_k = rwkv_gemm_q3_k_avx2,
    .gemm_q4_k = rwkv_gemm_q4_k_avx2,
    .gemm_q5_k = rwkv_gemm_q5_k_avx2,
    .gemm_q6_k = rwkv_gemm_q6_k_avx2,
};
#else
#include "kernels.h"
const struct rwkv_kernels rwkv_kernels_avx2 = {0};
#endif
