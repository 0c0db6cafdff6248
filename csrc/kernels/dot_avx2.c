/* dot_avx2.c — AVX2 + FMA + F16C kernels (x86-64 from Haswell on).
 *
 * The target pragma comes before every include so that the intrinsics headers
 * and the inline helpers below are compiled for this ISA only; cpu.c calls these
 * functions only after CPUID/XGETBV said the CPU and OS support them.
 */
#if defined(__x86_64__) && defined(__GNUC__)
#pragma GCC target("avx2,fma,f16c")
#include <immintrin.h>

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
static inline float cvt1_f32(float v) { return v; }
static inline float cvt1_f16(uint16_t v) { return _cvtsh_ss(v); }
static inline float cvt1_bf16(uint16_t v) { return rwkv_bf16_to_f32(v); }

/* The row order of dot_avx512.c: rows up to ROW_ALONE_MAX_COLS wide one at a time
 * (one sequential stream per thread, x stays in L1), wider rows four at a time
 * sharing each load of x; no software prefetch. The column tail is scalar. */
#define ROW_ALONE_MAX_COLS 4096
#define DEFINE_GEMV(NAME, T, LOAD8, CVT1)                                                   \
    static void NAME(const void *w, size_t rb, const float *x, float *y, int64_t nr,       \
                     int64_t nc) {                                                          \
        int64_t r = 0;                                                                      \
        if (nc > ROW_ALONE_MAX_COLS)                                                        \
            for (; r + 4 <= nr; r += 4) {                                                   \
                const T *w0 = (const T *)((const char *)w + (size_t)r * rb);                \
                const T *w1 = (const T *)((const char *)w0 + rb);                           \
                const T *w2 = (const T *)((const char *)w1 + rb);                           \
                const T *w3 = (const T *)((const char *)w2 + rb);                           \
                __m256 a0 = _mm256_setzero_ps(), a1 = a0, a2 = a0, a3 = a0;                 \
                int64_t c = 0;                                                              \
                for (; c + 8 <= nc; c += 8) {                                               \
                    __m256 xv = _mm256_loadu_ps(x + c);                                     \
                    a0 = _mm256_fmadd_ps(LOAD8(w0 + c), xv, a0);                            \
                    a1 = _mm256_fmadd_ps(LOAD8(w1 + c), xv, a1);                            \
                    a2 = _mm256_fmadd_ps(LOAD8(w2 + c), xv, a2);                            \
                    a3 = _mm256_fmadd_ps(LOAD8(w3 + c), xv, a3);                            \
                }                                                                           \
                float s0 = hsum8(a0), s1 = hsum8(a1), s2 = hsum8(a2), s3 = hsum8(a3);       \
                for (; c < nc; c++) {                                                       \
                    s0 += CVT1(w0[c]) * x[c];                                               \
                    s1 += CVT1(w1[c]) * x[c];                                               \
                    s2 += CVT1(w2[c]) * x[c];                                               \
                    s3 += CVT1(w3[c]) * x[c];                                               \
                }                                                                           \
                y[r] = s0, y[r + 1] = s1, y[r + 2] = s2, y[r + 3] = s3;                     \
            }                                                                               \
        for (; r < nr; r++) {                                                               \
            const T *w0 = (const T *)((const char *)w + (size_t)r * rb);                    \
            __m256 a0 = _mm256_setzero_ps(), a1 = a0, a2 = a0, a3 = a0;                     \
            int64_t c = 0;                                                                  \
            for (; c + 32 <= nc; c += 32) {                                                 \
                a0 = _mm256_fmadd_ps(LOAD8(w0 + c), _mm256_loadu_ps(x + c), a0);            \
                a1 = _mm256_fmadd_ps(LOAD8(w0 + c + 8), _mm256_loadu_ps(x + c + 8), a1);    \
                a2 = _mm256_fmadd_ps(LOAD8(w0 + c + 16), _mm256_loadu_ps(x + c + 16), a2);  \
                a3 = _mm256_fmadd_ps(LOAD8(w0 + c + 24), _mm256_loadu_ps(x + c + 24), a3);  \
            }                                                                               \
            for (; c + 8 <= nc; c += 8) a0 = _mm256_fmadd_ps(LOAD8(w0 + c), _mm256_loadu_ps(x + c), a0); \
            float s0 = hsum8(_mm256_add_ps(_mm256_add_ps(a0, a1), _mm256_add_ps(a2, a3)));  \
            for (; c < nc; c++) s0 += CVT1(w0[c]) * x[c];                                   \
            y[r] = s0;                                                                      \
        }                                                                                   \
    }

DEFINE_GEMV(rwkv_gemv_f32_avx2, float, load8_f32, cvt1_f32)
DEFINE_GEMV(rwkv_gemv_f16_avx2, uint16_t, load8_f16, cvt1_f16)
DEFINE_GEMV(rwkv_gemv_bf16_avx2, uint16_t, load8_bf16, cvt1_bf16)

/* Several tokens, bit-identical to the GEMV per token (every (row, token) sum runs the
 * GEMV's operations in its order). 16 ymm registers shape the blocks:
 * - rows up to ROW_ALONE_MAX_COLS: one row x up to 3 tokens with the GEMV's four partial
 *   sums each (12 accumulators): each weight vector is loaded and converted once for
 *   three tokens;
 * - wider rows in the GEMV's 4-row blocks: up to 3 rows x 3 tokens, one accumulator each
 *   over every 8 columns as there (9 accumulators), 6 loads per 9 FMAs; rows past the
 *   last 4-row block take the GEMV's one-row form, so they go through the GEMV. */
#define GEMM_TB 3
#define DEFINE_GEMM(NAME, GEMV, T, LOAD8, CVT1)                                                     \
    static inline __attribute__((always_inline)) void NAME##_row(const T *w0, const float *x, int64_t xs, \
                                                                 float *y, int64_t ys, int64_t nc, const int tb) { \
        __m256 a[4][GEMM_TB];                                                                       \
        for (int j = 0; j < 4; j++)                                                                 \
            for (int t = 0; t < tb; t++) a[j][t] = _mm256_setzero_ps();                             \
        int64_t c = 0;                                                                              \
        for (; c + 32 <= nc; c += 32)                                                               \
            for (int j = 0; j < 4; j++) {                                                           \
                const __m256 wv = LOAD8(w0 + c + 8 * j);                                            \
                for (int t = 0; t < tb; t++)                                                        \
                    a[j][t] = _mm256_fmadd_ps(wv, _mm256_loadu_ps(x + t * xs + c + 8 * j), a[j][t]); \
            }                                                                                       \
        for (; c + 8 <= nc; c += 8) {                                                               \
            const __m256 wv = LOAD8(w0 + c);                                                        \
            for (int t = 0; t < tb; t++) a[0][t] = _mm256_fmadd_ps(wv, _mm256_loadu_ps(x + t * xs + c), a[0][t]); \
        }                                                                                           \
        for (int t = 0; t < tb; t++) {                                                              \
            const float *xt = x + t * xs;                                                           \
            float s0 = hsum8(_mm256_add_ps(_mm256_add_ps(a[0][t], a[1][t]), _mm256_add_ps(a[2][t], a[3][t]))); \
            for (int64_t cc = c; cc < nc; cc++) s0 += CVT1(w0[cc]) * xt[cc];                        \
            y[t * ys] = s0;                                                                         \
        }                                                                                           \
    }                                                                                               \
    static inline __attribute__((always_inline)) void NAME##_wide(const T *const *wr, const float *x, int64_t xs, \
                                                                  float *y, int64_t ys, int64_t nc, const int rb, \
                                                                  const int tb) {                   \
        __m256 a[3][GEMM_TB];                                                                       \
        for (int r = 0; r < rb; r++)                                                                \
            for (int t = 0; t < tb; t++) a[r][t] = _mm256_setzero_ps();                             \
        int64_t c = 0;                                                                              \
        for (; c + 8 <= nc; c += 8) {                                                               \
            __m256 wv[3];                                                                           \
            for (int r = 0; r < rb; r++) wv[r] = LOAD8(wr[r] + c);                                  \
            for (int t = 0; t < tb; t++) {                                                          \
                const __m256 xv = _mm256_loadu_ps(x + t * xs + c);                                  \
                for (int r = 0; r < rb; r++) a[r][t] = _mm256_fmadd_ps(wv[r], xv, a[r][t]);         \
            }                                                                                       \
        }                                                                                           \
        for (int t = 0; t < tb; t++)                                                                \
            for (int r = 0; r < rb; r++) {                                                          \
                const float *xt = x + t * xs;                                                       \
                float s = hsum8(a[r][t]);                                                           \
                for (int64_t cc = c; cc < nc; cc++) s += CVT1(wr[r][cc]) * xt[cc];                  \
                y[t * ys + r] = s;                                                                  \
            }                                                                                       \
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
        for (int64_t r = 0; r < nr4; r += 3) {                                                      \
            const int64_t n = nr4 - r < 3 ? nr4 - r : 3;                                            \
            const T *wr[3];                                                                         \
            for (int i = 0; i < 3; i++) wr[i] = (const T *)((const char *)w + (size_t)(r + (i < n ? i : 0)) * rb); \
            for (int64_t t = 0; t < nt; t += 3) {                                                   \
                const float *xt = x + t * xs;                                                       \
                float *yt = y + t * ys + r;                                                         \
                const int64_t m = nt - t < 3 ? nt - t : 3;                                          \
                /* constant block shapes, so the accumulators stay in registers */                 \
                if (n == 3) {                                                                       \
                    if (m == 3) NAME##_wide(wr, xt, xs, yt, ys, nc, 3, 3);                          \
                    else if (m == 2) NAME##_wide(wr, xt, xs, yt, ys, nc, 3, 2);                     \
                    else NAME##_wide(wr, xt, xs, yt, ys, nc, 3, 1);                                 \
                } else if (n == 2) {                                                                \
                    if (m == 3) NAME##_wide(wr, xt, xs, yt, ys, nc, 2, 3);                          \
                    else if (m == 2) NAME##_wide(wr, xt, xs, yt, ys, nc, 2, 2);                     \
                    else NAME##_wide(wr, xt, xs, yt, ys, nc, 2, 1);                                 \
                } else {                                                                            \
                    if (m == 3) NAME##_wide(wr, xt, xs, yt, ys, nc, 1, 3);                          \
                    else if (m == 2) NAME##_wide(wr, xt, xs, yt, ys, nc, 1, 2);                     \
                    else NAME##_wide(wr, xt, xs, yt, ys, nc, 1, 1);                                 \
                }                                                                                   \
            }                                                                                       \
        }                                                                                           \
        if (nr4 < nr)                                                                               \
            for (int64_t t = 0; t < nt; t++)                                                        \
                GEMV((const char *)w + (size_t)nr4 * rb, rb, x + t * xs, y + t * ys + nr4, nr - nr4, nc); \
    }

DEFINE_GEMM(rwkv_gemm_f32_avx2, rwkv_gemv_f32_avx2, float, load8_f32, cvt1_f32)
DEFINE_GEMM(rwkv_gemm_f16_avx2, rwkv_gemv_f16_avx2, uint16_t, load8_f16, cvt1_f16)
DEFINE_GEMM(rwkv_gemm_bf16_avx2, rwkv_gemv_bf16_avx2, uint16_t, load8_bf16, cvt1_bf16)

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

/* Quantized weights: qdot_avx2.c. */
#include "qdot.h"


const struct rwkv_kernels rwkv_kernels_avx2 = {
    .level = "avx2",
    .wkv6 = rwkv_wkv6_avx2,
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
