/* ops.c — single ops run on the device with their own buffers: what the tests compare with
 * the CPU kernels. (The model's forward records many ops into one submission instead.) */
#include "vulkan/vk.h"

#include <stdio.h>
#include <string.h>

#include "error.h"
#include "ggml_types.h"
#include "matmul.h"

#ifndef RWKV_HAVE_VULKAN
int rwkv_vk_matmul(struct rwkv_vk *vk, uint32_t type, const void *w, int64_t n_rows, int64_t n_cols,
                   const float *x, int64_t n_tok, int post, const float *bias, float *y, struct rwkv_error *err) {
    (void)vk, (void)type, (void)w, (void)n_rows, (void)n_cols, (void)x, (void)n_tok, (void)post, (void)bias, (void)y;
    return rwkv_set_error(err, RWKV_ERR_BACKEND, "this build of rwkvfast has no Vulkan backend");
}
int rwkv_vk_run(struct rwkv_vk *vk, const char *name, int n_bufs, void *const *data, const size_t *bytes,
                const void *push, uint32_t push_bytes, uint32_t local_x, uint32_t gx, uint32_t gy, uint32_t gz,
                struct rwkv_error *err) {
    (void)vk, (void)name, (void)n_bufs, (void)data, (void)bytes, (void)push, (void)push_bytes, (void)local_x;
    (void)gx, (void)gy, (void)gz;
    return rwkv_set_error(err, RWKV_ERR_BACKEND, "this build of rwkvfast has no Vulkan backend");
}
#else
#include "vulkan/spirv.h"
#include "vulkan/weights.h"

int rwkv_vk_pipe_named(struct rwkv_vk *vk, struct rwkv_vk_pipe *p, const char *base, uint32_t n_bufs,
                       uint32_t push_bytes, uint32_t local_x, struct rwkv_error *err) {
    char name[64];
    snprintf(name, sizeof name, "%s%s", base, vk->subgroup_arith ? "_sg" : "");
    const struct rwkv_spirv *sp = rwkv_spirv_find(name);
    if (!sp) sp = rwkv_spirv_find(base);
    if (!sp) return rwkv_set_error(err, RWKV_ERR_BACKEND, "Vulkan: no shader %s in this build", base);
    return rwkv_vk_pipe_init(vk, p, sp->code, sp->bytes, n_bufs, push_bytes, local_x, err);
}


int rwkv_vk_matmul(struct rwkv_vk *vk, uint32_t type, const void *w, int64_t n_rows, int64_t n_cols,
                   const float *x, int64_t n_tok, int post, const float *bias, float *y, struct rwkv_error *err) {
    int rc = RWKV_OK;
    struct rwkv_vk_layout L;
    struct rwkv_vk_pipe mv = {0}, mm = {0};
    struct rwkv_vk_buf bw = {0}, bx = {0}, by = {0}, bb = {0};
    RWKV_CHECK(n_rows > 0 && n_tok > 0 && n_rows <= (int64_t)UINT32_MAX / 4 && n_tok <= 65535, RWKV_ERR_FORMAT,
               "matmul: bad shape (%lld rows, %lld tokens)", (long long)n_rows, (long long)n_tok);
    RWKV_CHECK(rwkv_vk_layout(type, n_cols, &L), RWKV_ERR_FORMAT,
               "Vulkan: no matmul shader for %s weights with %lld columns", rwkv_type_name(type), (long long)n_cols);
    RWKV_CHECK(post >= RWKV_POST_NONE && post <= RWKV_POST_SIGMOID_BIAS, RWKV_ERR_FORMAT, "matmul: bad post-op %d",
               post);
    RWKV_CHECK(bias || (post != RWKV_POST_DECAY && post != RWKV_POST_DECAY7 && post != RWKV_POST_SIGMOID_BIAS),
               RWKV_ERR_FORMAT, "matmul: post-op %d needs a bias", post);
    RWKV_TRY(rwkv_vk_matmul_pipes_init(vk, type, &mv, &mm, err));
    RWKV_TRY(rwkv_vk_buf_init(vk, &bb, (size_t)n_rows * sizeof(float), RWKV_VK_HOST_VISIBLE, err));
    RWKV_CHECK(bb.map, RWKV_ERR_BACKEND, "Vulkan: the op runner needs host-visible memory");
    if (bias) memcpy(bb.map, bias, (size_t)n_rows * sizeof(float));
    const size_t w_bytes = (size_t)n_rows * L.row_words * 4;
    RWKV_TRY(rwkv_vk_buf_init(vk, &bw, w_bytes, RWKV_VK_HOST_VISIBLE, err));
    RWKV_TRY(rwkv_vk_buf_init(vk, &bx, (size_t)(n_tok * n_cols) * sizeof(float), RWKV_VK_HOST_VISIBLE, err));
    RWKV_TRY(rwkv_vk_buf_init(vk, &by, (size_t)(n_tok * n_rows) * sizeof(float), RWKV_VK_HOST_CACHED, err));
    RWKV_CHECK(bw.map && bx.map && by.map, RWKV_ERR_BACKEND, "Vulkan: the op runner needs host-visible memory");
    rwkv_vk_pack_rows(&L, w, n_rows, n_cols, bw.map);
    memcpy(bx.map, x, (size_t)(n_tok * n_cols) * sizeof(float));
    /* host-visible memory without HOST_COHERENT would need flushes; the types picked are coherent */
    const struct rwkv_vk_matvec_push push = {(uint32_t)n_rows, (uint32_t)n_cols, L.row_words, 0, (uint32_t)n_cols, 0,
                                     (uint32_t)n_rows, (uint32_t)post, (uint32_t)n_tok};
    const struct rwkv_vk_buf *bufs[4] = {&bw, &bx, &by, &bb};
    RWKV_TRY(rwkv_vk_begin(vk, err));
    RWKV_TRY(rwkv_vk_cmd_matmul(vk, vk->cmd, vk->desc_pool, (struct rwkv_vk_matmul_pipes){&mv, &mm}, bufs, &push, err));
    rwkv_vk_cmd_barrier(vk, vk->cmd);
    RWKV_TRY(rwkv_vk_submit_wait(vk, err));
    memcpy(y, by.map, (size_t)(n_tok * n_rows) * sizeof(float));
fail:
    rwkv_vk_buf_free(vk, &bb);
    rwkv_vk_buf_free(vk, &by);
    rwkv_vk_buf_free(vk, &bx);
    rwkv_vk_buf_free(vk, &bw);
    rwkv_vk_pipe_free(vk, &mm);
    rwkv_vk_pipe_free(vk, &mv);
    return rc;
}
int rwkv_vk_run(struct rwkv_vk *vk, const char *name, int n_bufs, void *const *data, const size_t *bytes,
                const void *push, uint32_t push_bytes, uint32_t local_x, uint32_t gx, uint32_t gy, uint32_t gz,
                struct rwkv_error *err) {
    int rc = RWKV_OK;
    struct rwkv_vk_pipe pipe = {0};
    struct rwkv_vk_buf bufs[16] = {{0}};
    const struct rwkv_vk_buf *ptrs[16];
    RWKV_CHECK(n_bufs > 0 && n_bufs <= 16, RWKV_ERR_FORMAT, "run: 1 to 16 buffers, got %d", n_bufs);
    RWKV_CHECK(push_bytes <= 128, RWKV_ERR_FORMAT, "run: at most 128 bytes of push constants, got %u", push_bytes);
    RWKV_CHECK(local_x > 0 && local_x <= vk->props.limits.maxComputeWorkGroupSize[0] && gx && gy && gz &&
                   gx <= vk->props.limits.maxComputeWorkGroupCount[0] &&
                   gy <= vk->props.limits.maxComputeWorkGroupCount[1] &&
                   gz <= vk->props.limits.maxComputeWorkGroupCount[2],
               RWKV_ERR_FORMAT, "run: workgroups of %u in a grid of (%u, %u, %u) exceed the device's limits", local_x,
               gx, gy, gz);
    RWKV_TRY(rwkv_vk_pipe_named(vk, &pipe, name, (uint32_t)n_bufs, push_bytes, local_x, err));
    for (int i = 0; i < n_bufs; i++) {
        RWKV_TRY(rwkv_vk_buf_init(vk, &bufs[i], bytes[i], RWKV_VK_HOST_CACHED, err));
        RWKV_CHECK(bufs[i].map, RWKV_ERR_BACKEND, "Vulkan: the op runner needs host-visible memory");
        memcpy(bufs[i].map, data[i], bytes[i]);
        ptrs[i] = &bufs[i];
    }
    RWKV_TRY(rwkv_vk_begin(vk, err));
    RWKV_TRY(rwkv_vk_cmd_dispatch(vk, vk->cmd, vk->desc_pool, &pipe, ptrs, push, gx, gy, gz, err));
    rwkv_vk_cmd_barrier(vk, vk->cmd);
    RWKV_TRY(rwkv_vk_submit_wait(vk, err));
    for (int i = 0; i < n_bufs; i++) memcpy(data[i], bufs[i].map, bytes[i]);
fail:
    for (int i = 0; i < 16; i++) rwkv_vk_buf_free(vk, &bufs[i]);
    rwkv_vk_pipe_free(vk, &pipe);
    return rc;
}
#endif
