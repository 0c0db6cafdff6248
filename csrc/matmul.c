/* matmul.c — threaded matrix-vector products over the dispatch table's kernels.
 *
 * Decoding one token is memory-bound: every weight byte is read once per token.
 * Rows are split into one contiguous range per thread (a multiple of 4 rows, the
 * kernels' row block) so each thread streams its own part of the matrix.
 */
#include "matmul.h"

#include "error.h"
#include "ggml_types.h"
#include "kernels/kernels.h"

#ifdef _OPENMP
#include <omp.h>
#endif

/* Below this many weight bytes a fork/join costs more than it saves. */
#define PARALLEL_MIN_BYTES (64 * 1024)

static rwkv_gemv_fn kernel_for(const struct rwkv_kernels *k, uint32_t type) {
    switch (type) {
    case RWKV_TYPE_F32: return k->gemv_f32;
    case RWKV_TYPE_F16: return k->gemv_f16;
    case RWKV_TYPE_BF16: return k->gemv_bf16;
    default: return NULL;
    }
}

int rwkv_mat_type_supported(uint32_t type) { return kernel_for(&rwkv_kernels_scalar, type) != NULL; }

void rwkv_matmul_vec(const struct rwkv_mat *w, const float *x, float *y, int n_threads) {
    rwkv_gemv_fn fn = kernel_for(rwkv_kernels_active(), w->type);
    size_t bytes = (size_t)w->n_rows * w->row_bytes;
    if (n_threads <= 1 || bytes < PARALLEL_MIN_BYTES || w->n_rows < 8) {
        fn(w->data, w->row_bytes, x, y, w->n_rows, w->n_cols);
        return;
    }
#pragma omp parallel num_threads(n_threads)
    {
#ifdef _OPENMP
        int nt = omp_get_num_threads(), it = omp_get_thread_num();
#else
        int nt = 1, it = 0;
#endif
        int64_t per = (w->n_rows + nt - 1) / nt;
        per = (per + 3) & ~(int64_t)3;
        int64_t r0 = per * it, r1 = r0 + per < w->n_rows ? r0 + per : w->n_rows;
        if (r0 < r1)
            fn((const char *)w->data + (size_t)r0 * w->row_bytes, w->row_bytes, x, y + r0, r1 - r0, w->n_cols);
    }
}

int rwkv_gemv_at_level(int level, uint32_t type, const void *w, size_t row_bytes, const float *x, float *y,
                       int64_t n_rows, int64_t n_cols, struct rwkv_error *err) {
    int rc = RWKV_OK;
    const struct rwkv_kernels *k = rwkv_kernels_for_level(level);
    RWKV_CHECK(k, RWKV_ERR_FORMAT, "this CPU cannot run kernel level %s", rwkv_cpu_level_name(level));
    rwkv_gemv_fn fn = kernel_for(k, type);
    RWKV_CHECK(fn, RWKV_ERR_FORMAT, "no %s gemv kernel for type %s", rwkv_cpu_level_name(level),
               rwkv_type_name(type));
    fn(w, row_bytes, x, y, n_rows, n_cols);
fail:
    return rc;
}

void rwkv_mat_row_f32(const struct rwkv_mat *w, int64_t r, float *out) {
    const char *row = (const char *)w->data + (size_t)r * w->row_bytes;
    for (int64_t c = 0; c < w->n_cols; c++) {
        switch (w->type) {
        case RWKV_TYPE_F32: out[c] = ((const float *)row)[c]; break;
        case RWKV_TYPE_F16: out[c] = rwkv_f16_to_f32(((const uint16_t *)row)[c]); break;
        case RWKV_TYPE_BF16: out[c] = rwkv_bf16_to_f32(((const uint16_t *)row)[c]); break;
        default: out[c] = 0.0f;
        }
    }
}
