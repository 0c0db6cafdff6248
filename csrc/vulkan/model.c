/* model.c — the first layers of a model on a Vulkan device.
 *
 * rwkv_vk_model_init uploads the weights of layers [0, n_gpu) once (the architecture's
 * upload: layers6.c, layers7.c; and ln_out and the head when every layer is offloaded) into
 * device-local memory. rwkv_vk_model_forward runs a
 * chunk of T tokens through those layers as one submission: the commands of record.c,
 * recorded once per shape of forward (tokens, batch or sequence, logits) and submitted again
 * for each forward of that shape, after the copies that bring in states the device does not
 * hold yet (resident.c).
 */
#include "vulkan/model_impl.h"

#include <stdlib.h>
#include <string.h>

#include "error.h"
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
int rwkv_vk_model_sync(struct rwkv_vk_model *g, struct rwkv_state *s, struct rwkv_error *err) {
    (void)g, (void)s;
    return rwkv_set_error(err, RWKV_ERR_BACKEND, "this build of rwkvfast has no Vulkan backend");
}
void rwkv_vk_model_release(struct rwkv_vk_model *g, struct rwkv_state *s) { (void)g, (void)s; }
int rwkv_vk_model_has_head(const struct rwkv_vk_model *g) { (void)g; return 0; }
int rwkv_vk_model_forward(struct rwkv_vk_model *g, float *x, int64_t x_stride, int64_t T,
                          struct rwkv_state *const *states, int batch, float *logits, int all_logits, float *v_first,
                          struct rwkv_error *err) {
    (void)g, (void)x, (void)x_stride, (void)T, (void)states, (void)batch, (void)logits, (void)all_logits;
    (void)v_first;
    return rwkv_set_error(err, RWKV_ERR_BACKEND, "this build of rwkvfast has no Vulkan backend");
}
#else
#define NORM_WG 256

/* ---------------------------------------------------------------- uploads -- */

/* Device-local memory to fill: straight through its mapping where the host has one
 * (integrated GPUs, lavapipe), else through a host-visible staging buffer and a copy. */
struct fill {
    struct rwkv_vk_buf stage;
    void *dst;
};

static int fill_begin(struct rwkv_vk_model *g, struct rwkv_vk_buf *b, size_t bytes, struct fill *f,
                      struct rwkv_error *err) {
    int rc = RWKV_OK;
    memset(f, 0, sizeof *f);
    RWKV_TRY(rwkv_vk_buf_init(g->vk, b, bytes, RWKV_VK_DEVICE_LOCAL, err));
    if (b->map) {
        f->dst = b->map;
        return RWKV_OK;
    }
    RWKV_TRY(rwkv_vk_buf_init(g->vk, &f->stage, bytes, RWKV_VK_HOST_VISIBLE, err));
    RWKV_CHECK(f->stage.map, RWKV_ERR_BACKEND, "Vulkan: no host-visible memory to upload weights through");
    f->dst = f->stage.map;
fail:
    return rc;
}

static int fill_end(struct rwkv_vk_model *g, struct rwkv_vk_buf *b, struct fill *f, struct rwkv_error *err) {
    int rc = RWKV_OK;
    struct rwkv_vk *vk = g->vk;
    if (f->stage.buf) {
        RWKV_TRY(rwkv_vk_begin(vk, err));
        const VkBufferCopy all = {0, 0, b->size};
        vk->f.vkCmdCopyBuffer(vk->cmd, f->stage.buf, b->buf, 1, &all);
        RWKV_TRY(rwkv_vk_submit_wait(vk, err));
    }
fail:
    rwkv_vk_buf_free(vk, &f->stage);
    return rc;
}

/* n_parts vectors of n floats each, one after the other in one buffer */
int rwkv_vk_upload_vecs(struct rwkv_vk_model *g, struct rwkv_vk_buf *b, const float *const *parts, int n_parts,
                        int64_t n, struct rwkv_error *err) {
    int rc = RWKV_OK;
    struct fill f;
    RWKV_TRY(fill_begin(g, b, (size_t)(n_parts * n) * sizeof(float), &f, err));
    for (int i = 0; i < n_parts; i++) memcpy((float *)f.dst + i * n, parts[i], (size_t)n * sizeof(float));
    rc = fill_end(g, b, &f, err);
fail:
    rwkv_vk_buf_free(g->vk, &f.stage);
    return rc;
}

int rwkv_vk_upload_vec(struct rwkv_vk_model *g, struct rwkv_vk_buf *b, const float *src, int64_t n,
                       struct rwkv_error *err) {
    return rwkv_vk_upload_vecs(g, b, &src, 1, n, err);
}

int rwkv_vk_model_pipe(struct rwkv_vk_model *g, int idx, const char *name, uint32_t n_bufs, uint32_t push,
                       uint32_t wg, struct rwkv_error *err) {
    if (g->pipes[idx].pipe) return RWKV_OK;
    return rwkv_vk_pipe_named(g->vk, &g->pipes[idx], name, n_bufs, push, wg, err);
}

int rwkv_vk_upload_mat(struct rwkv_vk_model *g, struct gmat *out, const struct rwkv_mat *w, struct rwkv_error *err) {
    int rc = RWKV_OK;
    struct rwkv_vk *vk = g->vk;
    struct fill f = {0};
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
    out->type = (int)w->type;
    if (!g->pipes[P_MATVEC0 + out->type].pipe)
        RWKV_TRY(rwkv_vk_matmul_pipes_init(vk, w->type, &g->pipes[P_MATVEC0 + out->type],
                                           &g->pipes[P_GEMM0 + out->type], err));
    RWKV_TRY(fill_begin(g, &out->buf, (size_t)w->n_rows * out->L.row_words * 4, &f, err));
    rwkv_vk_pack_rows(&out->L, w->data, w->n_rows, w->n_cols, f.dst);
    rc = fill_end(g, &out->buf, &f, err);
fail:
    free(dense);
    rwkv_vk_buf_free(vk, &f.stage);
    return rc;
}

/* ------------------------------------------------------------ activations -- */

static void free_acts(struct rwkv_vk_model *g) {
    struct rwkv_vk_buf *bs[] = {&g->x,  &g->xa, &g->sx, &g->xxx, &g->lora,    &g->mix,  &g->xm,     &g->r,
                                &g->k,  &g->v,  &g->g,  &g->w,   &g->y,       &g->dd,   &g->fk,     &g->tmp,
                                &g->a,  &g->kk, &g->b,  &g->vg,  &g->v_first, &g->la,   &g->lv,     &g->lg,
                                &g->logits, &g->slots, &g->x_io, &g->logits_io, &g->v_first_io};
    for (size_t i = 0; i < sizeof bs / sizeof bs[0]; i++) rwkv_vk_buf_free(g->vk, bs[i]);
    g->cap_T = 0;
    rwkv_vk_programs_invalidate(g); /* they bound these buffers */
}

static int ensure_acts(struct rwkv_vk_model *g, int64_t T, struct rwkv_error *err) {
    int rc = RWKV_OK;
    if (T <= g->cap_T) return RWKV_OK;
    free_acts(g);
    const struct rwkv_model_info *hp = &g->m->info;
    const size_t C = (size_t)hp->n_embd, F = (size_t)hp->n_ffn, D = (size_t)hp->lora_mix, Dd = (size_t)hp->lora_decay;
    const size_t t = (size_t)T, f = sizeof(float);
    /* floats per token of each, [0] for RWKV-6 and [1] for RWKV-7 (0: the architecture has none) */
    const int v7 = hp->arch == RWKV_ARCH_RWKV7;
    struct { struct rwkv_vk_buf *b; size_t n[2]; } a[] = {
        {&g->x, {C, C}}, {&g->xa, {C, C}}, {&g->sx, {C, C}}, {&g->xxx, {C, 0}}, {&g->lora, {N_MIX * D, 0}},
        {&g->mix, {N_MIX * C, 0}}, {&g->xm, {N_MIX * C, N_MIX7 * C}}, {&g->r, {C, C}}, {&g->k, {C, C}},
        {&g->v, {C, C}}, {&g->g, {C, C}}, {&g->w, {C, C}}, {&g->y, {C, C}}, {&g->dd, {Dd, (size_t)hp->lora_decay}},
        {&g->fk, {F, F}}, {&g->tmp, {C, C}}, {&g->a, {0, C}}, {&g->kk, {0, C}}, {&g->b, {0, C}}, {&g->vg, {0, C}},
        {&g->v_first, {0, C}}, {&g->la, {0, (size_t)hp->lora_iclr}}, {&g->lv, {0, (size_t)hp->lora_value}},
        {&g->lg, {0, (size_t)hp->lora_gate}},
        {&g->logits, {g->head ? (size_t)hp->n_vocab : 1, g->head ? (size_t)hp->n_vocab : 1}},
    };
    for (size_t i = 0; i < sizeof a / sizeof a[0]; i++)
        if (a[i].n[v7]) RWKV_TRY(rwkv_vk_buf_init(g->vk, a[i].b, a[i].n[v7] * t * f, RWKV_VK_DEVICE_LOCAL, err));
    RWKV_TRY(rwkv_vk_buf_init(g->vk, &g->slots, t * sizeof(uint32_t), RWKV_VK_HOST_VISIBLE, err));
    if (!g->x.map) RWKV_TRY(rwkv_vk_buf_init(g->vk, &g->x_io, g->x.size, RWKV_VK_HOST_CACHED, err));
    if (!g->logits.map) RWKV_TRY(rwkv_vk_buf_init(g->vk, &g->logits_io, g->logits.size, RWKV_VK_HOST_CACHED, err));
    if (g->v_first_out && !g->v_first.map)
        RWKV_TRY(rwkv_vk_buf_init(g->vk, &g->v_first_io, g->v_first.size, RWKV_VK_HOST_CACHED, err));
    RWKV_CHECK((g->x.map || g->x_io.map) && (g->logits.map || g->logits_io.map) && g->slots.map &&
                   (!g->v_first_out || g->v_first.map || g->v_first_io.map),
               RWKV_ERR_BACKEND, "Vulkan: no host-visible memory for the inputs and outputs");
    g->cap_T = T;
    return RWKV_OK;
fail:
    free_acts(g);
    return rc;
}

/* --------------------------------------------------------------- programs -- */

void rwkv_vk_programs_invalidate(struct rwkv_vk_model *g) {
    for (int i = 0; i < N_PROGRAMS; i++) g->programs[i].valid = 0, g->programs[i].used = 0;
}

static int programs_init(struct rwkv_vk_model *g, struct rwkv_error *err) {
    int rc = RWKV_OK;
    struct rwkv_vk *vk = g->vk;
    /* a forward records at most 32 dispatches per layer plus the head's */
    const uint32_t sets = (uint32_t)(32 * g->n_gpu + 8);
    const VkDescriptorPoolSize ps = {VK_DESCRIPTOR_TYPE_STORAGE_BUFFER, 8 * sets};
    const VkDescriptorPoolCreateInfo dpi = {.sType = VK_STRUCTURE_TYPE_DESCRIPTOR_POOL_CREATE_INFO, .maxSets = sets,
                                            .poolSizeCount = 1, .pPoolSizes = &ps};
    for (int i = 0; i < N_PROGRAMS; i++) {
        struct program *p = &g->programs[i];
        VkResult r = vk->f.vkCreateDescriptorPool(vk->dev, &dpi, NULL, &p->pool);
        RWKV_CHECK(r == VK_SUCCESS, RWKV_ERR_BACKEND, "Vulkan: vkCreateDescriptorPool failed: %s",
                   rwkv_vk_result_name(r));
        const VkCommandBufferAllocateInfo cai = {.sType = VK_STRUCTURE_TYPE_COMMAND_BUFFER_ALLOCATE_INFO,
                                                 .commandPool = vk->cmd_pool, .level = VK_COMMAND_BUFFER_LEVEL_PRIMARY,
                                                 .commandBufferCount = 1};
        r = vk->f.vkAllocateCommandBuffers(vk->dev, &cai, &p->cmd);
        RWKV_CHECK(r == VK_SUCCESS, RWKV_ERR_BACKEND, "Vulkan: vkAllocateCommandBuffers failed: %s",
                   rwkv_vk_result_name(r));
    }
fail:
    return rc;
}

static void programs_free(struct rwkv_vk_model *g) {
    struct rwkv_vk *vk = g->vk;
    for (int i = 0; i < N_PROGRAMS; i++) {
        struct program *p = &g->programs[i];
        if (p->cmd) vk->f.vkFreeCommandBuffers(vk->dev, vk->cmd_pool, 1, &p->cmd);
        if (p->pool) vk->f.vkDestroyDescriptorPool(vk->dev, p->pool, NULL);
        memset(p, 0, sizeof *p);
    }
}

/* The recorded program of this shape of forward, recording it (in place of the least
 * recently used) when there is none. */
static int program_for(struct rwkv_vk_model *g, int64_t T, int batch, int head, int all_logits, struct program **out,
                       struct rwkv_error *err) {
    int rc = RWKV_OK;
    struct program *p = NULL, *lru = &g->programs[0];
    for (int i = 0; i < N_PROGRAMS && !p; i++) {
        struct program *q = &g->programs[i];
        if (q->valid && q->T == T && q->batch == batch && q->head == head && q->all_logits == all_logits) p = q;
        else if (q->used < lru->used) lru = q; /* never used: 0 */
    }
    if (!p) {
        p = lru;
        p->valid = 0;
        RWKV_TRY(rwkv_vk_record_forward(g, p->cmd, p->pool, T, batch, head, all_logits, err));
        p->T = T, p->batch = batch, p->head = head, p->all_logits = all_logits, p->valid = 1;
    }
    p->used = ++g->clock;
    *out = p;
fail:
    return rc;
}

/* ------------------------------------------------------------ init, free -- */

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
    RWKV_CHECK(hp->arch == RWKV_ARCH_RWKV6 || hp->arch == RWKV_ARCH_RWKV7, RWKV_ERR_BACKEND,
               "the Vulkan backend does not run %s models", m->arch->name);
    g->arch = hp->arch == RWKV_ARCH_RWKV7 ? &rwkv_vk_arch7 : &rwkv_vk_arch6;
    g->v_first_out = hp->arch == RWKV_ARCH_RWKV7 && g->n_gpu < hp->n_layer;
    RWKV_CHECK(mtx_init(&g->lock, mtx_plain) == thrd_success, RWKV_ERR_BACKEND, "cannot create a lock");
    g->locked_init = 1;
    RWKV_TRY(rwkv_vk_model_pipe(g, P_LN, "layer_norm", 4, 4 * 4, NORM_WG, err));
    RWKV_TRY(rwkv_vk_model_pipe(g, P_SHIFT, "token_shift", 7, 8 * 4, 64, err));
    RWKV_TRY(rwkv_vk_model_pipe(g, P_STORE, "shift_store", 3, 6 * 4, 64, err));
    RWKV_TRY(rwkv_vk_model_pipe(g, P_LERP, "lerp", 5, 6 * 4, 64, err));
    RWKV_TRY(rwkv_vk_model_pipe(g, P_RES, "residual", 3, 5 * 4, 64, err));
    const float zero[4] = {0};
    RWKV_TRY(rwkv_vk_upload_vec(g, &g->dummy, zero, 4, err));
    RWKV_TRY(g->arch->upload(g, err));
    if (g->head) {
        RWKV_TRY(rwkv_vk_upload_vec(g, &g->lnout_w, m->lnout_w, C, err));
        RWKV_TRY(rwkv_vk_upload_vec(g, &g->lnout_b, m->lnout_b, C, err));
        RWKV_TRY(rwkv_vk_upload_mat(g, &g->head_w, &m->head, err));
    }
    RWKV_TRY(programs_init(g, err));
    *out = g;
    return RWKV_OK;
fail:
    rwkv_vk_model_free(g);
    return rc;
}

void rwkv_vk_model_free(struct rwkv_vk_model *g) {
    if (!g) return;
    struct rwkv_vk *vk = g->vk;
    /* states outlive the model and keep their value (where the device still answers: a
     * failed copy leaves a state its arrays as they were before it met the device) */
    for (uint32_t i = 0; i < g->n_slots; i++) {
        struct rwkv_state *s = g->owner_of[i];
        if (!s) continue;
        struct rwkv_error ignored;
        (void)rwkv_vk_state_out(g, s, &ignored);
        s->gpu = NULL, s->gpu_valid = s->gpu_newer = 0;
    }
    free(g->owner_of);
    rwkv_vk_buf_free(vk, &g->states);
    rwkv_vk_buf_free(vk, &g->states_io);
    if (g->locked_init) mtx_destroy(&g->lock);
    if (g->arch) g->arch->free(g);
    rwkv_vk_buf_free(vk, &g->lnout_w);
    rwkv_vk_buf_free(vk, &g->lnout_b);
    rwkv_vk_buf_free(vk, &g->dummy);
    rwkv_vk_buf_free(vk, &g->head_w.buf);
    free_acts(g);
    programs_free(g);
    for (int i = 0; i < N_PIPES; i++) rwkv_vk_pipe_free(vk, &g->pipes[i]);
    free(g);
}

/* ---------------------------------------------------------------- forward -- */

static int forward_locked(struct rwkv_vk_model *g, float *x, int64_t x_stride, int64_t T,
                          struct rwkv_state *const *states, int batch, float *logits, int all_logits, float *v_first,
                          struct rwkv_error *err) {
    int rc = RWKV_OK;
    const struct rwkv_model_info *hp = &g->m->info;
    const int64_t C = hp->n_embd, n_seq = batch ? T : 1;
    const int head = g->head && logits;
    RWKV_TRY(ensure_acts(g, T, err));
    RWKV_TRY(rwkv_vk_states_attach(g, states, n_seq, err)); /* before the program: it may move the slots */
    struct program *p;
    RWKV_TRY(program_for(g, T, batch, head, head && all_logits, &p, err));
    int copies = 0; /* the states' copies in, recorded into the context's one-off buffer */
    RWKV_TRY(rwkv_vk_states_in(g, states, n_seq, &copies, err));
    float *gx = g->x.map ? g->x.map : g->x_io.map;
    for (int64_t t = 0; t < T; t++) memcpy(gx + t * C, x + t * x_stride, (size_t)C * sizeof(float));
    const VkCommandBuffer cmds[2] = {g->vk->cmd, p->cmd};
    rc = rwkv_vk_submit_cmds(g->vk, copies ? 2 : 1, cmds + (copies ? 0 : 1), err);
    for (int64_t i = 0; i < n_seq; i++) /* after a failed submission the device copy is unknown */
        states[i]->gpu_valid = states[i]->gpu_newer = rc == RWKV_OK;
    if (rc != RWKV_OK) goto fail;
    for (int64_t t = 0; t < T; t++) memcpy(x + t * x_stride, gx + t * C, (size_t)C * sizeof(float));
    if (g->v_first_out && v_first) {
        const float *vf = g->v_first.map ? g->v_first.map : g->v_first_io.map;
        for (int64_t t = 0; t < T; t++) memcpy(v_first + t * x_stride, vf + t * C, (size_t)C * sizeof(float));
    }
    const int64_t n_out = all_logits ? T : 1;
    if (head)
        memcpy(logits, g->logits.map ? g->logits.map : g->logits_io.map, (size_t)(n_out * hp->n_vocab) * sizeof(float));
fail:
    return rc;
}

int rwkv_vk_model_forward(struct rwkv_vk_model *g, float *x, int64_t x_stride, int64_t T,
                          struct rwkv_state *const *states, int batch, float *logits, int all_logits, float *v_first,
                          struct rwkv_error *err) {
    mtx_lock(&g->lock);
    const int rc = forward_locked(g, x, x_stride, T, states, batch, logits, all_logits, v_first, err);
    mtx_unlock(&g->lock);
    return rc;
}

int rwkv_vk_model_layers(const struct rwkv_vk_model *g) { return g->n_gpu; }
int rwkv_vk_model_has_head(const struct rwkv_vk_model *g) { return g->head; }
#endif
