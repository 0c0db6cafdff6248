/* layers7.c — RWKV-7 layers on the Vulkan device: their upload, and the commands of one layer,
 * the same steps as rwkv7.c's time_mix and channel_mix (the maths is there). */
#include "vulkan/model_impl.h"

#ifdef RWKV_HAVE_VULKAN
#include <stdlib.h>

#include "error.h"

#define RWKV7_LNX_EPS 64e-5f

static int upload(struct rwkv_vk_model *g, struct rwkv_error *err) {
    int rc = RWKV_OK;
    const struct rwkv_model *m = g->m;
    const int64_t C = m->info.n_embd, N = m->info.head_size;
    RWKV_TRY(rwkv_vk_model_pipe(g, P_GN, "group_norm_bonus", 8, 3 * 4, 64, err));
    RWKV_TRY(rwkv_vk_model_pipe(g, P_WKV, "wkv7", 9, 5 * 4, (uint32_t)N, err));
    RWKV_TRY(rwkv_vk_model_pipe(g, P_KEYS7, "rwkv7_keys", 9, 3 * 4, 64, err));
    g->layers7 = calloc((size_t)g->n_gpu, sizeof *g->layers7);
    RWKV_CHECK(g->layers7 || !g->n_gpu, RWKV_ERR_NOMEM, "out of memory");
    for (int il = 0; il < g->n_gpu; il++) {
        const struct rwkv7_layer *L = &m->layers7[il];
        struct glayer7 *d = &g->layers7[il];
        struct { struct rwkv_vk_buf *to; const float *from; } vecs[] = {
            {&d->ln1_w, L->ln1_w}, {&d->ln1_b, L->ln1_b}, {&d->ln2_w, L->ln2_w}, {&d->ln2_b, L->ln2_b},
            {&d->w0, L->w0},       {&d->a0, L->a0},       {&d->k_k, L->k_k},     {&d->k_a, L->k_a},
            {&d->r_k, L->r_k},     {&d->lnx_w, L->lnx_w}, {&d->lnx_b, L->lnx_b}, {&d->ffn_lerp_k, L->ffn_lerp_k},
            {&d->v0, L->v0},
        };
        for (size_t i = 0; i < sizeof vecs / sizeof vecs[0]; i++)
            if (vecs[i].from) RWKV_TRY(rwkv_vk_upload_vec(g, vecs[i].to, vecs[i].from, C, err));
        const float *lerp[N_MIX7];
        for (int i = 0; i < N_MIX7; i++) lerp[i] = L->lerp[i];
        RWKV_TRY(rwkv_vk_upload_vecs(g, &d->lerp6, lerp, N_MIX7, C, err));
        struct { struct gmat *to; const struct rwkv_mat *from; } mats[] = {
            {&d->w1, &L->w1},       {&d->w2, &L->w2},       {&d->a1, &L->a1},       {&d->a2, &L->a2},
            {&d->g1, &L->g1},       {&d->g2, &L->g2},       {&d->att_r, &L->att_r}, {&d->att_k, &L->att_k},
            {&d->att_v, &L->att_v}, {&d->att_o, &L->att_o}, {&d->ffn_k, &L->ffn_k}, {&d->ffn_v, &L->ffn_v},
            {&d->v1, &L->v1},       {&d->v2, &L->v2},
        };
        for (size_t i = 0; i < sizeof mats / sizeof mats[0]; i++)
            if (il > 0 || (mats[i].to != &d->v1 && mats[i].to != &d->v2)) /* layer 0 has no value residual */
                RWKV_TRY(rwkv_vk_upload_mat(g, mats[i].to, mats[i].from, err));
    }
fail:
    return rc;
}

static void release(struct rwkv_vk_model *g) {
    struct rwkv_vk *vk = g->vk;
    for (int il = 0; g->layers7 && il < g->n_gpu; il++) {
        struct glayer7 *d = &g->layers7[il];
        struct rwkv_vk_buf *vs[] = {&d->ln1_w, &d->ln1_b, &d->ln2_w, &d->ln2_b, &d->lerp6, &d->w0, &d->a0,
                                    &d->v0,    &d->k_k,   &d->k_a,   &d->r_k,   &d->lnx_w, &d->lnx_b, &d->ffn_lerp_k};
        for (size_t i = 0; i < sizeof vs / sizeof vs[0]; i++) rwkv_vk_buf_free(vk, vs[i]);
        struct gmat *ms[] = {&d->w1,    &d->w2,    &d->a1,    &d->a2,    &d->v1,    &d->v2,    &d->g1,
                             &d->g2,    &d->att_r, &d->att_k, &d->att_v, &d->att_o, &d->ffn_k, &d->ffn_v};
        for (size_t i = 0; i < sizeof ms / sizeof ms[0]; i++) rwkv_vk_buf_free(vk, &ms[i]->buf);
    }
    free(g->layers7);
    g->layers7 = NULL;
}

static int record_layer(const struct rwkv_vk_rec *R, int il, int64_t T, int batch, struct rwkv_error *err) {
    int rc = RWKV_OK;
    struct rwkv_vk_model *g = R->g;
    const struct rwkv_model_info *hp = &g->m->info;
    const struct glayer7 *d = &g->layers7[il];
    const uint32_t C = (uint32_t)hp->n_embd, F = (uint32_t)hp->n_ffn, H = (uint32_t)hp->n_head,
                   N = (uint32_t)hp->head_size, M = N_MIX7 * C;
    const uint32_t Dw = (uint32_t)hp->lora_decay, Da = (uint32_t)hp->lora_iclr, Dv = (uint32_t)hp->lora_value,
                   Dg = (uint32_t)hp->lora_gate;
    const uint32_t t = (uint32_t)T, L = (uint32_t)g->n_gpu, sf = (uint32_t)g->slot_floats;
    const uint32_t att_off = (uint32_t)il * C, ffn_off = L * C + (uint32_t)il * C,
                   wkv_off = 2 * L * C + (uint32_t)il * H * N * N;
    const struct rwkv_vk_buf *dummy = &g->dummy;

    /* time mixing: the shift, the six mixes side by side in xm's rows */
    RWKV_TRY(rwkv_vk_rec_layer_norm(R, &g->x, &d->ln1_w, &d->ln1_b, &g->xa, T, err));
    {
        const uint32_t push[8] = {C, t, C, C, (uint32_t)batch, sf, att_off, 2};
        const struct rwkv_vk_buf *b[7] = {&g->xa, &g->states, dummy, dummy, &g->sx, &g->tmp, &g->slots};
        RWKV_TRY(rwkv_vk_rec_op(R, P_SHIFT, b, push, rwkv_vk_groups(C, 64), t, err));
        const uint32_t st[6] = {C, t, C, (uint32_t)batch, sf, att_off};
        const struct rwkv_vk_buf *b2[3] = {&g->xa, &g->states, &g->slots};
        RWKV_TRY(rwkv_vk_rec_op(R, P_STORE, b2, st, rwkv_vk_groups(C, 64), batch ? t : 1, err));
        const uint32_t lp[6] = {C, t, C, M, N_MIX7, 0};
        const struct rwkv_vk_buf *b3[5] = {&g->xa, &g->sx, &d->lerp6, dummy, &g->xm};
        RWKV_TRY(rwkv_vk_rec_op(R, P_LERP, b3, lp, rwkv_vk_groups(M, 64), t, err));
    }
    /* r, k, v and the LoRAs: down (with their squashing), then up (with their biases) */
    RWKV_TRY(rwkv_vk_rec_matvec(R, &d->att_r, &g->xm, MIX7_R * C, M, &g->r, 0, C, RWKV_POST_NONE, NULL, T, err));
    RWKV_TRY(rwkv_vk_rec_matvec(R, &d->att_k, &g->xm, MIX7_K * C, M, &g->k, 0, C, RWKV_POST_NONE, NULL, T, err));
    RWKV_TRY(rwkv_vk_rec_matvec(R, &d->att_v, &g->xm, MIX7_V * C, M, &g->v, 0, C, RWKV_POST_NONE, NULL, T, err));
    RWKV_TRY(rwkv_vk_rec_matvec(R, &d->w1, &g->xm, MIX7_W * C, M, &g->dd, 0, Dw, RWKV_POST_TANH, NULL, T, err));
    RWKV_TRY(rwkv_vk_rec_matvec(R, &d->a1, &g->xm, MIX7_A * C, M, &g->la, 0, Da, RWKV_POST_NONE, NULL, T, err));
    RWKV_TRY(rwkv_vk_rec_matvec(R, &d->g1, &g->xm, MIX7_G * C, M, &g->lg, 0, Dg, RWKV_POST_SIGMOID, NULL, T, err));
    RWKV_TRY(rwkv_vk_rec_matvec(R, &d->w2, &g->dd, 0, Dw, &g->w, 0, C, RWKV_POST_DECAY7, &d->w0, T, err));
    RWKV_TRY(rwkv_vk_rec_matvec(R, &d->a2, &g->la, 0, Da, &g->a, 0, C, RWKV_POST_SIGMOID_BIAS, &d->a0, T, err));
    RWKV_TRY(rwkv_vk_rec_matvec(R, &d->g2, &g->lg, 0, Dg, &g->g, 0, C, RWKV_POST_NONE, NULL, T, err));
    if (il > 0) {
        RWKV_TRY(rwkv_vk_rec_matvec(R, &d->v1, &g->xm, MIX7_V * C, M, &g->lv, 0, Dv, RWKV_POST_NONE, NULL, T, err));
        RWKV_TRY(rwkv_vk_rec_matvec(R, &d->v2, &g->lv, 0, Dv, &g->vg, 0, C, RWKV_POST_SIGMOID_BIAS, &d->v0, T, err));
    }
    {
        const uint32_t kp[3] = {N, C, il == 0};
        const struct rwkv_vk_buf *b[9] = {&g->k,   &g->a, &g->kk,       &g->b, &d->k_k,
                                          &d->k_a, &g->v, &g->v_first, il > 0 ? &g->vg : dummy};
        RWKV_TRY(rwkv_vk_rec_op(R, P_KEYS7, b, kp, H, t, err));
        const uint32_t wp[5] = {t, C, (uint32_t)batch, sf, wkv_off};
        const struct rwkv_vk_buf *b2[9] = {&g->r, &g->w, &g->k, &g->v, &g->kk, &g->b, &g->states, &g->y, &g->slots};
        RWKV_TRY(rwkv_vk_rec_op(R, P_WKV, b2, wp, H, batch ? t : 1, err));
        struct { uint32_t N, stride; float eps; } gp = {N, C, RWKV7_LNX_EPS};
        const struct rwkv_vk_buf *b3[8] = {&g->y, &d->lnx_w, &d->lnx_b, &g->g, &g->r, &g->k, &g->v, &d->r_k};
        RWKV_TRY(rwkv_vk_rec_op(R, P_GN, b3, &gp, H, t, err));
    }
    RWKV_TRY(rwkv_vk_rec_matvec(R, &d->att_o, &g->y, 0, C, &g->tmp, 0, C, RWKV_POST_NONE, NULL, T, err));
    struct { uint32_t C, T, stride, mode; float scale; } add = {C, t, C, 0, 1.0f};
    const struct rwkv_vk_buf *res[3] = {&g->x, &g->tmp, dummy};
    RWKV_TRY(rwkv_vk_rec_op(R, P_RES, res, &add, rwkv_vk_groups(C, 64), t, err));

    /* channel mixing (no receptance): xk into xm, rows C apart */
    RWKV_TRY(rwkv_vk_rec_layer_norm(R, &g->x, &d->ln2_w, &d->ln2_b, &g->xa, T, err));
    {
        const uint32_t push[8] = {C, t, C, C, (uint32_t)batch, sf, ffn_off, 0};
        const struct rwkv_vk_buf *b[7] = {&g->xa, &g->states, &d->ffn_lerp_k, dummy, &g->sx, &g->xm, &g->slots};
        RWKV_TRY(rwkv_vk_rec_op(R, P_SHIFT, b, push, rwkv_vk_groups(C, 64), t, err));
        const uint32_t st[6] = {C, t, C, (uint32_t)batch, sf, ffn_off};
        const struct rwkv_vk_buf *b2[3] = {&g->xa, &g->states, &g->slots};
        RWKV_TRY(rwkv_vk_rec_op(R, P_STORE, b2, st, rwkv_vk_groups(C, 64), batch ? t : 1, err));
    }
    RWKV_TRY(rwkv_vk_rec_matvec(R, &d->ffn_k, &g->xm, 0, C, &g->fk, 0, F, RWKV_POST_RELU_SQ, NULL, T, err));
    RWKV_TRY(rwkv_vk_rec_matvec(R, &d->ffn_v, &g->fk, 0, F, &g->tmp, 0, C, RWKV_POST_NONE, NULL, T, err));
    RWKV_TRY(rwkv_vk_rec_op(R, P_RES, res, &add, rwkv_vk_groups(C, 64), t, err));
fail:
    return rc;
}

const struct rwkv_vk_arch rwkv_vk_arch7 = {upload, release, record_layer};
#endif
