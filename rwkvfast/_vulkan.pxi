# _vulkan.pxi — the Vulkan backend's devices, and single ops on one (for tests).

def vk_built():
    """Whether this build has the Vulkan backend."""
    return bool(rwkv_vk_built())


cdef dict _vk_info_dict(const rwkv_vk_device_info *d, int index):
    v = d.api_version
    return {"index": index, "name": d.name.decode("utf-8", "replace"), "type": d.type.decode(),
            "api_version": f"{(v >> 22) & 0x7f}.{(v >> 12) & 0x3ff}.{v & 0xfff}",
            "memory_bytes": d.device_local_bytes, "subgroup_size": d.subgroup_size}


def vk_devices():
    """The Vulkan devices found, as dicts; raises RuntimeError saying why there are none
    (no backend in this build, no loader, no driver)."""
    cdef rwkv_vk_device_info infos[16]
    cdef int n = 0, rc
    cdef rwkv_error err
    with nogil:
        rc = rwkv_vk_devices(infos, 16, &n, &err)
    _check(rc, &err)
    return [_vk_info_dict(&infos[i], i) for i in range(min(n, 16))]


cdef class VulkanDevice:
    """An open Vulkan device (index into vk_devices(); -1: the first discrete GPU)."""
    cdef rwkv_vk *vk

    def __cinit__(self, int device=-1):
        cdef rwkv_error err
        cdef int rc
        with nogil:
            rc = rwkv_vk_init(&self.vk, device, &err)
        _check(rc, &err)

    def __dealloc__(self):
        if self.vk is not NULL:
            rwkv_vk_free(self.vk)
            self.vk = NULL

    @property
    def info(self):
        cdef rwkv_vk_device_info d
        rwkv_vk_info(self.vk, &d)
        info = _vk_info_dict(&d, -1)
        info["subgroup_ops"] = bool(d.subgroup_ops)
        return info

    def matmul(self, str wtype, const uint8_t[:, ::1] w not None, const float[:, ::1] x not None, int post=0,
               bias=None):
        """Tests: post(W @ X[t]) for every row t of X on the device; `w` holds raw GGUF rows of
        `wtype`; post as the C enum rwkv_post (5, 6 and 7 add a per-row `bias`)."""
        cdef rwkv_error err
        cdef int rc
        tid, blk, nbytes = _wtype(wtype)
        cdef uint32_t t = tid
        cdef int64_t rows = w.shape[0], cols = x.shape[1], ntok = x.shape[0]
        if cols % blk or w.shape[1] != cols // blk * nbytes or rows == 0 or cols == 0 or ntok == 0:
            raise ValueError(f"w must be (rows, {nbytes} bytes per {blk} of x.shape[1]) for {wtype}")
        cdef const float[::1] b
        cdef const float *bp = NULL
        if bias is not None:
            b = np.ascontiguousarray(bias, dtype=np.float32)
            if b.shape[0] != rows:
                raise ValueError("bias must have one value per row")
            bp = &b[0]
        out = np.empty((ntok, rows), dtype=np.float32)
        cdef float[:, ::1] y = out
        with nogil:
            rc = rwkv_vk_matmul(self.vk, t, &w[0, 0], rows, cols, &x[0, 0], ntok, post, bp, &y[0, 0], &err)
        _check(rc, &err)
        return out

    def run(self, str shader, list buffers, bytes push, tuple grid, int local_x=64):
        """Tests: one dispatch of an embedded shader over `buffers` (C-contiguous numpy arrays,
        uploaded, then overwritten with what the shader left in them)."""
        cdef rwkv_error err
        cdef int rc, i, n = len(buffers)
        cdef void *data[16]
        cdef size_t sizes[16]
        if not 0 < n <= 16 or len(grid) != 3:
            raise ValueError("1 to 16 buffers and a grid (gx, gy, gz)")
        cdef uint32_t gx = grid[0], gy = grid[1], gz = grid[2]
        cdef cnp.ndarray a
        for i in range(n):
            a = buffers[i]
            if not a.flags.c_contiguous or not a.flags.writeable:
                raise ValueError(f"buffer {i} must be a writeable C-contiguous array")
            data[i] = cnp.PyArray_DATA(a)
            sizes[i] = a.nbytes
        name = shader.encode()
        cdef const char *cname = name
        cdef const char *cpush = push
        cdef uint32_t npush = len(push)
        with nogil:
            rc = rwkv_vk_run(self.vk, cname, n, data, sizes, cpush, npush, local_x, gx, gy, gz, &err)
        _check(rc, &err)
