/* state.c — the recurrent state: allocation, reset, copy. */
#include <stdlib.h>
#include <string.h>

#include "error.h"
#include "model.h"
#include "vulkan/model.h"

static size_t n_shift(const struct rwkv_state *s) { return (size_t)(s->n_layer * s->n_embd); }
static size_t n_wkv(const struct rwkv_state *s) {
    return (size_t)(s->n_layer * s->n_head * s->head_size * s->head_size);
}

int rwkv_state_init(struct rwkv_state **out, const struct rwkv_model *m, struct rwkv_error *err) {
    const int rc = rwkv_state_init_shape(out, m->info.n_layer, m->info.n_embd, m->info.n_head, m->info.head_size, err);
    if (rc == RWKV_OK) (*out)->arch = m->info.arch;
    return rc;
}

int rwkv_state_init_shape(struct rwkv_state **out, int64_t n_layer, int64_t n_embd, int64_t n_head,
                          int64_t head_size, struct rwkv_error *err) {
    int rc = RWKV_OK;
    struct rwkv_state *s = NULL;
    *out = NULL;
    RWKV_CHECK(n_layer > 0 && n_embd > 0 && n_head > 0 && head_size > 0 && n_head * head_size == n_embd &&
                   n_layer <= (1 << 24) && n_embd <= (1 << 24),
               RWKV_ERR_FORMAT, "state shape %lld layers x %lld (%lld heads of %lld) is not valid",
               (long long)n_layer, (long long)n_embd, (long long)n_head, (long long)head_size);
    s = calloc(1, sizeof *s);
    RWKV_CHECK(s, RWKV_ERR_NOMEM, "out of memory for a state");
    s->n_layer = n_layer;
    s->n_embd = n_embd;
    s->n_head = n_head;
    s->head_size = head_size;
    s->att_shift = calloc(n_shift(s), sizeof(float));
    s->ffn_shift = calloc(n_shift(s), sizeof(float));
    s->wkv = calloc(n_wkv(s), sizeof(float));
    RWKV_CHECK(s->att_shift && s->ffn_shift && s->wkv, RWKV_ERR_NOMEM, "out of memory for a state");
    *out = s;
    return RWKV_OK;
fail:
    rwkv_state_free(s);
    return rc;
}

int rwkv_state_sync(struct rwkv_state *s, int will_write, struct rwkv_error *err) {
    if (!s->gpu) return RWKV_OK;
    const int rc = rwkv_vk_model_sync(s->gpu, s, err);
    if (rc == RWKV_OK && will_write) s->gpu_valid = 0;
    return rc;
}

/* The arrays are about to be overwritten whole: the device's copy is neither needed nor
 * current any more. */
static void discard_device_copy(struct rwkv_state *s) {
    if (s->gpu) s->gpu_valid = s->gpu_newer = 0;
}

void rwkv_state_free(struct rwkv_state *s) {
    if (!s) return;
    if (s->gpu) rwkv_vk_model_release(s->gpu, s);
    free(s->att_shift);
    free(s->ffn_shift);
    free(s->wkv);
    free(s->scratch);
    free(s);
}

void rwkv_state_reset(struct rwkv_state *s) {
    discard_device_copy(s);
    memset(s->att_shift, 0, n_shift(s) * sizeof(float));
    memset(s->ffn_shift, 0, n_shift(s) * sizeof(float));
    memset(s->wkv, 0, n_wkv(s) * sizeof(float));
}

int rwkv_state_copy(struct rwkv_state *dst, const struct rwkv_state *src, struct rwkv_error *err) {
    int rc = RWKV_OK;
    RWKV_CHECK(dst->n_layer == src->n_layer && dst->n_embd == src->n_embd && dst->n_head == src->n_head &&
                   dst->head_size == src->head_size && (!dst->arch || !src->arch || dst->arch == src->arch),
               RWKV_ERR_FORMAT, "states differ in shape or architecture: %lld layers x %lld vs %lld layers x %lld",
               (long long)dst->n_layer, (long long)dst->n_embd, (long long)src->n_layer, (long long)src->n_embd);
    /* src: its arrays catch up with its device copy (its value does not change) */
    RWKV_TRY(rwkv_state_sync((struct rwkv_state *)src, 0, err));
    discard_device_copy(dst);
    memcpy(dst->att_shift, src->att_shift, n_shift(src) * sizeof(float));
    memcpy(dst->ffn_shift, src->ffn_shift, n_shift(src) * sizeof(float));
    memcpy(dst->wkv, src->wkv, n_wkv(src) * sizeof(float));
fail:
    return rc;
}
