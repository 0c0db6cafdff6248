/* layers6.c — RWKV-6 layers on the Vulkan device: their upload, and the commands of one
 * layer, the same steps as rwkv6.c's time_mix and channel_mix. */
#include "vulkan/model_impl.h"

#ifdef RWKV_HAVE_VULKAN
#include <stdlib.h>

#include "error.h"

#define RWKV6_LNX_EPS 64e-5f

static int upload(struct rwkv_vk_model *g, struct rwkv_error *err) {
    int rc = RWKV_OK;
    const struct rwkv_model *m = g->m;
    const int64_t C = m->info.n_embd, N = m->info.head_size;
    RWKV_TRY(rwkv_vk_model_pipe(g, P_GN, "group_norm_gate", 4, 3 * 4, 64, err));
    RWKV_TRY(rwkv_vk_model_pipe(g, P_WKV, "wkv6", 8, 5 * 4, (uint32_t)N, err));
    g->layers = calloc((size_t)g->n_gpu, sizeof *g->layers);
    RWKV_CHECK(g->layers || !g->n_gpu, RWKV_ERR_NOMEM, "out of memory");
    for (int il = 0; il < g->n_gpu; il++) {
        const struct rwkv_layer *L = &m->layers[il];
        struct glayer *d = &g->layers[il];
        RWKV_TRY(rwkv_vk_upload_vec(g, &d->ln1_w, L->ln1_w, C, err));
        RWKV_TRY(rwkv_vk_upload_vec(g, &d->ln1_b, L->ln1_b, C, err));
        RWKV_TRY(rwkv_vk_upload_vec(g, &d->ln2_w, L->ln2_w, C, err));
        RWKV_TRY(rwkv_vk_upload_vec(g, &d->ln2_b, L->ln2_b, C, err));
        RWKV_TRY(rwkv_vk_upload_vec(g, &d->lerp_x, L->lerp_x, C, err));
        const float *lerp[N_MIX];
        for (int i = 0; i < N_MIX; i++) lerp[i] = L->lerp[i];
        RWKV_TRY(rwkv_vk_upload_vecs(g, &d->lerp5, lerp, N_MIX, C, err));
        RWKV_TRY(rwkv_vk_upload_vec(g, &d->decay, L->decay, C, err));
        RWKV_TRY(rwkv_vk_upload_vec(g, &d->first, L->first, C, err));
        RWKV_TRY(rwkv_vk_upload_vec(g, &d->lnx_w, L->lnx_w, C, err));
        RWKV_TRY(rwkv_vk_upload_vec(g, &d->lnx_b, L->lnx_b, C, err));
        RWKV_TRY(rwkv_vk_upload_vec(g, &d->ffn_lerp_k, L->ffn_lerp_k, C, err));
        RWKV_TRY(rwkv_vk_upload_vec(g, &d->ffn_lerp_r, L->ffn_lerp_r, C, err));
        RWKV_TRY(rwkv_vk_upload_mat(g, &d->mix_w1, &L->mix_w1, err));
        for (int i = 0; i < N_MIX; i++) RWKV_TRY(rwkv_vk_upload_mat(g, &d->mix_w2[i], &L->mix_w2[i], err));
        RWKV_TRY(rwkv_vk_upload_mat(g, &d->decay_w1, &L->decay_w1, err));
        RWKV_TRY(rwkv_vk_upload_mat(g, &d->decay_w2, &L->decay_w2, err));
        RWKV_TRY(rwkv_vk_upload_mat(g, &d->att_r, &L->att_r, err));
        RWKV_TRY(rwkv_vk_upload_mat(g, &d->att_k, &L->att_k, err));
        RWKV_TRY(rwkv_vk_upload_mat(g, &d->att_v, &L->att_v, err));
        RWKV_TRY(rwkv_vk_upload_mat(g, &d->att_g, &L->att_g, err));
        RWKV_TRY(rwkv_vk_upload_mat(g, &d->att_o, &L->att_o, err));
        RWKV_TRY(rwkv_vk_upload_mat(g, &d->ffn_k, &L->ffn_k, err));
        RWKV_TRY(rwkv_vk_upload_mat(g, &d->ffn_r, &L->ffn_r, err));
        RWKV_TRY(rwkv_vk_upload_mat(g, &d->ffn_v, &L->ffn_v, err));
    }
fail:
    return rc;
}

static void release(struct rwkv_vk_model *g) {
    struct rwkv_vk *vk = g->vk;
    for (int il = 0; g->layers && il < g->n_gpu; il++) {
        struct glayer *d = &g->layers[il];
        struct rwkv_vk_buf *vs[] = {&d->ln1_w, &d->ln1_b, &d->ln2_w, &d->ln2_b, &d->lerp_x, &d->lerp5, &d->decay,
                                    &d->first, &d->lnx_w, &d->lnx_b, &d->ffn_lerp_k, &d->ffn_lerp_r};
        for (size_t i = 0; i < sizeof vs / sizeof vs[0]; i++) rwkv_vk_buf_free(vk, vs[i]);
        struct gmat *ms[] = {&d->mix_w1, &d->decay_w1, &d->decay_w2, &d->att_r, &d->att_k, &d->att_v,
                             &d->att_g, &d->att_o, &d->ffn_k, &d->ffn_r, &d->ffn_v};
        for (size_t i = 0; i < sizeof ms / sizeof ms[0]; i++) rwkv_vk_buf_free(vk, &ms[i]->buf);
        for (int i = 0; i < N_MIX; i++) rwkv_vk_buf_free(vk, &d->mix_w2[i].buf);
    }
    free(g->layers);
    g->layers = NULL;
}

static int record_layer(const struct rwkv_vk_rec *R, int il, int64_t T, int batch, struct rwkv_error *err) {
    int rc = RWKV_OK;
    struct rwkv_vk_model *g = R->g;
    const struct rwkv_model_info *hp = &g->m->info;
    const struct glayer *d = &g->layers[il];
    const uint32_t C = (uint32_t)hp->n_embd, D = (uint32_t)hp->lora_mix, Dd = (uint32_t)hp->lora_decay;
    const uint32_t F = (uint32_t)hp->n_ffn, H = (uint32_t)hp->n_head, N = (uint32_t)hp->head_size;
    const uint32_t t = (uint32_t)T, L = (uint32_t)g->n_gpu, sf = (uint32_t)g->slot_floats;
    const uint32_t att_off = (uint32_t)il * C, ffn_off = L * C + (uint32_t)il * C,
                   wkv_off = 2 * L * C + (uint32_t)il * H * N * N;

    /* time mixing */
    RWKV_TRY(rwkv_vk_rec_layer_norm(R, &g->x, &d->ln1_w, &d->ln1_b, &g->xa, T, err));
    {
        const uint32_t push[8] = {C, t, C, C, (uint32_t)batch, sf, att_off, 0};
        const struct rwkv_vk_buf *b[7] = {&g->xa, &g->states, &d->lerp_x, &g->dummy, &g->sx, &g->xxx, &g->slots};
        RWKV_TRY(rwkv_vk_rec_op(R, P_SHIFT, b, push, rwkv_vk_groups(C, 64), t, err));
        const uint32_t st[6] = {C, t, C, (uint32_t)batch, sf, att_off};
        const struct rwkv_vk_buf *b2[3] = {&g->xa, &g->states, &g->slots};
        RWKV_TRY(rwkv_vk_rec_op(R, P_STORE, b2, st, rwkv_vk_groups(C, 64), batch ? t : 1, err));
    }
    RWKV_TRY(rwkv_vk_rec_matvec(R, &d->mix_w1, &g->xxx, 0, C, &g->lora, 0, N_MIX * D, RWKV_POST_TANH, NULL, T, err));
    for (uint32_t i = 0; i < N_MIX; i++)
        RWKV_TRY(rwkv_vk_rec_matvec(R, &d->mix_w2[i], &g->lora, i * D, N_MIX * D, &g->mix, i * C, N_MIX * C,
                                    RWKV_POST_NONE, NULL, T, err));
    {
        const uint32_t push[6] = {C, t, C, N_MIX * C, N_MIX, 1};
        const struct rwkv_vk_buf *b[5] = {&g->xa, &g->sx, &d->lerp5, &g->mix, &g->xm};
        RWKV_TRY(rwkv_vk_rec_op(R, P_LERP, b, push, rwkv_vk_groups(N_MIX * C, 64), t, err));
    }
    RWKV_TRY(rwkv_vk_rec_matvec(R, &d->att_r, &g->xm, MIX_R * C, N_MIX * C, &g->r, 0, C, RWKV_POST_NONE, NULL, T, err));
    RWKV_TRY(rwkv_vk_rec_matvec(R, &d->att_k, &g->xm, MIX_K * C, N_MIX * C, &g->k, 0, C, RWKV_POST_NONE, NULL, T, err));
    RWKV_TRY(rwkv_vk_rec_matvec(R, &d->att_v, &g->xm, MIX_V * C, N_MIX * C, &g->v, 0, C, RWKV_POST_NONE, NULL, T, err));
    RWKV_TRY(rwkv_vk_rec_matvec(R, &d->att_g, &g->xm, MIX_G * C, N_MIX * C, &g->g, 0, C, RWKV_POST_SILU, NULL, T, err));
    RWKV_TRY(rwkv_vk_rec_matvec(R, &d->decay_w1, &g->xm, MIX_W * C, N_MIX * C, &g->dd, 0, Dd, RWKV_POST_TANH, NULL, T,
                                err));
    RWKV_TRY(rwkv_vk_rec_matvec(R, &d->decay_w2, &g->dd, 0, Dd, &g->w, 0, C, RWKV_POST_DECAY, &d->decay, T, err));
    {
        const uint32_t push[5] = {t, C, (uint32_t)batch, sf, wkv_off};
        const struct rwkv_vk_buf *b[8] = {&g->r, &g->k, &g->v, &g->w, &d->first, &g->states, &g->y, &g->slots};
        RWKV_TRY(rwkv_vk_rec_op(R, P_WKV, b, push, H, batch ? t : 1, err));
        struct { uint32_t N, stride; float eps; } gp = {N, C, RWKV6_LNX_EPS};
        const struct rwkv_vk_buf *b2[4] = {&g->y, &d->lnx_w, &d->lnx_b, &g->g};
        RWKV_TRY(rwkv_vk_rec_op(R, P_GN, b2, &gp, H, t, err));
    }
    RWKV_TRY(rwkv_vk_rec_matvec(R, &d->att_o, &g->y, 0, C, &g->tmp, 0, C, RWKV_POST_NONE, NULL, T, err));
    {
        struct { uint32_t C, T, stride, mode; float scale; } rp = {C, t, C, 0, 1.0f};
        const struct rwkv_vk_buf *b[3] = {&g->x, &g->tmp, &g->dummy};
        RWKV_TRY(rwkv_vk_rec_op(R, P_RES, b, &rp, rwkv_vk_groups(C, 64), t, err));
    }

    /* channel mixing: xk and xr side by side in xm's rows */
    RWKV_TRY(rwkv_vk_rec_layer_norm(R, &g->x, &d->ln2_w, &d->ln2_b, &g->xa, T, err));
    {
        const uint32_t push[8] = {C, t, C, C, (uint32_t)batch, sf, ffn_off, 1};
        const struct rwkv_vk_buf *b[7] = {&g->xa, &g->states, &d->ffn_lerp_k, &d->ffn_lerp_r, &g->xm, &g->sx,
                                          &g->slots};
        /* xk into xm, xr into sx (free [T][C] buffers here), rows C apart */
        RWKV_TRY(rwkv_vk_rec_op(R, P_SHIFT, b, push, rwkv_vk_groups(C, 64), t, err));
        const uint32_t st[6] = {C, t, C, (uint32_t)batch, sf, ffn_off};
        const struct rwkv_vk_buf *b2[3] = {&g->xa, &g->states, &g->slots};
        RWKV_TRY(rwkv_vk_rec_op(R, P_STORE, b2, st, rwkv_vk_groups(C, 64), batch ? t : 1, err));
    }
    RWKV_TRY(rwkv_vk_rec_matvec(R, &d->ffn_r, &g->sx, 0, C, &g->r, 0, C, RWKV_POST_SIGMOID, NULL, T, err));
    RWKV_TRY(rwkv_vk_rec_matvec(R, &d->ffn_k, &g->xm, 0, C, &g->fk, 0, F, RWKV_POST_RELU_SQ, NULL, T, err));
    RWKV_TRY(rwkv_vk_rec_matvec(R, &d->ffn_v, &g->fk, 0, F, &g->tmp, 0, C, RWKV_POST_NONE, NULL, T, err));
    {
        struct { uint32_t C, T, stride, mode; float scale; } rp = {C, t, C, 1, 1.0f};
        const struct rwkv_vk_buf *b[3] = {&g->x, &g->tmp, &g->r};
        RWKV_TRY(rwkv_vk_rec_op(R, P_RES, b, &rp, rwkv_vk_groups(C, 64), t, err));
        if (hp->rescale_every > 0 && (il + 1) % hp->rescale_every == 0) {
            struct { uint32_t C, T, stride, mode; float scale; } sp = {C, t, C, 2, 0.5f};
            RWKV_TRY(rwkv_vk_rec_op(R, P_RES, b, &sp, rwkv_vk_groups(C, 64), t, err));
        }
    }
fail:
    return rc;
}

const struct rwkv_vk_arch rwkv_vk_arch6 = {upload, release, record_layer};
#endif
