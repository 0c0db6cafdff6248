/* model.h — the offloaded layers of a model (see model.c). */
#ifndef RWKV_VK_MODEL_H
#define RWKV_VK_MODEL_H

#include "rwkvfast.h"

struct rwkv_vk_model;

/* Upload layers [0, n_gpu) of m (n_gpu > n_layer: all, and ln_out and the head too). */
int rwkv_vk_model_init(struct rwkv_vk_model **out, struct rwkv_vk *vk, const struct rwkv_model *m, int n_gpu,
                       struct rwkv_error *err);
void rwkv_vk_model_free(struct rwkv_vk_model *g);
/* T tokens' x (rows x_stride apart, after ln0) through the offloaded layers, in place.
 * states: one (sequence) or T (batch: token t is sequence t). With the head offloaded and
 * logits not NULL, also the logits of the last token (or of all, rows n_vocab apart). An
 * RWKV-7 model with layers left on the CPU also gives layer 0's values, which they mix in,
 * to v_first (rows x_stride apart; NULL for RWKV-6). */
int rwkv_vk_model_forward(struct rwkv_vk_model *g, float *x, int64_t x_stride, int64_t T,
                          struct rwkv_state *const *states, int batch, float *logits, int all_logits, float *v_first,
                          struct rwkv_error *err);
int rwkv_vk_model_layers(const struct rwkv_vk_model *g);
/* A resident state: copy the device's newer layers into its arrays; give its slot back. */
int rwkv_vk_model_sync(struct rwkv_vk_model *g, struct rwkv_state *s, struct rwkv_error *err);
void rwkv_vk_model_release(struct rwkv_vk_model *g, struct rwkv_state *s);
int rwkv_vk_model_has_head(const struct rwkv_vk_model *g);

#endif
