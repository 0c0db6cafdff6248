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

struct rwkv_xq;

/* Whether rwkv_matmul_vec has a kernel for this weight type. */
int rwkv_mat_type_supported(uint32_t type);

/* Scratch for quantizing activations of up to n_max elements: `buf` must hold
 * rwkv_xq_bytes(n_max) bytes (64-byte aligned); fills the pointers of *xq. */
size_t rwkv_xq_bytes(int64_t n_max);
void rwkv_xq_bind(struct rwkv_xq *xq, void *buf, int64_t n_max);

/* W (n_rows, n_cols) @ x (n_cols,) -> y (n_rows,), rows split over n_threads.
 * Quantized W first quantizes x into `scratch` (bound for >= n_cols elements). */
void rwkv_matmul_vec(const struct rwkv_mat *w, const float *x, float *y, struct rwkv_xq *scratch,
                     int n_threads);

/* An element-wise function applied to a product's rows by the thread that computed
 * them, so the activations of a layer cost no extra serial pass. */
enum rwkv_post {
    RWKV_POST_NONE,
    RWKV_POST_TANH,
    RWKV_POST_SILU,    /* y * sigmoid(y) */
    RWKV_POST_SIGMOID,
    RWKV_POST_RELU_SQ, /* max(y, 0)^2 */
    RWKV_POST_DECAY,   /* exp(-exp(bias + y)), RWKV-6's data-dependent decay */
    RWKV_POST_DECAY7,  /* exp(-e^-0.5 sigmoid(bias + y)), RWKV-7's decay, in (0.545, 1) */
    RWKV_POST_SIGMOID_BIAS, /* sigmoid(bias + y): RWKV-7's in-context learning rate and value gate */
};

/* One product y = post(W @ x) (bias for the DECAY and _BIAS post-ops), for n_tok tokens at once:
 * token t reads x + t * x_stride and writes y + t * y_stride (n_tok 0 means 1). A thread
 * takes a unit of rows and runs it for every token while those rows are in its cache, so
 * a prompt of T tokens reads each weight once per T tokens instead of once per token. */
struct rwkv_gemv_job {
    const struct rwkv_mat *w;
    const float *x;
    float *y;
    int post;
    const float *bias;
    int64_t n_tok, x_stride, y_stride;
};

/* n independent jobs in one parallel region (one fork/join instead of n): inputs of
 * quantized matrices are quantized in parallel, job i token t into xq[i * T + t] with T the
 * largest n_tok (n * T bound scratches), then each thread takes units of the rows of every
 * matrix and applies the post-op. */
void rwkv_matmul_jobs(int n, const struct rwkv_gemv_job *jobs, struct rwkv_xq *xq, int n_threads);

/* Row r of W converted to f32 (for the embedding lookup). */
void rwkv_mat_row_f32(const struct rwkv_mat *w, int64_t r, float *out);

#endif
