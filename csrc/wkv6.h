/* wkv6.h — the RWKV-6 WKV recurrence (one token). */
#ifndef RWKV_WKV6_H
#define RWKV_WKV6_H

#include <stdint.h>

/* For each head h (H of them, N = head_size), with i the key and j the value index:
 *     y_j   = sum_i r_i * (u_i * k_i * v_j + S_ij)
 *     S_ij <- w_i * S_ij + k_i * v_j
 * r, k, v, w, u, y are [H*N]; S is [H][N][N]. Heads run in parallel. */
void rwkv_wkv6_step(int64_t H, int64_t N, const float *r, const float *k, const float *v, const float *w,
                    const float *u, float *S, float *y, int n_threads);

#endif
