/* record.c — an offloaded forward as commands: the same steps as rwkv6.c's time_mix and
 * channel_mix for each layer on the device, then (with the head) ln_out and the logits.
 * Each op is a dispatch followed by a barrier; the whole forward is one command buffer. */
#include "vulkan/model_impl.h"

#ifdef RWKV_HAVE_VULKAN
#include "error.h"

#define RWKV6_LNX_EPS 64e-5f

/* Where a forward is being recorded: the model, the command buffer, the descriptor pool. */
struct rec {
    struct rwkv_vk_model *g;
    VkCommandBuffer cmd;
    VkDescriptorPool pool;
};

/* Record one dispatch and a barrier after it: each op reads what the one before wrote. */
static int run(const struct rec *R, int pipe, const struct rwkv_vk_buf *const *bufs, const void *push, uint32_t gx,
               uint32_t gy, struct rwkv_error *err) {
    const int rc = rwkv_vk_cmd_dispatch(R->g->vk, R->cmd, R->pool, &R->g->pipes[pipe], bufs, push, gx, gy, 1, err);
    if (rc == RWKV_OK) rwkv_vk_cmd_barrier(R->g->vk, R->cmd);
    return rc;
}

static uint32_t groups(int64_t n, uint32_t wg) { return (uint32_t)((n + wg - 1) / wg); }

/* y = post(W x) for T tokens: x rows xs apart from x_off, y rows ys apart from y_off (floats) */
static int matvec(const struct rec *R, const struct gmat *W, const struct rwkv_vk_buf *x, uint32_t x_off,
                  uint32_t xs, const struct rwkv_vk_buf *y, uint32_t y_off, uint32_t ys, int post,
                  const struct rwkv_vk_buf *bias, int64_t T, struct rwkv_error *err) {
    const struct rwkv_vk_matvec_push push = {(uint32_t)W->rows, (uint32_t)W->cols, W->L.row_words, x_off, xs, y_off,
                                             ys, (uint32_t)post, (uint32_t)T};
    struct rwkv_vk_model *g = R->g;
    const struct rwkv_vk_buf *b[4] = {&W->buf, x, y, bias ? bias : &g->dummy};
    const struct rwkv_vk_matmul_pipes pipes = {&g->pipes[P_MATVEC0 + W->type], &g->pipes[P_GEMM0 + W->type]};
    const int rc = rwkv_vk_cmd_matmul(g->vk, R->cmd, R->pool, pipes, b, &push, err);
    if (rc == RWKV_OK) rwkv_vk_cmd_barrier(g->vk, R->cmd);
    return rc;
}

static int layer_norm(const struct rec *R, const struct rwkv_vk_buf *x, const struct rwkv_vk_buf *w,
                      const struct rwkv_vk_buf *b, const struct rwkv_vk_buf *y, int64_t T, struct rwkv_error *err) {
    const uint32_t C = (uint32_t)R->g->m->info.n_embd;
    struct { uint32_t n, xs, ys; float eps; } push = {C, C, C, R->g->m->info.layer_norm_eps};
    const struct rwkv_vk_buf *bs[4] = {x, w, b, y};
    return run(R, P_LN, bs, &push, (uint32_t)T, 1, err);
}

static int record_layer(const struct rec *R, int il, int64_t T, int batch, struct rwkv_error *err) {
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
    RWKV_TRY(layer_norm(R, &g->x, &d->ln1_w, &d->ln1_b, &g->xa, T, err));
    {
        const uint32_t push[8] = {C, t, C, C, (uint32_t)batch, sf, att_off, 0};
        const struct rwkv_vk_buf *b[7] = {&g->xa, &g->states, &d->lerp_x, &g->dummy, &g->sx, &g->xxx, &g->slots};
        RWKV_TRY(run(R, P_SHIFT, b, push, groups(C, 64), t, err));
        const uint32_t st[6] = {C, t, C, (uint32_t)batch, sf, att_off};
        const struct rwkv_vk_buf *b2[3] = {&g->xa, &g->states, &g->slots};
        RWKV_TRY(run(R, P_STORE, b2, st, groups(C, 64), batch ? t : 1, err));
    }
    RWKV_TRY(matvec(R, &d->mix_w1, &g->xxx, 0, C, &g->lora, 0, N_MIX * D, RWKV_POST_TANH, NULL, T, err));
    for (uint32_t i = 0; i < N_MIX; i++)
        RWKV_TRY(matvec(R, &d->mix_w2[i], &g->lora, i * D, N_MIX * D, &g->mix, i * C, N_MIX * C, RWKV_POST_NONE, NULL,
                        T, err));
    {
        const uint32_t push[4] = {C, t, C, N_MIX * C};
        const struct rwkv_vk_buf *b[5] = {&g->xa, &g->sx, &d->lerp5, &g->mix, &g->xm};
        RWKV_TRY(run(R, P_LERP5, b, push, groups(N_MIX * C, 64), t, err));
    }
    RWKV_TRY(matvec(R, &d->att_r, &g->xm, MIX_R * C, N_MIX * C, &g->r, 0, C, RWKV_POST_NONE, NULL, T, err));
    RWKV_TRY(matvec(R, &d->att_k, &g->xm, MIX_K * C, N_MIX * C, &g->k, 0, C, RWKV_POST_NONE, NULL, T, err));
    RWKV_TRY(matvec(R, &d->att_v, &g->xm, MIX_V * C, N_MIX * C, &g->v, 0, C, RWKV_POST_NONE, NULL, T, err));
    RWKV_TRY(matvec(R, &d->att_g, &g->xm, MIX_G * C, N_MIX * C, &g->g, 0, C, RWKV_POST_SILU, NULL, T, err));
    RWKV_TRY(matvec(R, &d->decay_w1, &g->xm, MIX_W * C, N_MIX * C, &g->dd, 0, Dd, RWKV_POST_TANH, NULL, T, err));
    RWKV_TRY(matvec(R, &d->decay_w2, &g->dd, 0, Dd, &g->w, 0, C, RWKV_POST_DECAY, &d->decay, T, err));
    {
        const uint32_t push[5] = {t, C, (uint32_t)batch, sf, wkv_off};
        const struct rwkv_vk_buf *b[8] = {&g->r, &g->k, &g->v, &g->w, &d->first, &g->states, &g->y, &g->slots};
        RWKV_TRY(run(R, P_WKV, b, push, H, batch ? t : 1, err));
        struct { uint32_t N, stride; float eps; } gp = {N, C, RWKV6_LNX_EPS};
        const struct rwkv_vk_buf *b2[4] = {&g->y, &d->lnx_w, &d->lnx_b, &g->g};
        RWKV_TRY(run(R, P_GN, b2, &gp, H, t, err));
    }
    RWKV_TRY(matvec(R, &d->att_o, &g->y, 0, C, &g->tmp, 0, C, RWKV_POST_NONE, NULL, T, err));
    {
        struct { uint32_t C, T, stride, mode; float scale; } rp = {C, t, C, 0, 1.0f};
        const struct rwkv_vk_buf *b[3] = {&g->x, &g->tmp, &g->dummy};
        RWKV_TRY(run(R, P_RES, b, &rp, groups(C, 64), t, err));
    }

    /* channel mixing: xk and xr side by side in xm's rows */
    RWKV_TRY(layer_norm(R, &g->x, &d->ln2_w, &d->ln2_b, &g->xa, T, err));
    {
        const uint32_t push[8] = {C, t, C, C, (uint32_t)batch, sf, ffn_off, 1};
        const struct rwkv_vk_buf *b[7] = {&g->xa, &g->states, &d->ffn_lerp_k, &d->ffn_lerp_r, &g->xm, &g->sx,
                                          &g->slots};
        /* xk into xm, xr into sx (free [T][C] buffers here), rows C apart */
        RWKV_TRY(run(R, P_SHIFT, b, push, groups(C, 64), t, err));
        const uint32_t st[6] = {C, t, C, (uint32_t)batch, sf, ffn_off};
        const struct rwkv_vk_buf *b2[3] = {&g->xa, &g->states, &g->slots};
        RWKV_TRY(run(R, P_STORE, b2, st, groups(C, 64), batch ? t : 1, err));
    }
    RWKV_TRY(matvec(R, &d->ffn_r, &g->sx, 0, C, &g->r, 0, C, RWKV_POST_SIGMOID, NULL, T, err));
    RWKV_TRY(matvec(R, &d->ffn_k, &g->xm, 0, C, &g->fk, 0, F, RWKV_POST_RELU_SQ, NULL, T, err));
    RWKV_TRY(matvec(R, &d->ffn_v, &g->fk, 0, F, &g->tmp, 0, C, RWKV_POST_NONE, NULL, T, err));
    {
        struct { uint32_t C, T, stride, mode; float scale; } rp = {C, t, C, 1, 1.0f};
        const struct rwkv_vk_buf *b[3] = {&g->x, &g->tmp, &g->r};
        RWKV_TRY(run(R, P_RES, b, &rp, groups(C, 64), t, err));
        if (hp->rescale_every > 0 && (il + 1) % hp->rescale_every == 0) {
            struct { uint32_t C, T, stride, mode; float scale; } sp = {C, t, C, 2, 0.5f};
            RWKV_TRY(run(R, P_RES, b, &sp, groups(C, 64), t, err));
        }
    }
fail:
    return rc;
}

int rwkv_vk_record_forward(struct rwkv_vk_model *g, VkCommandBuffer cmd, VkDescriptorPool pool, int64_t T, int batch,
                           int head, int all_logits, struct rwkv_error *err) {
    int rc = RWKV_OK;
    struct rwkv_vk *vk = g->vk;
    const struct rec R = {g, cmd, pool};
    const struct rwkv_model_info *hp = &g->m->info;
    const int64_t C = hp->n_embd;
    const VkCommandBufferBeginInfo bi = {.sType = VK_STRUCTURE_TYPE_COMMAND_BUFFER_BEGIN_INFO};
    VkResult r = vk->f.vkResetCommandBuffer(cmd, 0);
    if (r == VK_SUCCESS) r = vk->f.vkResetDescriptorPool(vk->dev, pool, 0);
    if (r == VK_SUCCESS) r = vk->f.vkBeginCommandBuffer(cmd, &bi);
    RWKV_CHECK(r == VK_SUCCESS, RWKV_ERR_BACKEND, "Vulkan: cannot begin a command buffer: %s", rwkv_vk_result_name(r));
    const VkBufferCopy x_bytes = {0, 0, (VkDeviceSize)(T * C) * sizeof(float)};
    if (!g->x.map) {
        vk->f.vkCmdCopyBuffer(cmd, g->x_io.buf, g->x.buf, 1, &x_bytes);
        rwkv_vk_cmd_barrier(vk, cmd);
    }
    for (int il = 0; il < g->n_gpu; il++) RWKV_TRY(record_layer(&R, il, T, batch, err));
    const int64_t t0 = all_logits ? 0 : T - 1, n_out = T - t0;
    if (head) {
        RWKV_TRY(layer_norm(&R, &g->x, &g->lnout_w, &g->lnout_b, &g->xa, T, err));
        RWKV_TRY(matvec(&R, &g->head_w, &g->xa, (uint32_t)(t0 * C), (uint32_t)C, &g->logits, 0, (uint32_t)hp->n_vocab,
                        RWKV_POST_NONE, NULL, n_out, err));
    }
    if (!g->x.map) vk->f.vkCmdCopyBuffer(cmd, g->x.buf, g->x_io.buf, 1, &x_bytes);
    const VkBufferCopy l_bytes = {0, 0, (VkDeviceSize)(n_out * hp->n_vocab) * sizeof(float)};
    if (head && !g->logits.map) vk->f.vkCmdCopyBuffer(cmd, g->logits.buf, g->logits_io.buf, 1, &l_bytes);
    rwkv_vk_cmd_barrier(vk, cmd); /* the copies, before the host reads */
    r = vk->f.vkEndCommandBuffer(cmd);
    RWKV_CHECK(r == VK_SUCCESS, RWKV_ERR_BACKEND, "Vulkan: vkEndCommandBuffer failed: %s", rwkv_vk_result_name(r));
fail:
    return rc;
}
#endif
