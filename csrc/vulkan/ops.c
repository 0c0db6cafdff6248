/* ops.c — single ops run on the device with their own buffers: what the tests compare with
 * the CPU kernels. (The model's forward records many ops into one submission instead.) */
#include "vulkan/vk.h"

#include <stdio.h>
#include <string.h>

#include "error.h"
#include "ggml_types.h"

#ifndef RWKV_HAVE_VULKAN
int rwkv_vk_matmul(struct rwkv_vk *vk, uint32_t type, const void *w, int64_t n_rows, int64_t n_cols,
                   const float *x, int64_t n_tok, float *y, struct rwkv_error *err) {
    (void)vk, (void)type, (void)w, (void)n_rows, (void)n_cols, (void)x, (void)n_tok, (void)y;
    return rwkv_set_error(err, RWKV_ERR_BACKEND, "this build of rwkvfast has no Vulkan backend");
}
#else
#include "vulkan/spirv.h"
#include "vulkan/weights.h"

/* Workgroup size of the matvec shaders: 64 threads fill a wave on every vendor's GPU. */
#define MATVEC_WG 64

int rwkv_vk_pipe_named(struct rwkv_vk *vk, struct rwkv_vk_pipe *p, const char *base, uint32_t n_bufs,
                       uint32_t push_bytes, uint32_t local_x, struct rwkv_error *err) {
    char name[64];
    snprintf(name, sizeof name, "%s%s", base, vk->subgroup_arith ? "_sg" : "");
    const struct rwkv_spirv *sp = rwkv_spirv_find(name);
    if (!sp) sp = rwkv_spirv_find(base);
    if (!sp) return rwkv_set_error(err, RWKV_ERR_BACKEND, "Vulkan: no shader %s in this build", base);
    return rwkv_vk_pipe_init(vk, p, sp->code, sp->bytes, n_bufs, push_bytes, local_x, err);
}

struct matvec_push {
    uint32_t n_rows, n_cols, row_words, x_off, x_stride, y_off, y_stride;
};

int rwkv_vk_matmul(struct rwkv_vk *vk, uint32_t type, const void *w, int64_t n_rows, int64_t n_cols,
                   const float *x, int64_t n_tok, float *y, struct rwkv_error *err) {
    int rc = RWKV_OK;
    struct rwkv_vk_layout L;
    struct rwkv_vk_pipe pipe = {0};
    struct rwkv_vk_buf bw = {0}, bx = {0}, by = {0};
    RWKV_CHECK(n_rows > 0 && n_tok > 0 && n_rows <= (int64_t)UINT32_MAX / 4 && n_tok <= 65535, RWKV_ERR_FORMAT,
               "matmul: bad shape (%lld rows, %lld tokens)", (long long)n_rows, (long long)n_tok);
    RWKV_CHECK(rwkv_vk_layout(type, n_cols, &L), RWKV_ERR_FORMAT,
               "Vulkan: no matmul shader for %s weights with %lld columns", rwkv_type_name(type), (long long)n_cols);
    char base[32];
    snprintf(base, sizeof base, "matvec_%s", rwkv_type_name(type));
    RWKV_TRY(rwkv_vk_pipe_named(vk, &pipe, base, 3, sizeof(struct matvec_push), MATVEC_WG, err));
    const size_t w_bytes = (size_t)n_rows * L.row_words * 4;
    RWKV_TRY(rwkv_vk_buf_init(vk, &bw, w_bytes, RWKV_VK_HOST_VISIBLE, err));
    RWKV_TRY(rwkv_vk_buf_init(vk, &bx, (size_t)(n_tok * n_cols) * sizeof(float), RWKV_VK_HOST_VISIBLE, err));
    RWKV_TRY(rwkv_vk_buf_init(vk, &by, (size_t)(n_tok * n_rows) * sizeof(float), RWKV_VK_HOST_CACHED, err));
    RWKV_CHECK(bw.map && bx.map && by.map, RWKV_ERR_BACKEND, "Vulkan: the op runner needs host-visible memory");
    rwkv_vk_pack_rows(&L, w, n_rows, n_cols, bw.map);
    memcpy(bx.map, x, (size_t)(n_tok * n_cols) * sizeof(float));
    /* host-visible memory without HOST_COHERENT would need flushes; the types picked are coherent */
    const struct matvec_push push = {(uint32_t)n_rows, (uint32_t)n_cols, L.row_words, 0, (uint32_t)n_cols, 0,
                                     (uint32_t)n_rows};
    const uint32_t gx = n_rows < 65535 ? (uint32_t)n_rows : 65535u, gz = (uint32_t)((n_rows + gx - 1) / gx);
    const struct rwkv_vk_buf *bufs[3] = {&bw, &bx, &by};
    RWKV_TRY(rwkv_vk_begin(vk, err));
    RWKV_TRY(rwkv_vk_cmd_dispatch(vk, &pipe, bufs, &push, gx, (uint32_t)n_tok, gz, err));
    rwkv_vk_cmd_barrier(vk);
    RWKV_TRY(rwkv_vk_submit_wait(vk, err));
    memcpy(y, by.map, (size_t)(n_tok * n_rows) * sizeof(float));
fail:
    rwkv_vk_buf_free(vk, &by);
    rwkv_vk_buf_free(vk, &bx);
    rwkv_vk_buf_free(vk, &bw);
    rwkv_vk_pipe_free(vk, &pipe);
    return rc;
}
#endif
