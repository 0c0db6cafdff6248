/* rwkv7_load.c — an RWKV-7 GGUF's hyper-parameters and layers (model.c loads the rest).
 *
 * The rwkv7.* keys give the sizes and the four LoRA ranks, which differ from each other (and in
 * real models are not powers of two); every tensor is then checked against them, so a rank that
 * disagrees with its tensors is an error naming both. llama.cpp's converter gives layer 0
 * dummy time_mix_v0/v1/v2 (copies of a0/a1/a2, with the a rank): layer 0 has no value
 * residual, so they are not read.
 */
#include <stdio.h>
#include <stdlib.h>

#include "error.h"
#include "gguf.h"
#include "rwkv7.h"

static int read_hparams(struct rwkv_loader *ld, struct rwkv_model_info *hp) {
    int rc = RWKV_OK;
    struct rwkv_error *err = ld->err;
    RWKV_TRY(rwkv_load_size(ld, "rwkv7.block_count", &hp->n_layer));
    RWKV_TRY(rwkv_load_size(ld, "rwkv7.embedding_length", &hp->n_embd));
    RWKV_TRY(rwkv_load_size(ld, "rwkv7.feed_forward_length", &hp->n_ffn));
    RWKV_TRY(rwkv_load_size(ld, "rwkv7.wkv.head_size", &hp->head_size));
    RWKV_TRY(rwkv_load_size(ld, "rwkv7.attention.decay_lora_rank", &hp->lora_decay));
    RWKV_TRY(rwkv_load_size(ld, "rwkv7.attention.iclr_lora_rank", &hp->lora_iclr));
    RWKV_TRY(rwkv_load_size(ld, "rwkv7.attention.value_residual_mix_lora_rank", &hp->lora_value));
    RWKV_TRY(rwkv_load_size(ld, "rwkv7.attention.gate_lora_rank", &hp->lora_gate));
    RWKV_CHECK(hp->n_embd % hp->head_size == 0, RWKV_ERR_FORMAT,
               "%s: embedding_length %lld is not a multiple of wkv.head_size %lld", ld->path,
               (long long)hp->n_embd, (long long)hp->head_size);
    hp->n_head = hp->n_embd / hp->head_size;
    hp->layer_norm_eps = 1e-5f;
    RWKV_TRY(rwkv_gguf_get_f32(ld->g, "rwkv7.attention.layer_norm_epsilon", 0, &hp->layer_norm_eps, err));
    RWKV_CHECK(hp->layer_norm_eps > 0.0f && hp->layer_norm_eps < 1.0f, RWKV_ERR_FORMAT,
               "%s: layer_norm_epsilon %g is out of range", ld->path, (double)hp->layer_norm_eps);
fail:
    return rc;
}

/* A LoRA: down (rank, C) from ne [C, rank], up (C, rank) from ne [rank, C]. */
static int load_lora(struct rwkv_loader *ld, int il, const char *what, int64_t C, int64_t rank,
                     struct rwkv_mat *down, struct rwkv_mat *up) {
    int rc = RWKV_OK;
    char name[128];
    snprintf(name, sizeof name, "blk.%d.time_mix_%s1.weight", il, what);
    RWKV_TRY(rwkv_load_mat(ld, name, C, rank, down));
    snprintf(name, sizeof name, "blk.%d.time_mix_%s2.weight", il, what);
    RWKV_TRY(rwkv_load_mat(ld, name, rank, C, up));
fail:
    return rc;
}

static int load_layer(struct rwkv_loader *ld, const struct rwkv_model_info *hp, int il, struct rwkv7_layer *L) {
    int rc = RWKV_OK;
    const int64_t C = hp->n_embd, F = hp->n_ffn;
    char name[128];
#define NAME(suffix) (snprintf(name, sizeof name, "blk.%d." suffix, il), name)
    RWKV_TRY(rwkv_load_f32(ld, NAME("attn_norm.weight"), C, 1, 1, 1, &L->ln1_w));
    RWKV_TRY(rwkv_load_f32(ld, NAME("attn_norm.bias"), C, 1, 1, 1, &L->ln1_b));
    RWKV_TRY(rwkv_load_f32(ld, NAME("attn_norm_2.weight"), C, 1, 1, 1, &L->ln2_w));
    RWKV_TRY(rwkv_load_f32(ld, NAME("attn_norm_2.bias"), C, 1, 1, 1, &L->ln2_b));
    const float *fused;
    RWKV_TRY(rwkv_load_f32(ld, NAME("time_mix_lerp_fused.weight"), C, 1, 1, N_MIX7, &fused));
    for (int i = 0; i < N_MIX7; i++) L->lerp[i] = fused + i * C;
    RWKV_TRY(rwkv_load_f32(ld, NAME("time_mix_w0.weight"), C, 1, 1, 1, &L->w0));
    RWKV_TRY(load_lora(ld, il, "w", C, hp->lora_decay, &L->w1, &L->w2));
    RWKV_TRY(rwkv_load_f32(ld, NAME("time_mix_a0.weight"), C, 1, 1, 1, &L->a0));
    RWKV_TRY(load_lora(ld, il, "a", C, hp->lora_iclr, &L->a1, &L->a2));
    if (il > 0) {
        RWKV_TRY(rwkv_load_f32(ld, NAME("time_mix_v0.weight"), C, 1, 1, 1, &L->v0));
        RWKV_TRY(load_lora(ld, il, "v", C, hp->lora_value, &L->v1, &L->v2));
    }
    RWKV_TRY(load_lora(ld, il, "g", C, hp->lora_gate, &L->g1, &L->g2));
    RWKV_TRY(rwkv_load_f32(ld, NAME("time_mix_k_k.weight"), C, 1, 1, 1, &L->k_k));
    RWKV_TRY(rwkv_load_f32(ld, NAME("time_mix_k_a.weight"), C, 1, 1, 1, &L->k_a));
    RWKV_TRY(rwkv_load_f32(ld, NAME("time_mix_r_k.weight"), C, 1, 1, 1, &L->r_k));
    RWKV_TRY(rwkv_load_mat(ld, NAME("time_mix_receptance.weight"), C, C, &L->att_r));
    RWKV_TRY(rwkv_load_mat(ld, NAME("time_mix_key.weight"), C, C, &L->att_k));
    RWKV_TRY(rwkv_load_mat(ld, NAME("time_mix_value.weight"), C, C, &L->att_v));
    RWKV_TRY(rwkv_load_mat(ld, NAME("time_mix_output.weight"), C, C, &L->att_o));
    RWKV_TRY(rwkv_load_f32(ld, NAME("time_mix_ln.weight"), C, 1, 1, 1, &L->lnx_w));
    RWKV_TRY(rwkv_load_f32(ld, NAME("time_mix_ln.bias"), C, 1, 1, 1, &L->lnx_b));
    RWKV_TRY(rwkv_load_f32(ld, NAME("channel_mix_lerp_k.weight"), C, 1, 1, 1, &L->ffn_lerp_k));
    RWKV_TRY(rwkv_load_mat(ld, NAME("channel_mix_key.weight"), C, F, &L->ffn_k));
    RWKV_TRY(rwkv_load_mat(ld, NAME("channel_mix_value.weight"), F, C, &L->ffn_v));
#undef NAME
fail:
    return rc;
}

int rwkv7_load(struct rwkv_loader *ld, struct rwkv_model *m) {
    int rc = RWKV_OK;
    struct rwkv_error *err = ld->err;
    struct rwkv_model_info *hp = &m->info;
    RWKV_TRY(read_hparams(ld, hp));
    m->layers7 = calloc((size_t)hp->n_layer, sizeof *m->layers7);
    RWKV_CHECK(m->layers7, RWKV_ERR_NOMEM, "out of memory");
    for (int il = 0; il < hp->n_layer; il++) RWKV_TRY(load_layer(ld, hp, il, &m->layers7[il]));
    hp->weight_type = m->layers7[0].att_k.type;
fail:
    return rc;
}
