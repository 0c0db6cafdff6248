/* model_impl.h — what model.c (load, forward), record.c (a forward's commands), resident.c
 * (the states kept on the device) and each architecture's layers (layers6.c, layers7.c: their
 * upload and their commands) share of an offloaded model. */
#ifndef RWKV_VK_MODEL_IMPL_H
#define RWKV_VK_MODEL_IMPL_H

#include "vulkan/vk.h"

#ifdef RWKV_HAVE_VULKAN
#include <threads.h>

#include "ggml_types.h"
#include "rwkv6.h"
#include "rwkv7.h"
#include "vulkan/weights.h"

struct gmat {
    struct rwkv_vk_buf buf;
    struct rwkv_vk_layout L;
    int64_t rows, cols;
    int type; /* its pipelines: pipes[P_MATVEC0 + type], pipes[P_GEMM0 + type] */
};

/* an RWKV-6 layer on the device (layers6.c) */
struct glayer {
    struct rwkv_vk_buf ln1_w, ln1_b, ln2_w, ln2_b, lerp_x, lerp5, decay, first, lnx_w, lnx_b, ffn_lerp_k, ffn_lerp_r;
    struct gmat mix_w1, mix_w2[N_MIX], decay_w1, decay_w2, att_r, att_k, att_v, att_g, att_o, ffn_k, ffn_r, ffn_v;
};

/* an RWKV-7 layer on the device (layers7.c); v0, v1, v2 unset in layer 0 */
struct glayer7 {
    struct rwkv_vk_buf ln1_w, ln1_b, ln2_w, ln2_b, lerp6, w0, a0, v0, k_k, k_a, r_k, lnx_w, lnx_b, ffn_lerp_k;
    struct gmat w1, w2, a1, a2, v1, v2, g1, g2, att_r, att_k, att_v, att_o, ffn_k, ffn_v;
};

/* P_WKV and P_GN are the architecture's: wkv6 / group_norm_gate or wkv7 / group_norm_bonus */
enum { P_LN, P_GN, P_WKV, P_SHIFT, P_STORE, P_LERP, P_RES, P_KEYS7, P_MATVEC0 };
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

struct rwkv_vk_rec;

/* What differs between architectures: the layers' upload (and the pipelines they need) and
 * the commands of one layer. */
struct rwkv_vk_arch {
    int (*upload)(struct rwkv_vk_model *g, struct rwkv_error *err);
    void (*free)(struct rwkv_vk_model *g);
    int (*record_layer)(const struct rwkv_vk_rec *R, int il, int64_t T, int batch, struct rwkv_error *err);
};
extern const struct rwkv_vk_arch rwkv_vk_arch6, rwkv_vk_arch7;

struct rwkv_vk_model {
    struct rwkv_vk *vk;
    const struct rwkv_model *m;
    const struct rwkv_vk_arch *arch;
    int n_gpu, head; /* layers offloaded; whether ln_out and the head are too */
    struct glayer *layers;   /* RWKV-6 */
    struct glayer7 *layers7; /* RWKV-7 */
    struct rwkv_vk_buf lnout_w, lnout_b, dummy;
    struct gmat head_w;
    struct rwkv_vk_pipe pipes[N_PIPES];
    struct program programs[N_PROGRAMS];
    uint64_t clock;
    /* activations for up to cap_T tokens; xxx, lora and mix RWKV-6's, a .. lg RWKV-7's (dd its
     * decay LoRA), the others shared; an architecture's unused ones stay unallocated */
    int64_t cap_T;
    struct rwkv_vk_buf x, xa, sx, xxx, lora, mix, xm, r, k, v, g, w, y, dd, fk, tmp, logits, slots;
    struct rwkv_vk_buf a, kk, b, vg, v_first, la, lv, lg;
    /* host-visible copies of x, the logits and RWKV-7's v_first (for the layers after the
     * offloaded ones), where device-local memory is not (discrete GPUs) */
    struct rwkv_vk_buf x_io, logits_io, v_first_io;
    int v_first_out; /* RWKV-7 with layers left on the CPU: they need layer 0's v */
    /* resident states: slot i of `states` (device-local) belongs to owner_of[i] (NULL: free);
     * where the host cannot map it, states go in and out through `states_io` */
    struct rwkv_vk_buf states, states_io;
    struct rwkv_state **owner_of;
    uint32_t n_slots;
    size_t slot_floats;
    mtx_t lock; /* forwards, syncs and releases from several threads take turns */
    int locked_init;
};

/* record.c: the whole forward of T tokens into cmd (descriptor sets from pool)... */
int rwkv_vk_record_forward(struct rwkv_vk_model *g, VkCommandBuffer cmd, VkDescriptorPool pool, int64_t T, int batch,
                           int head, int all_logits, struct rwkv_error *err);

/* ... and the helpers the layers record with: where a forward is being recorded, */
struct rwkv_vk_rec {
    struct rwkv_vk_model *g;
    VkCommandBuffer cmd;
    VkDescriptorPool pool;
};
/* one dispatch of pipes[pipe] on bufs and a barrier after it (each op reads what the one
 * before wrote), */
int rwkv_vk_rec_op(const struct rwkv_vk_rec *R, int pipe, const struct rwkv_vk_buf *const *bufs, const void *push,
                   uint32_t gx, uint32_t gy, struct rwkv_error *err);
/* y = post(W x) for T tokens: x rows xs apart from x_off, y rows ys apart from y_off (floats), */
int rwkv_vk_rec_matvec(const struct rwkv_vk_rec *R, const struct gmat *W, const struct rwkv_vk_buf *x, uint32_t x_off,
                       uint32_t xs, const struct rwkv_vk_buf *y, uint32_t y_off, uint32_t ys, int post,
                       const struct rwkv_vk_buf *bias, int64_t T, struct rwkv_error *err);
/* y = layer_norm(x) * w + b for T rows of n_embd, */
int rwkv_vk_rec_layer_norm(const struct rwkv_vk_rec *R, const struct rwkv_vk_buf *x, const struct rwkv_vk_buf *w,
                           const struct rwkv_vk_buf *b, const struct rwkv_vk_buf *y, int64_t T, struct rwkv_error *err);
/* workgroups of wg for n items. */
static inline uint32_t rwkv_vk_groups(int64_t n, uint32_t wg) { return (uint32_t)((n + wg - 1) / wg); }

/* model.c: uploads into device-local memory (n_parts vectors of n floats one after the other;
 * a matrix, dequantized to F32 where its type has no shader), and a pipeline made once. */
int rwkv_vk_upload_vecs(struct rwkv_vk_model *g, struct rwkv_vk_buf *b, const float *const *parts, int n_parts,
                        int64_t n, struct rwkv_error *err);
int rwkv_vk_upload_vec(struct rwkv_vk_model *g, struct rwkv_vk_buf *b, const float *src, int64_t n,
                       struct rwkv_error *err);
int rwkv_vk_upload_mat(struct rwkv_vk_model *g, struct gmat *out, const struct rwkv_mat *w, struct rwkv_error *err);
int rwkv_vk_model_pipe(struct rwkv_vk_model *g, int idx, const char *name, uint32_t n_bufs, uint32_t push,
                       uint32_t wg, struct rwkv_error *err);

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
