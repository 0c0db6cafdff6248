/* model.c — opening a model of any architecture, and the forward driver they share.
 *
 * general.architecture picks a row of the table below; the row's loader reads the rest. The
 * driver checks a forward's inputs (token ids, state shapes), brings states back from another
 * model's GPU, and feeds the tokens in chunks of n_batch through the row's chunk function,
 * whose scratch lives in the state, so decoding allocates nothing per token.
 */
#include <stdlib.h>
#include <string.h>

#include "error.h"
#include "gguf.h"
#include "model.h"
#include "ops.h"
#include "vulkan/model.h"

#ifdef _OPENMP
#include <omp.h>
#else
static int omp_get_max_threads(void) { return 1; }
#endif

extern const struct rwkv_arch rwkv6_arch, rwkv7_arch;
static const struct rwkv_arch *const ARCHS[] = {&rwkv6_arch, &rwkv7_arch};
#define N_ARCHS (sizeof ARCHS / sizeof ARCHS[0])

/* A chunk's scratch past this many tokens is freed after the call, so a state that once read a
 * long prompt does not keep a prompt-sized buffer. */
#define SCRATCH_KEEP_TOKENS 32

int64_t rwkv_row_stride(int64_t dim) {
    const int64_t s = (dim + 15) & ~(int64_t)15;
    return s % 1024 ? s : s + 16;
}

static void embed(const struct rwkv_model *m, const int32_t *tokens, int64_t T, float *x, int64_t x_stride,
                  float *tmp) {
    const struct rwkv_model_info *hp = &m->info;
    for (int64_t t = 0; t < T; t++) {
        rwkv_mat_row_f32(&m->emb, tokens[t], tmp);
        rwkv_layer_norm(tmp, x + t * x_stride, m->ln0_w, m->ln0_b, hp->n_embd, hp->layer_norm_eps);
    }
}

int rwkv_chunk_begin(const struct rwkv_model *m, const int32_t *tokens, int64_t T, float *x, int64_t x_stride,
                     float *tmp, struct rwkv_state *st, struct rwkv_state *const *batch, float *out, int all_logits,
                     float *v_first, int64_t *first_cpu, int *done, struct rwkv_error *err) {
    embed(m, tokens, T, x, x_stride, tmp);
    *first_cpu = 0, *done = 0;
    if (!m->gpu) return RWKV_OK;
    int head = 0;
    *first_cpu = rwkv_model_gpu_layers(m, &head);
    *done = head;
    return rwkv_vk_model_forward(m->gpu, x, x_stride, T, batch ? batch : &st, batch != NULL, head ? out : NULL,
                                 all_logits, v_first, err);
}

void rwkv_chunk_head(const struct rwkv_model *m, const float *x, float *xa, int64_t x_stride, int64_t T, float *out,
                     int all_logits, struct rwkv_xq *xq) {
    const struct rwkv_model_info *hp = &m->info;
    const int64_t t0 = all_logits ? 0 : T - 1;
    for (int64_t t = t0; t < T; t++)
        rwkv_layer_norm(x + t * x_stride, xa + t * x_stride, m->lnout_w, m->lnout_b, hp->n_embd, hp->layer_norm_eps);
    const struct rwkv_gemv_job head = {&m->head, xa + t0 * x_stride, out, RWKV_POST_NONE, NULL, T - t0, x_stride,
                                       hp->n_vocab};
    rwkv_matmul_jobs(1, &head, xq, m->n_threads);
}

static int find_arch(struct rwkv_loader *ld, const struct rwkv_arch **out) {
    int rc = RWKV_OK;
    struct rwkv_error *err = ld->err;
    struct rwkv_str name;
    RWKV_TRY(rwkv_gguf_get_str(ld->g, "general.architecture", &name, err));
    for (size_t i = 0; i < N_ARCHS; i++)
        if (name.len == strlen(ARCHS[i]->name) && memcmp(name.ptr, ARCHS[i]->name, name.len) == 0) {
            *out = ARCHS[i];
            return RWKV_OK;
        }
    RWKV_CHECK(0, RWKV_ERR_FORMAT,
               "%s: architecture '%.*s' is not supported (rwkvfast runs 'rwkv6' and 'rwkv7' models)",
               ld->path, (int)(name.len > 64 ? 64 : name.len), name.ptr);
fail:
    return rc;
}

int rwkv_model_init(struct rwkv_model **out, const char *path, int n_threads, struct rwkv_error *err) {
    return rwkv_model_init_ex(out, path, n_threads, 0, err);
}

int rwkv_model_init_ex(struct rwkv_model **out, const char *path, int n_threads, int gguf_flags,
                       struct rwkv_error *err) {
    int rc = RWKV_OK;
    struct rwkv_model *m = calloc(1, sizeof *m);
    *out = NULL;
    RWKV_CHECK(m, RWKV_ERR_NOMEM, "out of memory");
    RWKV_TRY(rwkv_gguf_open_ex(&m->gguf, path, gguf_flags, err));
    struct rwkv_loader ld = {m->gguf, path, err};
    struct rwkv_model_info *hp = &m->info;
    RWKV_TRY(find_arch(&ld, &m->arch));
    hp->arch = m->arch->id;

    const struct rwkv_gguf_tensor *emb = rwkv_gguf_find_tensor(m->gguf, "token_embd.weight");
    RWKV_CHECK(emb, RWKV_ERR_FORMAT, "%s: missing tensor 'token_embd.weight'", path);
    hp->n_vocab = emb->ne[1];
    RWKV_CHECK(hp->n_vocab >= 1 && hp->n_vocab <= (1 << 24), RWKV_ERR_FORMAT,
               "%s: vocabulary of %lld tokens is out of range", path, (long long)hp->n_vocab);
    RWKV_TRY(m->arch->load(&ld, m));
    const int64_t C = hp->n_embd, V = hp->n_vocab;
    RWKV_TRY(rwkv_load_mat(&ld, "token_embd.weight", C, V, &m->emb));
    RWKV_TRY(rwkv_load_f32(&ld, "token_embd_norm.weight", C, 1, 1, 1, &m->ln0_w));
    RWKV_TRY(rwkv_load_f32(&ld, "token_embd_norm.bias", C, 1, 1, 1, &m->ln0_b));
    RWKV_TRY(rwkv_load_f32(&ld, "output_norm.weight", C, 1, 1, 1, &m->lnout_w));
    RWKV_TRY(rwkv_load_f32(&ld, "output_norm.bias", C, 1, 1, 1, &m->lnout_b));
    RWKV_TRY(rwkv_load_mat(&ld, "output.weight", C, V, &m->head));

    hp->file_size = rwkv_gguf_file_size(m->gguf);
    hp->weight_bytes = 0;
    for (uint64_t i = 0; i < rwkv_gguf_tensor_count(m->gguf); i++)
        hp->weight_bytes += rwkv_gguf_tensor_at(m->gguf, i)->nbytes;
    m->n_threads = n_threads > 0 ? n_threads : omp_get_max_threads();
    m->n_batch = RWKV_DEFAULT_N_BATCH;
    *out = m;
    return RWKV_OK;
fail:
    rwkv_model_free(m);
    return rc;
}

int rwkv_model_offload(struct rwkv_model *m, int device, int n_gpu_layers, struct rwkv_error *err) {
    int rc = RWKV_OK;
    RWKV_CHECK(!m->vk, RWKV_ERR_FORMAT, "the model is already offloaded");
    RWKV_CHECK(n_gpu_layers > 0, RWKV_ERR_FORMAT, "n_gpu_layers must be positive, got %d", n_gpu_layers);
    RWKV_TRY(rwkv_vk_init(&m->vk, device, err));
    RWKV_TRY(rwkv_vk_model_init(&m->gpu, m->vk, m, n_gpu_layers, err));
    return RWKV_OK;
fail:
    rwkv_vk_model_free(m->gpu);
    rwkv_vk_free(m->vk);
    m->gpu = NULL, m->vk = NULL;
    return rc;
}

int rwkv_model_gpu_layers(const struct rwkv_model *m, int *head) {
    *head = m->gpu ? rwkv_vk_model_has_head(m->gpu) : 0;
    return m->gpu ? rwkv_vk_model_layers(m->gpu) : 0;
}

const struct rwkv_vk *rwkv_model_vk(const struct rwkv_model *m) { return m->vk; }

void rwkv_model_free(struct rwkv_model *m) {
    if (!m) return;
    rwkv_vk_model_free(m->gpu);
    rwkv_vk_free(m->vk);
    rwkv_gguf_close(m->gguf);
    free(m->layers);
    free(m->layers7);
    free(m);
}

void rwkv_model_get_info(const struct rwkv_model *m, struct rwkv_model_info *info) { *info = m->info; }
const char *rwkv_model_arch_name(const struct rwkv_model *m) { return m->arch->name; }
const struct rwkv_gguf *rwkv_model_gguf(const struct rwkv_model *m) { return m->gguf; }
int rwkv_model_n_threads(const struct rwkv_model *m) { return m->n_threads; }

int rwkv_model_set_n_threads(struct rwkv_model *m, int n_threads, struct rwkv_error *err) {
    int rc = RWKV_OK;
    RWKV_CHECK(n_threads >= 1 && n_threads <= 1024, RWKV_ERR_FORMAT, "n_threads must be in 1..1024, got %d",
               n_threads);
    m->n_threads = n_threads;
fail:
    return rc;
}
int64_t rwkv_model_n_batch(const struct rwkv_model *m) { return m->n_batch; }

int rwkv_model_set_n_batch(struct rwkv_model *m, int64_t n_batch, struct rwkv_error *err) {
    int rc = RWKV_OK;
    RWKV_CHECK(n_batch >= 1 && n_batch <= (1 << 20), RWKV_ERR_FORMAT, "n_batch must be in 1..%d, got %lld",
               1 << 20, (long long)n_batch);
    m->n_batch = n_batch;
fail:
    return rc;
}

/* ---- the forward driver ---- */

/* A state last run on another model's device comes back to its arrays first: this model
 * reads them (its CPU layers), or its own device copies them in. */
static int claim(const struct rwkv_model *m, struct rwkv_state *st, struct rwkv_error *err) {
    int rc = RWKV_OK;
    if (st->gpu && st->gpu != m->gpu) {
        RWKV_TRY(rwkv_state_sync(st, 0, err));
        rwkv_vk_model_release(st->gpu, st);
    }
fail:
    return rc;
}

/* Whether a state has this model's shape and architecture (0: a state made by shape alone). */
static int fits(const struct rwkv_model_info *hp, const struct rwkv_state *st) {
    return st->n_layer == hp->n_layer && st->n_embd == hp->n_embd && st->n_head == hp->n_head &&
           st->head_size == hp->head_size && (st->arch == 0 || st->arch == hp->arch);
}

/* The state's scratch, grown to what a chunk of T tokens needs. */
static int bind_work(const struct rwkv_model *m, struct rwkv_state *st, int64_t T, void **work) {
    const size_t need = (m->arch->work_bytes(&m->info, T) + 63) & ~(size_t)63;
    if (st->scratch_bytes < need) {
        free(st->scratch);
        st->scratch_bytes = 0;
        st->scratch = aligned_alloc(64, need);
        if (!st->scratch) return RWKV_ERR_NOMEM;
        st->scratch_bytes = need;
    }
    *work = st->scratch;
    return RWKV_OK;
}

static void release_work(struct rwkv_state *st) {
    free(st->scratch);
    st->scratch = NULL;
    st->scratch_bytes = 0;
}

static int check_tokens(const struct rwkv_model_info *hp, const int32_t *tokens, int64_t n, const char *what,
                        struct rwkv_error *err) {
    int rc = RWKV_OK;
    for (int64_t t = 0; t < n; t++)
        RWKV_CHECK(tokens[t] >= 0 && tokens[t] < hp->n_vocab, RWKV_ERR_FORMAT,
                   "token %d %s %lld is outside the vocabulary (0..%lld)", tokens[t], what, (long long)t,
                   (long long)hp->n_vocab - 1);
fail:
    return rc;
}

int rwkv_model_forward(const struct rwkv_model *m, const int32_t *tokens, int64_t n_tokens,
                       struct rwkv_state *state, float *logits, int all_logits, struct rwkv_error *err) {
    int rc = RWKV_OK;
    const struct rwkv_model_info *hp = &m->info;
    RWKV_CHECK(n_tokens > 0, RWKV_ERR_FORMAT, "forward needs at least one token");
    RWKV_CHECK(fits(hp, state), RWKV_ERR_FORMAT,
               "state shape (%lld layers x %lld) does not match the model (%s, %lld layers x %lld)",
               (long long)state->n_layer, (long long)state->n_embd, m->arch->name, (long long)hp->n_layer,
               (long long)hp->n_embd);
    RWKV_TRY(check_tokens(hp, tokens, n_tokens, "at position", err));
    RWKV_TRY(claim(m, state, err));
    const int64_t T = n_tokens < m->n_batch ? n_tokens : m->n_batch;
    void *work = NULL;
    RWKV_CHECK(bind_work(m, state, T, &work) == RWKV_OK, RWKV_ERR_NOMEM, "out of memory for the forward scratch");
    for (int64_t t = 0; t < n_tokens; t += T) {
        const int64_t n = n_tokens - t < T ? n_tokens - t : T;
        float *out = NULL;
        if (logits && all_logits) out = logits + t * hp->n_vocab;
        else if (logits && t + n == n_tokens) out = logits;
        RWKV_TRY(m->arch->chunk(m, work, tokens + t, n, state, NULL, out, all_logits, err));
    }
    if (T > SCRATCH_KEEP_TOKENS) release_work(state);
fail:
    return rc;
}

int rwkv_model_forward_batch(const struct rwkv_model *m, const int32_t *tokens, int64_t n_seq,
                             struct rwkv_state *const *states, float *logits, struct rwkv_error *err) {
    int rc = RWKV_OK;
    const struct rwkv_model_info *hp = &m->info;
    RWKV_CHECK(n_seq > 0, RWKV_ERR_FORMAT, "a batch needs at least one sequence");
    for (int64_t b = 0; b < n_seq; b++) {
        const struct rwkv_state *st = states[b];
        RWKV_CHECK(st && fits(hp, st), RWKV_ERR_FORMAT, "state %lld does not match the model's shape", (long long)b);
        for (int64_t c = 0; c < b; c++)
            RWKV_CHECK(states[c] != st, RWKV_ERR_FORMAT, "sequences %lld and %lld share one state", (long long)c,
                       (long long)b);
    }
    RWKV_TRY(check_tokens(hp, tokens, n_seq, "of sequence", err));
    for (int64_t b = 0; b < n_seq; b++) RWKV_TRY(claim(m, states[b], err));
    const int64_t T = n_seq < m->n_batch ? n_seq : m->n_batch;
    void *work = NULL;
    RWKV_CHECK(bind_work(m, states[0], T, &work) == RWKV_OK, RWKV_ERR_NOMEM, "out of memory for the forward scratch");
    for (int64_t b = 0; b < n_seq; b += T) {
        const int64_t n = n_seq - b < T ? n_seq - b : T;
        RWKV_TRY(m->arch->chunk(m, work, tokens + b, n, states[0], states + b,
                                logits ? logits + b * hp->n_vocab : NULL, 1, err));
    }
    if (T > SCRATCH_KEEP_TOKENS) release_work(states[0]);
fail:
    return rc;
}
