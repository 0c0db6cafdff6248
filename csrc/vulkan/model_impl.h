/* model_impl.h — what model.c (load, forward), record.c (a forward's commands) and
 * resident.c (the states kept on the device) share of an offloaded model. */
#ifndef RWKV_VK_MODEL_IMPL_H
#define RWKV_VK_MODEL_IMPL_H

#include "vulkan/vk.h"

#ifdef RWKV_HAVE_VULKAN
#include <threads.h>

#include "ggml_types.h"
#include "rwkv6.h"
#include "vulkan/weights.h"

struct gmat {
    struct rwkv_vk_buf buf;
    struct rwkv_vk_layout L;
    int64_t rows, cols;
    int type; /* its pipelines: pipes[P_MATVEC0 + type], pipes[P_GEMM0 + type] */
};

struct glayer {
    struct rwkv_vk_buf ln1_w, ln1_b, ln2_w, ln2_b, lerp_x, lerp5, decay, first, lnx_w, lnx_b, ffn_lerp_k, ffn_lerp_r;
    struct gmat mix_w1, mix_w2[N_MIX], decay_w1, decay_w2, att_r, att_k, att_v, att_g, att_o, ffn_k, ffn_r, ffn_v;
};

enum { P_LN, P_GN, P_WKV, P_SHIFT, P_STORE, P_LERP5, P_RES, P_MATVEC0 };
#define P_GEMM0 (P_MATVEC0 + RWKV_TYPE_COUNT)
#define N_PIPES (P_GEMM0 + RWKV_TYPE_COUNT)

/* A forward's commands, recorded once per shape and submitted again for every forward of
 * that shape: a token step re-records nothing. Its descriptor sets come from its own pool. */
struct program {
    VkCommandBuffer cmd;
    VkDescriptorPool pool;
    int64_t T;
    int batch, head, all_logits, valid;
    uint64_t used; /* for replacing the least recently used */
};
#define N_PROGRAMS 4

struct rwkv_vk_model {
    struct rwkv_vk *vk;
    const struct rwkv_model *m;
    int n_gpu, head; /* layers offloaded; whether ln_out and the head are too */
    struct glayer *layers;
    struct rwkv_vk_buf lnout_w, lnout_b, dummy;
    struct gmat head_w;
    struct rwkv_vk_pipe pipes[N_PIPES];
    struct program programs[N_PROGRAMS];
    uint64_t clock;
    /* activations for up to cap_T tokens */
    int64_t cap_T;
    struct rwkv_vk_buf x, xa, sx, xxx, lora, mix, xm, r, k, v, g, w, y, dd, fk, tmp, logits, slots;
    /* host-visible copies of x and the logits, where device-local memory is not (discrete GPUs) */
    struct rwkv_vk_buf x_io, logits_io;
    /* resident states: slot i of `states` (device-local) belongs to owner_of[i] (NULL: free);
     * where the host cannot map it, states go in and out through `states_io` */
    struct rwkv_vk_buf states, states_io;
    struct rwkv_state **owner_of;
    uint32_t n_slots;
    size_t slot_floats;
    mtx_t lock; /* forwards, syncs and releases from several threads take turns */
    int locked_init;
};

/* record.c: the whole forward of T tokens into cmd (descriptor sets from pool). */
int rwkv_vk_record_forward(struct rwkv_vk_model *g, VkCommandBuffer cmd, VkDescriptorPool pool, int64_t T, int batch,
                           int head, int all_logits, struct rwkv_error *err);

/* resident.c: give the states of a forward their slots (the pool may grow: programs go);
 * then write the slot table and copy in the states the device does not hold (recorded into
 * the context's one-off command buffer where the slots are not host-visible; *recorded says
 * whether it did, and the buffer is then ended, to be submitted before the program). */
int rwkv_vk_states_attach(struct rwkv_vk_model *g, struct rwkv_state *const *states, int64_t n,
                          struct rwkv_error *err);
int rwkv_vk_states_in(struct rwkv_vk_model *g, struct rwkv_state *const *states, int64_t n, int *recorded,
                      struct rwkv_error *err);
/* Copy a resident state's newer layers back into its arrays. */
int rwkv_vk_state_out(struct rwkv_vk_model *g, struct rwkv_state *s, struct rwkv_error *err);
/* Forget every recorded program (their buffers were replaced). */
void rwkv_vk_programs_invalidate(struct rwkv_vk_model *g);
#endif

#endif
