/* tokenizer.c — the RWKV World tokenizer.
 *
 * GGUF stores the vocabulary as Python-repr-escaped strings; we un-escape them
 * the way llama.cpp's llama_unescape_rwkv_token does, build a byte trie of the
 * normal tokens, and encode by greedy longest match over the UTF-8 bytes, which
 * is exactly what the rwkv package's TRIE_TOKENIZER does. V = vocab size.
 *
 * Behaviour worth knowing:
 *  - Only NORMAL tokens (type 1) are matched, so text "<s>" or "[PAD65530]"
 *    encodes as ordinary bytes, like the rwkv package (llama.cpp differs here).
 *  - CONTROL (3) and UNUSED (5) tokens decode to empty bytes: the rwkv package
 *    never emits them as text and a chat must not print "<s>". Every other id
 *    decodes to its un-escaped bytes.
 *  - If two normal tokens have the same bytes the higher id is the one encoded,
 *    as in the rwkv package (its dict keeps the last) and llama.cpp's trie (the
 *    World vocabularies have no duplicates, so this never shows in practice).
 */
#include "error.h"
#include "gguf.h"

#include <inttypes.h>
#include <stdlib.h>
#include <string.h>

enum { TOKEN_NORMAL = 1, TOKEN_CONTROL = 3, TOKEN_UNUSED = 5 };

/* The trie is stored breadth-first in CSR form: nodes are numbered in the order
 * they are created, and a node's children are created together, so the children
 * of u are the consecutive nodes first[u] .. first[u+1]-1, sorted by the byte on
 * their incoming edge (label). That costs 9 bytes a node and no per-node
 * allocation; a child is found by binary search over a few bytes of `label`.
 * The root, which has a child for nearly every byte, gets a dense table. */
struct rwkv_tokenizer {
    uint64_t n_vocab;
    uint8_t *bytes;       /* every piece back to back */
    uint64_t *piece_off;  /* [V+1]: piece i is bytes[piece_off[i] .. piece_off[i+1]) */
    uint32_t n_nodes;
    uint32_t *first;      /* [n_nodes+1] */
    int32_t *id;          /* [n_nodes] token that ends at this node, or -1 */
    uint8_t *label;       /* [n_nodes] */
    uint32_t root[256];   /* child of the root for each byte; 0 (the root) = none */
};

/* One normal token while the trie is built. */
struct entry {
    const uint8_t *p;
    uint32_t len;
    int32_t id;
};

static int hexval(char c) {
    if (c >= '0' && c <= '9') return c - '0';
    if (c >= 'a' && c <= 'f') return c - 'a' + 10;
    if (c >= 'A' && c <= 'F') return c - 'A' + 10;
    return -1;
}

/* Un-escape token `idx` into out (which has room for s.len bytes: un-escaping
 * never grows a string). llama.cpp silently turns a bad escape into garbage;
 * we reject it, since it can only mean a broken converter. */
static int unescape(struct rwkv_str s, uint64_t idx, uint8_t *out, uint64_t *out_len,
                    struct rwkv_error *err) {
    int rc = RWKV_OK;
    uint64_t n = 0;
    for (uint64_t i = 0; i < s.len; i++) {
        char c = s.ptr[i];
        if (c != '\\') {
            out[n++] = (uint8_t)c;
            continue;
        }
        RWKV_CHECK(i + 1 < s.len, RWKV_ERR_FORMAT,
                   "tokenizer.ggml.tokens[%" PRIu64 "]: trailing backslash", idx);
        c = s.ptr[++i];
        if (c == 't') {
            out[n++] = '\t';
        } else if (c == 'n') {
            out[n++] = '\n';
        } else if (c == 'r') {
            out[n++] = '\r';
        } else if (c == 'x') {
            RWKV_CHECK(i + 2 < s.len, RWKV_ERR_FORMAT,
                       "tokenizer.ggml.tokens[%" PRIu64 "]: truncated \\x escape", idx);
            int hi = hexval(s.ptr[i + 1]), lo = hexval(s.ptr[i + 2]);
            RWKV_CHECK(hi >= 0 && lo >= 0, RWKV_ERR_FORMAT,
                       "tokenizer.ggml.tokens[%" PRIu64 "]: bad hex digit in \\x escape", idx);
            out[n++] = (uint8_t)(hi << 4 | lo);
            i += 2;
        } else {
            out[n++] = (uint8_t)c; /* \\ \' \" and anything else: the char itself */
        }
    }
    *out_len = n;
fail:
    return rc;
}

/* Byte order, shorter first, then higher id first: equal tokens end up adjacent
 * with the highest id in front, which is the one the builder keeps. */
static int entry_cmp(const void *a, const void *b) {
    const struct entry *x = a, *y = b;
    uint32_t n = x->len < y->len ? x->len : y->len;
    int c = n ? memcmp(x->p, y->p, n) : 0;
    if (c) return c;
    if (x->len != y->len) return x->len < y->len ? -1 : 1;
    return (x->id < y->id) - (x->id > y->id);
}

/* Build the trie from `ents` (sorted by entry_cmp) breadth-first. Each node owns
 * the range of entries [lo, hi) that start with its prefix of length depth; the
 * node's children split that range by the byte at `depth`. Iterative, so a very
 * long token cannot overflow the stack. `max_nodes` bounds the node count (one
 * per byte of every entry, plus the root). */
static int build_trie(struct rwkv_tokenizer *t, const struct entry *ents, uint32_t n_ents,
                      uint64_t max_nodes, struct rwkv_error *err) {
    int rc = RWKV_OK;
    uint32_t *lo = NULL, *hi = NULL, *depth = NULL;
    RWKV_CHECK(max_nodes < UINT32_MAX, RWKV_ERR_FORMAT,
               "tokenizer.ggml.tokens: %" PRIu64 " bytes of tokens is too many", max_nodes);
    size_t m = (size_t)max_nodes;
    t->first = malloc((m + 1) * sizeof *t->first);
    t->id = malloc(m * sizeof *t->id);
    t->label = malloc(m);
    lo = malloc(m * sizeof *lo);
    hi = malloc(m * sizeof *hi);
    depth = malloc(m * sizeof *depth);
    RWKV_CHECK(t->first && t->id && t->label && lo && hi && depth, RWKV_ERR_NOMEM,
               "tokenizer: out of memory for a trie of %" PRIu64 " nodes", max_nodes);

    uint32_t n = 1;
    lo[0] = 0, hi[0] = n_ents, depth[0] = 0, t->label[0] = 0;
    for (uint32_t u = 0; u < n; u++) {
        uint32_t i = lo[u], end = hi[u], d = depth[u];
        t->id[u] = -1;
        if (i < end && ents[i].len == d) t->id[u] = ents[i].id;
        while (i < end && ents[i].len == d) i++; /* duplicates of this node's token */
        t->first[u] = n;
        while (i < end) {
            uint8_t c = ents[i].p[d];
            uint32_t j = i + 1;
            while (j < end && ents[j].p[d] == c) j++;
            t->label[n] = c, lo[n] = i, hi[n] = j, depth[n] = d + 1;
            n++;
            i = j;
        }
    }
    t->first[n] = n;
    t->n_nodes = n;
    memset(t->root, 0, sizeof t->root);
    for (uint32_t v = t->first[0]; v < t->first[1]; v++) t->root[t->label[v]] = v;

    /* Shared prefixes make the real count well below the bound: give back the rest. */
    uint32_t *f = realloc(t->first, ((size_t)n + 1) * sizeof *f);
    if (f) t->first = f;
    int32_t *id = realloc(t->id, (size_t)n * sizeof *id);
    if (id) t->id = id;
    uint8_t *lb = realloc(t->label, n);
    if (lb) t->label = lb;
fail:
    free(lo);
    free(hi);
    free(depth);
    return rc;
}

int rwkv_tokenizer_init(struct rwkv_tokenizer **out, const struct rwkv_str *tokens,
                        const int32_t *types, uint64_t n, struct rwkv_error *err) {
    int rc = RWKV_OK;
    struct rwkv_tokenizer *t = NULL;
    struct entry *ents = NULL;
    *out = NULL;
    RWKV_CHECK(n <= (uint64_t)INT32_MAX + 1, RWKV_ERR_FORMAT,
               "tokenizer: %" PRIu64 " tokens do not fit 32-bit ids", n);
    RWKV_CHECK(n == 0 || tokens, RWKV_ERR_FORMAT, "tokenizer: tokens is NULL");

    uint64_t total = 0;
    for (uint64_t i = 0; i < n; i++) {
        RWKV_CHECK(tokens[i].ptr || tokens[i].len == 0, RWKV_ERR_FORMAT,
                   "tokenizer.ggml.tokens[%" PRIu64 "] is NULL", i);
        RWKV_CHECK(tokens[i].len <= SIZE_MAX / 2 - total, RWKV_ERR_NOMEM,
                   "tokenizer: tokens too large");
        total += tokens[i].len;
    }

    t = calloc(1, sizeof *t);
    RWKV_CHECK(t, RWKV_ERR_NOMEM, "tokenizer: out of memory");
    t->n_vocab = n;
    t->bytes = malloc(total ? (size_t)total : 1);
    t->piece_off = malloc(((size_t)n + 1) * sizeof *t->piece_off);
    ents = malloc((n ? (size_t)n : 1) * sizeof *ents);
    RWKV_CHECK(t->bytes && t->piece_off && ents, RWKV_ERR_NOMEM,
               "tokenizer: out of memory for %" PRIu64 " tokens", n);

    uint64_t pos = 0, n_ents = 0, ent_bytes = 0;
    for (uint64_t i = 0; i < n; i++) {
        uint64_t len = 0;
        RWKV_TRY(unescape(tokens[i], i, t->bytes + pos, &len, err));
        int32_t type = types ? types[i] : TOKEN_NORMAL;
        t->piece_off[i] = pos;
        if (type == TOKEN_CONTROL || type == TOKEN_UNUSED) continue; /* decodes empty */
        if (type == TOKEN_NORMAL && len > 0) {
            RWKV_CHECK(len <= UINT32_MAX, RWKV_ERR_FORMAT,
                       "tokenizer.ggml.tokens[%" PRIu64 "] is too long", i);
            ents[n_ents++] = (struct entry){t->bytes + pos, (uint32_t)len, (int32_t)i};
            ent_bytes += len;
        }
        pos += len;
    }
    t->piece_off[n] = pos;

    qsort(ents, (size_t)n_ents, sizeof *ents, entry_cmp);
    RWKV_TRY(build_trie(t, ents, (uint32_t)n_ents, ent_bytes + 1, err));
    *out = t;
    t = NULL;
fail:
    free(ents);
    rwkv_tokenizer_free(t);
    return rc;
}

int rwkv_tokenizer_init_gguf(struct rwkv_tokenizer **out, const struct rwkv_gguf *g,
                             struct rwkv_error *err) {
    int rc = RWKV_OK;
    struct rwkv_str *tokens = NULL;
    int32_t *types = NULL;
    *out = NULL;

    const char *path = rwkv_gguf_path(g);
    struct rwkv_str model;
    RWKV_TRY(rwkv_gguf_get_str(g, "tokenizer.ggml.model", &model, err));
    RWKV_CHECK(model.len == 4 && memcmp(model.ptr, "rwkv", 4) == 0, RWKV_ERR_FORMAT,
               "%s: tokenizer.ggml.model is \"%.*s\", expected \"rwkv\"", path,
               (int)(model.len < 64 ? model.len : 64), model.ptr);

    const struct rwkv_gguf_kv *kv = rwkv_gguf_find_kv(g, "tokenizer.ggml.tokens");
    RWKV_CHECK(kv, RWKV_ERR_FORMAT, "%s: missing metadata key 'tokenizer.ggml.tokens'", path);
    RWKV_CHECK(kv->type == RWKV_GGUF_ARRAY && kv->arr_type == RWKV_GGUF_STRING, RWKV_ERR_FORMAT,
               "%s: tokenizer.ggml.tokens: expected an array of strings", path);
    uint64_t n = kv->arr_n;
    RWKV_CHECK(n <= (uint64_t)INT32_MAX + 1, RWKV_ERR_FORMAT,
               "%s: tokenizer.ggml.tokens: %" PRIu64 " tokens do not fit 32-bit ids", path, n);
    tokens = malloc((n ? (size_t)n : 1) * sizeof *tokens);
    RWKV_CHECK(tokens, RWKV_ERR_NOMEM, "tokenizer: out of memory for %" PRIu64 " tokens", n);
    for (uint64_t i = 0; i < n; i++) tokens[i] = rwkv_gguf_kv_str_at(kv, i);

    kv = rwkv_gguf_find_kv(g, "tokenizer.ggml.token_type");
    if (kv) {
        RWKV_CHECK(kv->type == RWKV_GGUF_ARRAY && kv->arr_type == RWKV_GGUF_I32, RWKV_ERR_FORMAT,
                   "%s: tokenizer.ggml.token_type: expected an array of int32", path);
        RWKV_CHECK(kv->arr_n == n, RWKV_ERR_FORMAT,
                   "%s: tokenizer.ggml.token_type has %" PRIu64 " entries, tokens has %" PRIu64,
                   path, kv->arr_n, n);
        types = malloc((n ? (size_t)n : 1) * sizeof *types);
        RWKV_CHECK(types, RWKV_ERR_NOMEM, "tokenizer: out of memory");
        /* the mapping gives no alignment guarantee for metadata: copy, don't cast */
        if (n) memcpy(types, kv->data, (size_t)n * sizeof *types);
    }
    RWKV_TRY(rwkv_tokenizer_init(out, tokens, types, n, err));
fail:
    free(tokens);
    free(types);
    return rc;
}

void rwkv_tokenizer_free(struct rwkv_tokenizer *t) {
    if (!t) return;
    free(t->bytes);
    free(t->piece_off);
    free(t->first);
    free(t->id);
    free(t->label);
    free(t);
}

uint64_t rwkv_tokenizer_vocab_size(const struct rwkv_tokenizer *t) { return t->n_vocab; }

/* The child of u along byte c, or 0 (the root is nobody's child). */
static inline uint32_t child(const struct rwkv_tokenizer *t, uint32_t u, uint8_t c) {
    uint32_t lo = t->first[u], hi = t->first[u + 1];
    while (lo < hi) {
        uint32_t mid = (lo + hi) >> 1;
        if (t->label[mid] < c) lo = mid + 1;
        else hi = mid;
    }
    return lo < t->first[u + 1] && t->label[lo] == c ? lo : 0;
}

int64_t rwkv_tokenizer_encode(const struct rwkv_tokenizer *t, const char *text, uint64_t len,
                              int32_t *ids, uint64_t cap, struct rwkv_error *err) {
    int rc = RWKV_OK;
    const uint8_t *s = (const uint8_t *)text;
    uint64_t pos = 0;
    int64_t n = 0;
    RWKV_CHECK(len <= INT64_MAX, RWKV_ERR_FORMAT, "tokenizer: text too long");
    RWKV_CHECK(text || len == 0, RWKV_ERR_FORMAT, "tokenizer: text is NULL");
    RWKV_CHECK(ids || cap == 0, RWKV_ERR_FORMAT, "tokenizer: ids is NULL");
    while (pos < len) {
        /* Walk as deep as the text allows and keep the last node that ends a
         * token: TRIE.find_longest in the rwkv package. */
        int32_t best = -1;
        uint64_t end = pos, p = pos + 1;
        for (uint32_t u = t->root[s[pos]]; u;) {
            if (t->id[u] >= 0) best = t->id[u], end = p;
            if (p == len) break;
            u = child(t, u, s[p++]);
        }
        RWKV_CHECK(best >= 0, RWKV_ERR_FORMAT,
                   "tokenizer: no token matches byte 0x%02x at offset %" PRIu64, s[pos], pos);
        if ((uint64_t)n < cap) ids[n] = best;
        n++;
        pos = end;
    }
    return n;
fail:
    return rc;
}

struct rwkv_str rwkv_tokenizer_piece(const struct rwkv_tokenizer *t, int32_t id) {
    if (id < 0 || (uint64_t)id >= t->n_vocab) return (struct rwkv_str){"", 0};
    uint64_t a = t->piece_off[id], b = t->piece_off[id + 1];
    return (struct rwkv_str){(const char *)t->bytes + a, b - a};
}
