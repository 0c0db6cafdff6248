# cython: language_level=3, boundscheck=False, wraparound=False
"""Thin bindings over csrc/rwkvfast.h.

One cdef class owns one C pointer and frees it; every C status goes through
`_check`; the GIL is released around anything that computes. Logic lives in C
or in the plain-Python modules of this package.
"""
from libc.stdint cimport int32_t, int64_t, uint8_t, uint16_t, uint32_t, uint64_t, int8_t, int16_t
from libc.string cimport memcpy
from cpython.bytes cimport PyBytes_FromStringAndSize
from cpython.ref cimport Py_INCREF

cimport numpy as cnp
from libc.stdlib cimport free, malloc
import numpy as np
import time

from rwkvfast._core cimport *

cnp.import_array()


cdef int _check(int rc, rwkv_error *err) except -1:
    """Turn a C status into the Python exception the design promises."""
    if rc == RWKV_OK:
        return 0
    msg = err.msg.decode("utf-8", "replace")
    if rc == RWKV_ERR_FORMAT:
        raise ValueError(msg)
    if rc == RWKV_ERR_IO:
        raise OSError(msg)
    if rc == RWKV_ERR_NOMEM:
        raise MemoryError(msg)
    raise RuntimeError(msg)


cdef bytes _path_bytes(path):
    import os
    return os.fsencode(path)


cdef object _str(rwkv_str s):
    b = PyBytes_FromStringAndSize(s.ptr, <Py_ssize_t>s.len)
    try:
        return b.decode("utf-8")
    except UnicodeDecodeError:
        return b


# ----------------------------------------------------------- quant types --
include "_quants.pxi"
include "_sampler.pxi"
include "_vulkan.pxi"


# ------------------------------------------------------------------- cpu --

def cpu_level():
    """Name of the SIMD level the kernels run at ("scalar", "avx2", "avx512")."""
    return rwkv_cpu_level_name(rwkv_cpu_level()).decode()


def cpu_level_supported():
    return rwkv_cpu_level_name(rwkv_cpu_level_supported()).decode()


def system_info():
    cdef char buf[4096]  # a slot per kernel: over 1 KB
    rwkv_system_info(buf, sizeof(buf))
    return buf.decode()


_LEVELS = {"scalar": 0, "avx2": 1, "avx512": 2, "avx512vnni": 3, "amx": 4, "amx-emulated": 5}
def _wtype(str name):
    """(type id, elements per block, bytes per block) from the C traits table."""
    cdef uint32_t t
    cdef const rwkv_type_traits *tr = _quant_traits(name, &t)
    return t, tr.block_size, tr.block_bytes


def exp_at_level(str level, const float[::1] x not None):
    """Tests: e^x elementwise with one ISA level's exp kernel (the one fused activations use)."""
    cdef rwkv_error err
    cdef int rc
    cdef int lv = _LEVELS[level]
    out = np.empty(x.shape[0], dtype=np.float32)
    cdef float[::1] y = out
    if x.shape[0] == 0:
        return out
    with nogil:
        rc = rwkv_exp_at_level(lv, &x[0], &y[0], x.shape[0], &err)
    _check(rc, &err)
    return out


def gemv_at_level(str level, str wtype, const uint8_t[:, ::1] w not None, const float[::1] x not None):
    """Tests/benchmarks: W @ x with one ISA level's kernel. `w` holds raw rows of `wtype`."""
    cdef rwkv_error err
    cdef int rc
    cdef int lv = _LEVELS[level]
    tid, blk, nbytes = _wtype(wtype)
    cdef uint32_t t = tid
    cdef int64_t rows = w.shape[0], cols = x.shape[0]
    if cols % blk or w.shape[1] != cols // blk * nbytes or rows == 0 or cols == 0:
        raise ValueError(f"w must be (rows, {nbytes} bytes per {blk} of len(x)) for {wtype}")
    out = np.empty(rows, dtype=np.float32)
    cdef float[::1] y = out
    with nogil:
        rc = rwkv_gemv_at_level(lv, t, &w[0, 0], w.shape[1], &x[0], &y[0], rows, cols, &err)
    _check(rc, &err)
    return out


def gemm_at_level(str level, str wtype, const uint8_t[:, ::1] w not None, const float[:, ::1] x not None):
    """Tests: W @ X[t] for every row t of X with one ISA level's several-token kernel (float types)."""
    cdef rwkv_error err
    cdef int rc
    cdef int lv = _LEVELS[level]
    tid, blk, nbytes = _wtype(wtype)
    cdef uint32_t t = tid
    cdef int64_t rows = w.shape[0], cols = x.shape[1], ntok = x.shape[0]
    if cols % blk or w.shape[1] != cols // blk * nbytes or rows == 0 or cols == 0 or ntok == 0:
        raise ValueError(f"w must be (rows, {nbytes} bytes per {blk} of x.shape[1]) for {wtype}")
    out = np.empty((ntok, rows), dtype=np.float32)
    cdef float[:, ::1] y = out
    with nogil:
        rc = rwkv_gemm_at_level(lv, t, &w[0, 0], w.shape[1], &x[0, 0], &y[0, 0], rows, cols, ntok, &err)
    _check(rc, &err)
    return out


def gemv(str wtype, const uint8_t[:, ::1] w not None, x not None, int n_threads=1, int64_t n_mats=1):
    """Tests and benchmarks: W @ x with the active kernels and n_threads, as the model runs it:
    x [cols] gives y [rows]; x [T, cols] gives Y [T, rows] (T tokens, tiled as in sequence
    mode). `w` holds n_mats matrices stacked by rows, each multiplied in turn (the last
    product returned)."""
    cdef rwkv_error err
    cdef int rc
    cdef const float[:, ::1] xs = np.ascontiguousarray(np.atleast_2d(x), dtype=np.float32)
    tid, blk, nbytes = _wtype(wtype)
    cdef uint32_t t = tid
    if n_mats < 1 or w.shape[0] % n_mats:
        raise ValueError("the rows of w must split into n_mats equal matrices")
    cdef int64_t rows = w.shape[0] // n_mats, cols = xs.shape[1], ntok = xs.shape[0]
    if cols % blk or w.shape[1] != cols // blk * nbytes or rows == 0 or cols == 0 or ntok == 0:
        raise ValueError(f"w must be (rows, {nbytes} bytes per {blk} of len(x)) for {wtype}")
    out = np.empty((ntok, rows), dtype=np.float32)
    cdef float[:, ::1] y = out
    with nogil:
        rc = rwkv_gemv_threaded(t, &w[0, 0], w.shape[1], &xs[0, 0], &y[0, 0], rows, cols, ntok, n_mats, n_threads,
                                &err)
    _check(rc, &err)
    return out if np.ndim(x) == 2 else out[0]


def wkv6_at_level(str level, const float[::1] r not None, const float[::1] k not None,
                  const float[::1] v not None, const float[::1] w not None, const float[::1] u not None,
                  float[:, ::1] S not None):
    """Tests: one WKV6 head with one ISA level's kernel; updates S in place, returns y."""
    cdef rwkv_error err
    cdef int64_t N = r.shape[0]
    if not (k.shape[0] == v.shape[0] == w.shape[0] == u.shape[0] == N and S.shape[0] == N and S.shape[1] == N):
        raise ValueError("r, k, v, w, u must have length N and S shape (N, N)")
    out = np.empty(N, dtype=np.float32)
    cdef float[::1] y = out
    _check(rwkv_wkv6_at_level(_LEVELS[level], N, &r[0], &k[0], &v[0], &w[0], &u[0], &S[0, 0], &y[0], &err), &err)
    return out


def wkv7_at_level(str level, const float[::1] r not None, const float[::1] w not None,
                  const float[::1] k not None, const float[::1] v not None, const float[::1] a not None,
                  const float[::1] b not None, float[:, ::1] S not None):
    """Tests: one WKV7 head (state value-major) with one ISA level's kernel; updates S in place,
    returns y."""
    cdef rwkv_error err
    cdef int64_t N = r.shape[0]
    if not (w.shape[0] == k.shape[0] == v.shape[0] == a.shape[0] == b.shape[0] == N and S.shape[0] == N
            and S.shape[1] == N):
        raise ValueError("r, w, k, v, a, b must have length N and S shape (N, N)")
    out = np.empty(N, dtype=np.float32)
    cdef float[::1] y = out
    _check(rwkv_wkv7_at_level(_LEVELS[level], N, &r[0], &w[0], &k[0], &v[0], &a[0], &b[0], &S[0, 0], &y[0], &err),
           &err)
    return out


def peak_ops(bint int8=False, int n_threads=1, int64_t steps=20_000_000, bint tiles=False):
    """Benchmarks: (operations, seconds) of the CPU's f32 FMA (or int8 dot, or with `tiles` AMX int8
    tile product: 0 operations below the amx level) peak loop."""
    cdef double ops, chk
    cdef int kind = 2 if tiles else (1 if int8 else 0)
    t0 = time.perf_counter()
    with nogil:
        ops = rwkv_peak_ops(kind, n_threads, steps, &chk)
    return ops, time.perf_counter() - t0


def stream_read(const uint8_t[::1] buf not None, int n_threads=1):
    """Benchmarks: read every byte of `buf` with n_threads (the bandwidth roofline)."""
    cdef uint64_t r
    if buf.shape[0] == 0:
        return 0
    with nogil:
        r = rwkv_stream_read(&buf[0], buf.shape[0], n_threads)
    return r


# ------------------------------------------------------------------ gguf --

cdef object _scalar(uint32_t t, const uint8_t *p):
    cdef uint8_t u8
    cdef int8_t i8
    cdef uint16_t u16
    cdef int16_t i16
    cdef uint32_t u32
    cdef int32_t i32
    cdef float f32
    cdef uint64_t u64
    cdef int64_t i64
    cdef double f64
    if t == RWKV_GGUF_U8:
        memcpy(&u8, p, 1); return u8
    if t == RWKV_GGUF_I8:
        memcpy(&i8, p, 1); return i8
    if t == RWKV_GGUF_U16:
        memcpy(&u16, p, 2); return u16
    if t == RWKV_GGUF_I16:
        memcpy(&i16, p, 2); return i16
    if t == RWKV_GGUF_U32:
        memcpy(&u32, p, 4); return u32
    if t == RWKV_GGUF_I32:
        memcpy(&i32, p, 4); return i32
    if t == RWKV_GGUF_F32:
        memcpy(&f32, p, 4); return f32
    if t == RWKV_GGUF_BOOL:
        return p[0] != 0
    if t == RWKV_GGUF_U64:
        memcpy(&u64, p, 8); return u64
    if t == RWKV_GGUF_I64:
        memcpy(&i64, p, 8); return i64
    if t == RWKV_GGUF_F64:
        memcpy(&f64, p, 8); return f64
    raise ValueError(f"unknown GGUF value type {t}")


cdef int _scalar_size(uint32_t t):
    if t in (RWKV_GGUF_U8, RWKV_GGUF_I8, RWKV_GGUF_BOOL):
        return 1
    if t in (RWKV_GGUF_U16, RWKV_GGUF_I16):
        return 2
    if t in (RWKV_GGUF_U32, RWKV_GGUF_I32, RWKV_GGUF_F32):
        return 4
    return 8


cdef object _kv_value(const rwkv_gguf_kv *kv):
    cdef uint64_t i
    cdef int es
    if kv.type == RWKV_GGUF_STRING:
        return _str(rwkv_gguf_kv_str_at(kv, 0))
    if kv.type != RWKV_GGUF_ARRAY:
        return _scalar(kv.type, kv.data)
    if kv.arr_type == RWKV_GGUF_STRING:
        return [_str(rwkv_gguf_kv_str_at(kv, i)) for i in range(kv.arr_n)]
    es = _scalar_size(kv.arr_type)
    return [_scalar(kv.arr_type, kv.data + i * es) for i in range(kv.arr_n)]


cdef dict _tensor_dict(const rwkv_gguf_tensor *t):
    return {
        "name": _str(t.name),
        "type": rwkv_type_name(t.type).decode(),
        "shape": tuple(t.ne[d] for d in range(t.n_dims)),
        "offset": t.offset,
        "nbytes": t.nbytes,
    }


cdef dict _gguf_dict(const rwkv_gguf *g):
    cdef uint64_t i
    cdef const rwkv_gguf_kv *kv
    meta = {}
    for i in range(rwkv_gguf_kv_count(g)):
        kv = rwkv_gguf_kv_at(g, i)
        meta[_str(kv.key)] = _kv_value(kv)
    return {
        "version": rwkv_gguf_version(g),
        "alignment": rwkv_gguf_alignment(g),
        "data_offset": rwkv_gguf_data_offset(g),
        "file_size": rwkv_gguf_file_size(g),
        "metadata": meta,
        "tensors": [_tensor_dict(rwkv_gguf_tensor_at(g, i)) for i in range(rwkv_gguf_tensor_count(g))],
    }


cdef rwkv_gguf *_gguf_open(path) except NULL:
    """Open and validate a GGUF (the caller closes it)."""
    cdef rwkv_gguf *g = NULL
    cdef rwkv_error err
    cdef bytes p = _path_bytes(path)
    cdef const char *cp = p
    with nogil:
        rc = rwkv_gguf_open(&g, cp, &err)
    _check(rc, &err)
    return g


def gguf_read(path):
    """Validate a GGUF file and return its header, metadata and tensor table as a dict."""
    cdef rwkv_gguf *g = _gguf_open(path)
    try:
        return _gguf_dict(g)
    finally:
        rwkv_gguf_close(g)


# ------------------------------------------------------------- tokenizer --

cdef class Tokenizer:
    """The RWKV World trie tokenizer (C). Build with `Tokenizer.from_gguf(path)`."""
    cdef rwkv_tokenizer *tok

    def __dealloc__(self):
        rwkv_tokenizer_free(self.tok)

    cdef int _live(self) except -1:
        if self.tok == NULL:
            raise ValueError("tokenizer is not initialised (use Tokenizer.from_gguf)")
        return 0

    @staticmethod
    def from_gguf(path):
        cdef rwkv_gguf *g = _gguf_open(path)
        try:
            return Tokenizer._from_open(g)
        finally:
            rwkv_gguf_close(g)

    @staticmethod
    cdef Tokenizer _from_open(const rwkv_gguf *g):
        cdef rwkv_error err
        cdef Tokenizer self = Tokenizer.__new__(Tokenizer)
        with nogil:
            rc = rwkv_tokenizer_init_gguf(&self.tok, g, &err)
        _check(rc, &err)
        return self

    @property
    def vocab_size(self):
        self._live()
        return rwkv_tokenizer_vocab_size(self.tok)

    def encode_bytes(self, const uint8_t[::1] data not None):
        """Token ids (int32 numpy array) of a UTF-8 byte string."""
        cdef rwkv_error err
        cdef int64_t n
        cdef int32_t[::1] ids
        self._live()
        if data.shape[0] == 0:
            return np.empty(0, dtype=np.int32)
        # every token is at least one byte, so len(data) ids always suffice
        out = np.empty(data.shape[0], dtype=np.int32)
        ids = out
        with nogil:
            n = rwkv_tokenizer_encode(self.tok, <const char *>&data[0], data.shape[0], &ids[0],
                                      ids.shape[0], &err)
        if n < 0:
            _check(<int>n, &err)
        return out[:n]

    def piece(self, int32_t token_id):
        """The bytes of one token (empty for control/unused/out-of-range ids)."""
        self._live()
        return _str_bytes(rwkv_tokenizer_piece(self.tok, token_id))


cdef bytes _str_bytes(rwkv_str s):
    return PyBytes_FromStringAndSize(s.ptr, <Py_ssize_t>s.len)


# ----------------------------------------------------------------- state --

cdef object _view(float *ptr, shape, object owner, bint writeable):
    """A numpy array over C memory that keeps `owner` alive while it exists."""
    cdef cnp.npy_intp dims[4]
    cdef int nd = len(shape)
    for i in range(nd):
        dims[i] = shape[i]
    arr = cnp.PyArray_SimpleNewFromData(nd, dims, cnp.NPY_FLOAT32, ptr)
    Py_INCREF(owner)
    cnp.PyArray_SetBaseObject(arr, owner)
    if not writeable:
        arr.flags.writeable = False
    return arr


cdef class _State:
    """The C recurrent state of one sequence (see rwkvfast.State)."""
    cdef rwkv_state *st
    cdef int busy   # a forward pass is using this state (one sequence, one thread at a time)

    def __dealloc__(self):
        rwkv_state_free(self.st)

    cdef int _live(self) except -1:
        if self.st == NULL:
            raise ValueError("state is not initialised (use Model.new_state)")
        if self.busy:
            raise RuntimeError("this state is being used by a forward pass in another thread")
        return 0

    @property
    def shape(self):
        self._live()
        return (self.st.n_layer, self.st.n_embd, self.st.n_head, self.st.head_size)

    @property
    def arch(self):
        """The architecture it belongs to: 6, 7, or 0 (made by shape alone)."""
        self._live()
        return self.st.arch

    def arrays(self, bint writeable=False):
        """(att_shift [L,C], ffn_shift [L,C], wkv [L,H,N,N]) as numpy views, up to date with
        the GPU at this moment (a later forward on the GPU does not show in them)."""
        cdef rwkv_error err
        L, C, H, N = self.shape
        _check(rwkv_state_sync(self.st, writeable, &err), &err)
        return (_view(self.st.att_shift, (L, C), self, writeable),
                _view(self.st.ffn_shift, (L, C), self, writeable),
                _view(self.st.wkv, (L, H, N, N), self, writeable))

    def reset(self):
        self._live()
        rwkv_state_reset(self.st)

    def clone(self):
        cdef rwkv_error err
        cdef _State other = _State.__new__(_State)
        self._live()
        _check(rwkv_state_init_shape(&other.st, self.st.n_layer, self.st.n_embd, self.st.n_head,
                                     self.st.head_size, &err), &err)
        other.st.arch = self.st.arch
        other.copy_from(self)
        return other

    def copy_from(self, _State src not None):
        cdef rwkv_error err
        self._live()
        src._live()
        _check(rwkv_state_copy(self.st, src.st, &err), &err)


# ----------------------------------------------------------------- model --

cdef class _Model:
    """An open rwkv6 or rwkv7 GGUF (see rwkvfast.Model)."""
    cdef rwkv_model *m
    cdef int active   # forward calls in flight; close() must wait for zero
    cdef int64_t n_vocab

    def __cinit__(self, path, int n_threads=0, bint use_mmap=True, int64_t n_batch=512):  # noqa
        cdef rwkv_error err
        cdef rwkv_model_info i
        cdef bytes p = _path_bytes(path)
        cdef const char *cp = p
        cdef int flags = 0 if use_mmap else RWKV_GGUF_LOAD
        with nogil:
            rc = rwkv_model_init_ex(&self.m, cp, n_threads, flags, &err)
        _check(rc, &err)
        _check(rwkv_model_set_n_batch(self.m, n_batch, &err), &err)
        rwkv_model_get_info(self.m, &i)
        self.n_vocab = i.n_vocab

    def __dealloc__(self):
        rwkv_model_free(self.m)

    def set_n_threads(self, int n):
        cdef rwkv_error err
        self._live()
        _check(rwkv_model_set_n_threads(self.m, n, &err), &err)

    cdef int _live(self) except -1:
        if self.m == NULL:
            raise ValueError("the model is closed")
        return 0

    def offload(self, int device, int n_gpu_layers):
        """Run the first n_gpu_layers layers on a Vulkan device (see rwkvfast.Model)."""
        cdef rwkv_error err
        cdef int rc
        self._live()
        with nogil:
            rc = rwkv_model_offload(self.m, device, n_gpu_layers, &err)
        _check(rc, &err)

    def gpu_layers(self):
        """(layers on the GPU, whether the head is there too)."""
        cdef int head = 0
        self._live()
        n = rwkv_model_gpu_layers(self.m, &head)
        return n, bool(head)

    def gpu_device(self):
        """The device's name, or None when nothing is offloaded."""
        cdef rwkv_vk_device_info d
        self._live()
        cdef const rwkv_vk *vk = rwkv_model_vk(self.m)
        if vk == NULL:
            return None
        rwkv_vk_info(vk, &d)
        return d.name.decode("utf-8", "replace")

    def close(self):
        if self.active:
            raise RuntimeError("cannot close the model while a forward pass is running")
        rwkv_model_free(self.m)
        self.m = NULL

    @property
    def closed(self):
        return self.m == NULL

    def info(self):
        cdef rwkv_model_info i
        self._live()
        rwkv_model_get_info(self.m, &i)
        return {
            "architecture": rwkv_model_arch_name(self.m).decode(),
            "n_layer": i.n_layer, "n_embd": i.n_embd, "n_head": i.n_head, "head_size": i.head_size,
            "n_ffn": i.n_ffn, "n_vocab": i.n_vocab, "lora_mix": i.lora_mix, "lora_decay": i.lora_decay,
            "lora_iclr": i.lora_iclr, "lora_value": i.lora_value, "lora_gate": i.lora_gate,
            "rescale_every": i.rescale_every, "layer_norm_eps": i.layer_norm_eps,
            "weight_type": rwkv_type_name(i.weight_type).decode(), "file_size": i.file_size,
            "weight_bytes": i.weight_bytes, "n_threads": rwkv_model_n_threads(self.m),
            "n_batch": rwkv_model_n_batch(self.m),
        }

    def gguf(self):
        self._live()
        return _gguf_dict(rwkv_model_gguf(self.m))

    def general_file_type(self):
        cdef const rwkv_gguf_kv *kv
        self._live()
        kv = rwkv_gguf_find_kv(rwkv_model_gguf(self.m), b"general.file_type")
        return _kv_value(kv) if kv != NULL else None

    def tokenizer(self):
        self._live()
        return Tokenizer._from_open(rwkv_model_gguf(self.m))

    def new_state(self):
        cdef rwkv_error err
        cdef _State s = _State.__new__(_State)
        self._live()
        _check(rwkv_state_init(&s.st, self.m, &err), &err)
        return s

    def forward_batch(self, const int32_t[::1] tokens not None, list states):
        """Logits float32 [B, V]: one token for each of B sequences, each with its own state."""
        cdef rwkv_error err
        cdef int rc
        cdef int64_t B = tokens.shape[0], b
        cdef float[::1] o
        cdef _State st
        self._live()
        if B == 0 or len(states) != B:
            raise ValueError(f"forward_batch needs one state per token, got {B} tokens and {len(states)} states")
        cdef rwkv_state **sts = <rwkv_state **>malloc(B * sizeof(rwkv_state *))
        if sts == NULL:
            raise MemoryError("out of memory for the batch")
        out = np.empty([B, self.n_vocab], dtype=np.float32)
        o = out.reshape(-1)
        taken = []
        try:
            for b in range(B):
                st = states[b]
                st._live()
                if st.busy:
                    raise RuntimeError("a state of the batch is in use")
                st.busy = 1
                taken.append(st)
                sts[b] = st.st
            self.active += 1
            try:
                with nogil:
                    rc = rwkv_model_forward_batch(self.m, &tokens[0], B, sts, &o[0], &err)
            finally:
                self.active -= 1
        finally:
            for st in taken:
                st.busy = 0
            free(sts)
        _check(rc, &err)
        return out

    def forward(self, const int32_t[::1] tokens not None, _State state not None, bint all_logits=False):
        """Logits float32 [V] (last token) or [T, V] (all_logits)."""
        cdef rwkv_error err
        cdef int rc
        cdef int64_t T = tokens.shape[0]
        cdef int64_t V = self.n_vocab
        cdef float[::1] o
        self._live()
        state._live()
        if T == 0:
            raise ValueError("forward needs at least one token")
        shape = [T, V] if all_logits else [V]
        out = np.empty(shape, dtype=np.float32)
        o = out.reshape(-1)
        self.active += 1
        state.busy = 1
        try:
            with nogil:
                rc = rwkv_model_forward(self.m, &tokens[0], T, state.st, &o[0], all_logits, &err)
        finally:
            self.active -= 1
            state.busy = 0
        _check(rc, &err)
        return out
