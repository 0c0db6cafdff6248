/* resident.c — states that stay on the device between forwards.
 *
 * A state's first n_gpu layers live in one slot of the model's slot pool, a device-local
 * buffer: [att_shift L x C][ffn_shift L x C][wkv L x H x N x N], the first L layers' parts
 * of a struct rwkv_state's arrays. They are copied in when the state first meets the device
 * (or after the CPU changed them) and back only when someone reads its arrays, when it moves
 * to another model, or when the model is freed. Where the host cannot map device-local
 * memory (discrete GPUs), copies go through the host-visible `states_io`.
 */
#include "vulkan/model_impl.h"

#ifdef RWKV_HAVE_VULKAN
#include <stdlib.h>
#include <string.h>

#include "error.h"

static size_t slot_bytes(const struct rwkv_vk_model *g) { return g->slot_floats * sizeof(float); }

/* The first n_gpu layers of a state's arrays, to or from a slot-sized host buffer. */
static void pack(const struct rwkv_vk_model *g, const struct rwkv_state *s, float *slot) {
    const int64_t C = g->m->info.n_embd, L = g->n_gpu;
    const int64_t HNN = g->m->info.n_head * g->m->info.head_size * g->m->info.head_size;
    memcpy(slot, s->att_shift, (size_t)(L * C) * sizeof(float));
    memcpy(slot + L * C, s->ffn_shift, (size_t)(L * C) * sizeof(float));
    memcpy(slot + 2 * L * C, s->wkv, (size_t)(L * HNN) * sizeof(float));
}

static void unpack(const struct rwkv_vk_model *g, struct rwkv_state *s, const float *slot) {
    const int64_t C = g->m->info.n_embd, L = g->n_gpu;
    const int64_t HNN = g->m->info.n_head * g->m->info.head_size * g->m->info.head_size;
    memcpy(s->att_shift, slot, (size_t)(L * C) * sizeof(float));
    memcpy(s->ffn_shift, slot + L * C, (size_t)(L * C) * sizeof(float));
    memcpy(s->wkv, slot + 2 * L * C, (size_t)(L * HNN) * sizeof(float));
}

/* `states_io` holds at least n slots. */
static int ensure_io(struct rwkv_vk_model *g, int64_t n, struct rwkv_error *err) {
    int rc = RWKV_OK;
    if (g->states.map || g->states_io.size >= (size_t)n * slot_bytes(g)) return RWKV_OK;
    rwkv_vk_buf_free(g->vk, &g->states_io);
    RWKV_TRY(rwkv_vk_buf_init(g->vk, &g->states_io, (size_t)n * slot_bytes(g), RWKV_VK_HOST_CACHED, err));
    RWKV_CHECK(g->states_io.map, RWKV_ERR_BACKEND, "Vulkan: no host-visible memory to copy states through");
fail:
    return rc;
}

/* Give s a slot; a full pool doubles (a device copy of the old one; the recorded programs
 * bound the old buffer, so they go). */
static int attach(struct rwkv_vk_model *g, struct rwkv_state *s, struct rwkv_error *err) {
    int rc = RWKV_OK;
    struct rwkv_vk *vk = g->vk;
    struct rwkv_vk_buf nb = {0};
    struct rwkv_state **owners = NULL;
    uint32_t i = 0;
    while (i < g->n_slots && g->owner_of[i]) i++;
    if (i == g->n_slots) {
        const uint32_t n = g->n_slots ? 2 * g->n_slots : 4;
        owners = calloc(n, sizeof *owners);
        RWKV_CHECK(owners, RWKV_ERR_NOMEM, "out of memory");
        RWKV_TRY(rwkv_vk_buf_init(vk, &nb, (size_t)n * slot_bytes(g), RWKV_VK_DEVICE_LOCAL, err));
        if (g->n_slots) {
            RWKV_TRY(rwkv_vk_begin(vk, err));
            const VkBufferCopy all = {0, 0, (VkDeviceSize)g->n_slots * slot_bytes(g)};
            vk->f.vkCmdCopyBuffer(vk->cmd, g->states.buf, nb.buf, 1, &all);
            RWKV_TRY(rwkv_vk_submit_wait(vk, err));
            memcpy(owners, g->owner_of, (size_t)g->n_slots * sizeof *owners);
        }
        rwkv_vk_buf_free(vk, &g->states);
        free(g->owner_of);
        g->states = nb, g->owner_of = owners, g->n_slots = n;
        nb = (struct rwkv_vk_buf){0}, owners = NULL;
        rwkv_vk_programs_invalidate(g);
    }
    g->owner_of[i] = s;
    s->gpu = g, s->gpu_slot = i, s->gpu_valid = s->gpu_newer = 0;
fail:
    rwkv_vk_buf_free(vk, &nb);
    free(owners);
    return rc;
}

int rwkv_vk_states_attach(struct rwkv_vk_model *g, struct rwkv_state *const *states, int64_t n,
                          struct rwkv_error *err) {
    int rc = RWKV_OK;
    for (int64_t i = 0; i < n; i++)
        if (states[i]->gpu != g) RWKV_TRY(attach(g, states[i], err));
    RWKV_TRY(ensure_io(g, n, err));
fail:
    return rc;
}

int rwkv_vk_states_in(struct rwkv_vk_model *g, struct rwkv_state *const *states, int64_t n, int *recorded,
                      struct rwkv_error *err) {
    int rc = RWKV_OK;
    struct rwkv_vk *vk = g->vk;
    *recorded = 0;
    int64_t staged = 0;
    for (int64_t i = 0; i < n; i++) {
        struct rwkv_state *s = states[i];
        ((uint32_t *)g->slots.map)[i] = s->gpu_slot;
        if (s->gpu_valid) continue;
        if (g->states.map) {
            pack(g, s, (float *)g->states.map + (size_t)s->gpu_slot * g->slot_floats);
        } else {
            if (!*recorded) RWKV_TRY(rwkv_vk_begin(vk, err));
            *recorded = 1;
            pack(g, s, (float *)g->states_io.map + (size_t)staged * g->slot_floats);
            const VkBufferCopy one = {(VkDeviceSize)staged * slot_bytes(g), (VkDeviceSize)s->gpu_slot * slot_bytes(g),
                                      slot_bytes(g)};
            vk->f.vkCmdCopyBuffer(vk->cmd, g->states_io.buf, g->states.buf, 1, &one);
            staged++;
        }
    }
    if (*recorded) {
        rwkv_vk_cmd_barrier(vk, vk->cmd);
        const VkResult r = vk->f.vkEndCommandBuffer(vk->cmd);
        RWKV_CHECK(r == VK_SUCCESS, RWKV_ERR_BACKEND, "Vulkan: vkEndCommandBuffer failed: %s", rwkv_vk_result_name(r));
    }
    /* the forward's submission, which follows, marks them current on the device */
fail:
    return rc;
}

int rwkv_vk_state_out(struct rwkv_vk_model *g, struct rwkv_state *s, struct rwkv_error *err) {
    int rc = RWKV_OK;
    struct rwkv_vk *vk = g->vk;
    if (s->gpu != g || !s->gpu_newer) return RWKV_OK;
    if (g->states.map) {
        unpack(g, s, (const float *)g->states.map + (size_t)s->gpu_slot * g->slot_floats);
    } else {
        RWKV_TRY(ensure_io(g, 1, err));
        RWKV_TRY(rwkv_vk_begin(vk, err));
        const VkBufferCopy one = {(VkDeviceSize)s->gpu_slot * slot_bytes(g), 0, slot_bytes(g)};
        vk->f.vkCmdCopyBuffer(vk->cmd, g->states.buf, g->states_io.buf, 1, &one);
        rwkv_vk_cmd_barrier(vk, vk->cmd);
        RWKV_TRY(rwkv_vk_submit_wait(vk, err));
        unpack(g, s, g->states_io.map);
    }
    s->gpu_newer = 0;
fail:
    return rc;
}

int rwkv_vk_model_sync(struct rwkv_vk_model *g, struct rwkv_state *s, struct rwkv_error *err) {
    mtx_lock(&g->lock);
    const int rc = rwkv_vk_state_out(g, s, err);
    mtx_unlock(&g->lock);
    return rc;
}

void rwkv_vk_model_release(struct rwkv_vk_model *g, struct rwkv_state *s) {
    mtx_lock(&g->lock);
    if (s->gpu == g) {
        g->owner_of[s->gpu_slot] = NULL;
        s->gpu = NULL, s->gpu_valid = s->gpu_newer = 0;
    }
    mtx_unlock(&g->lock);
}
#endif
