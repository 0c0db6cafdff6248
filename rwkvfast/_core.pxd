# _core.pxd — csrc/rwkvfast.h for Cython, 1:1 (only what the bindings use).
from libc.stdint cimport int32_t, int64_t, uint32_t, uint64_t, uint8_t

cdef extern from "rwkvfast.h" nogil:
    enum rwkv_status:
        RWKV_OK
        RWKV_ERR_FORMAT
        RWKV_ERR_IO
        RWKV_ERR_NOMEM
        RWKV_ERR_BACKEND

    struct rwkv_error:
        int code
        char msg[256]

    struct rwkv_str:
        const char *ptr
        uint64_t len

    int rwkv_cpu_level()
    int rwkv_cpu_level_supported()
    const char *rwkv_cpu_level_name(int level)
    void rwkv_system_info(char *buf, size_t size)
    int rwkv_wkv6_at_level(int level, int64_t N, const float *r, const float *k, const float *v,
                           const float *w, const float *u, float *S, float *y, rwkv_error *err)
    int rwkv_wkv7_at_level(int level, int64_t N, const float *r, const float *w, const float *k,
                           const float *v, const float *a, const float *b, float *S, float *y, rwkv_error *err)
    int rwkv_gemv_threaded(uint32_t type, const void *w, size_t row_bytes, const float *x, float *y,
                           int64_t n_rows, int64_t n_cols, int64_t n_tok, int64_t n_mats, int n_threads,
                           rwkv_error *err)
    uint64_t rwkv_stream_read(const void *p, size_t size, int n_threads)
    double rwkv_peak_ops(int int8, int n_threads, int64_t steps, double *checksum)
    int rwkv_gemm_at_level(int level, uint32_t type, const void *w, size_t row_bytes, const float *x,
                           float *y, int64_t n_rows, int64_t n_cols, int64_t n_tok, rwkv_error *err)
    int rwkv_exp_at_level(int level, const float *x, float *y, int64_t n, rwkv_error *err)
    int rwkv_gemv_at_level(int level, uint32_t type, const void *w, size_t row_bytes, const float *x,
                           float *y, int64_t n_rows, int64_t n_cols, rwkv_error *err)

    int rwkv_state_sync(rwkv_state *s, int will_write, rwkv_error *err)
    int rwkv_vk_built()
    int rwkv_model_offload(rwkv_model *m, int device, int n_gpu_layers, rwkv_error *err)
    int rwkv_model_gpu_layers(const rwkv_model *m, int *head)
    struct rwkv_vk_device_info:
        char name[256]
        char type[16]
        uint32_t api_version
        uint64_t device_local_bytes
        uint32_t subgroup_size
        int subgroup_ops
    int rwkv_vk_devices(rwkv_vk_device_info *out, int cap, int *n, rwkv_error *err)
    struct rwkv_vk:
        pass
    int rwkv_vk_init(rwkv_vk **out, int device, rwkv_error *err)
    void rwkv_vk_free(rwkv_vk *vk)
    void rwkv_vk_info(const rwkv_vk *vk, rwkv_vk_device_info *out)
    const rwkv_vk *rwkv_model_vk(const rwkv_model *m)
    int rwkv_vk_matmul(rwkv_vk *vk, uint32_t type, const void *w, int64_t n_rows, int64_t n_cols,
                       const float *x, int64_t n_tok, int post, const float *bias, float *y, rwkv_error *err)
    int rwkv_vk_run(rwkv_vk *vk, const char *name, int n_bufs, void *const *data, const size_t *bytes,
                    const void *push, uint32_t push_bytes, uint32_t local_x, uint32_t gx, uint32_t gy, uint32_t gz,
                    rwkv_error *err)

    struct rwkv_gguf:
        pass
    enum rwkv_gguf_type:
        RWKV_GGUF_U8, RWKV_GGUF_I8, RWKV_GGUF_U16, RWKV_GGUF_I16, RWKV_GGUF_U32, RWKV_GGUF_I32
        RWKV_GGUF_F32, RWKV_GGUF_BOOL, RWKV_GGUF_STRING, RWKV_GGUF_ARRAY, RWKV_GGUF_U64
        RWKV_GGUF_I64, RWKV_GGUF_F64
    struct rwkv_gguf_kv:
        rwkv_str key
        uint32_t type
        uint32_t arr_type
        uint64_t arr_n
        const uint8_t *data
    struct rwkv_gguf_tensor:
        rwkv_str name
        uint32_t n_dims
        int64_t ne[4]
        uint32_t type
        uint64_t offset
        uint64_t nbytes
        const void *data

    int rwkv_gguf_open(rwkv_gguf **out, const char *path, rwkv_error *err)
    void rwkv_gguf_close(rwkv_gguf *g)
    uint32_t rwkv_gguf_version(const rwkv_gguf *g)
    uint64_t rwkv_gguf_file_size(const rwkv_gguf *g)
    uint64_t rwkv_gguf_alignment(const rwkv_gguf *g)
    uint64_t rwkv_gguf_data_offset(const rwkv_gguf *g)
    uint64_t rwkv_gguf_kv_count(const rwkv_gguf *g)
    const rwkv_gguf_kv *rwkv_gguf_kv_at(const rwkv_gguf *g, uint64_t i)
    const rwkv_gguf_kv *rwkv_gguf_find_kv(const rwkv_gguf *g, const char *key)
    rwkv_str rwkv_gguf_kv_str_at(const rwkv_gguf_kv *kv, uint64_t i)
    uint64_t rwkv_gguf_tensor_count(const rwkv_gguf *g)
    const rwkv_gguf_tensor *rwkv_gguf_tensor_at(const rwkv_gguf *g, uint64_t i)
    const rwkv_gguf_tensor *rwkv_gguf_find_tensor(const rwkv_gguf *g, const char *name)

    struct rwkv_tokenizer:
        pass
    int rwkv_tokenizer_init_gguf(rwkv_tokenizer **out, const rwkv_gguf *g, rwkv_error *err)
    void rwkv_tokenizer_free(rwkv_tokenizer *t)
    uint64_t rwkv_tokenizer_vocab_size(const rwkv_tokenizer *t)
    int64_t rwkv_tokenizer_encode(const rwkv_tokenizer *t, const char *text, uint64_t len,
                                  int32_t *ids, uint64_t cap, rwkv_error *err)
    rwkv_str rwkv_tokenizer_piece(const rwkv_tokenizer *t, int32_t id)

    struct rwkv_model:
        pass
    enum: RWKV_ARCH_RWKV6, RWKV_ARCH_RWKV7
    struct rwkv_model_info:
        int32_t arch
        int64_t n_layer, n_embd, n_head, head_size, n_ffn, n_vocab
        int64_t lora_mix, lora_decay, rescale_every
        int64_t lora_iclr, lora_value, lora_gate
        float layer_norm_eps
        uint32_t weight_type
        uint64_t file_size
        uint64_t weight_bytes
    int rwkv_model_init(rwkv_model **out, const char *path, int n_threads, rwkv_error *err)
    int rwkv_model_init_ex(rwkv_model **out, const char *path, int n_threads, int gguf_flags,
                           rwkv_error *err)
    enum: RWKV_GGUF_LOAD
    void rwkv_model_free(rwkv_model *m)
    void rwkv_model_get_info(const rwkv_model *m, rwkv_model_info *info)
    const char *rwkv_model_arch_name(const rwkv_model *m)
    const rwkv_gguf *rwkv_model_gguf(const rwkv_model *m)
    int rwkv_model_n_threads(const rwkv_model *m)
    int rwkv_model_set_n_threads(rwkv_model *m, int n_threads, rwkv_error *err)
    int64_t rwkv_model_n_batch(const rwkv_model *m)
    int rwkv_model_set_n_batch(rwkv_model *m, int64_t n_batch, rwkv_error *err)

    struct rwkv_state:
        int64_t n_layer, n_embd, n_head, head_size
        int32_t arch
        float *att_shift
        float *ffn_shift
        float *wkv
        void *scratch
        size_t scratch_bytes
    int rwkv_state_init(rwkv_state **out, const rwkv_model *m, rwkv_error *err)
    int rwkv_state_init_shape(rwkv_state **out, int64_t n_layer, int64_t n_embd, int64_t n_head,
                              int64_t head_size, rwkv_error *err)
    void rwkv_state_free(rwkv_state *s)
    void rwkv_state_reset(rwkv_state *s)
    int rwkv_state_copy(rwkv_state *dst, const rwkv_state *src, rwkv_error *err)

    int rwkv_model_forward(const rwkv_model *m, const int32_t *tokens, int64_t n_tokens,
                           rwkv_state *state, float *logits, int all_logits, rwkv_error *err)
    int rwkv_model_forward_batch(const rwkv_model *m, const int32_t *tokens, int64_t n_seq,
                                 rwkv_state *const *states, float *logits, rwkv_error *err)

cdef extern from "ggml_types.h" nogil:
    const char *rwkv_type_name(uint32_t t)
