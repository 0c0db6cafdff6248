/* sampler.h — choosing the next token from logits: the official RWKV sampler and llama.cpp's chain.
 *
 * RWKV mode (ChatRWKV API_DEMO_CHAT.py / the rwkv package's PIPELINE.sample_logits):
 *   logits += bias; logits[t] -= presence + occ[t] * frequency for every t seen in this reply;
 *   p = softmax; keep p >= p_cut where p_cut is the probability at which the descending cumulative
 *   sum first reaches top_p (ties kept); keep the top_k largest (0 = all); keep p >= min_p * p_max;
 *   p = p^(1/T); renormalise; draw. After a token is accepted every occ is multiplied by
 *   penalty_decay and occ[token] += 1. temperature 0 is greedy (the rwkv package's top_p = 0).
 * llama mode (llama.cpp's default chain): penalties over the last repeat_last_n accepted tokens
 *   (repeat: logit / r if positive else logit * r; then - count * frequency - presence), then
 *   top_k, typical_p, top_p, min_p, temperature (logits / T), softmax, draw.
 * The draw: u uniform in [0, 1) from the sampler's own generator (xoshiro256**, seeded by
 * splitmix64(seed)); the token is the first whose cumulative probability, summed in token-id
 * order and divided by the total, exceeds u, as numpy.random.choice picks. Everything is
 * scalar and single-threaded, so a seed gives the same tokens on every machine.
 */
#ifndef RWKV_SAMPLER_H
#define RWKV_SAMPLER_H

#include <stdint.h>

#include "rwkvfast.h"

enum rwkv_sampler_mode { RWKV_SAMPLER_RWKV = 0, RWKV_SAMPLER_LLAMA = 1 };

struct rwkv_sampler_params {
    int mode;
    float temperature; /* 0: greedy */
    float top_p;       /* 1: off */
    int32_t top_k;     /* 0: off */
    float min_p;       /* 0: off */
    float typical_p;   /* 1: off (llama mode only) */
    float presence_penalty, frequency_penalty;
    float penalty_decay;   /* RWKV mode: occ *= decay per accepted token */
    float repeat_penalty;  /* llama mode: 1 = off */
    int32_t repeat_last_n; /* llama mode: window of the penalties (-1: all accepted tokens) */
    uint64_t seed;
};

struct rwkv_sampler;

int rwkv_sampler_init(struct rwkv_sampler **out, const struct rwkv_sampler_params *p, int64_t n_vocab,
                      struct rwkv_error *err);
void rwkv_sampler_free(struct rwkv_sampler *s);
/* Adds `bias` to token t's logit before anything else (-INFINITY bans it). */
int rwkv_sampler_set_bias(struct rwkv_sampler *s, int32_t t, float bias, struct rwkv_error *err);
/* Forgets the penalties and the history (a new reply); the generator keeps running. */
void rwkv_sampler_reset(struct rwkv_sampler *s);
void rwkv_sampler_reseed(struct rwkv_sampler *s, uint64_t seed);
/* Records that `t` was emitted (penalties, history). */
int rwkv_sampler_accept(struct rwkv_sampler *s, int32_t t, struct rwkv_error *err);
/* The next token for `logits` [n_vocab] (not modified). u in [0, 1) overrides the generator's
 * draw (for tests), u < 0 draws. probs, if not NULL, receives the final distribution [n_vocab]
 * (zeros outside the kept set; one-hot when greedy). Returns the token, or -1 with err set when
 * no token can be drawn (every logit -inf or NaN). */
int32_t rwkv_sampler_sample(struct rwkv_sampler *s, const float *logits, double u, float *probs,
                            struct rwkv_error *err);

#endif
