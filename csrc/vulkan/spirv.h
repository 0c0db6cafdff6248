/* spirv.h — the compiled shaders, embedded by the build (setup.py writes spirv_gen.c). */
#ifndef RWKV_VK_SPIRV_H
#define RWKV_VK_SPIRV_H

#include <stddef.h>
#include <stdint.h>

struct rwkv_spirv {
    const char *name; /* "matvec_Q8_0", "matvec_Q8_0_sg" (the subgroup variant), ... */
    const uint32_t *code;
    size_t bytes;
};

extern const struct rwkv_spirv rwkv_spirv_table[];
extern const size_t rwkv_spirv_count;

/* The shader called `name`, or NULL. */
const struct rwkv_spirv *rwkv_spirv_find(const char *name);

#endif
