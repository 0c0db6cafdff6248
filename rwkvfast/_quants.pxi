# _quants.pxi — bindings for csrc/quants.h (block formats: dequantize / quantize rows).
# Included by _core.pyx.

cdef extern from "ggml_types.h" nogil:
    struct rwkv_type_traits:
        const char *name
        uint32_t block_size
        uint32_t block_bytes
    const rwkv_type_traits *rwkv_type_traits_get(uint32_t t)
    enum: RWKV_TYPE_COUNT

cdef extern from "quants.h" nogil:
    int rwkv_quant_type_supported(uint32_t type)
    size_t rwkv_quant_row_size(uint32_t type, int64_t n)
    void rwkv_dequantize_row(uint32_t type, const void *src, float *dst, int64_t n)
    int rwkv_quantize_row(uint32_t type, const float *src, void *dst, int64_t n)


cdef dict _type_ids():
    cdef uint32_t t
    cdef const rwkv_type_traits *tr
    ids = {}
    for t in range(RWKV_TYPE_COUNT):
        tr = rwkv_type_traits_get(t)
        if tr != NULL:
            ids[tr.name.decode()] = t
    return ids


_TYPE_IDS = _type_ids()


cdef const rwkv_type_traits *_quant_traits(str type_name, uint32_t *type_id) except NULL:
    """Traits of a type the row functions support, else ValueError."""
    t = _TYPE_IDS.get(type_name)
    if t is None:
        raise ValueError(f"unknown ggml type {type_name!r}")
    if not rwkv_quant_type_supported(t):
        raise ValueError(f"type {type_name} has no dequantize/quantize row functions; "
                         f"supported: {', '.join(quant_types())}")
    type_id[0] = t
    return rwkv_type_traits_get(t)


def quant_types():
    """Names of the types `dequantize` / `quantize` handle, e.g. ["F32", "F16", "Q4_0", ...]."""
    return [name for name, t in _TYPE_IDS.items() if rwkv_quant_type_supported(t)]


def quant_block(str type_name):
    """(elements per block, bytes per block) of a supported type: quant_block("Q4_K") == (256, 144)."""
    cdef uint32_t t
    cdef const rwkv_type_traits *tr = _quant_traits(type_name, &t)
    return tr.block_size, tr.block_bytes


def dequantize(str type_name, const uint8_t[::1] data not None, int64_t n):
    """n floats decoded from `data`, which must hold exactly n elements of `type_name`.

    >>> x = np.linspace(-1, 1, 256, dtype=np.float32)
    >>> float(np.abs(dequantize("Q4_K", quantize("Q4_K", x), 256) - x).max()) < 0.1
    True
    """
    cdef uint32_t t
    cdef const rwkv_type_traits *tr = _quant_traits(type_name, &t)
    if n < 0 or n % tr.block_size != 0:
        raise ValueError(f"n = {n} is not a multiple of the {type_name} block size {tr.block_size}")
    want = (n // tr.block_size) * tr.block_bytes  # Python ints: no overflow
    if data.shape[0] != want:
        raise ValueError(f"{type_name}: {n} elements take {want} bytes, got {data.shape[0]}")
    out = np.empty(n, dtype=np.float32)
    if n == 0:
        return out
    cdef float[::1] y = out
    with nogil:
        rwkv_dequantize_row(t, &data[0], &y[0], n)
    return out


def quantize(str type_name, const float[::1] x not None):
    """The bytes of `x` in `type_name` (ggml's reference quantizer; len(x) a multiple of the block size).

    >>> quantize("Q4_0", np.zeros(64, np.float32)).nbytes
    36
    """
    cdef uint32_t t
    cdef const rwkv_type_traits *tr = _quant_traits(type_name, &t)
    cdef int64_t n = x.shape[0]
    if n % tr.block_size != 0:
        raise ValueError(f"{type_name} quantizes blocks of {tr.block_size} values; "
                         f"got {n}, not a multiple of {tr.block_size}")
    out = np.empty(rwkv_quant_row_size(t, n), dtype=np.uint8)
    if n == 0:
        return out
    cdef uint8_t[::1] q = out
    cdef int rc
    with nogil:
        rc = rwkv_quantize_row(t, &x[0], &q[0], n)
    if rc != RWKV_OK:
        raise ValueError(f"cannot quantize {n} values to {type_name}")
    return out

