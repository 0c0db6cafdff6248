/* quants_k.c — reference dequantize / quantize of ggml's K-quant super-blocks (Q2_K..Q6_K),
 * bit-compatible with ggml's dequantize_row_*_K and quantize_row_*_K_ref (what llama-quantize
 * writes without an imatrix). The same rules as quants.c apply: ggml's float evaluation
 * order is kept and the file must not be built with FMA contraction.
 *
 * Glossary: QK_K = 256 elements per super-block, split into 8 or 16 sub-blocks that each
 * get a 4/6/8-bit scale relative to the super-block's f16 scale `d`. A "min" type stores
 * x = d*sc*q - dmin*m (q >= 0); a symmetric type stores x = d*sc*q (q signed).
 */
#include <float.h>
#include <math.h>
#include <stdbool.h>
#include <string.h>

#include "quants.h"
#include "quants_impl.h"

/* ------------------------------------------------------------ block layouts -- */

/* 16 sub-blocks of 16: 4-bit scale | 4-bit min per sub-block; x = d*sc*q - dmin*m */
typedef struct { uint8_t scales[QK_K / 16]; uint8_t qs[QK_K / 4]; uint16_t d, dmin; } block_q2_k;
/* 16 sub-blocks of 16: 6-bit signed scales (offset 32) packed in 12 bytes; q in -4..3 */
typedef struct { uint8_t hmask[QK_K / 8]; uint8_t qs[QK_K / 4]; uint8_t scales[12]; uint16_t d; } block_q3_k;
/* 8 sub-blocks of 32: 6-bit scale and 6-bit min each, packed in 12 bytes */
typedef struct { uint16_t d, dmin; uint8_t scales[12]; uint8_t qs[QK_K / 2]; } block_q4_k;
typedef struct { uint16_t d, dmin; uint8_t scales[12]; uint8_t qh[QK_K / 8]; uint8_t qs[QK_K / 2]; } block_q5_k;
/* 16 sub-blocks of 16: int8 scales; q in -32..31 (4 low bits in ql, 2 high bits in qh) */
typedef struct { uint8_t ql[QK_K / 2]; uint8_t qh[QK_K / 4]; int8_t scales[QK_K / 16]; uint16_t d; } block_q6_k;

_Static_assert(sizeof(block_q3_k) == 110, "q3_K layout");
_Static_assert(sizeof(block_q5_k) == 176, "q5_K layout");
_Static_assert(sizeof(block_q6_k) == 210, "q6_K layout");

_Static_assert(sizeof(block_q3_k) == 110, "q3_K layout");
_Static_assert(sizeof(block_q5_k) == 176, "q5_K layout");
_Static_assert(sizeof(block_q6_k) == 210, "q6_K layout");

/* ------------------------------------------------------------ K-quant helpers -- */

/* Symmetric levels -nmax..nmax-1 for n values, weights w = x^2 (ggml's make_qx_quants with
 * rmse_type 1 and no imatrix): start from the scale that maps max to -nmax, then try 18
 * nearby scales and keep the one with the best weighted least-squares fit. L gets q + nmax;
 * returns the scale. */
static float make_qx_quants(int n, int nmax, const float *x, int8_t *L) {
    float max = 0, amax = 0;
    for (int i = 0; i < n; i++) {
        const float ax = fabsf(x[i]);
        if (ax > amax) { amax = ax; max = x[i]; }
    }
    if (amax < GROUP_MAX_EPS) {
        for (int i = 0; i < n; i++) L[i] = 0;
        return 0.f;
    }
    float iscale = -nmax / max;
    float sumlx = 0, suml2 = 0;
    for (int i = 0; i < n; i++) {
        int l = nearest_int(iscale * x[i]);
        l = MAX(-nmax, MIN(nmax - 1, l));
        L[i] = (int8_t)(l + nmax);
        const float w = x[i] * x[i];
        sumlx += w * x[i] * l;
        suml2 += w * l * l;
    }
    float scale = suml2 ? sumlx / suml2 : 0.0f;
    float best = scale * sumlx;
    for (int is = -9; is <= 9; ++is) {
        if (is == 0) continue;
        iscale = -(nmax + 0.1f * is) / max;
        sumlx = suml2 = 0;
        for (int i = 0; i < n; i++) {
            int l = nearest_int(iscale * x[i]);
            l = MAX(-nmax, MIN(nmax - 1, l));
            const float w = x[i] * x[i];
            sumlx += w * x[i] * l;
            suml2 += w * l * l;
        }
        if (suml2 > 0 && sumlx * sumlx > best * suml2) {
            for (int i = 0; i < n; i++) {
                const int l = nearest_int(iscale * x[i]);
                L[i] = (int8_t)(nmax + MAX(-nmax, MIN(nmax - 1, l)));
            }
            scale = sumlx / suml2;
            best = scale * sumlx;
        }
    }
    return scale;
}

/* Q3_K's sub-block fit (make_q3_quants, do_rmse): levels -nmax..nmax-1, weights x^2, then up
 * to 5 passes of coordinate descent moving one q at a time when it improves sumlx^2/suml2. */
static float make_q3_quants(int n, int nmax, const float *x, int8_t *L) {
    float max = 0, amax = 0;
    for (int i = 0; i < n; i++) {
        const float ax = fabsf(x[i]);
        if (ax > amax) { amax = ax; max = x[i]; }
    }
    if (amax < GROUP_MAX_EPS) {
        for (int i = 0; i < n; i++) L[i] = 0;
        return 0.f;
    }
    const float iscale = -nmax / max;
    float sumlx = 0, suml2 = 0;
    for (int i = 0; i < n; i++) {
        int l = nearest_int(iscale * x[i]);
        l = MAX(-nmax, MIN(nmax - 1, l));
        L[i] = (int8_t)l;
        const float w = x[i] * x[i];
        sumlx += w * x[i] * l;
        suml2 += w * l * l;
    }
    for (int itry = 0; itry < 5; ++itry) {
        int n_changed = 0;
        for (int i = 0; i < n; i++) {
            const float w = x[i] * x[i];
            float slx = sumlx - w * x[i] * L[i];
            if (slx > 0) {
                float sl2 = suml2 - w * L[i] * L[i];
                int new_l = nearest_int(x[i] * sl2 / slx);
                new_l = MAX(-nmax, MIN(nmax - 1, new_l));
                if (new_l != L[i]) {
                    slx += w * x[i] * new_l;
                    sl2 += w * new_l * new_l;
                    if (sl2 > 0 && slx * slx * suml2 > sumlx * sumlx * sl2) {
                        L[i] = (int8_t)new_l;
                        sumlx = slx;
                        suml2 = sl2;
                        ++n_changed;
                    }
                }
            }
        }
        if (!n_changed) break;
    }
    for (int i = 0; i < n; i++) L[i] = (int8_t)(L[i] + nmax);
    return suml2 > 0.0f ? sumlx / suml2 : 0.0f;
}

/* Levels 0..nmax with a min (x ~ scale*q - the_min), weighted (make_qkx2_quants): start
 * from [min(x,0), max(x)], then for nstep+1 candidate scales solve the 2x2 weighted least
 * squares for (scale, min) and keep the one with the smallest error (|diff| when use_mad,
 * else diff^2). Returns the scale; *the_min gets -min >= 0. Laux is n bytes of scratch. */
static float make_qkx2_quants(int n, int nmax, const float *x, const float *weights, uint8_t *L,
                              float *the_min, uint8_t *Laux, float rmin, float rdelta, int nstep,
                              bool use_mad) {
    float min = x[0], max = x[0];
    float sum_w = weights[0];
    float sum_x = sum_w * x[0];
    for (int i = 1; i < n; i++) {
        if (x[i] < min) min = x[i];
        if (x[i] > max) max = x[i];
        const float w = weights[i];
        sum_w += w;
        sum_x += w * x[i];
    }
    if (min > 0) min = 0;
    if (max == min) {
        for (int i = 0; i < n; i++) L[i] = 0;
        *the_min = -min;
        return 0.f;
    }
    float iscale = nmax / (max - min);
    float scale = 1 / iscale;
    float best_error = 0;
    for (int i = 0; i < n; i++) {
        const int l = nearest_int(iscale * (x[i] - min));
        L[i] = (uint8_t)MAX(0, MIN(nmax, l));
        float diff = scale * L[i] + min - x[i];
        diff = use_mad ? fabsf(diff) : diff * diff;
        best_error += weights[i] * diff;
    }
    for (int is = 0; is <= nstep; ++is) {
        iscale = (rmin + rdelta * is + nmax) / (max - min);
        float sum_l = 0, sum_l2 = 0, sum_xl = 0;
        for (int i = 0; i < n; i++) {
            int l = nearest_int(iscale * (x[i] - min));
            l = MAX(0, MIN(nmax, l));
            Laux[i] = (uint8_t)l;
            const float w = weights[i];
            sum_l += w * l;
            sum_l2 += w * l * l;
            sum_xl += w * l * x[i];
        }
        const float D = sum_w * sum_l2 - sum_l * sum_l;
        if (D > 0) {
            float this_scale = (sum_w * sum_xl - sum_x * sum_l) / D;
            float this_min = (sum_l2 * sum_x - sum_l * sum_xl) / D;
            if (this_min > 0) {
                this_min = 0;
                this_scale = sum_xl / sum_l2;
            }
            float cur_error = 0;
            for (int i = 0; i < n; i++) {
                float diff = this_scale * Laux[i] + this_min - x[i];
                diff = use_mad ? fabsf(diff) : diff * diff;
                cur_error += weights[i] * diff;
            }
            if (cur_error < best_error) {
                memcpy(L, Laux, (size_t)n);
                best_error = cur_error;
                scale = this_scale;
                min = this_min;
            }
        }
    }
    *the_min = -min;
    return scale;
}

/* Q4_K/Q5_K scale packing: 8 pairs of 6-bit (scale, min) in 12 bytes.
 * bytes 0-3: scale j (low 6 bits) | high 2 bits of scale j+4; bytes 4-7 the same for mins;
 * bytes 8-11: low 4 bits of scale j+4 | low 4 bits of min j+4 << 4. */
static void pack_scale_min_k4(uint8_t *q, const uint8_t *ls, const uint8_t *lm) {
    for (int j = 0; j < 8; j++) {
        if (j < 4) {
            q[j] = ls[j];
            q[j + 4] = lm[j];
        } else {
            q[j + 4] = (uint8_t)((ls[j] & 0x0f) | (lm[j] & 0x0f) << 4);
            q[j - 4] |= (uint8_t)((ls[j] >> 4) << 6);
            q[j] |= (uint8_t)((lm[j] >> 4) << 6);
        }
    }
}

static void get_scale_min_k4(int j, const uint8_t *q, uint8_t *sc, uint8_t *m) {
    if (j < 4) {
        *sc = q[j] & 63;
        *m = q[j + 4] & 63;
    } else {
        *sc = (uint8_t)((q[j + 4] & 0x0f) | (q[j - 4] >> 6) << 4);
        *m = (uint8_t)((q[j + 4] >> 4) | (q[j] >> 6) << 4);
    }
}

/* Q3_K scale j (0..15), 6 bits with offset 32: low 4 bits in byte j%8 (low nibble for
 * j < 8, high for j >= 8), high 2 bits in byte 8 + j%4 at bit 2*(j/4). */
static int q3_k_scale(const uint8_t *s, int j) {
    const int lo = j < 8 ? s[j] & 0x0f : s[j - 8] >> 4;
    return (lo | ((s[8 + j % 4] >> (2 * (j / 4))) & 3) << 4) - 32;
}

/* The 2-bit planes shared by Q2_K and Q3_K: per 128 values, byte l of 32 holds
 * elements l, l+32, l+64, l+96 at bits 0, 2, 4, 6. */
static void pack_2bit(uint8_t *qs, const uint8_t *L) {
    for (int j = 0; j < QK_K; j += 128) {
        for (int l = 0; l < 32; ++l) {
            qs[j / 4 + l] = (uint8_t)(L[j + l] | L[j + l + 32] << 2 | L[j + l + 64] << 4 |
                                      L[j + l + 96] << 6);
        }
    }
}

static inline int q2_at(const uint8_t *qs, int k) { /* element k of the 2-bit planes */
    return (qs[(k / 128) * 32 + k % 32] >> (2 * ((k % 128) / 32))) & 3;
}

/* ------------------------------------------------------------ K-quants: dequantize -- */

void rwkv_dequant_q2_k(const uint8_t *src, float *y, int64_t nb) {
    for (int64_t i = 0; i < nb; i++, src += sizeof(block_q2_k), y += QK_K) {
        block_q2_k b;
        memcpy(&b, src, sizeof b);
        const float d = h2f(b.d), min = h2f(b.dmin);
        for (int k = 0; k < QK_K; k++) {
            const uint8_t sc = b.scales[k / 16];
            const float dl = d * (sc & 0x0f), ml = min * (sc >> 4);
            y[k] = dl * q2_at(b.qs, k) - ml;
        }
    }
}

void rwkv_dequant_q3_k(const uint8_t *src, float *y, int64_t nb) {
    for (int64_t i = 0; i < nb; i++, src += sizeof(block_q3_k), y += QK_K) {
        block_q3_k b;
        memcpy(&b, src, sizeof b);
        const float d_all = h2f(b.d);
        for (int k = 0; k < QK_K; k++) {
            const float dl = d_all * q3_k_scale(b.scales, k / 16);
            /* high bit: plane k/32 of hmask[k%32]; a set bit means no -4 offset */
            const int hi = (b.hmask[k % 32] >> (k / 32)) & 1;
            y[k] = dl * (q2_at(b.qs, k) - (hi ? 0 : 4));
        }
    }
}

void rwkv_dequant_q4_k(const uint8_t *src, float *y, int64_t nb) {
    for (int64_t i = 0; i < nb; i++, src += sizeof(block_q4_k), y += QK_K) {
        block_q4_k b;
        memcpy(&b, src, sizeof b);
        const float d = h2f(b.d), min = h2f(b.dmin);
        for (int j = 0; j < QK_K / 32; j++) { /* sub-block j: nibble j%2 of qs[32*(j/2) ..] */
            uint8_t sc, m;
            get_scale_min_k4(j, b.scales, &sc, &m);
            const float d1 = d * sc, m1 = min * m;
            const uint8_t *q = b.qs + 32 * (j / 2);
            const int shift = 4 * (j % 2);
            for (int l = 0; l < 32; l++) y[32 * j + l] = d1 * ((q[l] >> shift) & 0x0f) - m1;
        }
    }
}

void rwkv_dequant_q5_k(const uint8_t *src, float *y, int64_t nb) {
    for (int64_t i = 0; i < nb; i++, src += sizeof(block_q5_k), y += QK_K) {
        block_q5_k b;
        memcpy(&b, src, sizeof b);
        const float d = h2f(b.d), min = h2f(b.dmin);
        for (int j = 0; j < QK_K / 32; j++) { /* 5th bit of sub-block j: bit j of qh[l] */
            uint8_t sc, m;
            get_scale_min_k4(j, b.scales, &sc, &m);
            const float d1 = d * sc, m1 = min * m;
            const uint8_t *q = b.qs + 32 * (j / 2);
            const int shift = 4 * (j % 2);
            for (int l = 0; l < 32; l++) {
                const int v = ((q[l] >> shift) & 0x0f) + (((b.qh[l] >> j) & 1) ? 16 : 0);
                y[32 * j + l] = d1 * v - m1;
            }
        }
    }
}

void rwkv_dequant_q6_k(const uint8_t *src, float *y, int64_t nb) {
    for (int64_t i = 0; i < nb; i++, src += sizeof(block_q6_k), y += QK_K) {
        block_q6_k b;
        memcpy(&b, src, sizeof b);
        const float d = h2f(b.d);
        for (int k = 0; k < QK_K; k++) {
            /* per 128 values: quarter r = (k%128)/32 takes nibble r/2 of ql[64*(k/128) + 32*(r%2)
             * + l] and bits 2r..2r+1 of qh[32*(k/128) + l] */
            const int h = k / 128, r = (k % 128) / 32, l = k % 32;
            const int lo = (b.ql[64 * h + 32 * (r % 2) + l] >> (4 * (r / 2))) & 0x0f;
            const int hi = (b.qh[32 * h + l] >> (2 * r)) & 3;
            y[k] = d * b.scales[k / 16] * (float)((lo | hi << 4) - 32);
        }
    }
}

/* ------------------------------------------------------------ K-quants: quantize -- */

/* Each quantizer: fit every sub-block alone, quantize the sub-block scales (and mins)
 * against the largest, then re-quantize the values with the scales as stored (rounded),
 * so the bytes decode to the closest values the stored scales allow. */

void rwkv_quant_q2_k(const float *x, uint8_t *dst, int64_t nb) {
    uint8_t L[QK_K], Laux[16];
    float weights[16], mins[QK_K / 16], scales[QK_K / 16];
    const float q4scale = 15.f;
    for (int64_t i = 0; i < nb; i++, x += QK_K, dst += sizeof(block_q2_k)) {
        block_q2_k b;
        float max_scale = 0, max_min = 0;
        for (int j = 0; j < QK_K / 16; ++j) {
            for (int l = 0; l < 16; ++l) weights[l] = fabsf(x[16 * j + l]);
            scales[j] = make_qkx2_quants(16, 3, x + 16 * j, weights, L + 16 * j, &mins[j], Laux,
                                         -0.5f, 0.1f, 15, true);
            if (scales[j] > max_scale) max_scale = scales[j];
            if (mins[j] > max_min) max_min = mins[j];
        }
        if (max_scale > 0) {
            const float iscale = q4scale / max_scale;
            for (int j = 0; j < QK_K / 16; ++j) b.scales[j] = (uint8_t)nearest_int(iscale * scales[j]);
            b.d = rwkv_f32_to_f16(max_scale / q4scale);
        } else {
            for (int j = 0; j < QK_K / 16; ++j) b.scales[j] = 0;
            b.d = rwkv_f32_to_f16(0.f);
        }
        if (max_min > 0) {
            const float iscale = q4scale / max_min;
            for (int j = 0; j < QK_K / 16; ++j) b.scales[j] |= (uint8_t)((unsigned)nearest_int(iscale * mins[j]) << 4);
            b.dmin = rwkv_f32_to_f16(max_min / q4scale);
        } else {
            b.dmin = rwkv_f32_to_f16(0.f);
        }
        for (int j = 0; j < QK_K / 16; ++j) {
            const float d = h2f(b.d) * (b.scales[j] & 0x0f);
            if (!d) continue;
            const float dm = h2f(b.dmin) * (b.scales[j] >> 4);
            for (int ii = 0; ii < 16; ++ii) {
                const int l = nearest_int((x[16 * j + ii] + dm) / d);
                L[16 * j + ii] = (uint8_t)MAX(0, MIN(3, l));
            }
        }
        pack_2bit(b.qs, L);
        memcpy(dst, &b, sizeof b);
    }
}

void rwkv_quant_q3_k(const float *x, uint8_t *dst, int64_t nb) {
    int8_t L[QK_K];
    float scales[QK_K / 16];
    for (int64_t i = 0; i < nb; i++, x += QK_K, dst += sizeof(block_q3_k)) {
        block_q3_k b;
        float max_scale = 0, amax = 0;
        for (int j = 0; j < QK_K / 16; ++j) {
            scales[j] = make_q3_quants(16, 4, x + 16 * j, L + 16 * j);
            const float scale = fabsf(scales[j]);
            if (scale > amax) { amax = scale; max_scale = scales[j]; }
        }
        memset(b.scales, 0, sizeof b.scales);
        if (max_scale) {
            const float iscale = -32.f / max_scale;
            for (int j = 0; j < QK_K / 16; ++j) {
                int8_t l = (int8_t)nearest_int(iscale * scales[j]);
                l = (int8_t)(MAX(-32, MIN(31, l)) + 32);
                if (j < 8) b.scales[j] = l & 0x0f;
                else b.scales[j - 8] |= (uint8_t)((l & 0x0f) << 4);
                l >>= 4;
                b.scales[j % 4 + 8] |= (uint8_t)(l << (2 * (j / 4)));
            }
            b.d = rwkv_f32_to_f16(1 / iscale);
        } else {
            b.d = rwkv_f32_to_f16(0.f);
        }
        for (int j = 0; j < QK_K / 16; ++j) {
            const float d = h2f(b.d) * (int8_t)q3_k_scale(b.scales, j);
            if (!d) continue;
            for (int ii = 0; ii < 16; ++ii) {
                const int l = nearest_int(x[16 * j + ii] / d);
                L[16 * j + ii] = (int8_t)(MAX(-4, MIN(3, l)) + 4);
            }
        }
        /* the high bit of q goes to hmask: element k -> byte k%32, bit k/32 */
        uint8_t low[QK_K];
        memset(b.hmask, 0, sizeof b.hmask);
        for (int k = 0; k < QK_K; ++k) {
            low[k] = (uint8_t)L[k];
            if (L[k] > 3) {
                b.hmask[k % 32] |= (uint8_t)(1u << (k / 32));
                low[k] = (uint8_t)(L[k] - 4);
            }
        }
        pack_2bit(b.qs, low);
        memcpy(dst, &b, sizeof b);
    }
}

/* Q4_K and Q5_K share everything but nmax, the search grid and the bit packing. */
static void quant_q45_k(const float *x, uint8_t *L, uint16_t *d_out, uint16_t *dmin_out,
                        uint8_t *packed_scales, int nmax, float rmin, float rdelta, int nstep) {
    uint8_t Laux[32], ls[8], lm[8];
    float weights[32], mins[QK_K / 32], scales[QK_K / 32];
    float max_scale = 0, max_min = 0;
    for (int j = 0; j < QK_K / 32; ++j) {
        float sum_x2 = 0;
        for (int l = 0; l < 32; ++l) sum_x2 += x[32 * j + l] * x[32 * j + l];
        const float av_x = sqrtf(sum_x2 / 32);
        for (int l = 0; l < 32; ++l) weights[l] = av_x + fabsf(x[32 * j + l]);
        scales[j] = make_qkx2_quants(32, nmax, x + 32 * j, weights, L + 32 * j, &mins[j], Laux, rmin,
                                     rdelta, nstep, false);
        if (scales[j] > max_scale) max_scale = scales[j];
        if (mins[j] > max_min) max_min = mins[j];
    }
    const float inv_scale = max_scale > 0 ? 63.f / max_scale : 0.f;
    const float inv_min = max_min > 0 ? 63.f / max_min : 0.f;
    for (int j = 0; j < QK_K / 32; ++j) {
        ls[j] = (uint8_t)MIN(63, (uint8_t)nearest_int(inv_scale * scales[j]));
        lm[j] = (uint8_t)MIN(63, (uint8_t)nearest_int(inv_min * mins[j]));
    }
    pack_scale_min_k4(packed_scales, ls, lm);
    *d_out = rwkv_f32_to_f16(max_scale / 63.f);
    *dmin_out = rwkv_f32_to_f16(max_min / 63.f);
    for (int j = 0; j < QK_K / 32; ++j) {
        uint8_t sc, m;
        get_scale_min_k4(j, packed_scales, &sc, &m);
        const float d = h2f(*d_out) * sc;
        if (!d) continue;
        const float dm = h2f(*dmin_out) * m;
        for (int ii = 0; ii < 32; ++ii) {
            const int l = nearest_int((x[32 * j + ii] + dm) / d);
            L[32 * j + ii] = (uint8_t)MAX(0, MIN(nmax, l));
        }
    }
}

void rwkv_quant_q4_k(const float *x, uint8_t *dst, int64_t nb) {
    uint8_t L[QK_K];
    for (int64_t i = 0; i < nb; i++, x += QK_K, dst += sizeof(block_q4_k)) {
        block_q4_k b;
        quant_q45_k(x, L, &b.d, &b.dmin, b.scales, 15, -1.f, 0.1f, 20);
        for (int j = 0; j < QK_K; j += 64) { /* 64 values -> 32 bytes: low nibble, high nibble */
            for (int l = 0; l < 32; ++l) b.qs[j / 2 + l] = (uint8_t)(L[j + l] | L[j + l + 32] << 4);
        }
        memcpy(dst, &b, sizeof b);
    }
}

void rwkv_quant_q5_k(const float *x, uint8_t *dst, int64_t nb) {
    uint8_t L[QK_K];
    for (int64_t i = 0; i < nb; i++, x += QK_K, dst += sizeof(block_q5_k)) {
        block_q5_k b;
        quant_q45_k(x, L, &b.d, &b.dmin, b.scales, 31, -0.5f, 0.1f, 15);
        memset(b.qh, 0, sizeof b.qh);
        for (int k = 0; k < QK_K; ++k) { /* 5th bit of element k -> qh[k%32], bit k/32 */
            if (L[k] > 15) b.qh[k % 32] |= (uint8_t)(1u << (k / 32));
        }
        for (int j = 0; j < QK_K; j += 64) {
            for (int l = 0; l < 32; ++l) {
                b.qs[j / 2 + l] = (uint8_t)((L[j + l] & 0x0f) | (L[j + l + 32] & 0x0f) << 4);
            }
        }
        memcpy(dst, &b, sizeof b);
    }
}

void rwkv_quant_q6_k(const float *x, uint8_t *dst, int64_t nb) {
    int8_t L[QK_K];
    float scales[QK_K / 16];
    for (int64_t i = 0; i < nb; i++, x += QK_K, dst += sizeof(block_q6_k)) {
        block_q6_k b;
        float max_scale = 0, max_abs_scale = 0;
        for (int ib = 0; ib < QK_K / 16; ++ib) {
            scales[ib] = make_qx_quants(16, 32, x + 16 * ib, L + 16 * ib);
            const float abs_scale = fabsf(scales[ib]);
            if (abs_scale > max_abs_scale) { max_abs_scale = abs_scale; max_scale = scales[ib]; }
        }
        memset(&b, 0, sizeof b);
        if (max_abs_scale >= GROUP_MAX_EPS) {
            const float iscale = -128.f / max_scale;
            b.d = rwkv_f32_to_f16(1 / iscale);
            for (int ib = 0; ib < QK_K / 16; ++ib) b.scales[ib] = (int8_t)MIN(127, nearest_int(iscale * scales[ib]));
            for (int j = 0; j < QK_K / 16; ++j) {
                const float d = h2f(b.d) * b.scales[j];
                if (!d) continue;
                for (int ii = 0; ii < 16; ++ii) {
                    const int l = nearest_int(x[16 * j + ii] / d);
                    L[16 * j + ii] = (int8_t)(MAX(-32, MIN(31, l)) + 32);
                }
            }
            for (int k = 0; k < QK_K; ++k) { /* inverse of dequant_q6_k's addressing */
                const int h = k / 128, r = (k % 128) / 32, l = k % 32, q = L[k];
                b.ql[64 * h + 32 * (r % 2) + l] |= (uint8_t)((q & 0x0f) << (4 * (r / 2)));
                b.qh[32 * h + l] |= (uint8_t)(((q >> 4) & 3) << (2 * r));
            }
        }
        memcpy(dst, &b, sizeof b);
    }
}

