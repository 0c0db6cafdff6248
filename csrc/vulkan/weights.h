/* weights.h — how a weight matrix is laid out on the device (see weights.c). */
#ifndef RWKV_VK_WEIGHTS_H
#define RWKV_VK_WEIGHTS_H

#include <stdint.h>

struct rwkv_vk_layout {
    uint32_t block_size;      /* elements per block */
    uint32_t src_block_bytes; /* in the GGUF */
    uint32_t block_bytes;     /* on the device: a multiple of 4 */
    uint32_t pad_at;          /* where the padding bytes go inside a block */
    uint32_t row_words;       /* 32-bit words per row */
};

/* Whether the device has a shader for `type` at this row length; fills *out if so. */
int rwkv_vk_layout(uint32_t type, int64_t n_cols, struct rwkv_vk_layout *out);
/* n_rows rows of GGUF blocks -> n_rows * row_words words at dst. */
void rwkv_vk_pack_rows(const struct rwkv_vk_layout *L, const void *src, int64_t n_rows, int64_t n_cols, void *dst);

#endif
