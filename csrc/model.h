/* model.h — a loaded model of any architecture, and the table that tells them apart.
 *
 * What every RWKV generation shares lives here and in model.c: the GGUF mapping, the
 * embedding, ln0, ln_out and the head, the thread and chunk settings, the Vulkan copy, and the
 * driver that checks a forward's inputs and cuts it into chunks. Each architecture adds a row
 * to the table (model.c): its loader (rwkvN_load.c: hyper-parameters and the layers' tensors)
 * and its forward over one chunk (rwkvN.c), so a new generation is a row and two files.
 * Glossary: C n_embd, V vocab, T tokens of a chunk.
 */
#ifndef RWKV_MODEL_H
#define RWKV_MODEL_H

#include "matmul.h"
#include "rwkvfast.h"

struct rwkv_layer;   /* RWKV-6's, rwkv6.h */
struct rwkv7_layer;  /* RWKV-7's, rwkv7.h */
struct rwkv_loader;

struct rwkv_arch {
    const char *name; /* general.architecture */
    int id;           /* RWKV_ARCH_* */
    /* hyper-parameters (the rwkvN.* keys) into m->info, then every layer's tensors, checked */
    int (*load)(struct rwkv_loader *ld, struct rwkv_model *m);
    /* bytes of scratch a chunk of T tokens needs (kept in the state between calls) */
    size_t (*work_bytes)(const struct rwkv_model_info *hp, int64_t T);
    /* T tokens through the model; batch: token t is fed to batch[t] (else all to st); out:
     * the last token's logits, or every token's (all_logits, rows V apart), or none (NULL).
     * `work` is work_bytes(T) of 64-byte aligned scratch. */
    int (*chunk)(const struct rwkv_model *m, void *work, const int32_t *tokens, int64_t T,
                 struct rwkv_state *st, struct rwkv_state *const *batch, float *out, int all_logits,
                 struct rwkv_error *err);
};

struct rwkv_model {
    const struct rwkv_arch *arch;
    struct rwkv_gguf *gguf;
    struct rwkv_model_info info;
    /* atomic: rwkv_model_set_n_threads may change it between (or beside) forwards */
    _Atomic int n_threads;
    int64_t n_batch; /* tokens per forward chunk: bounds the scratch of long prompts */
    struct rwkv_mat emb;  /* (V, C) */
    const float *ln0_w, *ln0_b, *lnout_w, *lnout_b;
    struct rwkv_mat head; /* (V, C) */
    struct rwkv_layer *layers;    /* RWKV-6 */
    struct rwkv7_layer *layers7;  /* RWKV-7 */
    /* Vulkan offload (rwkv_model_offload): the device and its copy of the first layers */
    struct rwkv_vk *vk;
    struct rwkv_vk_model *gpu;
};

/* What a chunk does before its CPU layers: the embedding x[t] = ln0(emb[tokens[t]]) (rows
 * x_stride apart; tmp: one row of C floats), then, when the model has
 * layers on the Vulkan device, those layers (states: st, or batch[t] per token). *first_cpu:
 * the first layer left to the CPU; *done: the device ran the head too (out holds the logits).
 * v_first: where RWKV-7's CPU layers want layer 0's values (NULL for RWKV-6). */
int rwkv_chunk_begin(const struct rwkv_model *m, const int32_t *tokens, int64_t T, float *x, int64_t x_stride,
                     float *tmp, struct rwkv_state *st, struct rwkv_state *const *batch, float *out, int all_logits,
                     float *v_first, int64_t *first_cpu, int *done, struct rwkv_error *err);
/* ... and after them: ln_out into xa and the head, for the last token or all (rows V apart). */
void rwkv_chunk_head(const struct rwkv_model *m, const float *x, float *xa, int64_t x_stride, int64_t T, float *out,
                     int all_logits, struct rwkv_xq *xq);
/* Row stride (floats) of a [T][dim] scratch vector: dim rounded up to 16 floats, plus 16 more
 * when that is a multiple of 1024 (4 KiB): rows 4 KiB apart fall into the same L1 sets, and a
 * GEMM block reading 4 tokens' rows next to 4 weight rows then evicts its own data. */
int64_t rwkv_row_stride(int64_t dim);

/* ---- loading: every tensor looked up by name, its shape and type checked ---- */

struct rwkv_loader {
    const struct rwkv_gguf *g;
    const char *path;
    struct rwkv_error *err;
};

/* `name` with ggml ne == [a, b, c, d]. */
int rwkv_load_find(struct rwkv_loader *ld, const char *name, int64_t a, int64_t b, int64_t c, int64_t d,
                   const struct rwkv_gguf_tensor **out);
/* An F32 tensor of shape [a, b, c, d] (vectors, lerps). */
int rwkv_load_f32(struct rwkv_loader *ld, const char *name, int64_t a, int64_t b, int64_t c, int64_t d,
                  const float **out);
/* A matrix of any supported weight type with ggml ne = [n_cols, n_rows], i.e. W (n_rows, n_cols). */
int rwkv_load_mat(struct rwkv_loader *ld, const char *name, int64_t n_cols, int64_t n_rows, struct rwkv_mat *out);
int rwkv_load_mat_type(struct rwkv_loader *ld, const char *name, uint32_t type);
struct rwkv_mat rwkv_mat_view(uint32_t type, const void *data, int64_t n_rows, int64_t n_cols);
/* A size from the metadata, required, in 1..2^24 (so products of two stay far inside int64). */
int rwkv_load_size(struct rwkv_loader *ld, const char *key, int64_t *out);

#endif
