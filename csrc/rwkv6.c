/* rwkv6.c — the RWKV-6 ("Finch", x060) forward pass, in chunks of tokens.
 *
 * Per token:   x = ln0(emb[token])
 *   per layer: x += time_mix(ln1(x));  x += channel_mix(ln2(x));  x *= 0.5 after every
 *              rescale_every-th layer
 *   logits   = head @ ln_out(x)
 * Glossary: C n_embd, H heads, N head_size, F ffn, V vocab, D / Dd LoRA dims.
 */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "error.h"
#include "kernels/kernels.h"
#include "ops.h"
#include "rwkv6.h"
#include "wkv6.h"

/* Group norm epsilon of RWKV-6's ln_x: 1e-5 * head_size_divisor^2 with divisor 8,
 * fixed by the architecture (not stored in GGUF files). */
#define RWKV6_LNX_EPS 64e-5f

/* Prompts are processed in chunks of m->n_batch tokens (model.c): every weight matrix is read
 * once per chunk (matmul.c tiles the chunk's tokens so each tile's activations stay in cache),
 * with the same kernels and therefore the same numbers as token-by-token decoding. */

/* Scratch for one chunk of T tokens: each vector is [T][dim] (one allocation). */
struct work {
    int64_t T;
    float *x, *xa, *sx, *xxx, *lora, *mix, *xm, *r, *k, *v, *g, *w, *y, *dd, *fk, *tmp;
    /* activations quantized for the integer kernels: job i, token t at xq[i * T + t] */
    struct rwkv_xq *xq;
    /* batch mode: token t belongs to its own sequence, with its own state; NULL when the
     * chunk's tokens follow each other in one sequence */
    struct rwkv_state *const *batch;
};

#define N_SLOTS 16

#define stride rwkv_row_stride

/* Bytes of the scratch for T tokens, and its division into vectors. The buffer lives in
 * the state (state->scratch), so decoding allocates nothing per token. */
static size_t work_sizes(const struct rwkv_model_info *hp, int64_t T, size_t *sizes, int64_t *widest,
                         size_t *xq_bytes) {
    const size_t C = (size_t)hp->n_embd, F = (size_t)hp->n_ffn;
    const size_t D = (size_t)hp->lora_mix, Dd = (size_t)hp->lora_decay;
    const size_t n[N_SLOTS] = {C, C, C, C, N_MIX * D, N_MIX * C, N_MIX * C, C, C, C, C, C, C, Dd, F, C};
    size_t total = 0;
    for (size_t i = 0; i < N_SLOTS; i++) total += sizes[i] = (size_t)stride((int64_t)n[i]) * (size_t)T;
    *widest = (int64_t)(C > F ? C : F); /* the widest matrix input is max(C, F, D, Dd) */
    if ((int64_t)D > *widest) *widest = (int64_t)D;
    if ((int64_t)Dd > *widest) *widest = (int64_t)Dd;
    *xq_bytes = (rwkv_xq_bytes(*widest) + 63) & ~(size_t)63;
    const size_t n_xq = (size_t)N_MIX * (size_t)T;
    return total * sizeof(float) + n_xq * *xq_bytes + ((n_xq * sizeof(struct rwkv_xq) + 63) & ~(size_t)63);
}

static size_t work_bytes(const struct rwkv_model_info *hp, int64_t T) {
    size_t sizes[N_SLOTS], xq_bytes;
    int64_t widest;
    return work_sizes(hp, T, sizes, &widest, &xq_bytes);
}

/* The chunk's vectors in the scratch buffer (work_bytes(T) of it). */
static void work_bind(const struct rwkv_model_info *hp, int64_t T, void *buf, struct work *s) {
    size_t sizes[N_SLOTS], xq_bytes;
    int64_t widest;
    work_sizes(hp, T, sizes, &widest, &xq_bytes);
    s->T = T;
    float **slots[N_SLOTS] = {&s->x, &s->xa, &s->sx, &s->xxx, &s->lora, &s->mix, &s->xm, &s->r,
                              &s->k, &s->v,  &s->g,  &s->w,   &s->y,    &s->dd,  &s->fk, &s->tmp};
    char *p = buf;
    for (size_t i = 0; i < N_SLOTS; i++) {
        *slots[i] = (float *)p;
        p += sizes[i] * sizeof(float);
    }
    const size_t n_xq = (size_t)N_MIX * (size_t)T;
    s->xq = (struct rwkv_xq *)p;
    p += (n_xq * sizeof(struct rwkv_xq) + 63) & ~(size_t)63;
    for (size_t i = 0; i < n_xq; i++) rwkv_xq_bind(&s->xq[i], p + i * xq_bytes, widest);
}

/* A job over the chunk's T tokens: x rows xs apart, y rows ys apart. */
static struct rwkv_gemv_job job(const struct rwkv_mat *w, const float *x, int64_t xs, float *y, int64_t ys, int post,
                                const float *bias, int64_t T) {
    return (struct rwkv_gemv_job){w, x, y, post, bias, T, xs, ys};
}

/* The token-shift vector and WKV matrices of layer il for token t: the sequence's state, or in
 * batch mode the state of token t's own sequence. */
static float *att_shift_of(const struct work *s, struct rwkv_state *st, int64_t il, int64_t t, int64_t C) {
    return (s->batch ? s->batch[t] : st)->att_shift + il * C;
}
static float *ffn_shift_of(const struct work *s, struct rwkv_state *st, int64_t il, int64_t t, int64_t C) {
    return (s->batch ? s->batch[t] : st)->ffn_shift + il * C;
}

static void time_mix(const struct rwkv_model *m, const struct rwkv_layer *L, int64_t il, struct rwkv_state *st,
                     struct work *s) {
    const struct rwkv_model_info *hp = &m->info;
    const int64_t C = hp->n_embd, D = hp->lora_mix, Dd = hp->lora_decay, H = hp->n_head, N = hp->head_size;
    const int64_t T = s->T, sC = stride(C), s5D = stride(N_MIX * D), s5C = stride(N_MIX * C), sDd = stride(Dd);
    const int nt = m->n_threads;

    for (int64_t t = 0; t < T; t++) {
        float *xa = s->xa + t * sC, *sx = s->sx + t * sC, *xxx = s->xxx + t * sC;
        rwkv_layer_norm(s->x + t * sC, xa, L->ln1_w, L->ln1_b, C, hp->layer_norm_eps);
        /* the shift state holds the previous token's ln1 output */
        const float *prev = s->batch || t == 0 ? att_shift_of(s, st, il, t, C) : s->xa + (t - 1) * sC;
        for (int64_t c = 0; c < C; c++) {
            sx[c] = prev[c] - xa[c];
            xxx[c] = xa[c] + sx[c] * L->lerp_x[c];
        }
    }
    for (int64_t t = s->batch ? 0 : T - 1; t < T; t++)
        memcpy(att_shift_of(s, st, il, t, C), s->xa + t * sC, (size_t)C * sizeof(float));
    /* data-dependent token shift: mix_i = W2_i (C, D) @ tanh(W1 (5D, C) @ xxx)[i*D : (i+1)*D] */
    const struct rwkv_gemv_job w1 = job(&L->mix_w1, s->xxx, sC, s->lora, s5D, RWKV_POST_TANH, NULL, T);
    rwkv_matmul_jobs(1, &w1, s->xq, nt);
    struct rwkv_gemv_job w2[N_MIX];
    for (int i = 0; i < N_MIX; i++)
        w2[i] = job(&L->mix_w2[i], s->lora + i * D, s5D, s->mix + i * C, s5C, RWKV_POST_NONE, NULL, T);
    rwkv_matmul_jobs(N_MIX, w2, s->xq, nt);
    for (int64_t t = 0; t < T; t++)
        for (int i = 0; i < N_MIX; i++) {
            float *xm = s->xm + t * s5C + i * C;
            const float *mix = s->mix + t * s5C + i * C, *lerp = L->lerp[i];
            const float *xa = s->xa + t * sC, *sx = s->sx + t * sC;
            for (int64_t c = 0; c < C; c++) xm[c] = xa[c] + sx[c] * (lerp[c] + mix[c]);
        }
    /* r, k, v, silu(g) (C, C) and the decay LoRA's tanh(Dw1 (Dd, C) @ xw), in one parallel region */
    const struct rwkv_gemv_job rkvg[5] = {
        job(&L->att_r, s->xm + MIX_R * C, s5C, s->r, sC, RWKV_POST_NONE, NULL, T),
        job(&L->att_k, s->xm + MIX_K * C, s5C, s->k, sC, RWKV_POST_NONE, NULL, T),
        job(&L->att_v, s->xm + MIX_V * C, s5C, s->v, sC, RWKV_POST_NONE, NULL, T),
        job(&L->att_g, s->xm + MIX_G * C, s5C, s->g, sC, RWKV_POST_SILU, NULL, T),
        job(&L->decay_w1, s->xm + MIX_W * C, s5C, s->dd, sDd, RWKV_POST_TANH, NULL, T),
    };
    rwkv_matmul_jobs(5, rkvg, s->xq, nt);
    /* decay: w = exp(-exp(decay + Dw2 (C, Dd) @ tanh(Dw1 (Dd, C) @ xw))) */
    const struct rwkv_gemv_job decay = job(&L->decay_w2, s->dd, sDd, s->w, sC, RWKV_POST_DECAY, L->decay, T);
    rwkv_matmul_jobs(1, &decay, s->xq, nt);

    for (int64_t t = 0; t < T; t++) { /* the recurrence is token-serial; heads run in parallel */
        float *y = s->y + t * sC;
        float *S = (s->batch ? s->batch[t] : st)->wkv + il * H * N * N;
        rwkv_wkv6_step(H, N, s->r + t * sC, s->k + t * sC, s->v + t * sC, s->w + t * sC, L->first, S, y, nt);
        rwkv_group_norm(y, y, L->lnx_w, L->lnx_b, H, N, RWKV6_LNX_EPS);
        const float *g = s->g + t * sC;
        for (int64_t c = 0; c < C; c++) y[c] *= g[c]; /* g is silu(W_g x_g) already */
    }
    const struct rwkv_gemv_job out = job(&L->att_o, s->y, sC, s->tmp, sC, RWKV_POST_NONE, NULL, T);
    rwkv_matmul_jobs(1, &out, s->xq, nt);
    for (int64_t t = 0; t < T; t++)
        for (int64_t c = 0; c < C; c++) s->x[t * sC + c] += s->tmp[t * sC + c];
}

static void channel_mix(const struct rwkv_model *m, const struct rwkv_layer *L, int64_t il, struct rwkv_state *st,
                        struct work *s) {
    const struct rwkv_model_info *hp = &m->info;
    const int64_t C = hp->n_embd, F = hp->n_ffn;
    const int64_t T = s->T, sC = stride(C), s5C = stride(N_MIX * C), sF = stride(F);
    const int nt = m->n_threads;
    /* xk and xr of token t side by side in the (5C-wide) xm rows */
    for (int64_t t = 0; t < T; t++) {
        float *xa = s->xa + t * sC, *xk = s->xm + t * s5C, *xr = xk + C;
        rwkv_layer_norm(s->x + t * sC, xa, L->ln2_w, L->ln2_b, C, hp->layer_norm_eps);
        const float *prev = s->batch || t == 0 ? ffn_shift_of(s, st, il, t, C) : s->xa + (t - 1) * sC;
        for (int64_t c = 0; c < C; c++) {
            const float sx = prev[c] - xa[c];
            xk[c] = xa[c] + sx * L->ffn_lerp_k[c];
            xr[c] = xa[c] + sx * L->ffn_lerp_r[c];
        }
    }
    for (int64_t t = s->batch ? 0 : T - 1; t < T; t++)
        memcpy(ffn_shift_of(s, st, il, t, C), s->xa + t * sC, (size_t)C * sizeof(float));
    /* r = sigmoid(Wr (C, C) @ xr), k = relu(Wk (F, C) @ xk)^2, in one parallel region */
    const struct rwkv_gemv_job rk[2] = {job(&L->ffn_r, s->xm + C, s5C, s->r, sC, RWKV_POST_SIGMOID, NULL, T),
                                        job(&L->ffn_k, s->xm, s5C, s->fk, sF, RWKV_POST_RELU_SQ, NULL, T)};
    rwkv_matmul_jobs(2, rk, s->xq, nt);
    const struct rwkv_gemv_job v = job(&L->ffn_v, s->fk, sF, s->tmp, sC, RWKV_POST_NONE, NULL, T); /* Wv (C, F) @ k */
    rwkv_matmul_jobs(1, &v, s->xq, nt);
    for (int64_t t = 0; t < T; t++)
        for (int64_t c = 0; c < C; c++) s->x[t * sC + c] += s->r[t * sC + c] * s->tmp[t * sC + c]; /* r is sigmoid'ed */
}

/* T tokens through the model (struct rwkv_arch's chunk). Offloaded layers (and the head,
 * when it is offloaded too) run on the Vulkan device, the rest here. */
static int chunk(const struct rwkv_model *m, void *buf, const int32_t *tokens, int64_t T, struct rwkv_state *st,
                 struct rwkv_state *const *batch, float *out, int all_logits, struct rwkv_error *err) {
    const struct rwkv_model_info *hp = &m->info;
    const int64_t sC = stride(hp->n_embd);
    struct work work, *s = &work;
    work_bind(hp, T, buf, s);
    s->batch = batch;
    int64_t first_cpu;
    int done;
    const int rc = rwkv_chunk_begin(m, tokens, T, s->x, sC, s->tmp, st, batch, out, all_logits, NULL, &first_cpu,
                                    &done, err);
    if (rc != RWKV_OK || done) return rc;
    for (int64_t il = first_cpu; il < hp->n_layer; il++) {
        const struct rwkv_layer *L = &m->layers[il];
        time_mix(m, L, il, st, s);
        channel_mix(m, L, il, st, s);
        /* llama.cpp's converter divided time_mix_output and channel_mix_value of layer
         * il by 2^(il / R) to keep fp16 activations in range; halving the residual
         * after every R-th layer undoes it exactly (powers of two). */
        if (hp->rescale_every > 0 && (il + 1) % hp->rescale_every == 0)
            for (int64_t i = 0; i < T * sC; i++) s->x[i] *= 0.5f;
    }
    if (out) rwkv_chunk_head(m, s->x, s->xa, sC, T, out, all_logits, s->xq);
    return RWKV_OK;
}

const struct rwkv_arch rwkv6_arch = {"rwkv6", RWKV_ARCH_RWKV6, rwkv6_load, work_bytes, chunk};
