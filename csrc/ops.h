/* ops.h — the small element-wise and normalisation operators of an RWKV block. */
#ifndef RWKV_OPS_H
#define RWKV_OPS_H

#include <math.h>
#include <stdint.h>

/* out = (x - mean) / sqrt(var + eps) * w + b over n elements (out may alias x). */
void rwkv_layer_norm(const float *x, float *out, const float *w, const float *b, int64_t n, float eps);
/* The same over each of n_groups consecutive groups of group_size, with w/b over the whole. */
void rwkv_group_norm(const float *x, float *out, const float *w, const float *b, int64_t n_groups,
                     int64_t group_size, float eps);

#endif
