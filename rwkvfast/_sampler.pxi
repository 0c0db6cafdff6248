# _sampler.pxi — bindings for csrc/sampler.h (the token sampler). Included by _core.pyx.

cdef extern from "sampler.h" nogil:
    struct rwkv_sampler_params:
        int mode
        float temperature
        float top_p
        int32_t top_k
        float min_p
        float typical_p
        float presence_penalty
        float frequency_penalty
        float penalty_decay
        float repeat_penalty
        int32_t repeat_last_n
        uint64_t seed
    struct rwkv_sampler:
        pass
    int rwkv_sampler_init(rwkv_sampler **out, const rwkv_sampler_params *p, int64_t n_vocab, rwkv_error *err)
    void rwkv_sampler_free(rwkv_sampler *s)
    int rwkv_sampler_set_bias(rwkv_sampler *s, int32_t t, float bias, rwkv_error *err)
    void rwkv_sampler_reset(rwkv_sampler *s)
    void rwkv_sampler_reseed(rwkv_sampler *s, uint64_t seed)
    int rwkv_sampler_accept(rwkv_sampler *s, int32_t t, rwkv_error *err)
    int32_t rwkv_sampler_sample(rwkv_sampler *s, const float *logits, double u, float *probs, rwkv_error *err)


cdef class _Sampler:
    """One C sampler (see rwkvfast.sampler.Sampler for the documented interface)."""
    cdef rwkv_sampler *s
    cdef readonly int64_t n_vocab

    def __cinit__(self, int64_t n_vocab, int mode, float temperature, float top_p, int32_t top_k, float min_p,
                  float typical_p, float presence_penalty, float frequency_penalty, float penalty_decay,
                  float repeat_penalty, int32_t repeat_last_n, uint64_t seed):
        cdef rwkv_sampler_params p
        cdef rwkv_error err
        p.mode, p.temperature, p.top_p, p.top_k, p.min_p, p.typical_p = mode, temperature, top_p, top_k, min_p, typical_p
        p.presence_penalty, p.frequency_penalty, p.penalty_decay = presence_penalty, frequency_penalty, penalty_decay
        p.repeat_penalty, p.repeat_last_n, p.seed = repeat_penalty, repeat_last_n, seed
        _check(rwkv_sampler_init(&self.s, &p, n_vocab, &err), &err)
        self.n_vocab = n_vocab

    def __dealloc__(self):
        rwkv_sampler_free(self.s)

    def set_bias(self, int32_t token, float bias):
        cdef rwkv_error err
        _check(rwkv_sampler_set_bias(self.s, token, bias, &err), &err)

    def reset(self):
        rwkv_sampler_reset(self.s)

    def reseed(self, uint64_t seed):
        rwkv_sampler_reseed(self.s, seed)

    def accept(self, int32_t token):
        cdef rwkv_error err
        _check(rwkv_sampler_accept(self.s, token, &err), &err)

    def sample(self, const float[::1] logits not None, double u=-1.0, bint want_probs=False):
        cdef rwkv_error err
        cdef int32_t t
        if logits.shape[0] != self.n_vocab:
            raise ValueError(f"logits have {logits.shape[0]} entries, the sampler's vocabulary is {self.n_vocab}")
        probs = np.empty(self.n_vocab, dtype=np.float32) if want_probs else None
        cdef float[::1] pv
        cdef float *pp = NULL
        if want_probs:
            pv = probs
            pp = &pv[0]
        with nogil:
            t = rwkv_sampler_sample(self.s, &logits[0], u, pp, &err)
        if t < 0:
            _check(err.code if err.code != 0 else RWKV_ERR_FORMAT, &err)
        return t, probs
