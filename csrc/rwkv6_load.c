/* rwkv6_load.c — an RWKV-6 GGUF's hyper-parameters and layers (model.c loads the rest).
 *
 * Hyper-parameters come from the rwkv6.* keys; every tensor is looked up by name and its ggml
 * shape (ne) and type are checked against them (load.c), so the forward pass never has to
 * distrust a size. Weights stay in the mapping.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "error.h"
#include "gguf.h"
#include "rwkv6.h"

static int read_hparams(struct rwkv_loader *ld, struct rwkv_model_info *hp) {
    int rc = RWKV_OK;
    struct rwkv_error *err = ld->err;
    uint64_t rescale = 0;
    RWKV_TRY(rwkv_load_size(ld, "rwkv6.block_count", &hp->n_layer));
    RWKV_TRY(rwkv_load_size(ld, "rwkv6.embedding_length", &hp->n_embd));
    RWKV_TRY(rwkv_load_size(ld, "rwkv6.feed_forward_length", &hp->n_ffn));
    RWKV_TRY(rwkv_load_size(ld, "rwkv6.wkv.head_size", &hp->head_size));
    RWKV_TRY(rwkv_load_size(ld, "rwkv6.time_mix_extra_dim", &hp->lora_mix));
    RWKV_TRY(rwkv_load_size(ld, "rwkv6.time_decay_extra_dim", &hp->lora_decay));
    RWKV_TRY(rwkv_gguf_get_u64(ld->g, "rwkv6.rescale_every_n_layers", 0, &rescale, err));
    hp->rescale_every = (int64_t)(rescale > (1u << 24) ? 0 : rescale);
    RWKV_CHECK(hp->n_embd % hp->head_size == 0, RWKV_ERR_FORMAT,
               "%s: embedding_length %lld is not a multiple of wkv.head_size %lld", ld->path,
               (long long)hp->n_embd, (long long)hp->head_size);
    hp->n_head = hp->n_embd / hp->head_size;
    hp->layer_norm_eps = 1e-5f;
    RWKV_TRY(rwkv_gguf_get_f32(ld->g, "rwkv6.attention.layer_norm_epsilon", 0, &hp->layer_norm_eps, err));
    RWKV_CHECK(hp->layer_norm_eps > 0.0f && hp->layer_norm_eps < 1.0f, RWKV_ERR_FORMAT,
               "%s: layer_norm_epsilon %g is out of range", ld->path, (double)hp->layer_norm_eps);
fail:
    return rc;
}

static int load_layer(struct rwkv_loader *ld, const struct rwkv_model_info *hp, int il, struct rwkv_layer *L) {
    int rc = RWKV_OK;
    struct rwkv_error *err = ld->err;
    const int64_t C = hp->n_embd, F = hp->n_ffn, D = hp->lora_mix, Dd = hp->lora_decay;
    const int64_t H = hp->n_head, N = hp->head_size;
    char name[128];
#define NAME(suffix) (snprintf(name, sizeof name, "blk.%d." suffix, il), name)
    RWKV_TRY(rwkv_load_f32(ld, NAME("attn_norm.weight"), C, 1, 1, 1, &L->ln1_w));
    RWKV_TRY(rwkv_load_f32(ld, NAME("attn_norm.bias"), C, 1, 1, 1, &L->ln1_b));
    RWKV_TRY(rwkv_load_f32(ld, NAME("attn_norm_2.weight"), C, 1, 1, 1, &L->ln2_w));
    RWKV_TRY(rwkv_load_f32(ld, NAME("attn_norm_2.bias"), C, 1, 1, 1, &L->ln2_b));
    RWKV_TRY(rwkv_load_f32(ld, NAME("time_mix_lerp_x.weight"), C, 1, 1, 1, &L->lerp_x));
    if (rwkv_gguf_find_tensor(ld->g, NAME("time_mix_lerp_fused.weight"))) {
        const float *fused;
        RWKV_TRY(rwkv_load_f32(ld, name, C, 1, 1, N_MIX, &fused));
        for (int i = 0; i < N_MIX; i++) L->lerp[i] = fused + i * C;
    } else { /* older files: one tensor per mix */
        static const char *const sep[N_MIX] = {"w", "k", "v", "r", "g"};
        for (int i = 0; i < N_MIX; i++) {
            snprintf(name, sizeof name, "blk.%d.time_mix_lerp_%s.weight", il, sep[i]);
            RWKV_TRY(rwkv_load_f32(ld, name, C, 1, 1, 1, &L->lerp[i]));
        }
    }
    RWKV_TRY(rwkv_load_mat(ld, NAME("time_mix_w1.weight"), C, N_MIX * D, &L->mix_w1));
    {
        const struct rwkv_gguf_tensor *t = NULL;
        RWKV_TRY(rwkv_load_find(ld, NAME("time_mix_w2.weight"), D, C, N_MIX, 1, &t));
        RWKV_TRY(rwkv_load_mat_type(ld, name, t->type));
        for (int i = 0; i < N_MIX; i++) {
            L->mix_w2[i] = rwkv_mat_view(t->type, NULL, C, D);
            L->mix_w2[i].data = (const char *)t->data + (size_t)i * (size_t)C * L->mix_w2[i].row_bytes;
        }
    }
    RWKV_TRY(rwkv_load_f32(ld, NAME("time_mix_decay.weight"), C, 1, 1, 1, &L->decay));
    RWKV_TRY(rwkv_load_mat(ld, NAME("time_mix_decay_w1.weight"), C, Dd, &L->decay_w1));
    RWKV_TRY(rwkv_load_mat(ld, NAME("time_mix_decay_w2.weight"), Dd, C, &L->decay_w2));
    RWKV_TRY(rwkv_load_f32(ld, NAME("time_mix_first.weight"), N, H, 1, 1, &L->first));
    RWKV_TRY(rwkv_load_mat(ld, NAME("time_mix_receptance.weight"), C, C, &L->att_r));
    RWKV_TRY(rwkv_load_mat(ld, NAME("time_mix_key.weight"), C, C, &L->att_k));
    RWKV_TRY(rwkv_load_mat(ld, NAME("time_mix_value.weight"), C, C, &L->att_v));
    RWKV_TRY(rwkv_load_mat(ld, NAME("time_mix_gate.weight"), C, C, &L->att_g));
    RWKV_TRY(rwkv_load_mat(ld, NAME("time_mix_output.weight"), C, C, &L->att_o));
    RWKV_TRY(rwkv_load_f32(ld, NAME("time_mix_ln.weight"), C, 1, 1, 1, &L->lnx_w));
    RWKV_TRY(rwkv_load_f32(ld, NAME("time_mix_ln.bias"), C, 1, 1, 1, &L->lnx_b));
    RWKV_TRY(rwkv_load_f32(ld, NAME("channel_mix_lerp_k.weight"), C, 1, 1, 1, &L->ffn_lerp_k));
    RWKV_TRY(rwkv_load_f32(ld, NAME("channel_mix_lerp_r.weight"), C, 1, 1, 1, &L->ffn_lerp_r));
    RWKV_TRY(rwkv_load_mat(ld, NAME("channel_mix_key.weight"), C, F, &L->ffn_k));
    RWKV_TRY(rwkv_load_mat(ld, NAME("channel_mix_receptance.weight"), C, C, &L->ffn_r));
    RWKV_TRY(rwkv_load_mat(ld, NAME("channel_mix_value.weight"), F, C, &L->ffn_v));
#undef NAME
fail:
    (void)err;
    return rc;
}

int rwkv6_load(struct rwkv_loader *ld, struct rwkv_model *m) {
    int rc = RWKV_OK;
    struct rwkv_error *err = ld->err;
    struct rwkv_model_info *hp = &m->info;
    RWKV_TRY(read_hparams(ld, hp));
    m->layers = calloc((size_t)hp->n_layer, sizeof *m->layers);
    RWKV_CHECK(m->layers, RWKV_ERR_NOMEM, "out of memory");
    for (int il = 0; il < hp->n_layer; il++) RWKV_TRY(load_layer(ld, hp, il, &m->layers[il]));
    hp->weight_type = m->layers[0].att_k.type;
fail:
    return rc;
}
