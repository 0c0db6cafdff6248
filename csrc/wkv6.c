/* wkv6.c — the WKV6 recurrence for one token, the scalar reference.
 *
 * The inner loop runs over the value index j, contiguous in both S and y, so the
 * compiler vectorises it; each head's 16 KiB state stays in L1 while it is used.
 * Cost is H*N*N per token per layer, about 1% of a decode step at 1.6B.
 */
#include "wkv6.h"

void rwkv_wkv6_step(int64_t H, int64_t N, const float *r, const float *k, const float *v, const float *w,
                    const float *u, float *S, float *y, int n_threads) {
#pragma omp parallel for num_threads(n_threads) schedule(static) if (H * N * N >= 32768)
    for (int64_t h = 0; h < H; h++) {
        const float *rh = r + h * N, *kh = k + h * N, *vh = v + h * N, *wh = w + h * N, *uh = u + h * N;
        float *Sh = S + h * N * N, *yh = y + h * N;
        for (int64_t j = 0; j < N; j++) yh[j] = 0.0f;
        for (int64_t i = 0; i < N; i++) {
            float ri = rh[i], ki = kh[i], wi = wh[i], uki = uh[i] * ki;
            float *Si = Sh + i * N;
            for (int64_t j = 0; j < N; j++) {
                float kv = ki * vh[j];
                yh[j] += ri * (uki * vh[j] + Si[j]);
                Si[j] = wi * Si[j] + kv;
            }
        }
    }
}
