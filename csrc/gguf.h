/* gguf.h — internal extras of the GGUF reader (the public part is in rwkvfast.h). */
#ifndef RWKV_GGUF_H
#define RWKV_GGUF_H

#include "rwkvfast.h"

const char *rwkv_gguf_path(const struct rwkv_gguf *g);

/* Typed metadata getters. With required == 0 an absent key leaves *out as is and
 * returns RWKV_OK; a present key of the wrong type is always an error. */
int rwkv_gguf_get_u64(const struct rwkv_gguf *g, const char *key, int required, uint64_t *out,
                      struct rwkv_error *err);
int rwkv_gguf_get_f32(const struct rwkv_gguf *g, const char *key, int required, float *out,
                      struct rwkv_error *err);
int rwkv_gguf_get_str(const struct rwkv_gguf *g, const char *key, struct rwkv_str *out,
                      struct rwkv_error *err);

#endif
