/* rwkv6.h — the loaded RWKV-6 model: hyper-parameters and views of its weights.
 *
 * Glossary: C n_embd, H heads, N head_size, F ffn size, V vocab, D the token-shift
 * LoRA dim (time_mix_extra_dim), Dd the decay LoRA dim (time_decay_extra_dim).
 * All pointers point into the GGUF mapping, which the model keeps open.
 */
#ifndef RWKV_RWKV6_H
#define RWKV_RWKV6_H

#include "matmul.h"
#include "rwkvfast.h"

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

struct rwkv_model {
    struct rwkv_gguf *gguf;
    struct rwkv_model_info info;
    int n_threads;
    int64_t n_batch; /* tokens per forward chunk: bounds the scratch of long prompts */
    struct rwkv_mat emb;  /* (V, C) */
    const float *ln0_w, *ln0_b, *lnout_w, *lnout_b;
    struct rwkv_mat head; /* (V, C) */
    struct rwkv_layer *layers;
    /* Vulkan offload (rwkv_model_offload): the device and its copy of the first layers */
    struct rwkv_vk *vk;
    struct rwkv_vk_model *gpu;
};

#endif
