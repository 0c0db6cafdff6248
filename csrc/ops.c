/* ops.c — layer norm and group norm.
 *
 * Statistics are accumulated in double: the reference (torch fp32) uses a
 * more careful reduction than a naive float sum, and the extra precision costs
 * nothing next to the matrix products.
 */
#include "ops.h"

void rwkv_layer_norm(const float *x, float *out, const float *w, const float *b, int64_t n, float eps) {
    double sum = 0.0, sq = 0.0;
    for (int64_t i = 0; i < n; i++) sum += x[i];
    double mean = sum / (double)n;
    for (int64_t i = 0; i < n; i++) {
        double d = x[i] - mean;
        sq += d * d;
    }
    float inv = (float)(1.0 / sqrt(sq / (double)n + (double)eps));
    float m = (float)mean;
    for (int64_t i = 0; i < n; i++) out[i] = (x[i] - m) * inv * w[i] + b[i];
}

void rwkv_group_norm(const float *x, float *out, const float *w, const float *b, int64_t n_groups,
                     int64_t group_size, float eps) {
    for (int64_t g = 0; g < n_groups; g++) {
        int64_t o = g * group_size;
        rwkv_layer_norm(x + o, out + o, w + o, b + o, group_size, eps);
    }
}
