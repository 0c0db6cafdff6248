/* sampler.c — the two samplers of sampler.h over a V-sized logit vector.
 *
 * The cost is a few passes over V (bias, argmax, softmax) plus work on the few tokens that
 * matter: the top-p cutoff by a radix walk over the probabilities' bit patterns (top_p_cut),
 * top-k by a size-k heap, and the draw over the surviving ids only; no full sort unless llama
 * mode is asked for every token (top_k = 0).
 */
#include "sampler.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "error.h"

struct cand {
    float v;
    int32_t id;
};

struct rwkv_sampler {
    struct rwkv_sampler_params p;
    int64_t V;
    float *bias;  /* [V] */
    float *occ;   /* [V] RWKV occurrence counts (decayed) */
    uint8_t *in;  /* [V] 1 when occ[t] is in use */
    int32_t *seen;
    int64_t n_seen;
    int32_t *hist; /* llama mode: accepted tokens, ring of hist_cap */
    int64_t hist_cap, hist_n, hist_pos;
    int32_t *cnt;  /* [V] scratch counts for the llama window, zero between calls */
    int32_t *keep; /* [V] surviving token ids */
    float *l, *pr; /* [V] scratch logits and probabilities */
    struct cand *c, *c2; /* [V] candidates, and a second list for re-ordering */
    double *w;          /* [V] candidate probabilities (llama mode) */
    uint64_t rng[4];
};

/* ------------------------------------------------------------ generator -- */

static uint64_t splitmix64(uint64_t *x) {
    uint64_t z = (*x += 0x9e3779b97f4a7c15ull);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    return z ^ (z >> 31);
}

static uint64_t rotl(uint64_t x, int k) { return (x << k) | (x >> (64 - k)); }

static uint64_t xoshiro(uint64_t s[4]) {
    const uint64_t r = rotl(s[1] * 5, 7) * 9, t = s[1] << 17;
    s[2] ^= s[0];
    s[3] ^= s[1];
    s[1] ^= s[2];
    s[0] ^= s[3];
    s[2] ^= t;
    s[3] = rotl(s[3], 45);
    return r;
}

void rwkv_sampler_reseed(struct rwkv_sampler *s, uint64_t seed) {
    uint64_t x = seed;
    for (int i = 0; i < 4; i++) s->rng[i] = splitmix64(&x);
}

static double uniform(struct rwkv_sampler *s) { return (double)(xoshiro(s->rng) >> 11) * 0x1.0p-53; }

/* ------------------------------------------------------------ lifetime -- */

int rwkv_sampler_init(struct rwkv_sampler **out, const struct rwkv_sampler_params *p, int64_t n_vocab,
                      struct rwkv_error *err) {
    int rc = RWKV_OK;
    struct rwkv_sampler *s = NULL;
    *out = NULL;
    RWKV_CHECK(n_vocab > 0 && n_vocab <= INT32_MAX, RWKV_ERR_FORMAT, "vocabulary size %lld is out of range",
               (long long)n_vocab);
    RWKV_CHECK(p->mode == RWKV_SAMPLER_RWKV || p->mode == RWKV_SAMPLER_LLAMA, RWKV_ERR_FORMAT,
               "unknown sampler mode %d", p->mode);
    RWKV_CHECK(p->temperature >= 0.0f && isfinite(p->temperature), RWKV_ERR_FORMAT,
               "temperature must be >= 0, got %g", p->temperature);
    RWKV_CHECK(p->top_p >= 0.0f && p->top_p <= 1.0f, RWKV_ERR_FORMAT, "top_p must be in [0, 1], got %g", p->top_p);
    RWKV_CHECK(p->min_p >= 0.0f && p->min_p <= 1.0f, RWKV_ERR_FORMAT, "min_p must be in [0, 1], got %g", p->min_p);
    RWKV_CHECK(p->typical_p > 0.0f && p->typical_p <= 1.0f, RWKV_ERR_FORMAT, "typical_p must be in (0, 1], got %g",
               p->typical_p);
    RWKV_CHECK(p->top_k >= 0, RWKV_ERR_FORMAT, "top_k must be >= 0, got %d", p->top_k);
    RWKV_CHECK(p->penalty_decay >= 0.0f && p->penalty_decay <= 1.0f, RWKV_ERR_FORMAT,
               "penalty_decay must be in [0, 1], got %g", p->penalty_decay);
    RWKV_CHECK(p->repeat_penalty > 0.0f && isfinite(p->repeat_penalty), RWKV_ERR_FORMAT,
               "repeat_penalty must be > 0, got %g", p->repeat_penalty);
    RWKV_CHECK(isfinite(p->presence_penalty) && isfinite(p->frequency_penalty), RWKV_ERR_FORMAT,
               "presence and frequency penalties must be finite");
    RWKV_CHECK(p->repeat_last_n >= -1, RWKV_ERR_FORMAT, "repeat_last_n must be >= -1, got %d", p->repeat_last_n);
    s = calloc(1, sizeof *s);
    RWKV_CHECK(s, RWKV_ERR_NOMEM, "out of memory for the sampler");
    s->p = *p;
    s->V = n_vocab;
    const size_t V = (size_t)n_vocab;
    s->bias = calloc(V, sizeof *s->bias);
    s->occ = calloc(V, sizeof *s->occ);
    s->in = calloc(V, 1);
    s->seen = malloc(V * sizeof *s->seen);
    s->cnt = calloc(V, sizeof *s->cnt);
    s->keep = malloc(V * sizeof *s->keep);
    s->l = malloc(V * sizeof *s->l);
    s->pr = malloc(V * sizeof *s->pr);
    s->c = malloc(V * sizeof *s->c);
    s->c2 = malloc(V * sizeof *s->c2);
    s->w = malloc(V * sizeof *s->w);
    s->hist_cap = p->repeat_last_n > 0 ? p->repeat_last_n : 64;
    s->hist = malloc((size_t)s->hist_cap * sizeof *s->hist);
    RWKV_CHECK(s->bias && s->occ && s->in && s->seen && s->cnt && s->keep && s->l && s->pr && s->c && s->c2 && s->w && s->hist,
               RWKV_ERR_NOMEM,
               "out of memory for the sampler (vocabulary %lld)", (long long)n_vocab);
    rwkv_sampler_reseed(s, p->seed);
    *out = s;
    return RWKV_OK;
fail:
    rwkv_sampler_free(s);
    return rc;
}

void rwkv_sampler_free(struct rwkv_sampler *s) {
    if (!s) return;
    free(s->bias), free(s->occ), free(s->in), free(s->seen), free(s->cnt), free(s->keep);
    free(s->l), free(s->pr), free(s->c), free(s->c2), free(s->w), free(s->hist);
    free(s);
}

int rwkv_sampler_set_bias(struct rwkv_sampler *s, int32_t t, float bias, struct rwkv_error *err) {
    int rc = RWKV_OK;
    RWKV_CHECK(t >= 0 && t < s->V, RWKV_ERR_FORMAT, "token %d is outside the vocabulary (0..%lld)", t,
               (long long)s->V - 1);
    RWKV_CHECK(!isnan(bias) && bias != INFINITY, RWKV_ERR_FORMAT, "bias of token %d must be finite or -inf", t);
    s->bias[t] = bias;
fail:
    return rc;
}

void rwkv_sampler_reset(struct rwkv_sampler *s) {
    for (int64_t i = 0; i < s->n_seen; i++) {
        s->occ[s->seen[i]] = 0.0f;
        s->in[s->seen[i]] = 0;
    }
    s->n_seen = 0;
    s->hist_n = s->hist_pos = 0;
}

int rwkv_sampler_accept(struct rwkv_sampler *s, int32_t t, struct rwkv_error *err) {
    int rc = RWKV_OK;
    RWKV_CHECK(t >= 0 && t < s->V, RWKV_ERR_FORMAT, "token %d is outside the vocabulary (0..%lld)", t,
               (long long)s->V - 1);
    /* ChatRWKV: every count decays, then the new token's count grows by one */
    for (int64_t i = 0; i < s->n_seen; i++) s->occ[s->seen[i]] *= s->p.penalty_decay;
    if (!s->in[t]) {
        s->in[t] = 1;
        s->seen[s->n_seen++] = t;
    }
    s->occ[t] += 1.0f;
    if (s->p.repeat_last_n == -1 && s->hist_n == s->hist_cap) { /* "all tokens": grow the ring */
        int32_t *h = realloc(s->hist, (size_t)s->hist_cap * 2 * sizeof *h);
        RWKV_CHECK(h, RWKV_ERR_NOMEM, "out of memory for the sampler history");
        s->hist = h;
        s->hist_pos = s->hist_n;
        s->hist_cap *= 2;
    }
    s->hist[s->hist_pos] = t;
    s->hist_pos = (s->hist_pos + 1) % s->hist_cap;
    if (s->hist_n < s->hist_cap) s->hist_n++;
fail:
    return rc;
}

/* ------------------------------------------------------------ helpers -- */

static int by_value_desc(const void *a, const void *b) {
    const struct cand *x = a, *y = b;
    if (x->v != y->v) return x->v > y->v ? -1 : 1;
    return (x->id > y->id) - (x->id < y->id);
}

static int by_id(const void *a, const void *b) {
    const struct cand *x = a, *y = b;
    return (x->id > y->id) - (x->id < y->id);
}

/* Index of the largest finite-or-inf value (lowest id on ties), or -1 when all are NaN/-inf. */
static int32_t argmax(const float *v, int64_t V) {
    int32_t best = -1;
    for (int64_t i = 0; i < V; i++)
        if (v[i] > -INFINITY && (best < 0 || v[i] > v[best])) best = (int32_t)i;
    return best;
}

/* The n largest values of v as candidates sorted descending (a size-n min-heap, then a sort). */
static int64_t top_n(const float *v, int64_t V, int64_t n, struct cand *c) {
    int64_t m = 0;
    for (int64_t i = 0; i < V; i++) {
        if (!(v[i] > -INFINITY)) continue;
        const struct cand x = {v[i], (int32_t)i};
        if (m < n) { /* sift up */
            int64_t j = m++;
            while (j > 0 && by_value_desc(&c[(j - 1) / 2], &x) < 0) c[j] = c[(j - 1) / 2], j = (j - 1) / 2;
            c[j] = x;
        } else if (by_value_desc(&x, &c[0]) < 0) { /* better than the heap's worst: sift down */
            int64_t j = 0;
            for (;;) {
                int64_t k = 2 * j + 1;
                if (k >= m) break;
                if (k + 1 < m && by_value_desc(&c[k + 1], &c[k]) > 0) k++;
                if (by_value_desc(&c[k], &x) <= 0) break;
                c[j] = c[k], j = k;
            }
            c[j] = x;
        }
    }
    qsort(c, (size_t)m, sizeof *c, by_value_desc);
    return m;
}

static void one_hot(float *probs, int64_t V, int32_t t) {
    if (!probs) return;
    memset(probs, 0, (size_t)V * sizeof *probs);
    probs[t] = 1.0f;
}

/* The official top-p cutoff: the probability at which the cumulative sum of p in descending
 * order first reaches top_p (every p >= it is kept, ties included). A radix walk instead of a
 * sort: positive floats order like their bit patterns, so one pass buckets p by the top 12
 * bits (mass and count per bucket), the walk from the top finds the bucket holding the
 * crossing, a second pass splits that bucket by the next 12 bits if it is large, and only the
 * final bucket's few tokens are sorted. */
#define RADIX_BITS 12
static float top_p_cut(const float *p, int64_t V, float pmax, float top_p, struct cand *c) {
    if (pmax >= top_p) return pmax;
    static const int NB = 1 << RADIX_BITS;
    double mass[1 << RADIX_BITS];
    int64_t count[1 << RADIX_BITS];
    uint32_t prefix = 0;     /* bits above the current digit that every candidate shares */
    int shift = 32 - RADIX_BITS, depth = 0;
    double above = 0.0;      /* mass of the tokens known to be above the current bucket */
    for (;;) {
        memset(mass, 0, sizeof mass);
        memset(count, 0, sizeof count);
        const uint32_t hi_mask = depth == 0 ? 0u : ~0u << (shift + RADIX_BITS);
        for (int64_t i = 0; i < V; i++) {
            if (!(p[i] > 0.0f)) continue;
            uint32_t u;
            memcpy(&u, &p[i], 4);
            if ((u & hi_mask) != prefix) continue;
            const uint32_t d = (u >> shift) & (uint32_t)(NB - 1);
            mass[d] += p[i];
            count[d]++;
        }
        int b = NB - 1;
        for (; b > 0; b--) {
            if (above + mass[b] >= top_p) break;
            above += mass[b];
        }
        prefix |= (uint32_t)b << shift;
        if (count[b] <= 4096 || shift < RADIX_BITS) {
            const uint32_t mask = ~0u << shift;
            int64_t n = 0;
            for (int64_t i = 0; i < V; i++) {
                uint32_t u;
                memcpy(&u, &p[i], 4);
                if (p[i] > 0.0f && (u & mask) == prefix) c[n++] = (struct cand){p[i], (int32_t)i};
            }
            qsort(c, (size_t)n, sizeof *c, by_value_desc);
            double cum = above;
            for (int64_t j = 0; j < n; j++) {
                cum += c[j].v;
                if (cum >= top_p) return c[j].v;
            }
            return n ? c[n - 1].v : 0.0f; /* the mass fell short of top_p by rounding: keep all of it */
        }
        shift -= RADIX_BITS;
        depth++;
    }
}

/* ------------------------------------------------------------ RWKV mode -- */

static int32_t sample_rwkv(struct rwkv_sampler *s, double u, float *probs) {
    const struct rwkv_sampler_params *p = &s->p;
    const int64_t V = s->V;
    float *l = s->l, *pr = s->pr;
    for (int64_t i = 0; i < s->n_seen; i++) {
        const int32_t t = s->seen[i];
        l[t] -= p->presence_penalty + s->occ[t] * p->frequency_penalty;
    }
    const int32_t best = argmax(l, V);
    if (best < 0) return -1;
    if (p->temperature == 0.0f) {
        one_hot(probs, V, best);
        return best;
    }
    /* softmax; four partial sums, so the adds do not wait on each other */
    const float m = l[best];
    double acc4[4] = {0.0, 0.0, 0.0, 0.0};
    for (int64_t i = 0; i < V; i++) {
        pr[i] = l[i] > -INFINITY ? expf(l[i] - m) : 0.0f;
        acc4[i & 3] += pr[i];
    }
    const float inv = (float)(1.0 / ((acc4[0] + acc4[1]) + (acc4[2] + acc4[3])));
    for (int64_t i = 0; i < V; i++) pr[i] *= inv;
    const float pmax = pr[best];
    float floor_p = p->min_p * pmax; /* everything below it goes */
    if (p->top_p < 1.0f) {
        const float cut = top_p_cut(pr, V, pmax, p->top_p, s->c);
        if (cut > floor_p) floor_p = cut;
    }
    /* the survivors, in token-id order (the order numpy.random.choice accumulates in) */
    int32_t *keep = s->keep;
    int64_t n = 0;
    if (p->top_k > 0 && p->top_k < V) { /* the top_k largest of the original p, if above the floor */
        const int64_t k = top_n(pr, V, p->top_k, s->c);
        for (int64_t j = 0; j < k; j++)
            if (s->c[j].v >= floor_p && s->c[j].v > 0.0f) s->c2[n++] = s->c[j];
        qsort(s->c2, (size_t)n, sizeof *s->c2, by_id);
        for (int64_t j = 0; j < n; j++) keep[j] = s->c2[j].id;
    } else {
        for (int64_t i = 0; i < V; i++)
            if (pr[i] >= floor_p && pr[i] > 0.0f) keep[n++] = (int32_t)i;
    }
    double kept = 0.0;
    const float e = 1.0f / p->temperature;
    for (int64_t j = 0; j < n; j++) {
        float *q = &pr[keep[j]];
        if (p->temperature != 1.0f) *q = powf(*q, e);
        kept += *q;
    }
    if (!(kept > 0.0)) { /* p^(1/T) underflowed everywhere: the mode is what remains */
        one_hot(probs, V, best);
        return best;
    }
    const double target = u * kept;
    double acc = 0.0;
    int32_t t = keep[n - 1];
    for (int64_t j = 0; j < n; j++) {
        acc += pr[keep[j]];
        if (acc > target) {
            t = keep[j];
            break;
        }
    }
    if (probs) {
        memset(probs, 0, (size_t)V * sizeof *probs);
        const float k = (float)(1.0 / kept);
        for (int64_t j = 0; j < n; j++) probs[keep[j]] = pr[keep[j]] * k;
    }
    return t;
}

/* ------------------------------------------------------------ llama mode -- */

static void penalize_llama(struct rwkv_sampler *s) {
    const struct rwkv_sampler_params *p = &s->p;
    const int64_t n = p->repeat_last_n == -1 ? s->hist_n : (s->hist_n < p->repeat_last_n ? s->hist_n : p->repeat_last_n);
    if (n == 0 || (p->repeat_penalty == 1.0f && p->presence_penalty == 0.0f && p->frequency_penalty == 0.0f)) return;
    for (int64_t k = 1; k <= n; k++) s->cnt[s->hist[(s->hist_pos - k + s->hist_cap) % s->hist_cap]]++;
    for (int64_t k = 1; k <= n; k++) {
        const int32_t t = s->hist[(s->hist_pos - k + s->hist_cap) % s->hist_cap];
        const int32_t c = s->cnt[t];
        if (c == 0) continue; /* already applied */
        float *l = &s->l[t];
        *l = *l > 0.0f ? *l / p->repeat_penalty : *l * p->repeat_penalty;
        *l -= (float)c * p->frequency_penalty + p->presence_penalty;
        s->cnt[t] = 0;
    }
}

/* Softmax of the candidates' logits into w (same order). */
static void softmax_c(const struct cand *c, int64_t n, double *w) {
    double sum = 0.0;
    for (int64_t j = 0; j < n; j++) sum += (w[j] = exp((double)c[j].v - (double)c[0].v));
    for (int64_t j = 0; j < n; j++) w[j] /= sum;
}

static int32_t sample_llama(struct rwkv_sampler *s, double u, float *probs) {
    const struct rwkv_sampler_params *p = &s->p;
    const int64_t V = s->V;
    penalize_llama(s);
    const int32_t best = argmax(s->l, V);
    if (best < 0) return -1;
    if (p->temperature == 0.0f) {
        one_hot(probs, V, best);
        return best;
    }
    struct cand *c = s->c, *d = s->c2;
    double *w = s->w;
    int64_t n = top_n(s->l, V, p->top_k > 0 && p->top_k < V ? p->top_k : V, c);
    if (p->typical_p < 1.0f && n > 1) { /* locally typical: keep tokens whose surprise is near the entropy */
        softmax_c(c, n, w);
        double ent = 0.0;
        for (int64_t j = 0; j < n; j++)
            if (w[j] > 0.0) ent -= w[j] * log(w[j]);
        for (int64_t j = 0; j < n; j++) d[j] = (struct cand){(float)-fabs(-log(w[j]) - ent), (int32_t)j};
        qsort(d, (size_t)n, sizeof *d, by_value_desc); /* most typical first */
        double cum = 0.0;
        int64_t keep = n;
        for (int64_t j = 0; j < n; j++) {
            cum += w[d[j].id];
            if (cum > p->typical_p) {
                keep = j + 1;
                break;
            }
        }
        for (int64_t j = 0; j < keep; j++) d[j] = c[d[j].id];
        qsort(d, (size_t)keep, sizeof *d, by_value_desc);
        memcpy(c, d, (size_t)keep * sizeof *d);
        n = keep;
    }
    if (p->top_p < 1.0f && n > 1) {
        softmax_c(c, n, w);
        double cum = 0.0;
        for (int64_t j = 0; j < n; j++) {
            cum += w[j];
            if (cum >= p->top_p) {
                n = j + 1;
                break;
            }
        }
    }
    if (p->min_p > 0.0f && n > 1) {
        const float floor_l = c[0].v + logf(p->min_p);
        int64_t keep = 1;
        while (keep < n && c[keep].v >= floor_l) keep++;
        n = keep;
    }
    for (int64_t j = 0; j < n; j++) c[j].v /= p->temperature;
    softmax_c(c, n, w);
    double acc = 0.0;
    int32_t t = c[n - 1].id;
    for (int64_t j = 0; j < n; j++) {
        acc += w[j];
        if (acc > u) {
            t = c[j].id;
            break;
        }
    }
    if (probs) {
        memset(probs, 0, (size_t)V * sizeof *probs);
        for (int64_t j = 0; j < n; j++) probs[c[j].id] = (float)w[j];
    }
    return t;
}

int32_t rwkv_sampler_sample(struct rwkv_sampler *s, const float *logits, double u, float *probs,
                            struct rwkv_error *err) {
    int rc = RWKV_OK;
    RWKV_CHECK(u < 1.0, RWKV_ERR_FORMAT, "u must be in [0, 1) (or negative to draw), got %g", u);
    for (int64_t i = 0; i < s->V; i++) s->l[i] = isnan(logits[i]) ? -INFINITY : logits[i] + s->bias[i];
    if (u < 0.0) u = uniform(s);
    const int32_t t = s->p.mode == RWKV_SAMPLER_RWKV ? sample_rwkv(s, u, probs) : sample_llama(s, u, probs);
    RWKV_CHECK(t >= 0, RWKV_ERR_FORMAT, "no token can be sampled: every logit is -inf or NaN after bias and bans");
    return t;
fail:
    (void)rc;
    return -1;
}
