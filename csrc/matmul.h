/* matmul.h — a weight matrix as the kernels see it, and the threaded products. */
#ifndef RWKV_MATMUL_H
#define RWKV_MATMUL_H

#include <stddef.h>
#include <stdint.h>

/* A row-major view of a ggml tensor with ne = [n_cols, n_rows]: row r is the
 * n_cols elements at data + r * row_bytes (ggml's ne[0] is the contiguous dim). */
struct rwkv_mat {
    uint32_t type; /* enum rwkv_type */
    const void *data;
    int64_t n_rows, n_cols;
    size_t row_bytes;
};

/* Whether rwkv_matmul_vec has a kernel for this weight type. */
int rwkv_mat_type_supported(uint32_t type);

/* W (n_rows, n_cols) @ x (n_cols,) -> y (n_rows,), rows split over n_threads. */
void rwkv_matmul_vec(const struct rwkv_mat *w, const float *x, float *y, int n_threads);

/* Row r of W converted to f32 (for the embedding lookup). */
void rwkv_mat_row_f32(const struct rwkv_mat *w, int64_t r, float *out);

#endif
