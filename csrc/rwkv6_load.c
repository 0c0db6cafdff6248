/* rwkv6_load.c — turning a validated GGUF into a struct rwkv_model.
 *
 * Hyper-parameters come from the rwkv6.* keys; every tensor is looked up by
 * name and its ggml shape (ne) and type are checked against them, so the
 * forward pass never has to distrust a size. Weights stay in the mapping.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "error.h"
#include "ggml_types.h"
#include "gguf.h"
#include "rwkv6.h"
#include "vulkan/model.h"

#ifdef _OPENMP
#include <omp.h>
#else
static int omp_get_max_threads(void) { return 1; }
#endif

struct loader {
    const struct rwkv_gguf *g;
    const char *path;
    struct rwkv_error *err;
};

/* Finds `name` and checks its ne against [a, b, c, d]. */
static int find(struct loader *ld, const char *name, int64_t a, int64_t b, int64_t c, int64_t d,
                const struct rwkv_gguf_tensor **out) {
    int rc = RWKV_OK;
    struct rwkv_error *err = ld->err;
    const struct rwkv_gguf_tensor *t = rwkv_gguf_find_tensor(ld->g, name);
    RWKV_CHECK(t, RWKV_ERR_FORMAT, "%s: missing tensor '%s'", ld->path, name);
    RWKV_CHECK(t->ne[0] == a && t->ne[1] == b && t->ne[2] == c && t->ne[3] == d, RWKV_ERR_FORMAT,
               "%s: tensor '%s' has shape [%lld, %lld, %lld, %lld], expected [%lld, %lld, %lld, %lld]", ld->path,
               name, (long long)t->ne[0], (long long)t->ne[1], (long long)t->ne[2], (long long)t->ne[3],
               (long long)a, (long long)b, (long long)c, (long long)d);
    *out = t;
fail:
    return rc;
}

/* An f32 tensor of n elements in shape [a, b, c, d] (vectors, lerps, u). */
static int get_f32(struct loader *ld, const char *name, int64_t a, int64_t b, int64_t c, int64_t d,
                   const float **out) {
    int rc = RWKV_OK;
    struct rwkv_error *err = ld->err;
    const struct rwkv_gguf_tensor *t = NULL;
    RWKV_TRY(find(ld, name, a, b, c, d, &t));
    RWKV_CHECK(t->type == RWKV_TYPE_F32, RWKV_ERR_FORMAT, "%s: tensor '%s' has type %s, expected F32", ld->path,
               name, rwkv_type_name(t->type));
    RWKV_CHECK((uintptr_t)t->data % sizeof(float) == 0, RWKV_ERR_FORMAT,
               "%s: tensor '%s' data is not 4-byte aligned", ld->path, name);
    *out = t->data;
fail:
    return rc;
}

static int check_mat_type(struct loader *ld, const char *name, uint32_t type) {
    int rc = RWKV_OK;
    struct rwkv_error *err = ld->err;
    RWKV_CHECK(rwkv_mat_type_supported(type), RWKV_ERR_FORMAT,
               "%s: tensor '%s' has type %s, which rwkvfast does not support for weights "
               "(F32, F16, BF16, Q4_0, Q4_1, Q5_0, Q5_1, Q8_0, Q2_K..Q6_K are)",
               ld->path, name, rwkv_type_name(type));
fail:
    return rc;
}

static struct rwkv_mat mat_view(uint32_t type, const void *data, int64_t n_rows, int64_t n_cols) {
    const struct rwkv_type_traits *tr = rwkv_type_traits_get(type);
    struct rwkv_mat m = {type, data, n_rows, n_cols, (size_t)(n_cols / tr->block_size) * tr->block_bytes};
    return m;
}

/* A matrix with ggml ne = [n_cols, n_rows], i.e. W (n_rows, n_cols). */
static int get_mat(struct loader *ld, const char *name, int64_t n_cols, int64_t n_rows, struct rwkv_mat *out) {
    int rc = RWKV_OK;
    const struct rwkv_gguf_tensor *t = NULL;
    RWKV_TRY(find(ld, name, n_cols, n_rows, 1, 1, &t));
    RWKV_TRY(check_mat_type(ld, name, t->type));
    *out = mat_view(t->type, t->data, n_rows, n_cols);
fail:
    return rc;
}

static int read_hparams(struct loader *ld, struct rwkv_model_info *hp) {
    int rc = RWKV_OK;
    struct rwkv_error *err = ld->err;
    const struct rwkv_gguf *g = ld->g;
    struct rwkv_str arch;
    uint64_t v[7] = {0, 0, 0, 0, 0, 0, 0};
    RWKV_TRY(rwkv_gguf_get_str(g, "general.architecture", &arch, err));
    RWKV_CHECK(arch.len == 5 && memcmp(arch.ptr, "rwkv6", 5) == 0, RWKV_ERR_FORMAT,
               "%s: architecture '%.*s' is not supported (rwkvfast runs 'rwkv6' models)", ld->path,
               (int)(arch.len > 64 ? 64 : arch.len), arch.ptr);
    static const char *const keys[] = {"rwkv6.block_count",        "rwkv6.embedding_length",
                                       "rwkv6.feed_forward_length", "rwkv6.wkv.head_size",
                                       "rwkv6.time_mix_extra_dim",  "rwkv6.time_decay_extra_dim"};
    for (int i = 0; i < 6; i++) {
        RWKV_TRY(rwkv_gguf_get_u64(g, keys[i], 1, &v[i], err));
        /* 2^24 bounds every product of two sizes well inside int64 */
        RWKV_CHECK(v[i] >= 1 && v[i] <= (1u << 24), RWKV_ERR_FORMAT, "%s: metadata '%s' is %llu, expected 1..2^24",
                   ld->path, keys[i], (unsigned long long)v[i]);
    }
    RWKV_TRY(rwkv_gguf_get_u64(g, "rwkv6.rescale_every_n_layers", 0, &v[6], err));
    hp->n_layer = (int64_t)v[0];
    hp->n_embd = (int64_t)v[1];
    hp->n_ffn = (int64_t)v[2];
    hp->head_size = (int64_t)v[3];
    hp->lora_mix = (int64_t)v[4];
    hp->lora_decay = (int64_t)v[5];
    hp->rescale_every = (int64_t)(v[6] > (1u << 24) ? 0 : v[6]);
    RWKV_CHECK(hp->n_embd % hp->head_size == 0, RWKV_ERR_FORMAT,
               "%s: embedding_length %lld is not a multiple of wkv.head_size %lld", ld->path,
               (long long)hp->n_embd, (long long)hp->head_size);
    hp->n_head = hp->n_embd / hp->head_size;
    hp->layer_norm_eps = 1e-5f;
    RWKV_TRY(rwkv_gguf_get_f32(g, "rwkv6.attention.layer_norm_epsilon", 0, &hp->layer_norm_eps, err));
    RWKV_CHECK(hp->layer_norm_eps > 0.0f && hp->layer_norm_eps < 1.0f, RWKV_ERR_FORMAT,
               "%s: layer_norm_epsilon %g is out of range", ld->path, (double)hp->layer_norm_eps);
fail:
    return rc;
}

static int load_layer(struct loader *ld, const struct rwkv_model_info *hp, int il, struct rwkv_layer *L) {
    int rc = RWKV_OK;
    struct rwkv_error *err = ld->err;
    const int64_t C = hp->n_embd, F = hp->n_ffn, D = hp->lora_mix, Dd = hp->lora_decay;
    const int64_t H = hp->n_head, N = hp->head_size;
    char name[128];
#define NAME(suffix) (snprintf(name, sizeof name, "blk.%d." suffix, il), name)
    RWKV_TRY(get_f32(ld, NAME("attn_norm.weight"), C, 1, 1, 1, &L->ln1_w));
    RWKV_TRY(get_f32(ld, NAME("attn_norm.bias"), C, 1, 1, 1, &L->ln1_b));
    RWKV_TRY(get_f32(ld, NAME("attn_norm_2.weight"), C, 1, 1, 1, &L->ln2_w));
    RWKV_TRY(get_f32(ld, NAME("attn_norm_2.bias"), C, 1, 1, 1, &L->ln2_b));
    RWKV_TRY(get_f32(ld, NAME("time_mix_lerp_x.weight"), C, 1, 1, 1, &L->lerp_x));
    if (rwkv_gguf_find_tensor(ld->g, NAME("time_mix_lerp_fused.weight"))) {
        const float *fused;
        RWKV_TRY(get_f32(ld, name, C, 1, 1, N_MIX, &fused));
        for (int i = 0; i < N_MIX; i++) L->lerp[i] = fused + i * C;
    } else { /* older files: one tensor per mix */
        static const char *const sep[N_MIX] = {"w", "k", "v", "r", "g"};
        for (int i = 0; i < N_MIX; i++) {
            snprintf(name, sizeof name, "blk.%d.time_mix_lerp_%s.weight", il, sep[i]);
            RWKV_TRY(get_f32(ld, name, C, 1, 1, 1, &L->lerp[i]));
        }
    }
    RWKV_TRY(get_mat(ld, NAME("time_mix_w1.weight"), C, N_MIX * D, &L->mix_w1));
    {
        const struct rwkv_gguf_tensor *t = NULL;
        RWKV_TRY(find(ld, NAME("time_mix_w2.weight"), D, C, N_MIX, 1, &t));
        RWKV_TRY(check_mat_type(ld, name, t->type));
        for (int i = 0; i < N_MIX; i++) {
            L->mix_w2[i] = mat_view(t->type, NULL, C, D);
            L->mix_w2[i].data = (const char *)t->data + (size_t)i * (size_t)C * L->mix_w2[i].row_bytes;
        }
    }
    RWKV_TRY(get_f32(ld, NAME("time_mix_decay.weight"), C, 1, 1, 1, &L->decay));
    RWKV_TRY(get_mat(ld, NAME("time_mix_decay_w1.weight"), C, Dd, &L->decay_w1));
    RWKV_TRY(get_mat(ld, NAME("time_mix_decay_w2.weight"), Dd, C, &L->decay_w2));
    RWKV_TRY(get_f32(ld, NAME("time_mix_first.weight"), N, H, 1, 1, &L->first));
    RWKV_TRY(get_mat(ld, NAME("time_mix_receptance.weight"), C, C, &L->att_r));
    RWKV_TRY(get_mat(ld, NAME("time_mix_key.weight"), C, C, &L->att_k));
    RWKV_TRY(get_mat(ld, NAME("time_mix_value.weight"), C, C, &L->att_v));
    RWKV_TRY(get_mat(ld, NAME("time_mix_gate.weight"), C, C, &L->att_g));
    RWKV_TRY(get_mat(ld, NAME("time_mix_output.weight"), C, C, &L->att_o));
    RWKV_TRY(get_f32(ld, NAME("time_mix_ln.weight"), C, 1, 1, 1, &L->lnx_w));
    RWKV_TRY(get_f32(ld, NAME("time_mix_ln.bias"), C, 1, 1, 1, &L->lnx_b));
    RWKV_TRY(get_f32(ld, NAME("channel_mix_lerp_k.weight"), C, 1, 1, 1, &L->ffn_lerp_k));
    RWKV_TRY(get_f32(ld, NAME("channel_mix_lerp_r.weight"), C, 1, 1, 1, &L->ffn_lerp_r));
    RWKV_TRY(get_mat(ld, NAME("channel_mix_key.weight"), C, F, &L->ffn_k));
    RWKV_TRY(get_mat(ld, NAME("channel_mix_receptance.weight"), C, C, &L->ffn_r));
    RWKV_TRY(get_mat(ld, NAME("channel_mix_value.weight"), F, C, &L->ffn_v));
#undef NAME
fail:
    (void)err;
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
    struct loader ld = {m->gguf, path, err};
    struct rwkv_model_info *hp = &m->info;
    RWKV_TRY(read_hparams(&ld, hp));

    const struct rwkv_gguf_tensor *emb = rwkv_gguf_find_tensor(m->gguf, "token_embd.weight");
    RWKV_CHECK(emb, RWKV_ERR_FORMAT, "%s: missing tensor 'token_embd.weight'", path);
    hp->n_vocab = emb->ne[1];
    RWKV_CHECK(hp->n_vocab <= (1 << 24), RWKV_ERR_FORMAT, "%s: vocabulary of %lld tokens is too large", path,
               (long long)hp->n_vocab);
    const int64_t C = hp->n_embd, V = hp->n_vocab;
    RWKV_TRY(get_mat(&ld, "token_embd.weight", C, V, &m->emb));
    RWKV_TRY(get_f32(&ld, "token_embd_norm.weight", C, 1, 1, 1, &m->ln0_w));
    RWKV_TRY(get_f32(&ld, "token_embd_norm.bias", C, 1, 1, 1, &m->ln0_b));
    RWKV_TRY(get_f32(&ld, "output_norm.weight", C, 1, 1, 1, &m->lnout_w));
    RWKV_TRY(get_f32(&ld, "output_norm.bias", C, 1, 1, 1, &m->lnout_b));
    RWKV_TRY(get_mat(&ld, "output.weight", C, V, &m->head));

    m->layers = calloc((size_t)hp->n_layer, sizeof *m->layers);
    RWKV_CHECK(m->layers, RWKV_ERR_NOMEM, "out of memory");
    for (int il = 0; il < hp->n_layer; il++) RWKV_TRY(load_layer(&ld, hp, il, &m->layers[il]));

    hp->weight_type = m->layers[0].att_k.type;
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
    free(m);
}

void rwkv_model_get_info(const struct rwkv_model *m, struct rwkv_model_info *info) { *info = m->info; }
const struct rwkv_gguf *rwkv_model_gguf(const struct rwkv_model *m) { return m->gguf; }
int rwkv_model_n_threads(const struct rwkv_model *m) { return m->n_threads; }
int64_t rwkv_model_n_batch(const struct rwkv_model *m) { return m->n_batch; }

int rwkv_model_set_n_batch(struct rwkv_model *m, int64_t n_batch, struct rwkv_error *err) {
    int rc = RWKV_OK;
    RWKV_CHECK(n_batch >= 1 && n_batch <= (1 << 20), RWKV_ERR_FORMAT, "n_batch must be in 1..%d, got %lld",
               1 << 20, (long long)n_batch);
    m->n_batch = n_batch;
fail:
    return rc;
}
