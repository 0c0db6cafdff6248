/* weights.c — the device layout of weight matrices: GGUF blocks padded to whole 32-bit words.
 *
 * Shaders then load only 32-bit words (no 8- or 16-bit storage features needed). A block of
 * 34 bytes (Q8_0: an f16 scale, 32 quants) becomes 36 with two zero bytes after the scale, so
 * the quants start on a word; one of 210 (Q6_K: the f16 scale last) gets them at its end.
 */
#include "vulkan/weights.h"

#include <string.h>

#include "ggml_types.h"

int rwkv_vk_layout(uint32_t type, int64_t n_cols, struct rwkv_vk_layout *out) {
    const struct rwkv_type_traits *tr = rwkv_type_traits_get(type);
    if (!tr || !tr->block_size || n_cols <= 0 || n_cols % tr->block_size) return 0;
    switch (type) {
    case RWKV_TYPE_F32: case RWKV_TYPE_F16: case RWKV_TYPE_BF16: case RWKV_TYPE_Q8_0: case RWKV_TYPE_Q4_0:
    case RWKV_TYPE_Q4_1: case RWKV_TYPE_Q5_0: case RWKV_TYPE_Q5_1: case RWKV_TYPE_Q4_K: case RWKV_TYPE_Q5_K:
    case RWKV_TYPE_Q6_K:
        break;
    default:
        return 0; /* no shader yet */
    }
    out->block_size = tr->block_size;
    out->src_block_bytes = tr->block_bytes;
    if (tr->block_bytes == 2) { /* F16, BF16: a word holds a pair */
        if (n_cols % 2) return 0;
        out->block_size = 2, out->src_block_bytes = 4;
    }
    out->pad_at = out->src_block_bytes % 4 == 0 ? out->src_block_bytes
                  : (type == RWKV_TYPE_Q6_K || type == RWKV_TYPE_Q3_K) ? tr->block_bytes
                                                                       : 2; /* after a leading f16 */
    out->block_bytes = (out->src_block_bytes + 3) & ~3u;
    const int64_t n_blocks = n_cols / out->block_size;
    out->row_words = (uint32_t)(n_blocks * out->block_bytes / 4);
    return 1;
}

void rwkv_vk_pack_rows(const struct rwkv_vk_layout *L, const void *src, int64_t n_rows, int64_t n_cols, void *dst) {
    const int64_t n_blocks = n_cols / L->block_size;
    const uint8_t *s = src;
    uint8_t *d = dst;
    const size_t row_out = (size_t)L->row_words * 4;
    for (int64_t r = 0; r < n_rows; r++) {
        uint8_t *row = d + (size_t)r * row_out;
        memset(row, 0, row_out);
        if (L->block_bytes == L->src_block_bytes) {
            memcpy(row, s, (size_t)n_blocks * L->src_block_bytes);
            s += (size_t)n_blocks * L->src_block_bytes;
            continue;
        }
        for (int64_t b = 0; b < n_blocks; b++, s += L->src_block_bytes) {
            uint8_t *blk = row + (size_t)b * L->block_bytes;
            const uint32_t pad = L->block_bytes - L->src_block_bytes;
            memcpy(blk, s, L->pad_at);
            memcpy(blk + L->pad_at + pad, s + L->pad_at, L->src_block_bytes - L->pad_at);
        }
    }
}
