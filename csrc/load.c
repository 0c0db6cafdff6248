/* load.c — looking up a model's tensors by name, checking each shape and type on the way, so
 * that no forward pass ever has to distrust a size. Shared by every architecture's loader.
 */
#include <stdint.h>

#include "error.h"
#include "ggml_types.h"
#include "gguf.h"
#include "model.h"

int rwkv_load_find(struct rwkv_loader *ld, const char *name, int64_t a, int64_t b, int64_t c, int64_t d,
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

int rwkv_load_f32(struct rwkv_loader *ld, const char *name, int64_t a, int64_t b, int64_t c, int64_t d,
                  const float **out) {
    int rc = RWKV_OK;
    struct rwkv_error *err = ld->err;
    const struct rwkv_gguf_tensor *t = NULL;
    RWKV_TRY(rwkv_load_find(ld, name, a, b, c, d, &t));
    RWKV_CHECK(t->type == RWKV_TYPE_F32, RWKV_ERR_FORMAT, "%s: tensor '%s' has type %s, expected F32", ld->path,
               name, rwkv_type_name(t->type));
    RWKV_CHECK((uintptr_t)t->data % sizeof(float) == 0, RWKV_ERR_FORMAT,
               "%s: tensor '%s' data is not 4-byte aligned", ld->path, name);
    *out = t->data;
fail:
    return rc;
}

int rwkv_load_mat_type(struct rwkv_loader *ld, const char *name, uint32_t type) {
    int rc = RWKV_OK;
    struct rwkv_error *err = ld->err;
    RWKV_CHECK(rwkv_mat_type_supported(type), RWKV_ERR_FORMAT,
               "%s: tensor '%s' has type %s, which rwkvfast does not support for weights "
               "(F32, F16, BF16, Q4_0, Q4_1, Q5_0, Q5_1, Q8_0, Q2_K..Q6_K are)",
               ld->path, name, rwkv_type_name(type));
fail:
    return rc;
}

struct rwkv_mat rwkv_mat_view(uint32_t type, const void *data, int64_t n_rows, int64_t n_cols) {
    const struct rwkv_type_traits *tr = rwkv_type_traits_get(type);
    struct rwkv_mat m = {type, data, n_rows, n_cols, (size_t)(n_cols / tr->block_size) * tr->block_bytes};
    return m;
}

int rwkv_load_mat(struct rwkv_loader *ld, const char *name, int64_t n_cols, int64_t n_rows, struct rwkv_mat *out) {
    int rc = RWKV_OK;
    const struct rwkv_gguf_tensor *t = NULL;
    RWKV_TRY(rwkv_load_find(ld, name, n_cols, n_rows, 1, 1, &t));
    RWKV_TRY(rwkv_load_mat_type(ld, name, t->type));
    *out = rwkv_mat_view(t->type, t->data, n_rows, n_cols);
fail:
    return rc;
}

int rwkv_load_size(struct rwkv_loader *ld, const char *key, int64_t *out) {
    int rc = RWKV_OK;
    struct rwkv_error *err = ld->err;
    uint64_t v = 0;
    RWKV_TRY(rwkv_gguf_get_u64(ld->g, key, 1, &v, err));
    RWKV_CHECK(v >= 1 && v <= (1u << 24), RWKV_ERR_FORMAT, "%s: metadata '%s' is %llu, expected 1..2^24", ld->path,
               key, (unsigned long long)v);
    *out = (int64_t)v;
fail:
    return rc;
}
