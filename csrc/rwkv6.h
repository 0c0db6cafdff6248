/* rwkv6.h — an RWKV-6 layer's weights, as views into the GGUF mapping.
 *
 * Glossary: C n_embd, H heads, N head_size, F ffn size, V vocab, D the token-shift
 * LoRA dim (time_mix_extra_dim), Dd the decay LoRA dim (time_decay_extra_dim).
 * All pointers point into the GGUF mapping, which the model keeps open.
 * The shared parts (embedding, head, settings) are struct rwkv_model's (model.h).
 */
#ifndef RWKV_RWKV6_H
#define RWKV_RWKV6_H

#include "model.h"

/* The five token-shift mixes, in the order of time_mix_lerp_fused and of the
 * LoRA groups (w, k, v, r, g) — the order BlinkDL's time_maa_w2 uses. */
enum { MIX_W = 0, MIX_K, MIX_V, MIX_R, MIX_G, N_MIX };

struct rwkv_layer {
    const float *ln1_w, *ln1_b, *ln2_w, *ln2_b;
    const float *lerp_x;        /* [C] */
    const float *lerp[N_MIX];   /* [C] each */
    struct rwkv_mat mix_w1;     /* (5D, C): x -> the five LoRA inputs, concatenated */
    struct rwkv_mat mix_w2[N_MIX]; /* (C, D) per mix */
    const float *decay;         /* [C] */
    struct rwkv_mat decay_w1;   /* (Dd, C) */
    struct rwkv_mat decay_w2;   /* (C, Dd) */
    const float *first;         /* u, [H*N] */
    struct rwkv_mat att_r, att_k, att_v, att_g, att_o; /* (C, C) */
    const float *lnx_w, *lnx_b; /* group norm weight/bias [C] */
    const float *ffn_lerp_k, *ffn_lerp_r;
    struct rwkv_mat ffn_k;      /* (F, C) */
    struct rwkv_mat ffn_r;      /* (C, C) */
    struct rwkv_mat ffn_v;      /* (C, F) */
};

int rwkv6_load(struct rwkv_loader *ld, struct rwkv_model *m);

#endif
