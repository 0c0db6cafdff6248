/* dot_scalar.c — the portable reference kernels (the twin of every SIMD slot).
 *
 * Plain loops, accumulated in double: slow, obviously right, and more accurate
 * than any float ordering, which makes it the reference the SIMD twins are
 * measured against.
 */
#include "../ggml_types.h"
#include "kernels.h"

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

const struct rwkv_kernels rwkv_kernels_scalar = {
    .level = "scalar",
    .gemv_f32 = gemv_f32_scalar,
    .gemv_f16 = gemv_f16_scalar,
    .gemv_bf16 = gemv_bf16_scalar,
};
