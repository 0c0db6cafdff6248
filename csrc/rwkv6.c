/* rwkv6.c — the RWKV-6 ("Finch", x060) forward pass, one token at a time.
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

/* Scratch vectors for one forward call (one allocation). */
struct work {
    float *x, *xa, *sx, *xxx, *lora, *mix, *xm, *r, *k, *v, *g, *w, *y, *dd, *fk, *tmp;
    /* activations quantized for the integer kernels of quantized weights: one per job
     * of a rwkv_matmul_jobs group */
    struct rwkv_xq xq[N_MIX];
};

/* Bytes of the scratch for one forward call, and its division into vectors. The
 * buffer lives in the state (state->scratch), so decoding allocates nothing per token. */
static size_t work_sizes(const struct rwkv_model_info *hp, size_t *sizes, int64_t *widest, size_t *xq_bytes) {
    const size_t C = (size_t)hp->n_embd, F = (size_t)hp->n_ffn;
    const size_t D = (size_t)hp->lora_mix, Dd = (size_t)hp->lora_decay;
    const size_t n[] = {C, C, C, C, N_MIX * D, N_MIX * C, N_MIX * C, C, C, C, C, C, C, Dd, F, C};
    size_t total = 0;
    for (size_t i = 0; i < 16; i++) total += sizes[i] = (n[i] + 15) & ~(size_t)15; /* 64-byte aligned */
    /* the widest matrix input is max(C, F, D, Dd) */
    *widest = (int64_t)(C > F ? C : F);
    if ((int64_t)D > *widest) *widest = (int64_t)D;
    if ((int64_t)Dd > *widest) *widest = (int64_t)Dd;
    *xq_bytes = (rwkv_xq_bytes(*widest) + 63) & ~(size_t)63;
    return total * sizeof(float) + N_MIX * *xq_bytes;
}

static int work_bind(const struct rwkv_model_info *hp, struct rwkv_state *st, struct work *s) {
    size_t sizes[16], xq_bytes;
    int64_t widest;
    const size_t need = work_sizes(hp, sizes, &widest, &xq_bytes);
    if (st->scratch_bytes < need) {
        free(st->scratch);
        st->scratch_bytes = 0;
        st->scratch = aligned_alloc(64, need);
        if (!st->scratch) return RWKV_ERR_NOMEM;
        st->scratch_bytes = need;
    }
    float **slots[] = {&s->x, &s->xa, &s->sx, &s->xxx, &s->lora, &s->mix, &s->xm, &s->r,
                       &s->k, &s->v,  &s->g,  &s->w,   &s->y,    &s->dd,  &s->fk, &s->tmp};
    float *buf = st->scratch;
    size_t off = 0;
    for (size_t i = 0; i < 16; i++) {
        *slots[i] = buf + off;
        off += sizes[i];
    }
    char *xq_base = (char *)(buf + off);
    for (int i = 0; i < N_MIX; i++) rwkv_xq_bind(&s->xq[i], xq_base + (size_t)i * xq_bytes, widest);
    return RWKV_OK;
}

static void time_mix(const struct rwkv_model *m, const struct rwkv_layer *L, float *att_shift, float *S,
                     struct work *s) {
    const struct rwkv_model_info *hp = &m->info;
    const int64_t C = hp->n_embd, D = hp->lora_mix, H = hp->n_head, N = hp->head_size;
    const int nt = m->n_threads;

    rwkv_layer_norm(s->x, s->xa, L->ln1_w, L->ln1_b, C, hp->layer_norm_eps);
    for (int64_t c = 0; c < C; c++) {
        s->sx[c] = att_shift[c] - s->xa[c]; /* the shift state holds the previous token's ln1 output */
        att_shift[c] = s->xa[c];
        s->xxx[c] = s->xa[c] + s->sx[c] * L->lerp_x[c];
    }
    /* data-dependent token shift: mix_i = W2_i (C, D) @ tanh(W1 (5D, C) @ xxx)[i*D : (i+1)*D] */
    const struct rwkv_gemv_job w1 = {&L->mix_w1, s->xxx, s->lora, RWKV_POST_TANH, NULL};
    rwkv_matmul_jobs(1, &w1, s->xq, nt);
    struct rwkv_gemv_job w2[N_MIX];
    for (int i = 0; i < N_MIX; i++)
        w2[i] = (struct rwkv_gemv_job){&L->mix_w2[i], s->lora + i * D, s->mix + i * C, RWKV_POST_NONE, NULL};
    rwkv_matmul_jobs(N_MIX, w2, s->xq, nt);
    for (int i = 0; i < N_MIX; i++) {
        float *xm = s->xm + i * C;
        const float *mix = s->mix + i * C, *lerp = L->lerp[i];
        for (int64_t c = 0; c < C; c++) xm[c] = s->xa[c] + s->sx[c] * (lerp[c] + mix[c]);
    }
    /* r, k, v, silu(g) (C, C) and the decay LoRA's tanh(Dw1 (Dd, C) @ xw), in one parallel region */
    const struct rwkv_gemv_job rkvg[5] = {
        {&L->att_r, s->xm + MIX_R * C, s->r, RWKV_POST_NONE, NULL},
        {&L->att_k, s->xm + MIX_K * C, s->k, RWKV_POST_NONE, NULL},
        {&L->att_v, s->xm + MIX_V * C, s->v, RWKV_POST_NONE, NULL},
        {&L->att_g, s->xm + MIX_G * C, s->g, RWKV_POST_SILU, NULL},
        {&L->decay_w1, s->xm + MIX_W * C, s->dd, RWKV_POST_TANH, NULL},
    };
    rwkv_matmul_jobs(5, rkvg, s->xq, nt);
    /* decay: w = exp(-exp(decay + Dw2 (C, Dd) @ tanh(Dw1 (Dd, C) @ xw))) */
    const struct rwkv_gemv_job decay = {&L->decay_w2, s->dd, s->w, RWKV_POST_DECAY, L->decay};
    rwkv_matmul_jobs(1, &decay, s->xq, nt);

    rwkv_wkv6_step(H, N, s->r, s->k, s->v, s->w, L->first, S, s->y, nt);
    rwkv_group_norm(s->y, s->y, L->lnx_w, L->lnx_b, H, N, RWKV6_LNX_EPS);
    for (int64_t c = 0; c < C; c++) s->y[c] *= s->g[c]; /* g is silu(W_g x_g) already */
    rwkv_matmul_vec(&L->att_o, s->y, s->tmp, s->xq, nt);
    for (int64_t c = 0; c < C; c++) s->x[c] += s->tmp[c];
}

static void channel_mix(const struct rwkv_model *m, const struct rwkv_layer *L, float *ffn_shift,
                        struct work *s) {
    const struct rwkv_model_info *hp = &m->info;
    const int64_t C = hp->n_embd;
    const int nt = m->n_threads;
    float *xk = s->xm, *xr = s->xm + C;

    rwkv_layer_norm(s->x, s->xa, L->ln2_w, L->ln2_b, C, hp->layer_norm_eps);
    for (int64_t c = 0; c < C; c++) {
        float sx = ffn_shift[c] - s->xa[c];
        ffn_shift[c] = s->xa[c];
        xk[c] = s->xa[c] + sx * L->ffn_lerp_k[c];
        xr[c] = s->xa[c] + sx * L->ffn_lerp_r[c];
    }
    /* r = sigmoid(Wr (C, C) @ xr), k = relu(Wk (F, C) @ xk)^2, in one parallel region */
    const struct rwkv_gemv_job rk[2] = {{&L->ffn_r, xr, s->r, RWKV_POST_SIGMOID, NULL},
                                        {&L->ffn_k, xk, s->fk, RWKV_POST_RELU_SQ, NULL}};
    rwkv_matmul_jobs(2, rk, s->xq, nt);
    rwkv_matmul_vec(&L->ffn_v, s->fk, s->tmp, s->xq, nt); /* Wv (C, F) @ k */
    for (int64_t c = 0; c < C; c++) s->x[c] += s->r[c] * s->tmp[c]; /* r is sigmoid'ed already */
}

static void forward_token(const struct rwkv_model *m, int32_t token, struct rwkv_state *st, float *logits,
                          struct work *s) {
    const struct rwkv_model_info *hp = &m->info;
    const int64_t C = hp->n_embd, HNN = hp->n_head * hp->head_size * hp->head_size;

    rwkv_mat_row_f32(&m->emb, token, s->tmp);
    rwkv_layer_norm(s->tmp, s->x, m->ln0_w, m->ln0_b, C, hp->layer_norm_eps);
    for (int64_t il = 0; il < hp->n_layer; il++) {
        const struct rwkv_layer *L = &m->layers[il];
        time_mix(m, L, st->att_shift + il * C, st->wkv + il * HNN, s);
        channel_mix(m, L, st->ffn_shift + il * C, s);
        /* llama.cpp's converter divided time_mix_output and channel_mix_value of layer
         * il by 2^(il / R) to keep fp16 activations in range; halving the residual
         * after every R-th layer undoes it exactly (powers of two). */
        if (hp->rescale_every > 0 && (il + 1) % hp->rescale_every == 0)
            for (int64_t c = 0; c < C; c++) s->x[c] *= 0.5f;
    }
    if (logits) {
        rwkv_layer_norm(s->x, s->xa, m->lnout_w, m->lnout_b, C, hp->layer_norm_eps);
        rwkv_matmul_vec(&m->head, s->xa, logits, s->xq, m->n_threads);
    }
}

int rwkv_model_forward(const struct rwkv_model *m, const int32_t *tokens, int64_t n_tokens,
                       struct rwkv_state *state, float *logits, int all_logits, struct rwkv_error *err) {
    int rc = RWKV_OK;
    const struct rwkv_model_info *hp = &m->info;
    RWKV_CHECK(n_tokens > 0, RWKV_ERR_FORMAT, "forward needs at least one token");
    RWKV_CHECK(state->n_layer == hp->n_layer && state->n_embd == hp->n_embd && state->n_head == hp->n_head &&
                   state->head_size == hp->head_size,
               RWKV_ERR_FORMAT, "state shape (%lld layers x %lld) does not match the model (%lld layers x %lld)",
               (long long)state->n_layer, (long long)state->n_embd, (long long)hp->n_layer, (long long)hp->n_embd);
    for (int64_t t = 0; t < n_tokens; t++)
        RWKV_CHECK(tokens[t] >= 0 && tokens[t] < hp->n_vocab, RWKV_ERR_FORMAT,
                   "token %d at position %lld is outside the vocabulary (0..%lld)", tokens[t], (long long)t,
                   (long long)hp->n_vocab - 1);
    struct work s;
    RWKV_CHECK(work_bind(hp, state, &s) == RWKV_OK, RWKV_ERR_NOMEM, "out of memory for the forward scratch");
    for (int64_t t = 0; t < n_tokens; t++) {
        float *out = NULL;
        if (logits && all_logits) out = logits + t * hp->n_vocab;
        else if (logits && t == n_tokens - 1) out = logits;
        forward_token(m, tokens[t], state, out, &s);
    }
fail:
    return rc;
}
