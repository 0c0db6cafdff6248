/* matmul.c — threaded matrix-vector products over the dispatch table's kernels.
 *
 * Decoding one token is memory-bound: every weight byte is read once per token.
 * Rows are handed out guided (grab_run) in units of ROW_UNIT rows: each thread streams
 * long contiguous runs of the matrix, and the last short runs even out threads that the
 * (shared, noisy) machine slowed down; measured 4-8% faster per token than one fixed half
 * per thread on the 2-core Zen 4 VM. Each run is one kernel call, so a GEMM unpacks its
 * weight panels once per run: as 16-row calls (OpenMP's guided loop, one unit per
 * iteration) Q8_0's 32-row panel GEMM did half its work on padding and two threads ran
 * pp512 no faster than one.
 */
#include "matmul.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "error.h"
#include "ops.h"
#include "ggml_types.h"
#include "kernels/kernels.h"
#include "quants.h"

#ifdef _OPENMP
#include <omp.h>
#endif

/* Below this many weight bytes a fork/join costs more than it saves. */
#define PARALLEL_MIN_BYTES (64 * 1024)
/* Rows per unit of work of the guided split: a multiple of the kernels' 4-row block. */
#define ROW_UNIT 16

int rwkv_mat_type_supported(uint32_t type) {
    return rwkv_kernels_gemv_f(&rwkv_kernels_scalar, type) != NULL || rwkv_kernels_gemv_q(&rwkv_kernels_scalar, type) != NULL;
}

/* ---- activation quantization (one format for every level, so twins agree) ---- */

static size_t align64(size_t n) { return (n + 63) & ~(size_t)63; }

/* Layout of the scratch: q, qp (int16 [n]); lo, hi (int8 [n]); q2 (int16 [n/2]); d, sum32, qsum
 * (f32/i32 [n/32+16]); sum16, qsum16, dxs (f32/i32 [n/16+16]); each part 64-byte aligned.
 * The +16 pads let SIMD kernels load a whole vector of per-block values past the
 * last block. */
size_t rwkv_xq_bytes(int64_t n_max) {
    size_t n = (size_t)n_max;
    return 2 * align64(n * sizeof(int16_t)) + 3 * align64(n) + 3 * align64((n / 32 + 16) * 4) +
           3 * align64((n / 16 + 16) * 4);
}

void rwkv_xq_bind(struct rwkv_xq *xq, void *buf, int64_t n_max) {
    size_t n = (size_t)n_max;
    char *p = buf;
    xq->q = (int16_t *)p;
    p += align64(n * sizeof(int16_t));
    xq->qp = (int16_t *)p;
    p += align64(n * sizeof(int16_t));
    xq->lo = (int8_t *)p;
    p += align64(n);
    xq->hi = (int8_t *)p;
    p += align64(n);
    xq->q2 = (int16_t *)p;
    p += align64(n);
    xq->d = (float *)p;
    p += align64((n / 32 + 16) * 4);
    xq->sum32 = (float *)p;
    p += align64((n / 32 + 16) * 4);
    xq->qsum = (int32_t *)p;
    p += align64((n / 32 + 16) * 4);
    xq->sum16 = (float *)p;
    p += align64((n / 16 + 16) * 4);
    xq->qsum16 = (int32_t *)p;
    p += align64((n / 16 + 16) * 4);
    xq->dxs = (float *)p;
    xq->block = 32;
}

/* Round to nearest even without a libm call: adding 1.5 * 2^23 leaves the integer in
 * the low mantissa bits (exact for |v| < 2^22; here |v| <= 16383). */
static inline int16_t round_i16(float v) {
    float t = v + 12582912.0f;
    int32_t i;
    memcpy(&i, &t, sizeof i);
    return (int16_t)((i & 0x007fffff) - 0x00400000);
}

/* lo = q & 127, hi = q >> 7 (arithmetic), so q = 128 * hi + lo exactly. */
static void split_planes(const int16_t *q, int64_t e0, int64_t e1, struct rwkv_xq *xq) {
    /* local restrict pointers: through xq->lo the compiler must assume each byte store
     * may change xq itself, reloads both pointers every element and cannot vectorize */
    int8_t *restrict lo = xq->lo, *restrict hi = xq->hi;
    const int16_t *restrict qq = q;
    for (int64_t i = e0; i < e1; i++) {
        lo[i] = (int8_t)(qq[i] & 127);
        hi[i] = (int8_t)(qq[i] >> 7);
    }
}

/* K types: q2[i] = q[2i] + q[2i+1] for the elements [e0, e1) (e0, e1 even). */
static void pair_sums(struct rwkv_xq *xq, int64_t e0, int64_t e1) {
    const int16_t *restrict q = xq->q;
    int16_t *restrict q2 = xq->q2;
    for (int64_t i = e0 / 2; i < e1 / 2; i++) q2[i] = (int16_t)(q[2 * i] + q[2 * i + 1]);
}

/* K types: qp in quad order, per 32 elements {0,1, 4,5, .., 28,29 | 2,3, 6,7, .., 30,31}
 * (the integer lanes of the GEMVs, for the panel GEMMs; see kernels.h). */
static void quad_order(struct rwkv_xq *xq, int64_t e0, int64_t e1) {
    const int16_t *restrict q = xq->q;
    int16_t *restrict qp = xq->qp;
    for (int64_t g = e0; g + 32 <= e1; g += 32)
        for (int j = 0; j < 16; j++) {
            qp[g + j] = q[g + (j / 2) * 4 + (j & 1)];
            qp[g + 16 + j] = q[g + (j / 2) * 4 + 2 + (j & 1)];
        }
}

/* max |x_i| over n elements (n a multiple of 8). Eight independent chains: one chain waits
 * on every compare; the maximum is the same in any order (NaNs are skipped either way). */
static float abs_max(const float *restrict x, int64_t n) {
    float m[8] = {0.0f};
    for (int64_t i = 0; i < n; i += 8)
        for (int k = 0; k < 8; k++) {
            const float a = fabsf(x[i + k]);
            m[k] = a > m[k] ? a : m[k];
        }
    float r = 0.0f;
    for (int k = 0; k < 8; k++) r = m[k] > r ? m[k] : r;
    return r;
}

/* out[g] = the f32 sum of x[16 g .. 16 g + 15], added left to right from 0, for g in [g0, g1):
 * eight groups side by side, each in its own order (so the sums are those of one at a time). */
static void sums16(const float *restrict x, float *restrict out, int64_t g0, int64_t g1) {
    int64_t g = g0;
    for (; g + 8 <= g1; g += 8) {
        float s[8] = {0.0f};
        for (int i = 0; i < 16; i++)
            for (int k = 0; k < 8; k++) s[k] += x[(g + k) * 16 + i];
        for (int k = 0; k < 8; k++) out[g + k] = s[k];
    }
    for (; g < g1; g++) {
        float s = 0.0f;
        for (int i = 0; i < 16; i++) s += x[g * 16 + i];
        out[g] = s;
    }
}

/* Elements per unit of work of xq_quantize: a pair of 32-blocks (the pair order of
 * qp), or one 256-block. */
static int64_t xq_unit(int64_t block) { return block == 32 ? 64 : 256; }

/* x_i ~= d_b * q_i with d_b = max|x| / 16383 over each block of `block` elements, for
 * elements [e0, e1) of x: e0 a multiple of xq_unit(block), e1 one too or n, so the threads
 * of a GEMV quantize disjoint parts of x side by side. xq->block is set by the caller.
 * `several`: a product of several tokens, whose K-type GEMMs also read the quad-order copy qp;
 * one token's GEMV does not, so decoding skips it. */
static void xq_quantize(const float *x, int64_t block, struct rwkv_xq *xq, int64_t e0, int64_t e1, int several) {
    for (int64_t b = e0 / block; b < e1 / block; b++) {
        const float *xb = x + b * block;
        const float amax = abs_max(xb, block);
        const float inv = amax > 0.0f ? (float)RWKV_XQ_MAX / amax : 0.0f;
        xq->d[b] = amax / (float)RWKV_XQ_MAX;
        int16_t *q = xq->q + b * block;
        for (int64_t i = 0; i < block; i++) q[i] = round_i16(xb[i] * inv);
    }
    sums16(x, xq->sum16, e0 / 16, e1 / 16);
    for (int64_t b = e0 / 32; b < e1 / 32; b++) xq->sum32[b] = xq->sum16[2 * b] + xq->sum16[2 * b + 1];
    if (block != 32) {
        const int16_t *restrict q = xq->q;
        int32_t *restrict qsum16 = xq->qsum16;
        for (int64_t g = e0 / 16; g < e1 / 16; g++) {
            int32_t qs = 0;
            for (int i = 0; i < 16; i++) qs += q[g * 16 + i];
            qsum16[g] = qs;
        }
        split_planes(xq->q, e0, e1, xq);
        pair_sums(xq, e0, e1);
        if (several) quad_order(xq, e0, e1);
        return;
    }
    for (int64_t b = e0 / 32; b < e1 / 32; b++) {
        int32_t qs = 0;
        for (int i = 0; i < 32; i++) qs += xq->q[b * 32 + i];
        xq->qsum[b] = qs;
        xq->dxs[2 * b] = xq->d[b];
        xq->dxs[2 * b + 1] = xq->sum32[b];
    }
    const int16_t *q = xq->q;
    int16_t *qp = xq->qp;
    int64_t p = e0;
    for (; p + 64 <= e1; p += 64)
        for (int i = 0; i < 16; i++) {
            qp[p + i] = q[p + i];
            qp[p + 16 + i] = q[p + 32 + i];
            qp[p + 32 + i] = q[p + 16 + i];
            qp[p + 48 + i] = q[p + 48 + i];
        }
    for (; p < e1; p++) qp[p] = q[p]; /* an odd last block stays in natural order */
    split_planes(qp, e0, e1, xq);
}

/* The part [*e0, *e1) of x that thread `it` of `nt` quantizes. */
static void xq_share(int64_t n, int64_t block, int it, int nt, int64_t *e0, int64_t *e1) {
    const int64_t unit = xq_unit(block), units = (n + unit - 1) / unit;
    const int64_t u0 = units * it / nt, u1 = units * (it + 1) / nt;
    *e0 = u0 * unit;
    *e1 = u1 * unit < n ? u1 * unit : n;
}

static int64_t xq_block_for(uint32_t type) {
    const struct rwkv_type_traits *tr = rwkv_type_traits_get(type);
    return tr && tr->block_size == 256 ? 256 : 32;
}

void rwkv_matmul_vec(const struct rwkv_mat *w, const float *x, float *y, struct rwkv_xq *scratch,
                     int n_threads) {
    const struct rwkv_gemv_job job = {w, x, y, RWKV_POST_NONE, NULL, 1, 0, 0};
    rwkv_matmul_jobs(1, &job, scratch, n_threads);
}

/* The activation fused into a product, over its n outputs y. Exponentials go through the
 * kernels' exp slot (vectorized, the same bits at every level) in runs of POST_RUN. */
#define POST_RUN 64
static void apply_post(const struct rwkv_kernels *k, int post, const float *bias, float *y, int64_t n) {
    float t[POST_RUN];
    if (post == RWKV_POST_NONE) return;
    if (post == RWKV_POST_TANH) { /* small LoRA hidden layers: libm's accuracy near 0 */
        for (int64_t i = 0; i < n; i++) y[i] = tanhf(y[i]);
        return;
    }
    if (post == RWKV_POST_RELU_SQ) { /* max(y, 0)^2, NaN to 0 */
        /* four lanes by hand: GCC keeps the scalar form as a branch per element (the
         * ordered compare may trap), mispredicted on half of them */
        typedef float f4 __attribute__((vector_size(16)));
        typedef int32_t i4 __attribute__((vector_size(16)));
        int64_t i = 0;
        for (; i + 4 <= n; i += 4) {
            f4 v;
            memcpy(&v, y + i, sizeof v);
            v = (f4)((i4)v & (v > (f4){0.0f, 0.0f, 0.0f, 0.0f}));
            v = v * v;
            memcpy(y + i, &v, sizeof v);
        }
        for (; i < n; i++) {
            const float v = y[i] > 0.0f ? y[i] : 0.0f;
            y[i] = v * v;
        }
        return;
    }
    for (int64_t i0 = 0; i0 < n; i0 += POST_RUN) {
        float *v = y + i0;
        const float *b = bias ? bias + i0 : NULL;
        const int64_t m = n - i0 < POST_RUN ? n - i0 : POST_RUN;
        switch (post) {
        case RWKV_POST_SILU: /* y / (1 + e^-y) */
        case RWKV_POST_SIGMOID:
            for (int64_t i = 0; i < m; i++) t[i] = -v[i];
            k->exp(t, t, m);
            if (post == RWKV_POST_SILU)
                for (int64_t i = 0; i < m; i++) v[i] = v[i] / (1.0f + t[i]);
            else
                for (int64_t i = 0; i < m; i++) v[i] = 1.0f / (1.0f + t[i]);
            break;
        case RWKV_POST_DECAY: /* e^-e^(b + y) */
            for (int64_t i = 0; i < m; i++) t[i] = b[i] + v[i];
            k->exp(t, t, m);
            for (int64_t i = 0; i < m; i++) t[i] = -t[i];
            k->exp(t, v, m);
            break;
        case RWKV_POST_DECAY7: /* 0.606531 = e^-0.5: the reference's -softplus(-x) - 0.5 inside exp(-exp(.)) */
        case RWKV_POST_SIGMOID_BIAS:
            for (int64_t i = 0; i < m; i++) t[i] = -(b[i] + v[i]);
            k->exp(t, t, m);
            if (post == RWKV_POST_SIGMOID_BIAS) {
                for (int64_t i = 0; i < m; i++) v[i] = 1.0f / (1.0f + t[i]);
            } else {
                for (int64_t i = 0; i < m; i++) t[i] = -0.606531f * (1.0f / (1.0f + t[i]));
                k->exp(t, v, m);
            }
            break;
        default:
            break;
        }
    }
}

static int64_t n_tok(const struct rwkv_gemv_job *j) { return j->n_tok > 0 ? j->n_tok : 1; }

static void run_rows(const struct rwkv_kernels *k, const struct rwkv_gemv_job *j, int64_t t, struct rwkv_xq *xq,
                     int64_t r0, int64_t r1) {
    const struct rwkv_mat *m = j->w;
    const char *w0 = (const char *)m->data + (size_t)r0 * m->row_bytes;
    const float *x = j->x + t * j->x_stride;
    float *y = j->y + t * j->y_stride + r0;
    rwkv_gemv_fn fn = rwkv_kernels_gemv_f(k, m->type);
    if (fn) fn(w0, m->row_bytes, x, y, r1 - r0, m->n_cols);
    else rwkv_kernels_gemv_q(k, m->type)(w0, m->row_bytes, xq, y, r1 - r0, m->n_cols);
    apply_post(k, j->post, j->bias ? j->bias + r0 : NULL, y, r1 - r0);
}

/* Rows [r0, r1) of job j for its tokens [t0, t1): one GEMM call where the level has one
 * (bit-identical to the GEMV per token), else the GEMV token after token while the rows are
 * in cache. */
static void run_rows_tok(const struct rwkv_kernels *k, const struct rwkv_gemv_job *j, struct rwkv_xq *xq,
                         int64_t r0, int64_t r1, int64_t t0, int64_t t1) {
    const int64_t nt = t1 - t0;
    const struct rwkv_mat *m = j->w;
    const char *w0 = (const char *)m->data + (size_t)r0 * m->row_bytes;
    rwkv_gemm_fn gemm = nt > 1 ? rwkv_kernels_gemm_f(k, m->type) : NULL;
    rwkv_gemm_q_fn gemm_q = nt > 1 ? rwkv_kernels_gemm_q(k, m->type) : NULL;
    float *y = j->y + t0 * j->y_stride + r0;
    if (gemm) gemm(w0, m->row_bytes, j->x + t0 * j->x_stride, j->x_stride, y, j->y_stride, r1 - r0, m->n_cols, nt);
    else if (gemm_q) gemm_q(w0, m->row_bytes, xq + t0, y, j->y_stride, r1 - r0, m->n_cols, nt);
    else {
        for (int64_t t = t0; t < t1; t++) run_rows(k, j, t, &xq[t], r0, r1);
        return;
    }
    for (int64_t t = 0; t < nt; t++) apply_post(k, j->post, j->bias ? j->bias + r0 : NULL, y + t * j->y_stride, r1 - r0);
}

/* Tokens per tile of job j: the tile's activations (at most TILE_X_BYTES as f32) stay in
 * L2 while a thread sweeps them with each block of rows, and every weight is read from
 * memory once per tile. 1 MiB (128 tokens of 2048 columns) ran pp256 at 1.16x the speed
 * of 256 KiB on the 1.6B F16 shape; 2 MiB was no better. A multiple of the GEMM kernels'
 * 4-token blocks. */
#define TILE_X_BYTES (1024 * 1024)
static int64_t token_tile(const struct rwkv_gemv_job *j) {
    int64_t tile = TILE_X_BYTES / (4 * (j->w->n_cols > 0 ? j->w->n_cols : 1));
    tile = tile < 4 ? 4 : tile & ~(int64_t)3;
    return tile < n_tok(j) ? tile : n_tok(j);
}

/* Rows [r0, r1) of job j for tile `it` of its tokens; 0 when the job has no such tile. */
static int run_tile(const struct rwkv_kernels *k, const struct rwkv_gemv_job *j, struct rwkv_xq *xq, int64_t it,
                    int64_t r0, int64_t r1) {
    const int64_t tile = token_tile(j), t0 = it * tile;
    if (t0 >= n_tok(j)) return 0;
    run_rows_tok(k, j, xq, r0, r1, t0, t0 + tile < n_tok(j) ? t0 + tile : n_tok(j));
    return 1;
}

/* Rows per unit of job j's work: several tokens' GEMMs unpack panels of up to 32 rows (a
 * 16-row call to Q8_0's panel GEMM would compute a second group of copies); one token's
 * GEMV streams rows. */
static int64_t row_unit(const struct rwkv_gemv_job *j) { return n_tok(j) > 1 ? 2 * ROW_UNIT : ROW_UNIT; }

/* The (token tile, job) segment of the work shared by all threads that holds unit `u`: the
 * segments in order, each its job's rows in units of row_unit. Sets *tile, *ji and the segment's
 * first unit *base and length *units; 0 past the end. */
static int find_segment(const struct rwkv_gemv_job *jobs, int n, int64_t n_tiles, int64_t u, int64_t *tile, int *ji,
                        int64_t *base, int64_t *units) {
    int64_t b = 0;
    for (int64_t t = 0; t < n_tiles; t++)
        for (int i = 0; i < n; i++) {
            const struct rwkv_gemv_job *j = &jobs[i];
            if (t * token_tile(j) >= n_tok(j)) continue;
            const int64_t m = (j->w->n_rows + row_unit(j) - 1) / row_unit(j);
            if (u < b + m) {
                *tile = t, *ji = i, *base = b, *units = m;
                return 1;
            }
            b += m;
        }
    return 0;
}

/* The next run of rows [*r0, *r1) of job *i's token tile *tile: within its segment a run of
 * ceil(left / nt) units (guided), so each thread first streams a long contiguous run, then ever
 * shorter ones, and a thread the machine slowed hands its tail to the others instead of making
 * them wait at the join. Whole runs, not units, go to the kernels: a GEMM unpacks its panels
 * once per call. 0 when no work is left. */
static int grab_run(const struct rwkv_gemv_job *jobs, int n, int64_t n_tiles, int nt, int64_t *next,
                    int64_t *tile, int *i, int64_t *r0, int64_t *r1) {
    int64_t cur = __atomic_load_n(next, __ATOMIC_RELAXED), base, units, take;
    do { /* a failed exchange leaves the shared value in cur */
        if (!find_segment(jobs, n, n_tiles, cur, tile, i, &base, &units)) return 0;
        take = (base + units - cur + nt - 1) / nt;
    } while (!__atomic_compare_exchange_n(next, &cur, cur + take, 0, __ATOMIC_RELAXED, __ATOMIC_RELAXED));
    const struct rwkv_gemv_job *j = &jobs[*i];
    const int64_t e = (cur - base + take) * row_unit(j);
    *r0 = (cur - base) * row_unit(j);
    *r1 = e < j->w->n_rows ? e : j->w->n_rows;
    return 1;
}

void rwkv_matmul_jobs(int n, const struct rwkv_gemv_job *jobs, struct rwkv_xq *xq, int n_threads) {
    const struct rwkv_kernels *k = rwkv_kernels_active();
    size_t bytes = 0;
    int64_t T = 1;
    for (int i = 0; i < n; i++) T = n_tok(&jobs[i]) > T ? n_tok(&jobs[i]) : T;
    for (int i = 0; i < n; i++) {
        bytes += (size_t)jobs[i].w->n_rows * jobs[i].w->row_bytes * (size_t)n_tok(&jobs[i]);
        for (int64_t t = 0; t < n_tok(&jobs[i]); t++) xq[i * T + t].block = xq_block_for(jobs[i].w->type);
    }
    if (n_threads <= 1 || bytes < PARALLEL_MIN_BYTES) {
        for (int i = 0; i < n; i++) {
            if (rwkv_kernels_gemv_q(k, jobs[i].w->type))
                for (int64_t t = 0; t < n_tok(&jobs[i]); t++)
                    xq_quantize(jobs[i].x + t * jobs[i].x_stride, xq[i * T + t].block, &xq[i * T + t], 0,
                                jobs[i].w->n_cols, n_tok(&jobs[i]) > 1);
            for (int64_t it = 0; run_tile(k, &jobs[i], &xq[i * T], it, 0, jobs[i].w->n_rows); it++) {
            }
        }
        return;
    }
    int64_t n_tiles = 0, next = 0;
    for (int i = 0; i < n; i++) {
        const int64_t tiles = (n_tok(&jobs[i]) + token_tile(&jobs[i]) - 1) / token_tile(&jobs[i]);
        n_tiles = tiles > n_tiles ? tiles : n_tiles;
    }
#pragma omp parallel num_threads(n_threads)
    {
#ifdef _OPENMP
        int nt = omp_get_num_threads(), it = omp_get_thread_num();
#else
        int nt = 1, it = 0;
#endif
        /* every thread quantizes its share of every quantized input (one token: a part of
         * its elements; several: whole tokens), then all wait */
        int any = 0;
        for (int i = 0; i < n; i++) {
            if (!rwkv_kernels_gemv_q(k, jobs[i].w->type)) continue;
            any = 1;
            const int64_t nc = jobs[i].w->n_cols;
            if (n_tok(&jobs[i]) == 1) {
                int64_t e0, e1;
                xq_share(nc, xq[i * T].block, it, nt, &e0, &e1);
                xq_quantize(jobs[i].x, xq[i * T].block, &xq[i * T], e0, e1, 0);
            } else {
                for (int64_t t = it; t < n_tok(&jobs[i]); t += nt)
                    xq_quantize(jobs[i].x + t * jobs[i].x_stride, xq[i * T + t].block, &xq[i * T + t], 0, nc, 1);
            }
        }
        if (any) {
#pragma omp barrier
        }
        /* the rows of every (tile, job) in guided runs, each run one kernel call */
        int64_t r0, r1, tile;
        int i;
        while (grab_run(jobs, n, n_tiles, nt, &next, &tile, &i, &r0, &r1)) run_tile(k, &jobs[i], &xq[i * T], tile, r0, r1);
    }
}

/* A zeroed, bound activation scratch for n elements (the test and benchmark hooks);
 * returns the buffer to free, or NULL when out of memory. */
static void *xq_new(int64_t n, struct rwkv_xq *xq) {
    const size_t bytes = align64(rwkv_xq_bytes(n));
    void *buf = aligned_alloc(64, bytes);
    if (!buf) return NULL;
    memset(buf, 0, bytes);
    rwkv_xq_bind(xq, buf, n);
    return buf;
}

/* The test hooks' activations: x quantized for weight type `type` as the model does it,
 * in a scratch (*buf) the caller frees. */
static int hook_xq(uint32_t type, const float *x, int64_t n_cols, struct rwkv_xq *xq, void **buf,
                   struct rwkv_error *err) {
    int rc = RWKV_OK;
    const int64_t blk = xq_block_for(type);
    RWKV_CHECK(n_cols % blk == 0, RWKV_ERR_FORMAT, "%s rows need a multiple of %lld columns", rwkv_type_name(type),
               (long long)blk);
    *buf = xq_new(n_cols, xq);
    RWKV_CHECK(*buf, RWKV_ERR_NOMEM, "out of memory");
    xq->block = blk;
    xq_quantize(x, blk, xq, 0, n_cols, 1);
fail:
    return rc;
}

/* The test hooks' products with the kernels of `level`: W @ X[t] for n_tok tokens (X and Y
 * row-major), through the level's GEMM when `gemm` is set and the level has one for `type`,
 * else its GEMV token after token (as the model runs it). */
static int at_level(int level, uint32_t type, const void *w, size_t row_bytes, const float *x, float *y,
                    int64_t n_rows, int64_t n_cols, int64_t n_tok, int use_gemm, struct rwkv_error *err) {
    int rc = RWKV_OK;
    struct rwkv_xq *xqs = NULL;
    void **bufs = NULL;
    const struct rwkv_kernels *k = rwkv_kernels_for_level(level);
    RWKV_CHECK(k, RWKV_ERR_FORMAT, "this CPU cannot run kernel level %s", rwkv_cpu_level_name(level));
    rwkv_gemv_fn fn = rwkv_kernels_gemv_f(k, type);
    rwkv_gemv_q_fn qfn = rwkv_kernels_gemv_q(k, type);
    RWKV_CHECK(fn || qfn, RWKV_ERR_FORMAT, "no %s kernel for type %s", rwkv_cpu_level_name(level),
               rwkv_type_name(type));
    RWKV_CHECK(n_tok > 0, RWKV_ERR_FORMAT, "n_tok must be positive");
    rwkv_gemm_fn gemm = use_gemm ? rwkv_kernels_gemm_f(k, type) : NULL;
    rwkv_gemm_q_fn gemm_q = use_gemm ? rwkv_kernels_gemm_q(k, type) : NULL;
    if (fn) {
        if (gemm) gemm(w, row_bytes, x, n_cols, y, n_rows, n_rows, n_cols, n_tok);
        else
            for (int64_t t = 0; t < n_tok; t++) fn(w, row_bytes, x + t * n_cols, y + t * n_rows, n_rows, n_cols);
    } else {
        xqs = calloc((size_t)n_tok, sizeof *xqs);
        bufs = calloc((size_t)n_tok, sizeof *bufs);
        RWKV_CHECK(xqs && bufs, RWKV_ERR_NOMEM, "out of memory");
        for (int64_t t = 0; t < n_tok; t++) RWKV_TRY(hook_xq(type, x + t * n_cols, n_cols, &xqs[t], &bufs[t], err));
        if (gemm_q) gemm_q(w, row_bytes, xqs, y, n_rows, n_rows, n_cols, n_tok);
        else
            for (int64_t t = 0; t < n_tok; t++) qfn(w, row_bytes, &xqs[t], y + t * n_rows, n_rows, n_cols);
    }
fail:
    if (bufs)
        for (int64_t t = 0; t < n_tok; t++) free(bufs[t]);
    free(bufs);
    free(xqs);
    return rc;
}

int rwkv_exp_at_level(int level, const float *x, float *y, int64_t n, struct rwkv_error *err) {
    int rc = RWKV_OK;
    const struct rwkv_kernels *k = rwkv_kernels_for_level(level);
    RWKV_CHECK(k, RWKV_ERR_FORMAT, "this CPU cannot run kernel level %s", rwkv_cpu_level_name(level));
    k->exp(x, y, n);
fail:
    return rc;
}

int rwkv_gemv_at_level(int level, uint32_t type, const void *w, size_t row_bytes, const float *x, float *y,
                       int64_t n_rows, int64_t n_cols, struct rwkv_error *err) {
    return at_level(level, type, w, row_bytes, x, y, n_rows, n_cols, 1, 0, err);
}

int rwkv_gemm_at_level(int level, uint32_t type, const void *w, size_t row_bytes, const float *x, float *y,
                       int64_t n_rows, int64_t n_cols, int64_t n_tok, struct rwkv_error *err) {
    return at_level(level, type, w, row_bytes, x, y, n_rows, n_cols, n_tok, 1, err);
}

void rwkv_mat_row_f32(const struct rwkv_mat *w, int64_t r, float *out) {
    /* ggml's bit-exact decoding (plain rows included), as llama.cpp's get_rows does */
    rwkv_dequantize_row(w->type, (const char *)w->data + (size_t)r * w->row_bytes, out, w->n_cols);
}

int rwkv_gemv_threaded(uint32_t type, const void *w, size_t row_bytes, const float *x, float *y, int64_t n_rows,
                       int64_t n_cols, int64_t n_tok, int64_t n_mats, int n_threads, struct rwkv_error *err) {
    int rc = RWKV_OK;
    void *buf = NULL;
    struct rwkv_xq *xq = NULL;
    RWKV_CHECK(rwkv_mat_type_supported(type), RWKV_ERR_FORMAT, "no gemv kernel for type %s", rwkv_type_name(type));
    const int64_t blk = xq_block_for(type);
    RWKV_CHECK(rwkv_kernels_gemv_f(&rwkv_kernels_scalar, type) || n_cols % blk == 0, RWKV_ERR_FORMAT,
               "%s rows need a multiple of %lld columns", rwkv_type_name(type), (long long)blk);
    RWKV_CHECK(n_tok > 0 && n_tok <= (1 << 20), RWKV_ERR_FORMAT, "n_tok must be in 1..%d", 1 << 20);
    const size_t one = align64(rwkv_xq_bytes(n_cols));
    xq = calloc((size_t)n_tok, sizeof *xq);
    buf = aligned_alloc(64, one * (size_t)n_tok);
    RWKV_CHECK(xq && buf, RWKV_ERR_NOMEM, "out of memory");
    memset(buf, 0, one * (size_t)n_tok);
    for (int64_t t = 0; t < n_tok; t++) rwkv_xq_bind(&xq[t], (char *)buf + (size_t)t * one, n_cols);
    for (int64_t i = 0; i < n_mats; i++) {
        struct rwkv_mat m = {type, (const char *)w + (size_t)i * (size_t)n_rows * row_bytes, n_rows, n_cols,
                             row_bytes};
        const struct rwkv_gemv_job job = {&m, x, y, RWKV_POST_NONE, NULL, n_tok, n_cols, n_rows};
        rwkv_matmul_jobs(1, &job, xq, n_threads);
    }
fail:
    free(buf);
    free(xq);
    return rc;
}
