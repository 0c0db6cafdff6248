/* dot_scalar.c — the portable reference kernels (the twin of every SIMD slot).
 *
 * Plain loops, accumulated in double: slow, obviously right, and more accurate
 * than any float ordering, which makes it the reference the SIMD twins are
 * measured against.
 */
#include "../ggml_types.h"
#include <math.h>

#include "expf.h"
#include "kernels.h"
#include "unpack.h"

static void gemv_f32_scalar(const void *w, size_t row_bytes, const float *x, float *y,
                            int64_t n_rows, int64_t n_cols) {
    for (int64_t r = 0; r < n_rows; r++) {
        const float *row = (const float *)((const char *)w + (size_t)r * row_bytes);
        double acc = 0.0;
        for (int64_t c = 0; c < n_cols; c++) acc += (double)row[c] * x[c];
        y[r] = (float)acc;
    }
}

static void gemv_f16_scalar(const void *w, size_t row_bytes, const float *x, float *y,
                            int64_t n_rows, int64_t n_cols) {
    for (int64_t r = 0; r < n_rows; r++) {
        const uint16_t *row = (const uint16_t *)((const char *)w + (size_t)r * row_bytes);
        double acc = 0.0;
        for (int64_t c = 0; c < n_cols; c++) acc += (double)rwkv_f16_to_f32(row[c]) * x[c];
        y[r] = (float)acc;
    }
}

static void gemv_bf16_scalar(const void *w, size_t row_bytes, const float *x, float *y,
                             int64_t n_rows, int64_t n_cols) {
    for (int64_t r = 0; r < n_rows; r++) {
        const uint16_t *row = (const uint16_t *)((const char *)w + (size_t)r * row_bytes);
        double acc = 0.0;
        for (int64_t c = 0; c < n_cols; c++) acc += (double)rwkv_bf16_to_f32(row[c]) * x[c];
        y[r] = (float)acc;
    }
}

/* Quantized weights: unpack each block to integers (unpack.h), exact integer dot
 * products with the quantized activations, scales applied in double. */
typedef void (*unpack_fn)(const uint8_t *, int16_t *, float *, float *);

static void gemv_q_scalar(unpack_fn unpack, int qk, size_t block_bytes, const void *w, size_t row_bytes,
                          const struct rwkv_xq *x, float *y, int64_t n_rows, int64_t n_cols) {
    int16_t wq[256];
    float s[8], c[16];
    for (int64_t r = 0; r < n_rows; r++) {
        const uint8_t *row = (const uint8_t *)w + (size_t)r * row_bytes;
        double acc = 0.0;
        for (int64_t i0 = 0; i0 < n_cols; i0 += qk, row += block_bytes) {
            unpack(row, wq, s, c);
            for (int k = 0; k < qk / 32; k++) {
                int64_t dot = 0;
                for (int j = 0; j < 32; j++) dot += (int32_t)wq[32 * k + j] * x->q[i0 + 32 * k + j];
                acc += (double)s[k] * x->d[(i0 + 32 * k) / x->block] * (double)dot;
            }
            for (int k = 0; k < qk / 16; k++) acc += (double)c[k] * x->sum16[i0 / 16 + k];
        }
        y[r] = (float)acc;
    }
}

#define DEFINE_GEMV_Q(T, QK, BYTES)                                                                    \
    static void gemv_##T##_scalar(const void *w, size_t rb, const struct rwkv_xq *x, float *y,       \
                                  int64_t nr, int64_t nc) {                                           \
        gemv_q_scalar(unpack_##T, QK, BYTES, w, rb, x, y, nr, nc);                                   \
    }
DEFINE_GEMV_Q(q4_0, 32, 18)
DEFINE_GEMV_Q(q4_1, 32, 20)
DEFINE_GEMV_Q(q5_0, 32, 22)
DEFINE_GEMV_Q(q5_1, 32, 24)
DEFINE_GEMV_Q(q8_0, 32, 34)
DEFINE_GEMV_Q(q2_k, 256, 84)
DEFINE_GEMV_Q(q3_k, 256, 110)
DEFINE_GEMV_Q(q4_k, 256, 144)
DEFINE_GEMV_Q(q5_k, 256, 176)
DEFINE_GEMV_Q(q6_k, 256, 210)

static void wkv6_scalar(int64_t N, const float *r, const float *k, const float *v, const float *w,
                        const float *u, float *S, float *y) {
    for (int64_t j = 0; j < N; j++) y[j] = 0.0f;
    for (int64_t i = 0; i < N; i++) {
        const float ri = r[i], ki = k[i], wi = w[i], uki = u[i] * ki;
        float *Si = S + i * N;
        for (int64_t j = 0; j < N; j++) {
            y[j] += ri * (uki * v[j] + Si[j]);
            Si[j] = wi * Si[j] + ki * v[j];
        }
    }
}

static void wkv7_scalar(int64_t N, const float *r, const float *w, const float *k, const float *v, const float *a,
                        const float *b, float *S, float *y) {
    for (int64_t i = 0; i < N; i++) {
        float *Si = S + i * N;
        double sa = 0.0;
        for (int64_t j = 0; j < N; j++) sa += (double)Si[j] * a[j];
        const double vi = v[i];
        double yi = 0.0;
        for (int64_t j = 0; j < N; j++) {
            Si[j] = (float)(Si[j] * (double)w[j] + sa * b[j] + vi * k[j]);
            yi += (double)Si[j] * r[j];
        }
        y[i] = (float)yi;
    }
}

/* The exp slot's definition (kernels.h), step for step as the SIMD levels run it: only fmaf,
 * so no contraction or libm rounding can differ. */
static void exp_scalar(const float *x, float *y, int64_t n) {
    for (int64_t i = 0; i < n; i++) {
        float v = x[i];
        v = RWKV_EXP_MAX < v ? RWKV_EXP_MAX : v; /* NaN passes both */
        v = RWKV_EXP_MIN > v ? RWKV_EXP_MIN : v;
        const float k = rintf(v * RWKV_EXP_LOG2E);
        const float r = fmaf(k, -RWKV_EXP_LN2_LO, fmaf(k, -RWKV_EXP_LN2_HI, v));
        float p = fmaf(RWKV_EXP_C7, r, RWKV_EXP_C6);
        p = fmaf(p, r, RWKV_EXP_C5);
        p = fmaf(p, r, RWKV_EXP_C4);
        p = fmaf(p, r, RWKV_EXP_C3);
        p = fmaf(p, r, RWKV_EXP_C2);
        p = fmaf(p, r, 1.0f);
        p = fmaf(p, r, 1.0f);
        y[i] = k != k ? k : ldexpf(p, (int)k);
    }
}

const struct rwkv_kernels rwkv_kernels_scalar = {
    .level = "scalar",
    .wkv6 = wkv6_scalar,
    .wkv7 = wkv7_scalar,
    .exp = exp_scalar,
    .gemv_f32 = gemv_f32_scalar,
    .gemv_f16 = gemv_f16_scalar,
    .gemv_bf16 = gemv_bf16_scalar,
    .gemv_q4_0 = gemv_q4_0_scalar,
    .gemv_q4_1 = gemv_q4_1_scalar,
    .gemv_q5_0 = gemv_q5_0_scalar,
    .gemv_q5_1 = gemv_q5_1_scalar,
    .gemv_q8_0 = gemv_q8_0_scalar,
    .gemv_q2_k = gemv_q2_k_scalar,
    .gemv_q3_k = gemv_q3_k_scalar,
    .gemv_q4_k = gemv_q4_k_scalar,
    .gemv_q5_k = gemv_q5_k_scalar,
    .gemv_q6_k = gemv_q6_k_scalar,
};
