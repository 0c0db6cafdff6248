/* model.c — the first layers of an RWKV-6 model on a Vulkan device.
 *
 * rwkv_vk_model_init uploads the weights of layers [0, n_gpu) once (and ln_out and the head
 * when every layer is offloaded). rwkv_vk_model_forward runs a chunk of T tokens through
 * those layers: the same steps as rwkv6.c's time_mix and channel_mix, recorded into one
 * command buffer and submitted once. States of the offloaded layers sit in "slots" of one
 * device buffer, a slot per sequence of the chunk: [att_shift L x C][ffn_shift L x C]
 * [wkv L x H x N x N], which are the first L layers' parts of a struct rwkv_state's arrays.
 *
 * A state stays resident: it is copied in when it first meets the device (or after the CPU
 * changed it) and back only when someone reads its arrays (rwkv_state_sync), when it moves
 * to another model, or when this model is freed.
 */
#include "vulkan/vk.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <threads.h>

#include "error.h"
#include "ggml_types.h"
#include "rwkv6.h"
#include "vulkan/model.h"

#ifndef RWKV_HAVE_VULKAN
int rwkv_vk_model_init(struct rwkv_vk_model **out, struct rwkv_vk *vk, const struct rwkv_model *m, int n_gpu,
                       struct rwkv_error *err) {
    (void)vk, (void)m, (void)n_gpu;
    *out = NULL;
    return rwkv_set_error(err, RWKV_ERR_BACKEND, "this build of rwkvfast has no Vulkan backend");
}
void rwkv_vk_model_free(struct rwkv_vk_model *g) { (void)g; }
int rwkv_vk_model_layers(const struct rwkv_vk_model *g) { (void)g; return 0; }
void rwkv_vk_model_sync(struct rwkv_vk_model *g, struct rwkv_state *s) { (void)g, (void)s; }
void rwkv_vk_model_release(struct rwkv_vk_model *g, struct rwkv_state *s) { (void)g, (void)s; }
int rwkv_vk_model_has_head(const struct rwkv_vk_model *g) { (void)g; return 0; }
int rwkv_vk_model_forward(struct rwkv_vk_model *g, float *x, int64_t x_stride, int64_t T,
                          struct rwkv_state *const *states, int batch, float *logits, int all_logits,
                          struct rwkv_error *err) {
    (void)g, (void)x, (void)x_stride, (void)T, (void)states, (void)batch, (void)logits, (void)all_logits;
    return rwkv_set_error(err, RWKV_ERR_BACKEND, "this build of rwkvfast has no Vulkan backend");
}
#else
#include "vulkan/weights.h"

#define RWKV6_LNX_EPS 64e-5f
#define NORM_WG 256

struct gmat {
    struct rwkv_vk_buf buf;
    struct rwkv_vk_layout L;
    int64_t rows, cols;
    int pipe; /* index into g->pipes */
};

struct glayer {
    struct rwkv_vk_buf ln1_w, ln1_b, ln2_w, ln2_b, lerp_x, lerp5, decay, first, lnx_w, lnx_b, ffn_lerp_k, ffn_lerp_r;
    struct gmat mix_w1, mix_w2[N_MIX], decay_w1, decay_w2, att_r, att_k, att_v, att_g, att_o, ffn_k, ffn_r, ffn_v;
};

enum { P_LN, P_GN, P_WKV, P_SHIFT, P_STORE, P_LERP5, P_RES, P_MATVEC0 };
#define N_PIPES (P_MATVEC0 + RWKV_TYPE_COUNT)

struct rwkv_vk_model {
    struct rwkv_vk *vk;
    const struct rwkv_model *m;
    int n_gpu, head; /* layers offloaded; whether ln_out and the head are too */
    struct glayer *layers;
    struct rwkv_vk_buf lnout_w, lnout_b, dummy;
    struct gmat head_w;
    struct rwkv_vk_pipe pipes[N_PIPES];
    VkDescriptorPool pool;
    /* activations for up to cap_T tokens */
    int64_t cap_T;
    struct rwkv_vk_buf x, xa, sx, xxx, lora, mix, xm, r, k, v, g, w, y, dd, fk, tmp, logits, slots;
    /* host-visible copies of x and the logits, where device-local memory is not (discrete GPUs) */
    struct rwkv_vk_buf x_io, logits_io;
    /* resident states: slot i of `states` (host-visible) belongs to owner_of[i] (NULL: free) */
    struct rwkv_vk_buf states;
    struct rwkv_state **owner_of;
    uint32_t n_slots;
    size_t slot_floats;
    mtx_t lock; /* forwards, syncs and releases from several threads take turns */
    int locked_init;
};

static int upload_vec(struct rwkv_vk_model *g, struct rwkv_vk_buf *b, const float *src, int64_t n,
                      struct rwkv_error *err) {
    int rc = RWKV_OK;
    /* small vectors: host-visible memory the device reads through its caches */
    RWKV_TRY(rwkv_vk_buf_init(g->vk, b, (size_t)n * sizeof(float), RWKV_VK_HOST_VISIBLE, err));
    RWKV_CHECK(b->map, RWKV_ERR_BACKEND, "Vulkan: no host-visible memory");
    memcpy(b->map, src, (size_t)n * sizeof(float));
fail:
    return rc;
}

static int pipe_for(struct rwkv_vk_model *g, int idx, const char *name, uint32_t n_bufs, uint32_t push, uint32_t wg,
                    struct rwkv_error *err) {
    if (g->pipes[idx].pipe) return RWKV_OK;
    return rwkv_vk_pipe_named(g->vk, &g->pipes[idx], name, n_bufs, push, wg, err);
}

/* Weights go to device-local memory through a staging buffer (or straight into it where
 * device-local memory is host-visible, as on integrated GPUs and lavapipe). */
static int upload_mat(struct rwkv_vk_model *g, struct gmat *out, const struct rwkv_mat *w, struct rwkv_error *err) {
    int rc = RWKV_OK;
    struct rwkv_vk *vk = g->vk;
    struct rwkv_vk_buf stage = {0};
    float *dense = NULL;
    struct rwkv_mat as_f32 = *w;
    if (!rwkv_vk_layout(w->type, w->n_cols, &out->L)) {
        /* a type without a shader (Q2_K, Q3_K, ...): dequantized to F32 on upload */
        const struct rwkv_type_traits *tr = rwkv_type_traits_get(w->type);
        RWKV_CHECK(tr && tr->to_float && w->n_cols % tr->block_size == 0 &&
                       rwkv_vk_layout(RWKV_TYPE_F32, w->n_cols, &out->L),
                   RWKV_ERR_BACKEND, "Vulkan: cannot upload %s weights of %lld columns", rwkv_type_name(w->type),
                   (long long)w->n_cols);
        dense = malloc((size_t)(w->n_rows * w->n_cols) * sizeof(float));
        RWKV_CHECK(dense, RWKV_ERR_NOMEM, "out of memory to dequantize %s weights", rwkv_type_name(w->type));
        for (int64_t r = 0; r < w->n_rows; r++)
            tr->to_float((const uint8_t *)w->data + (size_t)r * w->row_bytes, dense + r * w->n_cols,
                         w->n_cols / tr->block_size);
        as_f32 = (struct rwkv_mat){RWKV_TYPE_F32, dense, w->n_rows, w->n_cols, (size_t)w->n_cols * sizeof(float)};
        w = &as_f32;
    }
    out->rows = w->n_rows, out->cols = w->n_cols;
    out->pipe = P_MATVEC0 + (int)w->type;
    char name[32];
    snprintf(name, sizeof name, "matvec_%s", rwkv_type_name(w->type));
    RWKV_TRY(pipe_for(g, out->pipe, name, 4, sizeof(struct rwkv_vk_matvec_push), RWKV_VK_MATVEC_WG, err));
    const size_t bytes = (size_t)w->n_rows * out->L.row_words * 4;
    RWKV_TRY(rwkv_vk_buf_init(vk, &out->buf, bytes, RWKV_VK_DEVICE_LOCAL, err));
    if (out->buf.map) {
        rwkv_vk_pack_rows(&out->L, w->data, w->n_rows, w->n_cols, out->buf.map);
        goto fail; /* done: only the cleanup is left */
    }
    RWKV_TRY(rwkv_vk_buf_init(vk, &stage, bytes, RWKV_VK_HOST_VISIBLE, err));
    rwkv_vk_pack_rows(&out->L, w->data, w->n_rows, w->n_cols, stage.map);
    RWKV_TRY(rwkv_vk_begin(vk, err));
    const VkBufferCopy region = {0, 0, bytes};
    vk->f.vkCmdCopyBuffer(vk->cmd, stage.buf, out->buf.buf, 1, &region);
    RWKV_TRY(rwkv_vk_submit_wait(vk, err));
fail:
    free(dense);
    rwkv_vk_buf_free(vk, &stage);
    return rc;
}

static void free_mat(struct rwkv_vk *vk, struct gmat *w) { rwkv_vk_buf_free(vk, &w->buf); }

static void free_acts(struct rwkv_vk_model *g) {
    struct rwkv_vk_buf *bs[] = {&g->x, &g->xa, &g->sx, &g->xxx, &g->lora, &g->mix, &g->xm, &g->r, &g->k, &g->v,
                                &g->g, &g->w, &g->y, &g->dd, &g->fk, &g->tmp, &g->logits, &g->slots,
                                &g->x_io, &g->logits_io};
    for (size_t i = 0; i < sizeof bs / sizeof bs[0]; i++) rwkv_vk_buf_free(g->vk, bs[i]);
    g->cap_T = 0;
}

static int ensure_acts(struct rwkv_vk_model *g, int64_t T, struct rwkv_error *err) {
    int rc = RWKV_OK;
    if (T <= g->cap_T) return RWKV_OK;
    free_acts(g);
    const struct rwkv_model_info *hp = &g->m->info;
    const size_t C = (size_t)hp->n_embd, F = (size_t)hp->n_ffn, D = (size_t)hp->lora_mix, Dd = (size_t)hp->lora_decay;
    const size_t t = (size_t)T, f = sizeof(float);
    struct { struct rwkv_vk_buf *b; size_t n; enum rwkv_vk_mem where; } a[] = {
        {&g->x, C, RWKV_VK_DEVICE_LOCAL}, {&g->xa, C, RWKV_VK_DEVICE_LOCAL}, {&g->sx, C, RWKV_VK_DEVICE_LOCAL},
        {&g->xxx, C, RWKV_VK_DEVICE_LOCAL}, {&g->lora, N_MIX * D, RWKV_VK_DEVICE_LOCAL},
        {&g->mix, N_MIX * C, RWKV_VK_DEVICE_LOCAL}, {&g->xm, N_MIX * C, RWKV_VK_DEVICE_LOCAL},
        {&g->r, C, RWKV_VK_DEVICE_LOCAL}, {&g->k, C, RWKV_VK_DEVICE_LOCAL}, {&g->v, C, RWKV_VK_DEVICE_LOCAL},
        {&g->g, C, RWKV_VK_DEVICE_LOCAL}, {&g->w, C, RWKV_VK_DEVICE_LOCAL}, {&g->y, C, RWKV_VK_DEVICE_LOCAL},
        {&g->dd, Dd, RWKV_VK_DEVICE_LOCAL}, {&g->fk, F, RWKV_VK_DEVICE_LOCAL}, {&g->tmp, C, RWKV_VK_DEVICE_LOCAL},
        {&g->logits, g->head ? (size_t)hp->n_vocab : 1, RWKV_VK_DEVICE_LOCAL},
    };
    for (size_t i = 0; i < sizeof a / sizeof a[0]; i++) RWKV_TRY(rwkv_vk_buf_init(g->vk, a[i].b, a[i].n * t * f, a[i].where, err));
    RWKV_TRY(rwkv_vk_buf_init(g->vk, &g->slots, t * sizeof(uint32_t), RWKV_VK_HOST_VISIBLE, err));
    if (!g->x.map) RWKV_TRY(rwkv_vk_buf_init(g->vk, &g->x_io, g->x.size, RWKV_VK_HOST_CACHED, err));
    if (!g->logits.map) RWKV_TRY(rwkv_vk_buf_init(g->vk, &g->logits_io, g->logits.size, RWKV_VK_HOST_CACHED, err));
    RWKV_CHECK((g->x.map || g->x_io.map) && (g->logits.map || g->logits_io.map) && g->slots.map, RWKV_ERR_BACKEND,
               "Vulkan: no host-visible memory for the inputs and outputs");
    g->cap_T = T;
    return RWKV_OK;
fail:
    free_acts(g);
    return rc;
}

int rwkv_vk_model_init(struct rwkv_vk_model **out, struct rwkv_vk *vk, const struct rwkv_model *m, int n_gpu,
                       struct rwkv_error *err) {
    int rc = RWKV_OK;
    *out = NULL;
    const struct rwkv_model_info *hp = &m->info;
    struct rwkv_vk_model *g = calloc(1, sizeof *g);
    RWKV_CHECK(g, RWKV_ERR_NOMEM, "out of memory");
    g->vk = vk, g->m = m;
    g->n_gpu = n_gpu < 0 || n_gpu > hp->n_layer ? (int)hp->n_layer : n_gpu;
    g->head = n_gpu > hp->n_layer; /* like llama.cpp: -ngl beyond the layer count takes the output too */
    const int64_t C = hp->n_embd, H = hp->n_head, N = hp->head_size;
    RWKV_CHECK(N <= 128 && (N & (N - 1)) == 0, RWKV_ERR_BACKEND, "Vulkan: head size %lld is not supported", (long long)N);
    g->slot_floats = (size_t)g->n_gpu * (size_t)(2 * C + H * N * N);
    g->layers = calloc((size_t)g->n_gpu, sizeof *g->layers);
    RWKV_CHECK(g->layers || !g->n_gpu, RWKV_ERR_NOMEM, "out of memory");
    RWKV_CHECK(mtx_init(&g->lock, mtx_plain) == thrd_success, RWKV_ERR_BACKEND, "cannot create a lock");
    g->locked_init = 1;
    RWKV_TRY(pipe_for(g, P_LN, "layer_norm", 4, 4 * 4, NORM_WG, err));
    RWKV_TRY(pipe_for(g, P_GN, "group_norm_gate", 4, 3 * 4, 64, err));
    RWKV_TRY(pipe_for(g, P_WKV, "wkv6", 8, 5 * 4, (uint32_t)N, err));
    RWKV_TRY(pipe_for(g, P_SHIFT, "token_shift", 7, 8 * 4, 64, err));
    RWKV_TRY(pipe_for(g, P_STORE, "shift_store", 3, 6 * 4, 64, err));
    RWKV_TRY(pipe_for(g, P_LERP5, "lerp5", 5, 4 * 4, 64, err));
    RWKV_TRY(pipe_for(g, P_RES, "residual", 3, 5 * 4, 64, err));
    const float zero[4] = {0};
    RWKV_TRY(upload_vec(g, &g->dummy, zero, 4, err));
    for (int il = 0; il < g->n_gpu; il++) {
        const struct rwkv_layer *L = &m->layers[il];
        struct glayer *d = &g->layers[il];
        RWKV_TRY(upload_vec(g, &d->ln1_w, L->ln1_w, C, err));
        RWKV_TRY(upload_vec(g, &d->ln1_b, L->ln1_b, C, err));
        RWKV_TRY(upload_vec(g, &d->ln2_w, L->ln2_w, C, err));
        RWKV_TRY(upload_vec(g, &d->ln2_b, L->ln2_b, C, err));
        RWKV_TRY(upload_vec(g, &d->lerp_x, L->lerp_x, C, err));
        RWKV_TRY(rwkv_vk_buf_init(vk, &d->lerp5, (size_t)(N_MIX * C) * sizeof(float), RWKV_VK_HOST_VISIBLE, err));
        RWKV_CHECK(d->lerp5.map, RWKV_ERR_BACKEND, "Vulkan: no host-visible memory");
        for (int i = 0; i < N_MIX; i++) memcpy((float *)d->lerp5.map + i * C, L->lerp[i], (size_t)C * sizeof(float));
        RWKV_TRY(upload_vec(g, &d->decay, L->decay, C, err));
        RWKV_TRY(upload_vec(g, &d->first, L->first, C, err));
        RWKV_TRY(upload_vec(g, &d->lnx_w, L->lnx_w, C, err));
        RWKV_TRY(upload_vec(g, &d->lnx_b, L->lnx_b, C, err));
        RWKV_TRY(upload_vec(g, &d->ffn_lerp_k, L->ffn_lerp_k, C, err));
        RWKV_TRY(upload_vec(g, &d->ffn_lerp_r, L->ffn_lerp_r, C, err));
        RWKV_TRY(upload_mat(g, &d->mix_w1, &L->mix_w1, err));
        for (int i = 0; i < N_MIX; i++) RWKV_TRY(upload_mat(g, &d->mix_w2[i], &L->mix_w2[i], err));
        RWKV_TRY(upload_mat(g, &d->decay_w1, &L->decay_w1, err));
        RWKV_TRY(upload_mat(g, &d->decay_w2, &L->decay_w2, err));
        RWKV_TRY(upload_mat(g, &d->att_r, &L->att_r, err));
        RWKV_TRY(upload_mat(g, &d->att_k, &L->att_k, err));
        RWKV_TRY(upload_mat(g, &d->att_v, &L->att_v, err));
        RWKV_TRY(upload_mat(g, &d->att_g, &L->att_g, err));
        RWKV_TRY(upload_mat(g, &d->att_o, &L->att_o, err));
        RWKV_TRY(upload_mat(g, &d->ffn_k, &L->ffn_k, err));
        RWKV_TRY(upload_mat(g, &d->ffn_r, &L->ffn_r, err));
        RWKV_TRY(upload_mat(g, &d->ffn_v, &L->ffn_v, err));
    }
    if (g->head) {
        RWKV_TRY(upload_vec(g, &g->lnout_w, m->lnout_w, C, err));
        RWKV_TRY(upload_vec(g, &g->lnout_b, m->lnout_b, C, err));
        RWKV_TRY(upload_mat(g, &g->head_w, &m->head, err));
    }
    /* a forward records at most 32 dispatches per layer plus the head's */
    const uint32_t sets = (uint32_t)(32 * g->n_gpu + 8);
    const VkDescriptorPoolSize ps = {VK_DESCRIPTOR_TYPE_STORAGE_BUFFER, 8 * sets};
    const VkDescriptorPoolCreateInfo dpi = {.sType = VK_STRUCTURE_TYPE_DESCRIPTOR_POOL_CREATE_INFO, .maxSets = sets,
                                            .poolSizeCount = 1, .pPoolSizes = &ps};
    VkResult r = vk->f.vkCreateDescriptorPool(vk->dev, &dpi, NULL, &g->pool);
    RWKV_CHECK(r == VK_SUCCESS, RWKV_ERR_BACKEND, "Vulkan: vkCreateDescriptorPool failed: %s", rwkv_vk_result_name(r));
    *out = g;
    return RWKV_OK;
fail:
    rwkv_vk_model_free(g);
    return rc;
}

static void download(struct rwkv_vk_model *g, struct rwkv_state *s);

void rwkv_vk_model_free(struct rwkv_vk_model *g) {
    if (!g) return;
    struct rwkv_vk *vk = g->vk;
    for (uint32_t i = 0; i < g->n_slots; i++) { /* states outlive the model: they keep their value */
        struct rwkv_state *s = g->owner_of[i];
        if (!s) continue;
        if (s->gpu_newer) download(g, s);
        s->gpu = NULL, s->gpu_valid = s->gpu_newer = 0;
    }
    free(g->owner_of);
    rwkv_vk_buf_free(vk, &g->states);
    if (g->locked_init) mtx_destroy(&g->lock);
    for (int il = 0; g->layers && il < g->n_gpu; il++) {
        struct glayer *d = &g->layers[il];
        struct rwkv_vk_buf *vs[] = {&d->ln1_w, &d->ln1_b, &d->ln2_w, &d->ln2_b, &d->lerp_x, &d->lerp5, &d->decay,
                                    &d->first, &d->lnx_w, &d->lnx_b, &d->ffn_lerp_k, &d->ffn_lerp_r};
        for (size_t i = 0; i < sizeof vs / sizeof vs[0]; i++) rwkv_vk_buf_free(vk, vs[i]);
        struct gmat *ms[] = {&d->mix_w1, &d->decay_w1, &d->decay_w2, &d->att_r, &d->att_k, &d->att_v,
                             &d->att_g, &d->att_o, &d->ffn_k, &d->ffn_r, &d->ffn_v};
        for (size_t i = 0; i < sizeof ms / sizeof ms[0]; i++) free_mat(vk, ms[i]);
        for (int i = 0; i < N_MIX; i++) free_mat(vk, &d->mix_w2[i]);
    }
    free(g->layers);
    rwkv_vk_buf_free(vk, &g->lnout_w);
    rwkv_vk_buf_free(vk, &g->lnout_b);
    rwkv_vk_buf_free(vk, &g->dummy);
    free_mat(vk, &g->head_w);
    free_acts(g);
    for (int i = 0; i < N_PIPES; i++) rwkv_vk_pipe_free(vk, &g->pipes[i]);
    if (g->pool) vk->f.vkDestroyDescriptorPool(vk->dev, g->pool, NULL);
    free(g);
}

/* ------------------------------------------------------------- recording -- */

/* Record one dispatch (a descriptor set from the model's pool) and a barrier after it. */
static int dispatch(struct rwkv_vk_model *g, const struct rwkv_vk_pipe *p, const struct rwkv_vk_buf *const *bufs,
                    const void *push, uint32_t gx, uint32_t gy, uint32_t gz, struct rwkv_error *err) {
    const int rc = rwkv_vk_cmd_dispatch(g->vk, g->pool, p, bufs, push, gx, gy, gz, err);
    if (rc == RWKV_OK) rwkv_vk_cmd_barrier(g->vk);
    return rc;
}

static int run(struct rwkv_vk_model *g, int pipe, const struct rwkv_vk_buf *const *bufs, const void *push, uint32_t gx,
               uint32_t gy, struct rwkv_error *err) {
    return dispatch(g, &g->pipes[pipe], bufs, push, gx, gy, 1, err);
}

static uint32_t groups(int64_t n, uint32_t wg) { return (uint32_t)((n + wg - 1) / wg); }

/* y = post(W x) for T tokens: x rows xs apart from x_off, y rows ys apart from y_off (floats) */
static int matvec(struct rwkv_vk_model *g, const struct gmat *W, const struct rwkv_vk_buf *x, uint32_t x_off,
                  uint32_t xs, const struct rwkv_vk_buf *y, uint32_t y_off, uint32_t ys, int post,
                  const struct rwkv_vk_buf *bias, int64_t T, struct rwkv_error *err) {
    const struct rwkv_vk_matvec_push push = {(uint32_t)W->rows, (uint32_t)W->cols, W->L.row_words, x_off, xs, y_off,
                                             ys, (uint32_t)post, (uint32_t)T};
    const struct rwkv_vk_buf *b[4] = {&W->buf, x, y, bias ? bias : &g->dummy};
    uint32_t grid[3];
    rwkv_vk_matvec_grid(W->rows, T, grid);
    return dispatch(g, &g->pipes[W->pipe], b, &push, grid[0], grid[1], grid[2], err);
}

static int layer_norm(struct rwkv_vk_model *g, const struct rwkv_vk_buf *x, const struct rwkv_vk_buf *w,
                      const struct rwkv_vk_buf *b, const struct rwkv_vk_buf *y, int64_t T, struct rwkv_error *err) {
    const uint32_t C = (uint32_t)g->m->info.n_embd;
    struct { uint32_t n, xs, ys; float eps; } push = {C, C, C, g->m->info.layer_norm_eps};
    const struct rwkv_vk_buf *bs[4] = {x, w, b, y};
    return run(g, P_LN, bs, &push, (uint32_t)T, 1, err);
}

static int record_layer(struct rwkv_vk_model *g, int il, int64_t T, int batch, struct rwkv_error *err) {
    int rc = RWKV_OK;
    const struct rwkv_model_info *hp = &g->m->info;
    const struct glayer *d = &g->layers[il];
    const uint32_t C = (uint32_t)hp->n_embd, D = (uint32_t)hp->lora_mix, Dd = (uint32_t)hp->lora_decay;
    const uint32_t F = (uint32_t)hp->n_ffn, H = (uint32_t)hp->n_head, N = (uint32_t)hp->head_size;
    const uint32_t t = (uint32_t)T, L = (uint32_t)g->n_gpu, sf = (uint32_t)g->slot_floats;
    const uint32_t att_off = (uint32_t)il * C, ffn_off = L * C + (uint32_t)il * C,
                   wkv_off = 2 * L * C + (uint32_t)il * H * N * N;

    /* time mixing */
    RWKV_TRY(layer_norm(g, &g->x, &d->ln1_w, &d->ln1_b, &g->xa, T, err));
    {
        const uint32_t push[8] = {C, t, C, C, (uint32_t)batch, sf, att_off, 0};
        const struct rwkv_vk_buf *b[7] = {&g->xa, &g->states, &d->lerp_x, &g->dummy, &g->sx, &g->xxx, &g->slots};
        RWKV_TRY(run(g, P_SHIFT, b, push, groups(C, 64), t, err));
        const uint32_t st[6] = {C, t, C, (uint32_t)batch, sf, att_off};
        const struct rwkv_vk_buf *b2[3] = {&g->xa, &g->states, &g->slots};
        RWKV_TRY(run(g, P_STORE, b2, st, groups(C, 64), batch ? t : 1, err));
    }
    RWKV_TRY(matvec(g, &d->mix_w1, &g->xxx, 0, C, &g->lora, 0, N_MIX * D, RWKV_POST_TANH, NULL, T, err));
    for (uint32_t i = 0; i < N_MIX; i++)
        RWKV_TRY(matvec(g, &d->mix_w2[i], &g->lora, i * D, N_MIX * D, &g->mix, i * C, N_MIX * C, RWKV_POST_NONE, NULL,
                        T, err));
    {
        const uint32_t push[4] = {C, t, C, N_MIX * C};
        const struct rwkv_vk_buf *b[5] = {&g->xa, &g->sx, &d->lerp5, &g->mix, &g->xm};
        RWKV_TRY(run(g, P_LERP5, b, push, groups(N_MIX * C, 64), t, err));
    }
    RWKV_TRY(matvec(g, &d->att_r, &g->xm, MIX_R * C, N_MIX * C, &g->r, 0, C, RWKV_POST_NONE, NULL, T, err));
    RWKV_TRY(matvec(g, &d->att_k, &g->xm, MIX_K * C, N_MIX * C, &g->k, 0, C, RWKV_POST_NONE, NULL, T, err));
    RWKV_TRY(matvec(g, &d->att_v, &g->xm, MIX_V * C, N_MIX * C, &g->v, 0, C, RWKV_POST_NONE, NULL, T, err));
    RWKV_TRY(matvec(g, &d->att_g, &g->xm, MIX_G * C, N_MIX * C, &g->g, 0, C, RWKV_POST_SILU, NULL, T, err));
    RWKV_TRY(matvec(g, &d->decay_w1, &g->xm, MIX_W * C, N_MIX * C, &g->dd, 0, Dd, RWKV_POST_TANH, NULL, T, err));
    RWKV_TRY(matvec(g, &d->decay_w2, &g->dd, 0, Dd, &g->w, 0, C, RWKV_POST_DECAY, &d->decay, T, err));
    {
        const uint32_t push[5] = {t, C, (uint32_t)batch, sf, wkv_off};
        const struct rwkv_vk_buf *b[8] = {&g->r, &g->k, &g->v, &g->w, &d->first, &g->states, &g->y, &g->slots};
        RWKV_TRY(run(g, P_WKV, b, push, H, batch ? t : 1, err));
        struct { uint32_t N, stride; float eps; } gp = {N, C, RWKV6_LNX_EPS};
        const struct rwkv_vk_buf *b2[4] = {&g->y, &d->lnx_w, &d->lnx_b, &g->g};
        RWKV_TRY(run(g, P_GN, b2, &gp, H, t, err));
    }
    RWKV_TRY(matvec(g, &d->att_o, &g->y, 0, C, &g->tmp, 0, C, RWKV_POST_NONE, NULL, T, err));
    {
        struct { uint32_t C, T, stride, mode; float scale; } rp = {C, t, C, 0, 1.0f};
        const struct rwkv_vk_buf *b[3] = {&g->x, &g->tmp, &g->dummy};
        RWKV_TRY(run(g, P_RES, b, &rp, groups(C, 64), t, err));
    }

    /* channel mixing: xk and xr side by side in xm's rows */
    RWKV_TRY(layer_norm(g, &g->x, &d->ln2_w, &d->ln2_b, &g->xa, T, err));
    {
        const uint32_t push[8] = {C, t, C, C, (uint32_t)batch, sf, ffn_off, 1};
        const struct rwkv_vk_buf *b[7] = {&g->xa, &g->states, &d->ffn_lerp_k, &d->ffn_lerp_r, &g->xm, &g->sx,
                                          &g->slots};
        /* xk into xm, xr into sx (free [T][C] buffers here), rows C apart */
        RWKV_TRY(run(g, P_SHIFT, b, push, groups(C, 64), t, err));
        const uint32_t st[6] = {C, t, C, (uint32_t)batch, sf, ffn_off};
        const struct rwkv_vk_buf *b2[3] = {&g->xa, &g->states, &g->slots};
        RWKV_TRY(run(g, P_STORE, b2, st, groups(C, 64), batch ? t : 1, err));
    }
    RWKV_TRY(matvec(g, &d->ffn_r, &g->sx, 0, C, &g->r, 0, C, RWKV_POST_SIGMOID, NULL, T, err));
    RWKV_TRY(matvec(g, &d->ffn_k, &g->xm, 0, C, &g->fk, 0, F, RWKV_POST_RELU_SQ, NULL, T, err));
    RWKV_TRY(matvec(g, &d->ffn_v, &g->fk, 0, F, &g->tmp, 0, C, RWKV_POST_NONE, NULL, T, err));
    {
        struct { uint32_t C, T, stride, mode; float scale; } rp = {C, t, C, 1, 1.0f};
        const struct rwkv_vk_buf *b[3] = {&g->x, &g->tmp, &g->r};
        RWKV_TRY(run(g, P_RES, b, &rp, groups(C, 64), t, err));
        if (hp->rescale_every > 0 && (il + 1) % hp->rescale_every == 0) {
            struct { uint32_t C, T, stride, mode; float scale; } sp = {C, t, C, 2, 0.5f};
            RWKV_TRY(run(g, P_RES, b, &sp, groups(C, 64), t, err));
        }
    }
fail:
    return rc;
}

/* ------------------------------------------------------ resident states -- */

static float *slot_ptr(struct rwkv_vk_model *g, uint32_t slot) {
    return (float *)g->states.map + (size_t)slot * g->slot_floats;
}

/* The first n_gpu layers of a state's arrays, to or from its slot. */
static void upload(struct rwkv_vk_model *g, struct rwkv_state *s) {
    const int64_t C = g->m->info.n_embd, L = g->n_gpu;
    const int64_t HNN = g->m->info.n_head * g->m->info.head_size * g->m->info.head_size;
    float *slot = slot_ptr(g, s->gpu_slot);
    memcpy(slot, s->att_shift, (size_t)(L * C) * sizeof(float));
    memcpy(slot + L * C, s->ffn_shift, (size_t)(L * C) * sizeof(float));
    memcpy(slot + 2 * L * C, s->wkv, (size_t)(L * HNN) * sizeof(float));
    s->gpu_valid = 1, s->gpu_newer = 0;
}

static void download(struct rwkv_vk_model *g, struct rwkv_state *s) {
    const int64_t C = g->m->info.n_embd, L = g->n_gpu;
    const int64_t HNN = g->m->info.n_head * g->m->info.head_size * g->m->info.head_size;
    const float *slot = slot_ptr(g, s->gpu_slot);
    memcpy(s->att_shift, slot, (size_t)(L * C) * sizeof(float));
    memcpy(s->ffn_shift, slot + L * C, (size_t)(L * C) * sizeof(float));
    memcpy(s->wkv, slot + 2 * L * C, (size_t)(L * HNN) * sizeof(float));
    s->gpu_newer = 0;
}

/* Give s a slot (the pool doubles when full; it is host-visible, so growing is a copy). */
static int attach(struct rwkv_vk_model *g, struct rwkv_state *s, struct rwkv_error *err) {
    int rc = RWKV_OK;
    uint32_t i = 0;
    while (i < g->n_slots && g->owner_of[i]) i++;
    if (i == g->n_slots) {
        const uint32_t n = g->n_slots ? 2 * g->n_slots : 4;
        struct rwkv_vk_buf nb = {0};
        struct rwkv_state **owners = calloc(n, sizeof *owners);
        RWKV_CHECK(owners, RWKV_ERR_NOMEM, "out of memory");
        rc = rwkv_vk_buf_init(g->vk, &nb, (size_t)n * g->slot_floats * sizeof(float), RWKV_VK_HOST_CACHED, err);
        if (rc == RWKV_OK && !nb.map) {
            rwkv_vk_buf_free(g->vk, &nb);
            rc = rwkv_set_error(err, RWKV_ERR_BACKEND, "Vulkan: no host-visible memory for states");
        }
        if (rc != RWKV_OK) {
            free(owners);
            goto fail;
        }
        if (g->n_slots) memcpy(nb.map, g->states.map, (size_t)g->n_slots * g->slot_floats * sizeof(float));
        memcpy(owners, g->owner_of, (size_t)g->n_slots * sizeof *owners);
        rwkv_vk_buf_free(g->vk, &g->states);
        free(g->owner_of);
        g->states = nb, g->owner_of = owners, g->n_slots = n;
    }
    g->owner_of[i] = s;
    s->gpu = g, s->gpu_slot = i, s->gpu_valid = s->gpu_newer = 0;
fail:
    return rc;
}

void rwkv_vk_model_sync(struct rwkv_vk_model *g, struct rwkv_state *s) {
    mtx_lock(&g->lock);
    if (s->gpu == g && s->gpu_newer) download(g, s);
    mtx_unlock(&g->lock);
}

void rwkv_vk_model_release(struct rwkv_vk_model *g, struct rwkv_state *s) {
    mtx_lock(&g->lock);
    if (s->gpu == g) {
        g->owner_of[s->gpu_slot] = NULL;
        s->gpu = NULL, s->gpu_valid = s->gpu_newer = 0;
    }
    mtx_unlock(&g->lock);
}

/* ---------------------------------------------------------------- forward -- */

static int forward_locked(struct rwkv_vk_model *g, float *x, int64_t x_stride, int64_t T,
                          struct rwkv_state *const *states, int batch, float *logits, int all_logits,
                          struct rwkv_error *err) {
    int rc = RWKV_OK;
    struct rwkv_vk *vk = g->vk;
    const struct rwkv_model_info *hp = &g->m->info;
    const int64_t C = hp->n_embd, n_seq = batch ? T : 1;
    RWKV_TRY(ensure_acts(g, T, err));
    for (int64_t i = 0; i < n_seq; i++) {
        if (states[i]->gpu != g) RWKV_TRY(attach(g, states[i], err));
        if (!states[i]->gpu_valid) upload(g, states[i]);
        ((uint32_t *)g->slots.map)[i] = states[i]->gpu_slot;
    }
    float *gx = g->x.map ? g->x.map : g->x_io.map;
    for (int64_t t = 0; t < T; t++) memcpy(gx + t * C, x + t * x_stride, (size_t)C * sizeof(float));
    RWKV_TRY(rwkv_vk_begin(vk, err));
    VkResult r = vk->f.vkResetDescriptorPool(vk->dev, g->pool, 0);
    RWKV_CHECK(r == VK_SUCCESS, RWKV_ERR_BACKEND, "Vulkan: vkResetDescriptorPool failed: %s", rwkv_vk_result_name(r));
    const VkBufferCopy x_bytes = {0, 0, (VkDeviceSize)(T * C) * sizeof(float)};
    if (!g->x.map) {
        vk->f.vkCmdCopyBuffer(vk->cmd, g->x_io.buf, g->x.buf, 1, &x_bytes);
        rwkv_vk_cmd_barrier(vk);
    }
    for (int il = 0; il < g->n_gpu; il++) RWKV_TRY(record_layer(g, il, T, batch, err));
    const int64_t t0 = all_logits ? 0 : T - 1, n_out = T - t0;
    if (g->head && logits) {
        RWKV_TRY(layer_norm(g, &g->x, &g->lnout_w, &g->lnout_b, &g->xa, T, err));
        RWKV_TRY(matvec(g, &g->head_w, &g->xa, (uint32_t)(t0 * C), (uint32_t)C, &g->logits, 0,
                        (uint32_t)hp->n_vocab, RWKV_POST_NONE, NULL, n_out, err));
    }
    if (!g->x.map) vk->f.vkCmdCopyBuffer(vk->cmd, g->x.buf, g->x_io.buf, 1, &x_bytes);
    const VkBufferCopy l_bytes = {0, 0, (VkDeviceSize)(n_out * hp->n_vocab) * sizeof(float)};
    if (g->head && logits && !g->logits.map) vk->f.vkCmdCopyBuffer(vk->cmd, g->logits.buf, g->logits_io.buf, 1, &l_bytes);
    rwkv_vk_cmd_barrier(vk); /* the copies, before the host reads */
    rc = rwkv_vk_submit_wait(vk, err);
    for (int64_t i = 0; i < n_seq; i++) /* after a failed submission the device copy is unknown */
        states[i]->gpu_valid = states[i]->gpu_newer = rc == RWKV_OK;
    if (rc != RWKV_OK) goto fail;
    for (int64_t t = 0; t < T; t++) memcpy(x + t * x_stride, gx + t * C, (size_t)C * sizeof(float));
    if (g->head && logits)
        memcpy(logits, g->logits.map ? g->logits.map : g->logits_io.map, (size_t)(n_out * hp->n_vocab) * sizeof(float));
fail:
    return rc;
}

int rwkv_vk_model_forward(struct rwkv_vk_model *g, float *x, int64_t x_stride, int64_t T,
                          struct rwkv_state *const *states, int batch, float *logits, int all_logits,
                          struct rwkv_error *err) {
    mtx_lock(&g->lock);
    const int rc = forward_locked(g, x, x_stride, T, states, batch, logits, all_logits, err);
    mtx_unlock(&g->lock);
    return rc;
}

int rwkv_vk_model_layers(const struct rwkv_vk_model *g) { return g->n_gpu; }
int rwkv_vk_model_has_head(const struct rwkv_vk_model *g) { return g->head; }
#endif
