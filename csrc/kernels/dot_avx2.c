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
        for (; r < nr; r++) {                                                                      \
            const T *w0 = (const T *)((const char *)w + (size_t)r * rb);                           \
            __m256 a[4][2];                                                                        \
            for (int j = 0; j < 4; j++) a[j][0] = a[j][1] = _mm256_setzero_ps();                   \
            int64_t c = 0;                                                                         \
            for (; c < n64; c += 64)                                                               \
                for (int j = 0; j < 4; j++) {                                                      \
                    a[j][0] = _mm256_fmadd_ps(LOAD8(w0 + c + 16 * j), _mm256_loadu_ps(x + c + 16 * j), a[j][0]); \
                    a[j][1] = _mm256_fmadd_ps(LOAD8(w0 + c + 16 * j + 8), _mm256_loadu_ps(x + c + 16 * j + 8), a[j][1]); \
                }                                                                                  \
            for (; c < nfull; c += 16) {                                                           \
                a[0][0] = _mm256_fmadd_ps(LOAD8(w0 + c), _mm256_loadu_ps(x + c), a[0][0]);          \
                a[0][1] = _mm256_fmadd_ps(LOAD8(w0 + c + 8), _mm256_loadu_ps(x + c + 8), a[0][1]);  \
            }                                                                                      \
            if (ntail) {                                                                           \
                __m256 t0, t1;                                                                     \
                TAIL16(T, LOAD8, w0 + nfull, ntail, t0, t1)                                        \
                a[1][0] = _mm256_fmadd_ps(t0, xt0, a[1][0]);                                       \
                a[1][1] = _mm256_fmadd_ps(t1, xt1, a[1][1]);                                       \
            }                                                                                      \
            const __m256 s0 = _mm256_add_ps(_mm256_add_ps(a[0][0], a[1][0]), _mm256_add_ps(a[2][0], a[3][0])); \
            const __m256 s1 = _mm256_add_ps(_mm256_add_ps(a[0][1], a[1][1]), _mm256_add_ps(a[2][1], a[3][1])); \
            y[r] = hsum8(_mm256_add_ps(s0, s1));                                                   \
        }                                                                                          \
    }

DEFINE_GEMV(rwkv_gemv_f32_avx2, float, load8_f32)
DEFINE_GEMV(rwkv_gemv_f16_avx2, uint16_t, load8_f16)
DEFINE_GEMV(rwkv_gemv_bf16_avx2, uint16_t, load8_bf16)

/* Several tokens, bit-identical to the GEMV per token (every (row, token) sum runs the
 * GEMV's operations in its order). 16 ymm registers shape the blocks:
 * - rows up to ROW_ALONE_MAX_COLS: one row x up to 3 tokens, in two passes along the row:
 *   accumulators j = 0, 1 (with the 16-blocks past the last 64 and the tail), then j = 2, 3,
 *   12 ymm each; between them each token keeps a0 + a1, the GEMV's first addition. Each
 *   weight vector is loaded and converted once for three tokens; tokens outer, so their
 *   activations stay in L1 while the rows stream past;
 * - wider rows in the GEMV's 4-row blocks: 2 rows x 3 tokens with one accumulator pair
 *   each; rows past the last 4-row block take the GEMV's one-row form, so they go through
 *   the GEMV. */
#define GEMM_TB 3
#define DEFINE_GEMM(NAME, GEMV, T, LOAD8)                                                           \
    static inline __attribute__((always_inline)) void NAME##_row(const T *w0, const float *x, int64_t xs, \
                                                                 float *y, int64_t ys, int64_t nc, const int tb) { \
        const int64_t nfull = nc & ~(int64_t)15, n64 = nc & ~(int64_t)63;                           \
        const int ntail = (int)(nc & 15);                                                           \
        __m256 a[2][2][GEMM_TB], p01[2][GEMM_TB];                                                   \
        for (int pass = 0; pass < 2; pass++) {                                                      \
            for (int j = 0; j < 2; j++)                                                             \
                for (int t = 0; t < tb; t++) a[j][0][t] = a[j][1][t] = _mm256_setzero_ps();         \
            for (int64_t c = 32 * pass; c < n64; c += 64)                                           \
                for (int j = 0; j < 2; j++)                                                         \
                    for (int h = 0; h < 2; h++) {                                                   \
                        const __m256 wv = LOAD8(w0 + c + 16 * j + 8 * h);                           \
                        for (int t = 0; t < tb; t++)                                                \
                            a[j][h][t] = _mm256_fmadd_ps(wv, _mm256_loadu_ps(x + t * xs + c + 16 * j + 8 * h), a[j][h][t]); \
                    }                                                                               \
            if (pass == 1) break;                                                                   \
            for (int64_t c = n64; c < nfull; c += 16)                                               \
                for (int h = 0; h < 2; h++) {                                                       \
                    const __m256 wv = LOAD8(w0 + c + 8 * h);                                        \
                    for (int t = 0; t < tb; t++)                                                    \
                        a[0][h][t] = _mm256_fmadd_ps(wv, _mm256_loadu_ps(x + t * xs + c + 8 * h), a[0][h][t]); \
                }                                                                                   \
            if (ntail) {                                                                            \
                __m256 w_[2];                                                                       \
                TAIL16(T, LOAD8, w0 + nfull, ntail, w_[0], w_[1])                                   \
                for (int t = 0; t < tb; t++) {                                                      \
                    __m256 x_[2];                                                                   \
                    TAIL16(float, _mm256_loadu_ps, x + t * xs + nfull, ntail, x_[0], x_[1])         \
                    for (int h = 0; h < 2; h++) a[1][h][t] = _mm256_fmadd_ps(w_[h], x_[h], a[1][h][t]); \
                }                                                                                   \
            }                                                                                       \
            for (int h = 0; h < 2; h++)                                                             \
                for (int t = 0; t < tb; t++) p01[h][t] = _mm256_add_ps(a[0][h][t], a[1][h][t]);     \
        }                                                                                           \
        for (int t = 0; t < tb; t++) {                                                              \
            const __m256 s0 = _mm256_add_ps(p01[0][t], _mm256_add_ps(a[0][0][t], a[1][0][t]));      \
            const __m256 s1 = _mm256_add_ps(p01[1][t], _mm256_add_ps(a[0][1][t], a[1][1][t]));      \
            y[t * ys] = hsum8(_mm256_add_ps(s0, s1));                                               \
        }                                                                                           \
    }                                                                                               \
    static inline __attribute__((always_inline)) void NAME##_wide(const T *const *wr, const float *x, int64_t xs, \
                                                                  float *y, int64_t ys, int64_t nc, const int rb, \
                                                                  const int tb) {                   \
        const int64_t nfull = nc & ~(int64_t)15;                                                    \
        const int ntail = (int)(nc & 15);                                                           \
        __m256 a[2][2][GEMM_TB];                                                                    \
        for (int r = 0; r < rb; r++)                                                                \
            for (int t = 0; t < tb; t++) a[r][0][t] = a[r][1][t] = _mm256_setzero_ps();             \
        for (int64_t c = 0; c < nfull; c += 16)                                                     \
            for (int h = 0; h < 2; h++) {                                                           \
                __m256 wv[2];                                                                       \
                for (int r = 0; r < rb; r++) wv[r] = LOAD8(wr[r] + c + 8 * h);                      \
                for (int t = 0; t < tb; t++) {                                                      \
                    const __m256 xv = _mm256_loadu_ps(x + t * xs + c + 8 * h);                      \
                    for (int r = 0; r < rb; r++) a[r][h][t] = _mm256_fmadd_ps(wv[r], xv, a[r][h][t]); \
                }                                                                                   \
            }                                                                                       \
        if (ntail)                                                                                  \
            for (int r = 0; r < rb; r++) {                                                          \
                __m256 w_[2];                                                                       \
                TAIL16(T, LOAD8, wr[r] + nfull, ntail, w_[0], w_[1])                                \
                for (int t = 0; t < tb; t++) {                                                      \
                    __m256 x_[2];                                                                   \
                    TAIL16(float, _mm256_loadu_ps, x + t * xs + nfull, ntail, x_[0], x_[1])         \
                    for (int h = 0; h < 2; h++) a[r][h][t] = _mm256_fmadd_ps(w_[h], x_[h], a[r][h][t]); \
                }                                                                                   \
            }                                                                                       \
        for (int t = 0; t < tb; t++)                                                                \
            for (int r = 0; r < rb; r++) y[t * ys + r] = hsum8(_mm256_add_ps(a[r][0][t], a[r][1][t])); \
    }                                                                                               \
    static void NAME(const void *w, size_t rb, const float *x, int64_t xs, float *y, int64_t ys, int64_t nr, \
                     int64_t nc, int64_t nt) {                                                      \
        if (nc <= ROW_ALONE_MAX_COLS) {                                                             \
            /* tokens outer: their activations stay in L1 while the rows stream past */            \
            int64_t t = 0;                                                                          \
            for (; t + 3 <= nt; t += 3)                                                             \
                for (int64_t r = 0; r < nr; r++)                                                    \
                    NAME##_row((const T *)((const char *)w + (size_t)r * rb), x + t * xs, xs, y + t * ys + r, ys, nc, 3); \
            for (int64_t r = 0; nt - t == 2 && r < nr; r++)                                         \
                NAME##_row((const T *)((const char *)w + (size_t)r * rb), x + t * xs, xs, y + t * ys + r, ys, nc, 2); \
            for (int64_t r = 0; nt - t == 1 && r < nr; r++)                                         \
                NAME##_row((const T *)((const char *)w + (size_t)r * rb), x + t * xs, xs, y + t * ys + r, ys, nc, 1); \
            return;                                                                                 \
        }                                                                                           \
        const int64_t nr4 = nr & ~(int64_t)3;                                                       \
        for (int64_t r = 0; r < nr4; r += 2) {                                                      \
            const T *wr[2];                                                                         \
            for (int i = 0; i < 2; i++) wr[i] = (const T *)((const char *)w + (size_t)(r + i) * rb); \
            int64_t t = 0;                                                                          \
            for (; t + 3 <= nt; t += 3) NAME##_wide(wr, x + t * xs, xs, y + t * ys + r, ys, nc, 2, 3); \
            if (nt - t == 2) NAME##_wide(wr, x + t * xs, xs, y + t * ys + r, ys, nc, 2, 2);         \
            if (nt - t == 1) NAME##_wide(wr, x + t * xs, xs, y + t * ys + r, ys, nc, 2, 1);         \
        }                                                                                           \
        if (nr4 < nr)                                                                               \
            for (int64_t t = 0; t < nt; t++)                                                        \
                GEMV((const char *)w + (size_t)nr4 * rb, rb, x + t * xs, y + t * ys + nr4, nr - nr4, nc); \
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

/* Quantized weights: q32_avx2.c (block-32 types) and qk_avx2.c (K types). */
#include "qdot.h"


const struct rwkv_kernels rwkv_kernels_avx2 = {
    .level = "avx2",
    .wkv6 = rwkv_wkv6_avx2,
    .wkv7 = rwkv_wkv7_avx2,
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
