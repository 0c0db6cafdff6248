/* rwkv7.c — the RWKV-7 ("Goose", x070) forward pass, in chunks of tokens.
 *
 * Per token:   x = ln0(emb[token])
 *   per layer: x += time_mix(ln1(x));  x += channel_mix(ln2(x))      (no residual rescaling)
 *   logits   = head @ ln_out(x)
 *
 * time_mix(xa), with sx = xa_prev - xa (xa_prev: the previous token's ln1 output) and
 * x_i = xa + sx * lerp_i for i in r, w, k, v, a, g:
 *   r = Wr x_r   k = Wk x_k   v = Wv x_v
 *   w = exp(-e^-0.5 sigmoid(w0 + W2 tanh(W1 x_w)))      decay, in (0.545, 1)
 *   a = sigmoid(a0 + A2 A1 x_a)                          in-context learning rate ("iclr")
 *   g = G2 sigmoid(G1 x_g)                               gate (no sigmoid after G2)
 *   kk = per-head L2 normalisation of k * k_k            (k before the next line)
 *   k  = k * (1 + (a - 1) * k_a)
 *   v  = layer 0: v, kept as v_first;  later: v + (v_first - v) * sigmoid(v0 + V2 V1 x_v)
 *   per head, state value-major (S[value i][key j], as both references keep it):
 *       S = S diag(w) + (S (-kk)) (kk * a)^T + v k^T,   y = S r
 *   y = GroupNorm_H(y; eps 64e-5) * lnx_w + lnx_b + (sum_head r * k * r_k) * v
 *   out = Wo (y * g)
 * channel_mix(xa) = Wv relu(Wk (xa + sx * lerp_k))^2    (no receptance gate)
 *
 * With -ngl, the first layers (and the head, when all are offloaded) run on the Vulkan device
 * instead (vulkan/layers7.c, the same steps); the rest continue here from what they return.
 *
 * Glossary: C n_embd, H heads, N head_size, F ffn, V vocab, T tokens of the chunk, and the
 * LoRA ranks Dw, Da, Dv, Dg.
 */
#include <math.h>
#include <string.h>

#include "error.h"
#include "kernels/kernels.h"
#include "ops.h"
#include "rwkv7.h"
#include "wkv7.h"

/* Group norm epsilon of ln_x: 1e-5 * head_size_divisor^2 with divisor 8, fixed by the
 * architecture (not stored in GGUF files). */
#define RWKV7_LNX_EPS 64e-5f
/* The most products one parallel region runs (r, k, v and the four LoRA down projections):
 * each needs its own quantized copy of its input. */
#define N_JOBS 7

#define stride rwkv_row_stride

/* Scratch for one chunk of T tokens: each vector is [T][dim]. */
struct work {
    float *x, *xa, *sx, *xm, *r, *k, *v, *w, *a, *g, *kk, *b, *vg, *vfirst, *y;
    float *lw, *la, *lv, *lg, *fk, *tmp;
    struct rwkv_xq *xq; /* job i, token t at xq[i * T + t] */
    struct rwkv_state *const *batch; /* token t's own state (batch mode), or NULL */
};

#define N_SLOTS 21

static void slot_dims(const struct rwkv_model_info *hp, int64_t d[N_SLOTS]) {
    const int64_t C = hp->n_embd;
    const int64_t dims[N_SLOTS] = {C, C, C, N_MIX7 * C, C, C, C, C, C, C, C, C, C, C, C,
                                   hp->lora_decay, hp->lora_iclr, hp->lora_value, hp->lora_gate, hp->n_ffn, C};
    memcpy(d, dims, sizeof dims);
}

static int64_t widest(const struct rwkv_model_info *hp) {
    int64_t w = hp->n_embd > hp->n_ffn ? hp->n_embd : hp->n_ffn;
    const int64_t ranks[4] = {hp->lora_decay, hp->lora_iclr, hp->lora_value, hp->lora_gate};
    for (int i = 0; i < 4; i++) w = ranks[i] > w ? ranks[i] : w;
    return w;
}

static size_t xq_bytes(const struct rwkv_model_info *hp) { return (rwkv_xq_bytes(widest(hp)) + 63) & ~(size_t)63; }

static size_t work_bytes(const struct rwkv_model_info *hp, int64_t T) {
    int64_t d[N_SLOTS];
    slot_dims(hp, d);
    size_t floats = 0;
    for (int i = 0; i < N_SLOTS; i++) floats += (size_t)stride(d[i]) * (size_t)T;
    const size_t n_xq = (size_t)N_JOBS * (size_t)T;
    return floats * sizeof(float) + ((n_xq * sizeof(struct rwkv_xq) + 63) & ~(size_t)63) + n_xq * xq_bytes(hp);
}

static void work_bind(const struct rwkv_model_info *hp, int64_t T, void *buf, struct work *s) {
    int64_t d[N_SLOTS];
    slot_dims(hp, d);
    float **slots[N_SLOTS] = {&s->x,  &s->xa, &s->sx, &s->xm, &s->r,      &s->k, &s->v,  &s->w,  &s->a,  &s->g, &s->kk,
                              &s->b,  &s->vg, &s->vfirst, &s->y, &s->lw, &s->la, &s->lv, &s->lg, &s->fk, &s->tmp};
    char *p = buf;
    for (int i = 0; i < N_SLOTS; i++) {
        *slots[i] = (float *)p;
        p += (size_t)stride(d[i]) * (size_t)T * sizeof(float);
    }
    const size_t n_xq = (size_t)N_JOBS * (size_t)T, xb = xq_bytes(hp);
    s->xq = (struct rwkv_xq *)p;
    p += (n_xq * sizeof(struct rwkv_xq) + 63) & ~(size_t)63;
    for (size_t i = 0; i < n_xq; i++) rwkv_xq_bind(&s->xq[i], p + i * xb, widest(hp));
}

/* A job over the chunk's T tokens: x rows xs apart, y rows ys apart. */
static struct rwkv_gemv_job job(const struct rwkv_mat *w, const float *x, int64_t xs, float *y, int64_t ys, int post,
                                const float *bias, int64_t T) {
    return (struct rwkv_gemv_job){w, x, y, post, bias, T, xs, ys};
}

/* The state of token t: in batch mode its own sequence's, else the chunk's. */
static struct rwkv_state *state_of(const struct work *s, struct rwkv_state *st, int64_t t) {
    return s->batch ? s->batch[t] : st;
}

/* xa = ln(x) of each token, sx = (previous token's xa) - xa; the shift state keeps the last
 * xa (each sequence's own in batch mode). `shift` picks att_shift or ffn_shift. */
static void shifted_norm(const struct rwkv_model_info *hp, const float *lw, const float *lb, int64_t il, int att,
                         struct rwkv_state *st, struct work *s, int64_t T) {
    const int64_t C = hp->n_embd, sC = stride(C);
    for (int64_t t = 0; t < T; t++) {
        float *xa = s->xa + t * sC, *sx = s->sx + t * sC;
        rwkv_layer_norm(s->x + t * sC, xa, lw, lb, C, hp->layer_norm_eps);
        struct rwkv_state *owner = state_of(s, st, t);
        const float *prev = s->batch || t == 0 ? (att ? owner->att_shift : owner->ffn_shift) + il * C
                                               : s->xa + (t - 1) * sC;
        for (int64_t c = 0; c < C; c++) sx[c] = prev[c] - xa[c];
    }
    for (int64_t t = s->batch ? 0 : T - 1; t < T; t++) {
        struct rwkv_state *owner = state_of(s, st, t);
        memcpy((att ? owner->att_shift : owner->ffn_shift) + il * C, s->xa + t * sC, (size_t)C * sizeof(float));
    }
}

/* kk = normalize(k * k_k) per head (F.normalize: divided by max(|.|, 1e-12)); then
 * k *= 1 + (a - 1) k_a, and the WKV's b = kk * a (its a input is -kk). */
static void keys(const struct rwkv7_layer *L, int64_t H, int64_t N, float *k, const float *a, float *kk, float *b) {
    for (int64_t h = 0; h < H; h++) {
        const int64_t o = h * N;
        double sq = 0.0;
        for (int64_t j = 0; j < N; j++) {
            kk[o + j] = k[o + j] * L->k_k[o + j];
            sq += (double)kk[o + j] * kk[o + j];
        }
        const double norm = sqrt(sq);
        const float inv = (float)(1.0 / (norm > 1e-12 ? norm : 1e-12));
        for (int64_t j = 0; j < N; j++) kk[o + j] *= inv;
    }
    for (int64_t c = 0; c < H * N; c++) {
        k[c] *= 1.0f + (a[c] - 1.0f) * L->k_a[c];
        b[c] = kk[c] * a[c];
        kk[c] = -kk[c];
    }
}

static void time_mix(const struct rwkv_model *m, const struct rwkv7_layer *L, int64_t il, struct rwkv_state *st,
                     struct work *s, int64_t T) {
    const struct rwkv_model_info *hp = &m->info;
    const int64_t C = hp->n_embd, H = hp->n_head, N = hp->head_size;
    const int64_t sC = stride(C), s6C = stride(N_MIX7 * C);
    const int64_t sw = stride(hp->lora_decay), sa = stride(hp->lora_iclr), sv = stride(hp->lora_value),
                  sg = stride(hp->lora_gate);
    const int nt = m->n_threads;

    shifted_norm(hp, L->ln1_w, L->ln1_b, il, 1, st, s, T);
    for (int64_t t = 0; t < T; t++)
        for (int i = 0; i < N_MIX7; i++) {
            float *xm = s->xm + t * s6C + i * C;
            const float *xa = s->xa + t * sC, *sx = s->sx + t * sC, *lerp = L->lerp[i];
            for (int64_t c = 0; c < C; c++) xm[c] = xa[c] + sx[c] * lerp[c];
        }
#define XM(i) (s->xm + (i) * C)
    /* r, k, v (C, C) and the LoRAs' down projections, in one parallel region */
    struct rwkv_gemv_job down[N_JOBS] = {
        job(&L->att_r, XM(MIX7_R), s6C, s->r, sC, RWKV_POST_NONE, NULL, T),
        job(&L->att_k, XM(MIX7_K), s6C, s->k, sC, RWKV_POST_NONE, NULL, T),
        job(&L->att_v, XM(MIX7_V), s6C, s->v, sC, RWKV_POST_NONE, NULL, T),
        job(&L->w1, XM(MIX7_W), s6C, s->lw, sw, RWKV_POST_TANH, NULL, T),
        job(&L->a1, XM(MIX7_A), s6C, s->la, sa, RWKV_POST_NONE, NULL, T),
        job(&L->g1, XM(MIX7_G), s6C, s->lg, sg, RWKV_POST_SIGMOID, NULL, T),
        job(&L->v1, XM(MIX7_V), s6C, s->lv, sv, RWKV_POST_NONE, NULL, T),
    };
    rwkv_matmul_jobs(il > 0 ? 7 : 6, down, s->xq, nt);
    /* ... and their up projections, with the biases and squashing of each */
    struct rwkv_gemv_job up[4] = {
        job(&L->w2, s->lw, sw, s->w, sC, RWKV_POST_DECAY7, L->w0, T),
        job(&L->a2, s->la, sa, s->a, sC, RWKV_POST_SIGMOID_BIAS, L->a0, T),
        job(&L->g2, s->lg, sg, s->g, sC, RWKV_POST_NONE, NULL, T),
        job(&L->v2, s->lv, sv, s->vg, sC, RWKV_POST_SIGMOID_BIAS, L->v0, T),
    };
    rwkv_matmul_jobs(il > 0 ? 4 : 3, up, s->xq, nt);
#undef XM

    for (int64_t t = 0; t < T; t++) { /* the recurrence is token-serial; heads run in parallel */
        float *r = s->r + t * sC, *k = s->k + t * sC, *v = s->v + t * sC, *y = s->y + t * sC;
        float *kk = s->kk + t * sC, *b = s->b + t * sC, *vfirst = s->vfirst + t * sC;
        keys(L, H, N, k, s->a + t * sC, kk, b);
        if (il == 0) {
            memcpy(vfirst, v, (size_t)C * sizeof(float));
        } else {
            const float *vg = s->vg + t * sC;
            for (int64_t c = 0; c < C; c++) v[c] += (vfirst[c] - v[c]) * vg[c];
        }
        float *S = state_of(s, st, t)->wkv + il * H * N * N;
        rwkv_wkv7_step(H, N, r, s->w + t * sC, k, v, kk, b, S, y, nt);
        rwkv_group_norm(y, y, L->lnx_w, L->lnx_b, H, N, RWKV7_LNX_EPS);
        const float *g = s->g + t * sC;
        for (int64_t h = 0; h < H; h++) {
            float bonus = 0.0f; /* the current token's own r.k, per head, times its value */
            for (int64_t j = h * N; j < (h + 1) * N; j++) bonus += r[j] * k[j] * L->r_k[j];
            for (int64_t j = h * N; j < (h + 1) * N; j++) y[j] = (y[j] + bonus * v[j]) * g[j];
        }
    }
    const struct rwkv_gemv_job out = job(&L->att_o, s->y, sC, s->tmp, sC, RWKV_POST_NONE, NULL, T);
    rwkv_matmul_jobs(1, &out, s->xq, nt);
    for (int64_t t = 0; t < T; t++)
        for (int64_t c = 0; c < C; c++) s->x[t * sC + c] += s->tmp[t * sC + c];
}

static void channel_mix(const struct rwkv_model *m, const struct rwkv7_layer *L, int64_t il, struct rwkv_state *st,
                        struct work *s, int64_t T) {
    const struct rwkv_model_info *hp = &m->info;
    const int64_t C = hp->n_embd, sC = stride(C), sF = stride(hp->n_ffn);
    shifted_norm(hp, L->ln2_w, L->ln2_b, il, 0, st, s, T);
    for (int64_t t = 0; t < T; t++) {
        float *xk = s->xm + t * stride(N_MIX7 * C);
        const float *xa = s->xa + t * sC, *sx = s->sx + t * sC;
        for (int64_t c = 0; c < C; c++) xk[c] = xa[c] + sx[c] * L->ffn_lerp_k[c];
    }
    const struct rwkv_gemv_job k = job(&L->ffn_k, s->xm, stride(N_MIX7 * C), s->fk, sF, RWKV_POST_RELU_SQ, NULL, T);
    rwkv_matmul_jobs(1, &k, s->xq, m->n_threads);
    const struct rwkv_gemv_job v = job(&L->ffn_v, s->fk, sF, s->tmp, sC, RWKV_POST_NONE, NULL, T);
    rwkv_matmul_jobs(1, &v, s->xq, m->n_threads);
    for (int64_t t = 0; t < T; t++)
        for (int64_t c = 0; c < C; c++) s->x[t * sC + c] += s->tmp[t * sC + c];
}

static int chunk(const struct rwkv_model *m, void *buf, const int32_t *tokens, int64_t T, struct rwkv_state *st,
                 struct rwkv_state *const *batch, float *out, int all_logits, struct rwkv_error *err) {
    const struct rwkv_model_info *hp = &m->info;
    const int64_t sC = stride(hp->n_embd);
    struct work work, *s = &work;
    work_bind(hp, T, buf, s);
    s->batch = batch;
    int64_t first_cpu;
    int done; /* the first layers on the Vulkan device (vulkan/layers7.c): x and v_first come back */
    const int rc = rwkv_chunk_begin(m, tokens, T, s->x, sC, s->tmp, st, batch, out, all_logits, s->vfirst, &first_cpu,
                                    &done, err);
    if (rc != RWKV_OK || done) return rc;
    for (int64_t il = first_cpu; il < hp->n_layer; il++) {
        time_mix(m, &m->layers7[il], il, st, s, T);
        channel_mix(m, &m->layers7[il], il, st, s, T);
    }
    if (out) rwkv_chunk_head(m, s->x, s->xa, sC, T, out, all_logits, s->xq);
    return RWKV_OK;
}

const struct rwkv_arch rwkv7_arch = {"rwkv7", RWKV_ARCH_RWKV7, rwkv7_load, work_bytes, chunk};
