/* gguf.c — GGUF v2/v3 reader over a read-only mmap.
 *
 * The whole file is validated at open, so nothing later has to distrust it:
 * every count, length and offset is checked against the bytes that remain
 * (with overflow-safe arithmetic) before it is used to allocate or to read.
 * Layout (little-endian): magic "GGUF", u32 version, u64 n_tensors, u64 n_kv,
 * n_kv x (string key, u32 type, value), n_tensors x (string name, u32 n_dims,
 * u64 ne[n_dims], u32 type, u64 offset), padding to `general.alignment`
 * (default 32), tensor data. Strings are u64 length + bytes (no NUL).
 */
#define _DEFAULT_SOURCE /* MAP_ANONYMOUS, MADV_HUGEPAGE */
#define _POSIX_C_SOURCE 200809L
#include "gguf.h"

#include <errno.h>
#include <fcntl.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include "error.h"
#include "ggml_types.h"

#define GGUF_DEFAULT_ALIGNMENT 32u
#define GGUF_MAX_DIMS 4u

/* A metadata entry plus the index of a string array's elements (built at open,
 * so element i is O(1) and was bounds-checked once). `pub` must stay first. */
struct kv_entry {
    struct rwkv_gguf_kv pub;
    struct rwkv_str *strs;
};

struct rwkv_gguf {
    char *path;
    const uint8_t *map;
    uint64_t size;
    uint32_t version;
    uint64_t alignment;
    uint64_t data_offset;
    uint64_t n_kv;
    struct kv_entry *kv;
    uint64_t n_tensors;
    struct rwkv_gguf_tensor *tensors;
    const struct rwkv_gguf_tensor **by_name; /* sorted by name, for bsearch */
};

struct cursor {
    const uint8_t *base;
    uint64_t pos, size;
};

static uint64_t remaining(const struct cursor *c) { return c->size - c->pos; }

static bool rd(struct cursor *c, void *dst, uint64_t n) {
    if (n > remaining(c)) return false;
    memcpy(dst, c->base + c->pos, n);
    c->pos += n;
    return true;
}

static bool rd_str(struct cursor *c, struct rwkv_str *s) {
    uint64_t len;
    if (!rd(c, &len, 8) || len > remaining(c)) return false;
    s->ptr = (const char *)c->base + c->pos;
    s->len = len;
    c->pos += len;
    return true;
}

static uint64_t scalar_size(uint32_t type) {
    switch (type) {
    case RWKV_GGUF_U8: case RWKV_GGUF_I8: case RWKV_GGUF_BOOL: return 1;
    case RWKV_GGUF_U16: case RWKV_GGUF_I16: return 2;
    case RWKV_GGUF_U32: case RWKV_GGUF_I32: case RWKV_GGUF_F32: return 4;
    case RWKV_GGUF_U64: case RWKV_GGUF_I64: case RWKV_GGUF_F64: return 8;
    default: return 0; /* string, array or unknown */
    }
}

static int str_cmp(struct rwkv_str a, struct rwkv_str b) {
    uint64_t n = a.len < b.len ? a.len : b.len;
    int c = n ? memcmp(a.ptr, b.ptr, n) : 0;
    if (c) return c;
    return (a.len > b.len) - (a.len < b.len);
}

static int tensor_ptr_cmp(const void *a, const void *b) {
    const struct rwkv_gguf_tensor *ta = *(const struct rwkv_gguf_tensor *const *)a;
    const struct rwkv_gguf_tensor *tb = *(const struct rwkv_gguf_tensor *const *)b;
    return str_cmp(ta->name, tb->name);
}

static int kv_ptr_cmp(const void *a, const void *b) {
    const struct kv_entry *ka = *(const struct kv_entry *const *)a;
    const struct kv_entry *kb = *(const struct kv_entry *const *)b;
    return str_cmp(ka->pub.key, kb->pub.key);
}

/* Reads one metadata value of `type` into e (type, array info, data pointer). */
static int read_value(struct rwkv_gguf *g, struct cursor *c, struct kv_entry *e,
                      struct rwkv_error *err) {
    int rc = RWKV_OK;
    const char *key = e->pub.key.ptr;
    int key_len = (int)(e->pub.key.len > 100 ? 100 : e->pub.key.len);
    uint32_t type = e->pub.type;
    e->pub.data = c->base + c->pos;
    if (type == RWKV_GGUF_STRING) {
        struct rwkv_str s;
        RWKV_CHECK(rd_str(c, &s), RWKV_ERR_FORMAT, "%s: metadata '%.*s': string runs past the end of the file",
                   g->path, key_len, key);
    } else if (type == RWKV_GGUF_ARRAY) {
        uint32_t at;
        uint64_t n;
        RWKV_CHECK(rd(c, &at, 4) && rd(c, &n, 8), RWKV_ERR_FORMAT,
                   "%s: metadata '%.*s': array header truncated", g->path, key_len, key);
        e->pub.arr_type = at;
        e->pub.arr_n = n;
        e->pub.data = c->base + c->pos;
        if (at == RWKV_GGUF_STRING) {
            /* each string needs at least its 8-byte length: bounds n before allocating */
            RWKV_CHECK(n <= remaining(c) / 8, RWKV_ERR_FORMAT,
                       "%s: metadata '%.*s': string array of %llu elements cannot fit in the file",
                       g->path, key_len, key, (unsigned long long)n);
            e->strs = malloc((n ? n : 1) * sizeof *e->strs);
            RWKV_CHECK(e->strs, RWKV_ERR_NOMEM, "%s: out of memory for metadata '%.*s'", g->path, key_len, key);
            for (uint64_t i = 0; i < n; i++)
                RWKV_CHECK(rd_str(c, &e->strs[i]), RWKV_ERR_FORMAT,
                           "%s: metadata '%.*s': string %llu runs past the end of the file",
                           g->path, key_len, key, (unsigned long long)i);
        } else {
            uint64_t es = scalar_size(at);
            RWKV_CHECK(es != 0, RWKV_ERR_FORMAT,
                       "%s: metadata '%.*s': unsupported array element type %u (nested arrays and unknown types are not allowed)",
                       g->path, key_len, key, at);
            RWKV_CHECK(n <= remaining(c) / es, RWKV_ERR_FORMAT,
                       "%s: metadata '%.*s': array of %llu elements runs past the end of the file",
                       g->path, key_len, key, (unsigned long long)n);
            c->pos += n * es;
        }
    } else {
        uint64_t es = scalar_size(type);
        RWKV_CHECK(es != 0, RWKV_ERR_FORMAT, "%s: metadata '%.*s': unknown value type %u",
                   g->path, key_len, key, type);
        RWKV_CHECK(es <= remaining(c), RWKV_ERR_FORMAT, "%s: metadata '%.*s': value truncated",
                   g->path, key_len, key);
        c->pos += es;
    }
fail:
    return rc;
}

static int read_tensor_info(struct rwkv_gguf *g, struct cursor *c, uint64_t i,
                            struct rwkv_gguf_tensor *t, struct rwkv_error *err) {
    int rc = RWKV_OK;
    RWKV_CHECK(rd_str(c, &t->name), RWKV_ERR_FORMAT, "%s: tensor %llu: name truncated", g->path,
               (unsigned long long)i);
    int nl = (int)(t->name.len > 100 ? 100 : t->name.len);
    RWKV_CHECK(rd(c, &t->n_dims, 4), RWKV_ERR_FORMAT, "%s: tensor '%.*s': truncated", g->path, nl, t->name.ptr);
    RWKV_CHECK(t->n_dims >= 1 && t->n_dims <= GGUF_MAX_DIMS, RWKV_ERR_FORMAT,
               "%s: tensor '%.*s': n_dims is %u, expected 1 to 4", g->path, nl, t->name.ptr, t->n_dims);
    uint64_t nelem = 1;
    for (uint32_t d = 0; d < GGUF_MAX_DIMS; d++) {
        uint64_t v = 1;
        if (d < t->n_dims)
            RWKV_CHECK(rd(c, &v, 8), RWKV_ERR_FORMAT, "%s: tensor '%.*s': truncated dims", g->path, nl, t->name.ptr);
        RWKV_CHECK(v >= 1 && v <= (uint64_t)INT64_MAX, RWKV_ERR_FORMAT,
                   "%s: tensor '%.*s': dimension %u is %lld, expected a positive size", g->path, nl,
                   t->name.ptr, d, (long long)v);
        RWKV_CHECK(nelem <= (uint64_t)INT64_MAX / v, RWKV_ERR_FORMAT,
                   "%s: tensor '%.*s': element count overflows", g->path, nl, t->name.ptr);
        nelem *= v;
        t->ne[d] = (int64_t)v;
    }
    RWKV_CHECK(rd(c, &t->type, 4) && rd(c, &t->offset, 8), RWKV_ERR_FORMAT, "%s: tensor '%.*s': truncated",
               g->path, nl, t->name.ptr);
    const struct rwkv_type_traits *tr = rwkv_type_traits_get(t->type);
    RWKV_CHECK(tr, RWKV_ERR_FORMAT, "%s: tensor '%.*s': unknown ggml type %u", g->path, nl, t->name.ptr, t->type);
    RWKV_CHECK(t->ne[0] % tr->block_size == 0, RWKV_ERR_FORMAT,
               "%s: tensor '%.*s': row length %lld is not a multiple of the %s block size %u", g->path, nl,
               t->name.ptr, (long long)t->ne[0], tr->name, tr->block_size);
    uint64_t blocks = nelem / tr->block_size;
    RWKV_CHECK(blocks <= UINT64_MAX / tr->block_bytes, RWKV_ERR_FORMAT, "%s: tensor '%.*s': byte size overflows",
               g->path, nl, t->name.ptr);
    t->nbytes = blocks * tr->block_bytes;
fail:
    return rc;
}

static int parse(struct rwkv_gguf *g, struct rwkv_error *err) {
    int rc = RWKV_OK;
    struct cursor c = {g->map, 0, g->size};
    char magic[4];
    RWKV_CHECK(rd(&c, magic, 4), RWKV_ERR_FORMAT, "%s: file is %llu bytes, too short for a GGUF header",
               g->path, (unsigned long long)g->size);
    RWKV_CHECK(memcmp(magic, "GGUF", 4) == 0, RWKV_ERR_FORMAT, "%s: not a GGUF file (magic is not 'GGUF')", g->path);
    RWKV_CHECK(rd(&c, &g->version, 4), RWKV_ERR_FORMAT, "%s: header truncated", g->path);
    RWKV_CHECK(g->version == 2 || g->version == 3, RWKV_ERR_FORMAT,
               "%s: GGUF version %u is not supported (expected 2 or 3)", g->path, g->version);
    RWKV_CHECK(rd(&c, &g->n_tensors, 8) && rd(&c, &g->n_kv, 8), RWKV_ERR_FORMAT, "%s: header truncated", g->path);

    /* A kv takes at least 8 (key len) + 4 (type) + 1 bytes; a tensor info 8+4+8+4+8. */
    RWKV_CHECK(g->n_kv <= remaining(&c) / 13, RWKV_ERR_FORMAT,
               "%s: metadata count %llu cannot fit in a %llu-byte file", g->path,
               (unsigned long long)g->n_kv, (unsigned long long)g->size);
    g->kv = calloc(g->n_kv ? g->n_kv : 1, sizeof *g->kv);
    RWKV_CHECK(g->kv, RWKV_ERR_NOMEM, "%s: out of memory", g->path);
    for (uint64_t i = 0; i < g->n_kv; i++) {
        struct kv_entry *e = &g->kv[i];
        RWKV_CHECK(rd_str(&c, &e->pub.key), RWKV_ERR_FORMAT, "%s: metadata key %llu truncated", g->path,
                   (unsigned long long)i);
        RWKV_CHECK(rd(&c, &e->pub.type, 4), RWKV_ERR_FORMAT, "%s: metadata '%.*s': truncated", g->path,
                   (int)(e->pub.key.len > 100 ? 100 : e->pub.key.len), e->pub.key.ptr);
        RWKV_TRY(read_value(g, &c, e, err));
    }

    RWKV_CHECK(g->n_tensors <= remaining(&c) / 32, RWKV_ERR_FORMAT,
               "%s: tensor count %llu cannot fit in a %llu-byte file", g->path,
               (unsigned long long)g->n_tensors, (unsigned long long)g->size);
    g->tensors = calloc(g->n_tensors ? g->n_tensors : 1, sizeof *g->tensors);
    g->by_name = calloc(g->n_tensors ? g->n_tensors : 1, sizeof *g->by_name);
    RWKV_CHECK(g->tensors && g->by_name, RWKV_ERR_NOMEM, "%s: out of memory", g->path);
    for (uint64_t i = 0; i < g->n_tensors; i++) {
        RWKV_TRY(read_tensor_info(g, &c, i, &g->tensors[i], err));
        g->by_name[i] = &g->tensors[i];
    }

    g->alignment = GGUF_DEFAULT_ALIGNMENT;
    const struct rwkv_gguf_kv *al = rwkv_gguf_find_kv(g, "general.alignment");
    if (al) {
        uint32_t a = 0;
        RWKV_CHECK(al->type == RWKV_GGUF_U32, RWKV_ERR_FORMAT,
                   "%s: general.alignment has value type %u, expected u32", g->path, al->type);
        memcpy(&a, al->data, 4);
        RWKV_CHECK(a != 0 && (a & (a - 1)) == 0, RWKV_ERR_FORMAT,
                   "%s: general.alignment is %u, expected a power of two", g->path, a);
        g->alignment = a;
    }
    g->data_offset = (c.pos + g->alignment - 1) / g->alignment * g->alignment;
    RWKV_CHECK(g->n_tensors == 0 || g->data_offset <= g->size, RWKV_ERR_FORMAT,
               "%s: file truncated before the tensor data", g->path);

    for (uint64_t i = 0; i < g->n_tensors; i++) {
        struct rwkv_gguf_tensor *t = &g->tensors[i];
        int nl = (int)(t->name.len > 100 ? 100 : t->name.len);
        uint64_t room = g->size - g->data_offset;
        RWKV_CHECK(t->offset % g->alignment == 0, RWKV_ERR_FORMAT,
                   "%s: tensor '%.*s': data offset %llu is not a multiple of the alignment %llu", g->path, nl,
                   t->name.ptr, (unsigned long long)t->offset, (unsigned long long)g->alignment);
        RWKV_CHECK(t->offset <= room && t->nbytes <= room - t->offset, RWKV_ERR_FORMAT,
                   "%s: tensor '%.*s': data [%llu, +%llu) runs past the end of the file (%llu data bytes)", g->path,
                   nl, t->name.ptr, (unsigned long long)t->offset, (unsigned long long)t->nbytes,
                   (unsigned long long)room);
        t->data = g->map + g->data_offset + t->offset;
    }

    /* Duplicate names would make "find by name" ambiguous: refuse them. */
    qsort(g->by_name, g->n_tensors, sizeof *g->by_name, tensor_ptr_cmp);
    for (uint64_t i = 1; i < g->n_tensors; i++)
        RWKV_CHECK(str_cmp(g->by_name[i - 1]->name, g->by_name[i]->name) != 0, RWKV_ERR_FORMAT,
                   "%s: duplicate tensor name '%.*s'", g->path,
                   (int)(g->by_name[i]->name.len > 100 ? 100 : g->by_name[i]->name.len), g->by_name[i]->name.ptr);
    if (g->n_kv > 1) {
        const struct kv_entry **keys = malloc(g->n_kv * sizeof *keys);
        RWKV_CHECK(keys, RWKV_ERR_NOMEM, "%s: out of memory", g->path);
        for (uint64_t i = 0; i < g->n_kv; i++) keys[i] = &g->kv[i];
        qsort(keys, g->n_kv, sizeof *keys, kv_ptr_cmp);
        uint64_t dup = 0;
        for (uint64_t i = 1; i < g->n_kv && !dup; i++)
            if (str_cmp(keys[i - 1]->pub.key, keys[i]->pub.key) == 0) dup = i;
        struct rwkv_str dk = dup ? keys[dup]->pub.key : (struct rwkv_str){"", 0};
        free(keys);
        RWKV_CHECK(!dup, RWKV_ERR_FORMAT, "%s: duplicate metadata key '%.*s'", g->path,
                   (int)(dk.len > 100 ? 100 : dk.len), dk.ptr);
    }
fail:
    return rc;
}

int rwkv_gguf_open(struct rwkv_gguf **out, const char *path, struct rwkv_error *err) {
    return rwkv_gguf_open_ex(out, path, 0, err);
}

/* Copies the file into anonymous memory backed by transparent huge pages: one TLB
 * entry per 2 MiB instead of per 4 KiB page cache page. */
static int load_copy(int fd, uint64_t size, const uint8_t **map, const char *path, struct rwkv_error *err) {
    int rc = RWKV_OK;
    void *m = mmap(NULL, size, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    RWKV_CHECK(m != MAP_FAILED, RWKV_ERR_NOMEM, "%s: cannot allocate %llu bytes to load the file", path,
               (unsigned long long)size);
#ifdef MADV_HUGEPAGE
    madvise(m, size, MADV_HUGEPAGE);
#endif
    for (uint64_t done = 0; done < size;) {
        size_t chunk = size - done > (1u << 30) ? (1u << 30) : (size_t)(size - done);
        ssize_t n = pread(fd, (uint8_t *)m + done, chunk, (off_t)done);
        if (n <= 0) {
            munmap(m, size);
            RWKV_CHECK(0, RWKV_ERR_IO, "%s: read failed at byte %llu: %s", path, (unsigned long long)done,
                       n < 0 ? strerror(errno) : "unexpected end of file");
        }
        done += (uint64_t)n;
    }
    mprotect(m, size, PROT_READ);
    *map = m;
fail:
    return rc;
}

int rwkv_gguf_open_ex(struct rwkv_gguf **out, const char *path, int flags, struct rwkv_error *err) {
    int rc = RWKV_OK;
    int fd = -1;
    struct rwkv_gguf *g = calloc(1, sizeof *g);
    *out = NULL;
    RWKV_CHECK(g, RWKV_ERR_NOMEM, "out of memory");
    g->path = strdup(path);
    RWKV_CHECK(g->path, RWKV_ERR_NOMEM, "out of memory");
    fd = open(path, O_RDONLY | O_CLOEXEC);
    RWKV_CHECK(fd >= 0, RWKV_ERR_IO, "%s: cannot open: %s", path, strerror(errno));
    struct stat st;
    RWKV_CHECK(fstat(fd, &st) == 0, RWKV_ERR_IO, "%s: cannot stat: %s", path, strerror(errno));
    RWKV_CHECK(S_ISREG(st.st_mode), RWKV_ERR_IO, "%s: not a regular file", path);
    g->size = (uint64_t)st.st_size;
    RWKV_CHECK(g->size >= 24, RWKV_ERR_FORMAT, "%s: file is %llu bytes, too short for a GGUF header", path,
               (unsigned long long)g->size);
    if (flags & RWKV_GGUF_LOAD) {
        RWKV_TRY(load_copy(fd, g->size, &g->map, path, err));
    } else {
        void *m = mmap(NULL, g->size, PROT_READ, MAP_PRIVATE, fd, 0);
        RWKV_CHECK(m != MAP_FAILED, RWKV_ERR_IO, "%s: mmap failed: %s", path, strerror(errno));
        g->map = m;
    }
    close(fd);
    fd = -1;
    RWKV_TRY(parse(g, err));
    *out = g;
    return RWKV_OK;
fail:
    if (fd >= 0) close(fd);
    rwkv_gguf_close(g);
    return rc;
}

void rwkv_gguf_close(struct rwkv_gguf *g) {
    if (!g) return;
    if (g->map) munmap((void *)g->map, g->size);
    if (g->kv)
        for (uint64_t i = 0; i < g->n_kv; i++) free(g->kv[i].strs);
    free(g->kv);
    free(g->tensors);
    free(g->by_name);
    free(g->path);
    free(g);
}

uint32_t rwkv_gguf_version(const struct rwkv_gguf *g) { return g->version; }
uint64_t rwkv_gguf_file_size(const struct rwkv_gguf *g) { return g->size; }
uint64_t rwkv_gguf_alignment(const struct rwkv_gguf *g) { return g->alignment; }
uint64_t rwkv_gguf_data_offset(const struct rwkv_gguf *g) { return g->data_offset; }
uint64_t rwkv_gguf_kv_count(const struct rwkv_gguf *g) { return g->n_kv; }
uint64_t rwkv_gguf_tensor_count(const struct rwkv_gguf *g) { return g->n_tensors; }
const char *rwkv_gguf_path(const struct rwkv_gguf *g) { return g->path; }

const struct rwkv_gguf_kv *rwkv_gguf_kv_at(const struct rwkv_gguf *g, uint64_t i) {
    return i < g->n_kv ? &g->kv[i].pub : NULL;
}

const struct rwkv_gguf_kv *rwkv_gguf_find_kv(const struct rwkv_gguf *g, const char *key) {
    struct rwkv_str k = {key, strlen(key)};
    for (uint64_t i = 0; i < g->n_kv; i++)
        if (str_cmp(g->kv[i].pub.key, k) == 0) return &g->kv[i].pub;
    return NULL;
}

struct rwkv_str rwkv_gguf_kv_str_at(const struct rwkv_gguf_kv *kv, uint64_t i) {
    const struct kv_entry *e = (const struct kv_entry *)kv;
    if (kv->type == RWKV_GGUF_STRING && i == 0) {
        uint64_t len;
        memcpy(&len, kv->data, 8);
        return (struct rwkv_str){(const char *)kv->data + 8, len};
    }
    if (kv->type != RWKV_GGUF_ARRAY || kv->arr_type != RWKV_GGUF_STRING || i >= kv->arr_n)
        return (struct rwkv_str){"", 0};
    return e->strs[i];
}

const struct rwkv_gguf_tensor *rwkv_gguf_tensor_at(const struct rwkv_gguf *g, uint64_t i) {
    return i < g->n_tensors ? &g->tensors[i] : NULL;
}

const struct rwkv_gguf_tensor *rwkv_gguf_find_tensor(const struct rwkv_gguf *g, const char *name) {
    struct rwkv_gguf_tensor key = {.name = {name, strlen(name)}};
    const struct rwkv_gguf_tensor *kp = &key;
    const struct rwkv_gguf_tensor **hit =
        bsearch(&kp, g->by_name, g->n_tensors, sizeof *g->by_name, tensor_ptr_cmp);
    return hit ? *hit : NULL;
}

/* ----- typed metadata getters used by the loaders ----- */

int rwkv_gguf_get_u64(const struct rwkv_gguf *g, const char *key, int required, uint64_t *out,
                      struct rwkv_error *err) {
    int rc = RWKV_OK;
    const struct rwkv_gguf_kv *kv = rwkv_gguf_find_kv(g, key);
    if (!kv) {
        RWKV_CHECK(!required, RWKV_ERR_FORMAT, "%s: missing metadata key '%s'", g->path, key);
        return RWKV_OK;
    }
    switch (kv->type) {
    case RWKV_GGUF_U8: { uint8_t v; memcpy(&v, kv->data, 1); *out = v; break; }
    case RWKV_GGUF_U16: { uint16_t v; memcpy(&v, kv->data, 2); *out = v; break; }
    case RWKV_GGUF_U32: { uint32_t v; memcpy(&v, kv->data, 4); *out = v; break; }
    case RWKV_GGUF_U64: { uint64_t v; memcpy(&v, kv->data, 8); *out = v; break; }
    case RWKV_GGUF_I32: {
        int32_t v; memcpy(&v, kv->data, 4);
        RWKV_CHECK(v >= 0, RWKV_ERR_FORMAT, "%s: metadata '%s' is %d, expected >= 0", g->path, key, v);
        *out = (uint64_t)v; break;
    }
    case RWKV_GGUF_I64: {
        int64_t v; memcpy(&v, kv->data, 8);
        RWKV_CHECK(v >= 0, RWKV_ERR_FORMAT, "%s: metadata '%s' is %lld, expected >= 0", g->path, key, (long long)v);
        *out = (uint64_t)v; break;
    }
    default:
        RWKV_CHECK(0, RWKV_ERR_FORMAT, "%s: metadata '%s' has value type %u, expected an integer", g->path, key,
                   kv->type);
    }
fail:
    return rc;
}

int rwkv_gguf_get_f32(const struct rwkv_gguf *g, const char *key, int required, float *out,
                      struct rwkv_error *err) {
    int rc = RWKV_OK;
    const struct rwkv_gguf_kv *kv = rwkv_gguf_find_kv(g, key);
    if (!kv) {
        RWKV_CHECK(!required, RWKV_ERR_FORMAT, "%s: missing metadata key '%s'", g->path, key);
        return RWKV_OK;
    }
    if (kv->type == RWKV_GGUF_F32) {
        memcpy(out, kv->data, 4);
    } else if (kv->type == RWKV_GGUF_F64) {
        double d;
        memcpy(&d, kv->data, 8);
        *out = (float)d;
    } else {
        RWKV_CHECK(0, RWKV_ERR_FORMAT, "%s: metadata '%s' has value type %u, expected a float", g->path, key,
                   kv->type);
    }
fail:
    return rc;
}

int rwkv_gguf_get_str(const struct rwkv_gguf *g, const char *key, struct rwkv_str *out,
                      struct rwkv_error *err) {
    int rc = RWKV_OK;
    const struct rwkv_gguf_kv *kv = rwkv_gguf_find_kv(g, key);
    RWKV_CHECK(kv, RWKV_ERR_FORMAT, "%s: missing metadata key '%s'", g->path, key);
    RWKV_CHECK(kv->type == RWKV_GGUF_STRING, RWKV_ERR_FORMAT, "%s: metadata '%s' has value type %u, expected a string",
               g->path, key, kv->type);
    *out = rwkv_gguf_kv_str_at(kv, 0);
fail:
    return rc;
}
