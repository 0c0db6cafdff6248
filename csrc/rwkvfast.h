/* rwkvfast.h — the one public C header of the rwkvfast engine.
 *
 * Conventions (apply to every function below unless it says otherwise):
 *  - Functions that can fail return an `int` status: RWKV_OK (0) or a negative
 *    `enum rwkv_status`, and fill the caller-owned `struct rwkv_error` (which may
 *    be NULL when the caller does not want a message). Nothing is printed and
 *    nothing aborts on bad input.
 *  - `_init` functions allocate an object and hand it to the caller through an
 *    out-pointer; the caller frees it with the matching `_free` (NULL is a no-op).
 *  - Objects are immutable after `_init` unless a function says it mutates, so a
 *    Model and a Tokenizer may be shared by threads; a State belongs to one
 *    thread at a time.
 *
 * Dimension names used in comments: T tokens, C n_embd, H heads, N head_size,
 * F ffn size, V vocab, L layers.
 */
#ifndef RWKVFAST_H
#define RWKVFAST_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

/* ---------------------------------------------------------------- errors -- */

enum rwkv_status {
    RWKV_OK = 0,
    RWKV_ERR_FORMAT = -1,  /* the file or an argument is malformed -> ValueError */
    RWKV_ERR_IO = -2,      /* open/mmap/read failed               -> OSError    */
    RWKV_ERR_NOMEM = -3,   /* allocation failed                   -> MemoryError */
    RWKV_ERR_BACKEND = -4, /* internal / backend failure          -> RuntimeError */
};

struct rwkv_error {
    int code;
    char msg[256];
};

/* A byte string that is not NUL-terminated (GGUF strings, tokens). */
struct rwkv_str {
    const char *ptr;
    uint64_t len;
};

/* ------------------------------------------------------------------ cpu -- */

/* Each level includes the ones below; AVX512_VNNI adds integer dot-product kernels, AMX tile
 * kernels (where CPUID, XCR0 and Linux grant the tiles). AMX_EMULATED is no CPU's level: the amx
 * kernels with their tile instructions emulated in C, for tests on any AVX512-VNNI machine. */
enum rwkv_cpu_level {
    RWKV_CPU_SCALAR = 0,
    RWKV_CPU_AVX2 = 1,
    RWKV_CPU_AVX512 = 2,
    RWKV_CPU_AVX512_VNNI = 3,
    RWKV_CPU_AMX = 4,
    RWKV_CPU_AMX_EMULATED = 5
};

/* The level the dispatch table was built for: the best the CPU and OS support,
 * capped by the environment variable RWKVFAST_CPU=scalar|avx2|avx512|avx512vnni|amx read
 * at the first call. Thread-safe after the first call (made at module import). */
int rwkv_cpu_level(void);
/* The best level this machine could run, ignoring RWKVFAST_CPU. */
int rwkv_cpu_level_supported(void);
const char *rwkv_cpu_level_name(int level);
/* One line naming the kernel chosen for each slot, like llama.cpp's system_info. */
void rwkv_system_info(char *buf, size_t size);
/* For tests: y = e^x elementwise with the exp kernel of `level` (RWKV_ERR_FORMAT if this CPU
 * cannot run it). */
int rwkv_exp_at_level(int level, const float *x, float *y, int64_t n, struct rwkv_error *err);
/* For tests and benchmarks: one single-threaded GEMV with the kernel of `level`
 * for weight type `type` (enum rwkv_type): W (n_rows, n_cols) @ x -> y.
 * RWKV_ERR_FORMAT if this CPU cannot run `level` or no kernel handles `type`. */
int rwkv_gemv_at_level(int level, uint32_t type, const void *w, size_t row_bytes, const float *x, float *y,
                       int64_t n_rows, int64_t n_cols, struct rwkv_error *err);
/* For tests: the several-token product with the kernels of `level` as the model runs it (the
 * level's GEMM where it has one, else its GEMV per token; activations quantized per token):
 * Y[t] = W @ X[t] for t < n_tok, X and Y row-major [n_tok][n_cols] / [n_tok][n_rows]. */
int rwkv_gemm_at_level(int level, uint32_t type, const void *w, size_t row_bytes, const float *x, float *y,
                       int64_t n_rows, int64_t n_cols, int64_t n_tok, struct rwkv_error *err);
/* For tests: one head of the WKV6 recurrence (N = head_size) with the kernel of
 * `level`; updates S [N][N] in place and writes y [N]. */
int rwkv_wkv6_at_level(int level, int64_t N, const float *r, const float *k, const float *v, const float *w,
                       const float *u, float *S, float *y, struct rwkv_error *err);
/* The same for WKV7 (state value-major; a = -kk, b = kk * iclr; see kernels/kernels.h). */
int rwkv_wkv7_at_level(int level, int64_t N, const float *r, const float *w, const float *k, const float *v,
                       const float *a, const float *b, float *S, float *y, struct rwkv_error *err);
/* For tests and benchmarks: Y[t] = W @ X[t] for n_tok tokens (X [n_tok][n_cols], Y
 * [n_tok][n_rows]) with the active kernels, rows split over n_threads and tokens tiled, as
 * the model runs it (activations quantized first for quantized W), for each of n_mats
 * matrices laid one after another (so a set larger than the caches streams from memory);
 * Y receives the last product. */
int rwkv_gemv_threaded(uint32_t type, const void *w, size_t row_bytes, const float *x, float *y, int64_t n_rows,
                       int64_t n_cols, int64_t n_tok, int64_t n_mats, int n_threads, struct rwkv_error *err);
/* For benchmarks: the machine's streaming read bandwidth roofline. Reads `size`
 * bytes with n_threads (each a contiguous part) and returns a checksum so the
 * reads cannot be optimised away. */
uint64_t rwkv_stream_read(const void *p, size_t size, int n_threads);
/* For benchmarks: run the widest f32 FMA (int8 = 0) or u8 x s8 dot product (int8 = 1) chains
 * of this CPU, or (int8 = 2, amx level only) AMX int8 tile products, for `steps` steps on each
 * of n_threads threads; returns the operations done
 * (flops, or int8 multiply-adds x 2) for the caller to divide by the time it measured (0 when
 * the CPU has no such SIMD unit). checksum keeps the work from being optimised away. */
double rwkv_peak_ops(int int8, int n_threads, int64_t steps, double *checksum);

/* ----------------------------------------------------------------- gguf -- */

struct rwkv_gguf; /* an open, validated GGUF file (read-only mmap) */

enum rwkv_gguf_type { /* GGUF metadata value types (file format constants) */
    RWKV_GGUF_U8 = 0, RWKV_GGUF_I8 = 1, RWKV_GGUF_U16 = 2, RWKV_GGUF_I16 = 3,
    RWKV_GGUF_U32 = 4, RWKV_GGUF_I32 = 5, RWKV_GGUF_F32 = 6, RWKV_GGUF_BOOL = 7,
    RWKV_GGUF_STRING = 8, RWKV_GGUF_ARRAY = 9, RWKV_GGUF_U64 = 10, RWKV_GGUF_I64 = 11,
    RWKV_GGUF_F64 = 12,
};

/* One metadata entry. For arrays, `type` is RWKV_GGUF_ARRAY, `arr_type` the element
 * type and `arr_n` the count; `data` points at the first element in the mapping
 * (for string arrays use rwkv_gguf_kv_str_at). Pointers live as long as the file. */
struct rwkv_gguf_kv {
    struct rwkv_str key;
    uint32_t type;
    uint32_t arr_type;
    uint64_t arr_n;
    const uint8_t *data;
};

/* One tensor. `ne` is ggml order (ne[0] is the contiguous dimension); unused
 * dimensions are 1. `data`/`nbytes` are inside the mapping (checked at open). */
struct rwkv_gguf_tensor {
    struct rwkv_str name;
    uint32_t n_dims;
    int64_t ne[4];
    uint32_t type; /* enum rwkv_type (ggml type id) */
    uint64_t offset;
    uint64_t nbytes;
    const void *data;
};

/* Open and validate `path`: header (v2/v3, little-endian), every metadata value,
 * the tensor table (names unique, dims positive, no overflow, known types,
 * aligned offsets inside the file). */
int rwkv_gguf_open(struct rwkv_gguf **out, const char *path, struct rwkv_error *err);
/* Flags for rwkv_gguf_open_ex. RWKV_GGUF_LOAD reads the whole file into private
 * memory (transparent huge pages where the OS allows) instead of mapping it. */
enum { RWKV_GGUF_LOAD = 1 };
int rwkv_gguf_open_ex(struct rwkv_gguf **out, const char *path, int flags, struct rwkv_error *err);
void rwkv_gguf_close(struct rwkv_gguf *g);
uint32_t rwkv_gguf_version(const struct rwkv_gguf *g);
uint64_t rwkv_gguf_file_size(const struct rwkv_gguf *g);
uint64_t rwkv_gguf_alignment(const struct rwkv_gguf *g);
uint64_t rwkv_gguf_data_offset(const struct rwkv_gguf *g);
uint64_t rwkv_gguf_kv_count(const struct rwkv_gguf *g);
const struct rwkv_gguf_kv *rwkv_gguf_kv_at(const struct rwkv_gguf *g, uint64_t i);
/* NULL when absent. */
const struct rwkv_gguf_kv *rwkv_gguf_find_kv(const struct rwkv_gguf *g, const char *key);
/* Element i of a string array (bounds checked at open; i < arr_n), or with i = 0
 * the value of a plain string entry; anything else gives an empty string. */
struct rwkv_str rwkv_gguf_kv_str_at(const struct rwkv_gguf_kv *kv, uint64_t i);
uint64_t rwkv_gguf_tensor_count(const struct rwkv_gguf *g);
const struct rwkv_gguf_tensor *rwkv_gguf_tensor_at(const struct rwkv_gguf *g, uint64_t i);
const struct rwkv_gguf_tensor *rwkv_gguf_find_tensor(const struct rwkv_gguf *g, const char *name);

/* ------------------------------------------------------------ tokenizer -- */

struct rwkv_tokenizer;

/* Build the RWKV World tokenizer from `n` tokens as stored in a GGUF
 * (`tokenizer.ggml.tokens`, Python-repr-escaped byte strings) and their
 * `tokenizer.ggml.token_type` values (`types` may be NULL: all normal).
 * Only non-empty normal tokens (type 1) take part in encoding; if two have the
 * same bytes the higher id wins (as in the rwkv package). Copies what it needs:
 * `tokens` may be freed afterwards. */
int rwkv_tokenizer_init(struct rwkv_tokenizer **out, const struct rwkv_str *tokens,
                        const int32_t *types, uint64_t n, struct rwkv_error *err);
/* Convenience: the same from an open GGUF's tokenizer.ggml.* metadata. */
int rwkv_tokenizer_init_gguf(struct rwkv_tokenizer **out, const struct rwkv_gguf *g,
                             struct rwkv_error *err);
void rwkv_tokenizer_free(struct rwkv_tokenizer *t);
uint64_t rwkv_tokenizer_vocab_size(const struct rwkv_tokenizer *t);
/* Greedy longest match over the bytes of `text`. Writes at most `cap` ids to
 * `ids` and returns the total number of ids the text needs (call again with a
 * bigger buffer if it is > cap; len ids always suffice). If no normal token
 * starts with the byte at some offset, returns RWKV_ERR_FORMAT naming the
 * offset (cannot happen with World vocabularies: every byte is a token).
 * Thread-safe. */
int64_t rwkv_tokenizer_encode(const struct rwkv_tokenizer *t, const char *text, uint64_t len,
                              int32_t *ids, uint64_t cap, struct rwkv_error *err);
/* The bytes of token `id`: empty (valid pointer, len 0) for CONTROL and UNUSED
 * tokens and for ids out of range. Valid while the tokenizer lives. */
struct rwkv_str rwkv_tokenizer_piece(const struct rwkv_tokenizer *t, int32_t id);

/* ---------------------------------------------------------------- model -- */

struct rwkv_model;

/* Architectures (general.architecture): RWKV-6 "Finch" (x060) and RWKV-7 "Goose" (x070). */
enum { RWKV_ARCH_RWKV6 = 6, RWKV_ARCH_RWKV7 = 7 };

struct rwkv_model_info {
    int32_t arch; /* RWKV_ARCH_* */
    int64_t n_layer, n_embd, n_head, head_size, n_ffn, n_vocab;
    int64_t lora_mix, lora_decay, rescale_every; /* lora_mix, rescale_every: RWKV-6 only */
    int64_t lora_iclr, lora_value, lora_gate;    /* RWKV-7's a, v and g LoRA ranks (0 for RWKV-6) */
    float layer_norm_eps;
    uint32_t weight_type; /* ggml type of the big matrices (time_mix_key of block 0) */
    uint64_t file_size;
    uint64_t weight_bytes; /* bytes of tensor data in the file */
};

/* Load an rwkv6 or rwkv7 GGUF. `n_threads` <= 0 means the number of cores. The Model keeps
 * the GGUF open (weights are read from the mapping). */
int rwkv_model_init(struct rwkv_model **out, const char *path, int n_threads,
                    struct rwkv_error *err);
/* The same with GGUF open flags (RWKV_GGUF_LOAD: copy weights into memory, like
 * llama.cpp's --no-mmap). */
int rwkv_model_init_ex(struct rwkv_model **out, const char *path, int n_threads, int gguf_flags,
                       struct rwkv_error *err);
void rwkv_model_free(struct rwkv_model *m);
void rwkv_model_get_info(const struct rwkv_model *m, struct rwkv_model_info *info);
/* general.architecture of the model ("rwkv6", "rwkv7"); static storage. */
const char *rwkv_model_arch_name(const struct rwkv_model *m);
const struct rwkv_gguf *rwkv_model_gguf(const struct rwkv_model *m);
int rwkv_model_n_threads(const struct rwkv_model *m);
/* Threads the next forwards use (1..1024); results do not depend on it. Safe beside
 * running forwards: each parallel region reads it as it starts. */
int rwkv_model_set_n_threads(struct rwkv_model *m, int n_threads, struct rwkv_error *err);
/* Tokens a forward call processes together (llama.cpp's n_batch, default 512): longer
 * prompts and batches go through in chunks of this many, so their memory is that of one
 * chunk. Set it before running forwards (not while they run). */
#define RWKV_DEFAULT_N_BATCH 512
int rwkv_model_set_n_batch(struct rwkv_model *m, int64_t n_batch, struct rwkv_error *err);
int64_t rwkv_model_n_batch(const struct rwkv_model *m);

/* ---------------------------------------------------------------- state -- */

/* The recurrent state: per layer the time-mix shift (C), the channel-mix shift
 * (C) and H matrices N x N, laid out S[h][key i][value j] for RWKV-6 and S[h][value i][key j]
 * for RWKV-7 (each as its references keep it). All f32, zero = fresh. */
struct rwkv_state {
    int64_t n_layer, n_embd, n_head, head_size;
    int32_t arch; /* the architecture it belongs to (RWKV_ARCH_*); 0: made by shape, fits either */
    float *att_shift; /* [L][C]       */
    float *ffn_shift; /* [L][C]       */
    float *wkv;       /* [L][H][N][N] */
    /* engine-owned scratch for forward (kept between calls so a decode step does not
     * allocate); not part of the state's value: never copied or saved */
    void *scratch;
    size_t scratch_bytes;
    /* Vulkan: the offloaded model whose device holds this state's first layers (NULL: none),
     * its slot there, whether that copy is current (gpu_valid) and newer than the arrays
     * above (gpu_newer). Read the arrays only after rwkv_state_sync. */
    struct rwkv_vk_model *gpu;
    uint32_t gpu_slot;
    int gpu_valid, gpu_newer;
};

int rwkv_state_init(struct rwkv_state **out, const struct rwkv_model *m, struct rwkv_error *err);
/* Bring the arrays up to date with the device (a no-op for a state that never ran there);
 * `will_write`: the caller is about to change them, so the device copy is dropped. Fails
 * only where the device does (the arrays then keep their older value). */
int rwkv_state_sync(struct rwkv_state *s, int will_write, struct rwkv_error *err);
/* A zero state of an explicit shape (n_head * head_size must equal n_embd). */
int rwkv_state_init_shape(struct rwkv_state **out, int64_t n_layer, int64_t n_embd, int64_t n_head,
                          int64_t head_size, struct rwkv_error *err);
void rwkv_state_free(struct rwkv_state *s);
void rwkv_state_reset(struct rwkv_state *s);
/* dst and src must have the same shape. */
int rwkv_state_copy(struct rwkv_state *dst, const struct rwkv_state *src, struct rwkv_error *err);

/* -------------------------------------------------------------- forward -- */

/* Run `n_tokens` tokens through the model, updating `state` in place. When
 * `logits` is not NULL it receives V floats for the last token, or n_tokens*V
 * floats (row t = after token t) when `all_logits` is non-zero. Ids are checked
 * against V before anything runs. Thread-safe for distinct states. */
int rwkv_model_forward(const struct rwkv_model *m, const int32_t *tokens, int64_t n_tokens,
                       struct rwkv_state *state, float *logits, int all_logits,
                       struct rwkv_error *err);
/* One step of n_seq independent sequences: token b is fed to states[b] (all distinct), and
 * logits [n_seq][V] (if not NULL) get each sequence's next-token logits. The weights are
 * read once for the whole batch (as in the sequence mode), so B sequences cost little more
 * than one while decoding is memory-bound. */
int rwkv_model_forward_batch(const struct rwkv_model *m, const int32_t *tokens, int64_t n_seq,
                             struct rwkv_state *const *states, float *logits, struct rwkv_error *err);

/* --------------------------------------------------------------- vulkan -- */

/* Whether this build has the Vulkan backend (RWKVFAST_VULKAN at build time). Without it the
 * functions below return RWKV_ERR_BACKEND saying so. */
int rwkv_vk_built(void);

struct rwkv_vk_device_info {
    char name[256];
    char type[16]; /* "discrete", "integrated", "virtual", "cpu", "other" */
    uint32_t api_version; /* VK_MAKE_API_VERSION packing */
    uint64_t device_local_bytes;
    uint32_t subgroup_size;
    int subgroup_ops; /* an open device: whether its shaders use subgroup arithmetic */
};

/* The Vulkan devices this machine has: up to `cap` into out, their count into *n. A machine
 * without a loader or a driver fails with a message saying which. */
int rwkv_vk_devices(struct rwkv_vk_device_info *out, int cap, int *n, struct rwkv_error *err);

/* An open device. `device` indexes rwkv_vk_devices' list; -1 picks the first discrete GPU,
 * else the first integrated or virtual one, and fails where there is only a CPU implementation
 * (llvmpipe/lavapipe: slower than the CPU path; it runs only when named by its index). RWKVFAST_VK_SUBGROUP=0 in the environment
 * makes it use the shaders without subgroup operations (as on devices that lack them), and
 * RWKVFAST_VK_STAGING=1 reach device-local memory only through copies (as on discrete GPUs). */
struct rwkv_vk;
int rwkv_vk_init(struct rwkv_vk **out, int device, struct rwkv_error *err);
void rwkv_vk_free(struct rwkv_vk *vk);
void rwkv_vk_info(const struct rwkv_vk *vk, struct rwkv_vk_device_info *out);

/* Run layers [0, n_gpu_layers) of m on Vulkan device `device` (-1: the default choice);
 * n_gpu_layers beyond the layer count also takes ln_out and the head, like llama.cpp's
 * -ngl. Call once, before any forward. */
int rwkv_model_offload(struct rwkv_model *m, int device, int n_gpu_layers, struct rwkv_error *err);
/* Layers on the device (0 when none), and whether the head is there too. */
int rwkv_model_gpu_layers(const struct rwkv_model *m, int *head);
/* The device the model runs on (NULL when it is not offloaded). */
const struct rwkv_vk *rwkv_model_vk(const struct rwkv_model *m);

/* Single ops on the device, for tests against the CPU kernels (each with buffers of its own).
 * matmul: y[t][r] = post(sum_c W[r][c] x[t][c]) for W (n_rows, n_cols) of ggml type `type`
 * (its GGUF bytes, rows packed); `post` as enum rwkv_post (matmul.h), `bias` for the decay. */
int rwkv_vk_matmul(struct rwkv_vk *vk, uint32_t type, const void *w, int64_t n_rows, int64_t n_cols,
                   const float *x, int64_t n_tok, int post, const float *bias, float *y, struct rwkv_error *err);
/* run: shader `name` over n_bufs buffers (uploaded from data[i], bytes[i], and read back into
 * them), with `push` constants, workgroups of local_x and a grid of (gx, gy, gz). */
int rwkv_vk_run(struct rwkv_vk *vk, const char *name, int n_bufs, void *const *data, const size_t *bytes,
                const void *push, uint32_t push_bytes, uint32_t local_x, uint32_t gx, uint32_t gy, uint32_t gz,
                struct rwkv_error *err);

#ifdef __cplusplus
}
#endif
#endif /* RWKVFAST_H */
