/* wkv7.c — the WKV7 recurrence for one token: heads in parallel, each head by the dispatch
 * table's kernel (kernels/dot_*.c; the scalar twin is the reference). A head's 16 KiB state
 * stays in L1 while it is used.
 */
#include "wkv7.h"

#include "error.h"
#include "kernels/kernels.h"

void rwkv_wkv7_step(int64_t H, int64_t N, const float *r, const float *w, const float *k, const float *v,
                    const float *a, const float *b, float *S, float *y, int n_threads) {
    const rwkv_wkv7_fn fn = rwkv_kernels_active()->wkv7;
#pragma omp parallel for num_threads(n_threads) schedule(static) if (H * N * N >= 32768)
    for (int64_t h = 0; h < H; h++) {
        const int64_t o = h * N;
        fn(N, r + o, w + o, k + o, v + o, a + o, b + o, S + o * N, y + o);
    }
}

int rwkv_wkv7_at_level(int level, int64_t N, const float *r, const float *w, const float *k, const float *v,
                       const float *a, const float *b, float *S, float *y, struct rwkv_error *err) {
    int rc = RWKV_OK;
    const struct rwkv_kernels *t = rwkv_kernels_for_level(level);
    RWKV_CHECK(t, RWKV_ERR_FORMAT, "this CPU cannot run kernel level %s", rwkv_cpu_level_name(level));
    RWKV_CHECK(N > 0, RWKV_ERR_FORMAT, "head size must be positive");
    t->wkv7(N, r, w, k, v, a, b, S, y);
fail:
    return rc;
}
