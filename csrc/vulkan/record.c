/* record.c — an offloaded forward as commands: each offloaded layer's (the architecture's
 * record_layer: layers6.c, layers7.c), then (with the head) ln_out and the logits, and the
 * copies out. Each op is a dispatch followed by a barrier; the whole forward is one command
 * buffer. */
#include "vulkan/model_impl.h"

#ifdef RWKV_HAVE_VULKAN
#include "error.h"

int rwkv_vk_rec_op(const struct rwkv_vk_rec *R, int pipe, const struct rwkv_vk_buf *const *bufs, const void *push,
                   uint32_t gx, uint32_t gy, struct rwkv_error *err) {
    const int rc = rwkv_vk_cmd_dispatch(R->g->vk, R->cmd, R->pool, &R->g->pipes[pipe], bufs, push, gx, gy, 1, err);
    if (rc == RWKV_OK) rwkv_vk_cmd_barrier(R->g->vk, R->cmd);
    return rc;
}

int rwkv_vk_rec_matvec(const struct rwkv_vk_rec *R, const struct gmat *W, const struct rwkv_vk_buf *x, uint32_t x_off,
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

int rwkv_vk_rec_layer_norm(const struct rwkv_vk_rec *R, const struct rwkv_vk_buf *x, const struct rwkv_vk_buf *w,
                           const struct rwkv_vk_buf *b, const struct rwkv_vk_buf *y, int64_t T, struct rwkv_error *err) {
    const uint32_t C = (uint32_t)R->g->m->info.n_embd;
    struct { uint32_t n, xs, ys; float eps; } push = {C, C, C, R->g->m->info.layer_norm_eps};
    const struct rwkv_vk_buf *bs[4] = {x, w, b, y};
    return rwkv_vk_rec_op(R, P_LN, bs, &push, (uint32_t)T, 1, err);
}

int rwkv_vk_record_forward(struct rwkv_vk_model *g, VkCommandBuffer cmd, VkDescriptorPool pool, int64_t T, int batch,
                           int head, int all_logits, struct rwkv_error *err) {
    int rc = RWKV_OK;
    struct rwkv_vk *vk = g->vk;
    const struct rwkv_vk_rec R = {g, cmd, pool};
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
    for (int il = 0; il < g->n_gpu; il++) RWKV_TRY(g->arch->record_layer(&R, il, T, batch, err));
    const int64_t t0 = all_logits ? 0 : T - 1, n_out = T - t0;
    if (head) {
        RWKV_TRY(rwkv_vk_rec_layer_norm(&R, &g->x, &g->lnout_w, &g->lnout_b, &g->xa, T, err));
        RWKV_TRY(rwkv_vk_rec_matvec(&R, &g->head_w, &g->xa, (uint32_t)(t0 * C), (uint32_t)C, &g->logits, 0,
                                    (uint32_t)hp->n_vocab, RWKV_POST_NONE, NULL, n_out, err));
    }
    if (!g->x.map) vk->f.vkCmdCopyBuffer(cmd, g->x.buf, g->x_io.buf, 1, &x_bytes);
    const VkBufferCopy l_bytes = {0, 0, (VkDeviceSize)(n_out * hp->n_vocab) * sizeof(float)};
    if (head && !g->logits.map) vk->f.vkCmdCopyBuffer(cmd, g->logits.buf, g->logits_io.buf, 1, &l_bytes);
    if (g->v_first_out && !g->v_first.map) vk->f.vkCmdCopyBuffer(cmd, g->v_first.buf, g->v_first_io.buf, 1, &x_bytes);
    rwkv_vk_cmd_barrier(vk, cmd); /* the copies, before the host reads */
    r = vk->f.vkEndCommandBuffer(cmd);
    RWKV_CHECK(r == VK_SUCCESS, RWKV_ERR_BACKEND, "Vulkan: vkEndCommandBuffer failed: %s", rwkv_vk_result_name(r));
fail:
    return rc;
}
#endif
