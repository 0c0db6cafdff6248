/* rwkv7.h — an RWKV-7 ("Goose", x070) layer's weights, as views into the GGUF mapping.
 *
 * Glossary: C n_embd, H heads, N head_size, F ffn size, and the four LoRA ranks: Dw decay,
 * Da in-context learning rate ("a", iclr), Dv value residual, Dg gate. All pointers point into
 * the GGUF mapping, which the model keeps open; the shared parts (embedding, head, settings)
 * are struct rwkv_model's (model.h).
 */
#ifndef RWKV_RWKV7_H
#define RWKV_RWKV7_H

#include "model.h"

/* The six token-shift mixes, in the order of time_mix_lerp_fused. */
enum { MIX7_R = 0, MIX7_W, MIX7_K, MIX7_V, MIX7_A, MIX7_G, N_MIX7 };

struct rwkv7_layer {
    const float *ln1_w, *ln1_b, *ln2_w, *ln2_b;
    const float *lerp[N_MIX7];  /* [C] each */
    const float *w0, *a0, *v0;  /* [C]; v0 NULL in layer 0 (no value residual there) */
    struct rwkv_mat w1, a1, v1, g1; /* (D?, C): the LoRAs' down projections */
    struct rwkv_mat w2, a2, v2, g2; /* (C, D?): their up projections */
    const float *k_k, *k_a, *r_k; /* [C] */
    struct rwkv_mat att_r, att_k, att_v, att_o; /* (C, C) */
    const float *lnx_w, *lnx_b; /* group norm weight/bias [C] */
    const float *ffn_lerp_k;    /* [C] */
    struct rwkv_mat ffn_k;      /* (F, C) */
    struct rwkv_mat ffn_v;      /* (C, F) */
};

int rwkv7_load(struct rwkv_loader *ld, struct rwkv_model *m);

#endif
