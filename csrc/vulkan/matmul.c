/* matmul.c — which shader a product of a weight matrix and some tokens takes, and its grid. */
#include "vulkan/vk.h"

#include <stdio.h>

#include "error.h"
#include "ggml_types.h"

#ifdef RWKV_HAVE_VULKAN
int rwkv_vk_matmul_pipes_init(struct rwkv_vk *vk, uint32_t type, struct rwkv_vk_pipe *mv, struct rwkv_vk_pipe *mm,
                              struct rwkv_error *err) {
    int rc = RWKV_OK;
    char name[32];
    snprintf(name, sizeof name, "matvec_%s", rwkv_type_name(type));
    RWKV_TRY(rwkv_vk_pipe_named(vk, mv, name, 4, sizeof(struct rwkv_vk_matvec_push), RWKV_VK_MATVEC_WG, err));
    snprintf(name, sizeof name, "matmul_%s", rwkv_type_name(type));
    RWKV_TRY(rwkv_vk_pipe_named(vk, mm, name, 4, sizeof(struct rwkv_vk_matvec_push), RWKV_VK_GEMM_WG, err));
fail:
    return rc;
}

int rwkv_vk_cmd_matmul(struct rwkv_vk *vk, VkCommandBuffer cmd, VkDescriptorPool pool, struct rwkv_vk_matmul_pipes pipes,
                       const struct rwkv_vk_buf *const *bufs, const struct rwkv_vk_matvec_push *push,
                       struct rwkv_error *err) {
    const uint32_t rows = push->n_rows, T = push->n_tok;
    if (T >= RWKV_VK_GEMM_MIN_TOK && push->n_cols % 4 == 0) {
        const uint32_t gx = (rows + RWKV_VK_GEMM_BM - 1) / RWKV_VK_GEMM_BM, gy = (T + RWKV_VK_GEMM_BN - 1) / RWKV_VK_GEMM_BN;
        return rwkv_vk_cmd_dispatch(vk, cmd, pool, pipes.gemm, bufs, push, gx, gy, 1, err);
    }
    /* rows beyond the 65535 workgroups of one dimension go on in z */
    const uint32_t gx = rows < 65535u ? rows : 65535u;
    const uint32_t gy = (T + RWKV_VK_MATVEC_TOK - 1) / RWKV_VK_MATVEC_TOK, gz = (rows + gx - 1) / gx;
    return rwkv_vk_cmd_dispatch(vk, cmd, pool, pipes.matvec, bufs, push, gx, gy, gz, err);
}
#endif
