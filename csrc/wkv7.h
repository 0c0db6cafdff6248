/* wkv7.h — the RWKV-7 WKV recurrence (one token, all heads). */
#ifndef RWKV_WKV7_H
#define RWKV_WKV7_H

#include <stdint.h>

/* For each head h (H of them, N = head_size), the state value-major (S[h][value i][key j]):
 *     S <- S diag(w) + (S a) b^T + v k^T,   y = S r
 * with a = -kk and b = kk * iclr (see rwkv_wkv7_fn). r, w, k, v, a, b, y are [H*N]; S is
 * [H][N][N]. Heads run in parallel (any thread count: threads beyond H idle). */
void rwkv_wkv7_step(int64_t H, int64_t N, const float *r, const float *w, const float *k, const float *v,
                    const float *a, const float *b, float *S, float *y, int n_threads);

#endif
