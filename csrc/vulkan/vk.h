/* vk.h — the Vulkan backend's internals: the loaded entry points and one device context.
 *
 * libvulkan is opened at run time (dlopen), never linked, so the extension imports and runs
 * on machines without Vulkan. Every entry point lives in a struct rwkv_vk_fns owned by the
 * context that loaded it: no global state. Built only when RWKV_HAVE_VULKAN is defined
 * (setup.py: RWKVFAST_VULKAN=auto|1|0); without it the public functions report that the
 * build has no backend.
 */
#ifndef RWKV_VK_H
#define RWKV_VK_H

#include "rwkvfast.h"

#ifdef RWKV_HAVE_VULKAN
#define VK_NO_PROTOTYPES
#include <vulkan/vulkan.h>

/* X(name): loaded with vkGetInstanceProcAddr(NULL, ...) before an instance exists */
#define RWKV_VK_GLOBAL_FNS(X) X(vkCreateInstance) X(vkEnumerateInstanceVersion)

#define RWKV_VK_INSTANCE_FNS(X)                                                                  \
    X(vkDestroyInstance) X(vkEnumeratePhysicalDevices) X(vkGetPhysicalDeviceProperties)           \
    X(vkGetPhysicalDeviceProperties2) X(vkGetPhysicalDeviceFeatures2)                             \
    X(vkGetPhysicalDeviceMemoryProperties) X(vkGetPhysicalDeviceQueueFamilyProperties)            \
    X(vkCreateDevice) X(vkGetDeviceProcAddr) X(vkEnumerateDeviceExtensionProperties)

#define RWKV_VK_DEVICE_FNS(X)                                                                    \
    X(vkDestroyDevice) X(vkGetDeviceQueue) X(vkCreateBuffer) X(vkDestroyBuffer)                   \
    X(vkGetBufferMemoryRequirements) X(vkAllocateMemory) X(vkFreeMemory) X(vkBindBufferMemory)    \
    X(vkMapMemory) X(vkUnmapMemory) X(vkFlushMappedMemoryRanges) X(vkInvalidateMappedMemoryRanges) \
    X(vkCreateShaderModule) X(vkDestroyShaderModule) X(vkCreateDescriptorSetLayout)               \
    X(vkDestroyDescriptorSetLayout) X(vkCreatePipelineLayout) X(vkDestroyPipelineLayout)          \
    X(vkCreateComputePipelines) X(vkDestroyPipeline) X(vkCreateDescriptorPool)                    \
    X(vkDestroyDescriptorPool) X(vkResetDescriptorPool) X(vkAllocateDescriptorSets) X(vkUpdateDescriptorSets) \
    X(vkCreateCommandPool) X(vkDestroyCommandPool) X(vkAllocateCommandBuffers)                    \
    X(vkFreeCommandBuffers) X(vkBeginCommandBuffer) X(vkEndCommandBuffer) X(vkResetCommandBuffer) \
    X(vkCmdBindPipeline) X(vkCmdBindDescriptorSets) X(vkCmdPushConstants) X(vkCmdDispatch)        \
    X(vkCmdPipelineBarrier) X(vkCmdCopyBuffer) X(vkCmdFillBuffer) X(vkQueueSubmit)                \
    X(vkQueueWaitIdle) X(vkCreateFence) X(vkDestroyFence) X(vkWaitForFences) X(vkResetFences)

struct rwkv_vk_fns {
    void *lib;
    PFN_vkGetInstanceProcAddr vkGetInstanceProcAddr;
#define X(name) PFN_##name name;
    RWKV_VK_GLOBAL_FNS(X) RWKV_VK_INSTANCE_FNS(X) RWKV_VK_DEVICE_FNS(X)
#undef X
};

/* dlopen the loader and fill the global entry points; then, for an instance, the rest.
 * Errors name what is missing. */
int rwkv_vk_load(struct rwkv_vk_fns *f, struct rwkv_error *err);
int rwkv_vk_load_instance(struct rwkv_vk_fns *f, VkInstance inst, struct rwkv_error *err);
int rwkv_vk_load_device(struct rwkv_vk_fns *f, VkDevice dev, struct rwkv_error *err);
void rwkv_vk_unload(struct rwkv_vk_fns *f);

/* "VK_ERROR_OUT_OF_DEVICE_MEMORY" and so on: errors carry the Vulkan result's name. */
const char *rwkv_vk_result_name(VkResult r);

/* A buffer and its memory. Host-visible buffers stay mapped (`map`). */
struct rwkv_vk_buf {
    VkBuffer buf;
    VkDeviceMemory mem;
    VkDeviceSize size;
    void *map;
    int coherent;
};

/* One compute pipeline: `n_bufs` storage buffers at bindings 0.., `push_bytes` of push
 * constants, and the workgroup size fixed by specialization constant 0 (x). */
struct rwkv_vk_pipe {
    VkDescriptorSetLayout dsl;
    VkPipelineLayout layout;
    VkPipeline pipe;
    uint32_t n_bufs, push_bytes, local_x;
};

/* An open device: the one compute queue, a command pool and the pipelines it built. */
struct rwkv_vk {
    struct rwkv_vk_fns f;
    VkInstance inst;
    VkPhysicalDevice phys;
    VkDevice dev;
    VkQueue queue;
    uint32_t queue_family;
    VkPhysicalDeviceProperties props;
    VkPhysicalDeviceMemoryProperties mem_props;
    uint32_t subgroup_size;
    int subgroup_arith; /* subgroupAdd and friends work in compute shaders */
    int no_map_device_local; /* RWKVFAST_VK_STAGING=1: act as a discrete GPU (tests the staging paths) */
    VkCommandPool cmd_pool;
    VkCommandBuffer cmd;
    VkFence fence;
    VkDescriptorPool desc_pool; /* for the one-off op runners (tests); reset by rwkv_vk_begin */
};

enum rwkv_vk_mem { RWKV_VK_DEVICE_LOCAL, RWKV_VK_HOST_VISIBLE, RWKV_VK_HOST_CACHED };

int rwkv_vk_buf_init(struct rwkv_vk *vk, struct rwkv_vk_buf *b, VkDeviceSize size, enum rwkv_vk_mem where,
                     struct rwkv_error *err);
void rwkv_vk_buf_free(struct rwkv_vk *vk, struct rwkv_vk_buf *b);

int rwkv_vk_pipe_init(struct rwkv_vk *vk, struct rwkv_vk_pipe *p, const uint32_t *spirv, size_t spirv_bytes,
                      uint32_t n_bufs, uint32_t push_bytes, uint32_t local_x, struct rwkv_error *err);
void rwkv_vk_pipe_free(struct rwkv_vk *vk, struct rwkv_vk_pipe *p);
/* The embedded shader `base` (its subgroup variant "<base>_sg" where the device has them). */
int rwkv_vk_pipe_named(struct rwkv_vk *vk, struct rwkv_vk_pipe *p, const char *base, uint32_t n_bufs,
                       uint32_t push_bytes, uint32_t local_x, struct rwkv_error *err);

/* Begin recording the context's one-off command buffer (vk->cmd); end it, submit and wait. */
int rwkv_vk_begin(struct rwkv_vk *vk, struct rwkv_error *err);
int rwkv_vk_submit_wait(struct rwkv_vk *vk, struct rwkv_error *err);
/* Submit recorded command buffers in one batch, in this order, and wait for them. */
int rwkv_vk_submit_cmds(struct rwkv_vk *vk, uint32_t n, const VkCommandBuffer *cmds, struct rwkv_error *err);

/* Record into cmd: bind p, a descriptor set over bufs (allocated from `pool`), push
 * constants, dispatch. */
int rwkv_vk_cmd_dispatch(struct rwkv_vk *vk, VkCommandBuffer cmd, VkDescriptorPool pool, const struct rwkv_vk_pipe *p,
                         const struct rwkv_vk_buf *const *bufs, const void *push, uint32_t gx, uint32_t gy,
                         uint32_t gz, struct rwkv_error *err);

/* The two matmul shaders share buffers (W, x, y, bias) and push constants. matvec.comp: a
 * workgroup of RWKV_VK_MATVEC_WG per row and RWKV_VK_MATVEC_TOK tokens, for steps and short
 * chunks; matmul.comp: tiles of RWKV_VK_GEMM_BM rows x RWKV_VK_GEMM_BN tokens, from
 * RWKV_VK_GEMM_MIN_TOK tokens on (prompts, batches), where re-reading weights per 4 tokens
 * would dominate. */
#define RWKV_VK_MATVEC_WG 64
#define RWKV_VK_MATVEC_TOK 4
#define RWKV_VK_GEMM_WG 128
#define RWKV_VK_GEMM_BM 64
#define RWKV_VK_GEMM_BN 32
#define RWKV_VK_GEMM_MIN_TOK 8
struct rwkv_vk_matvec_push {
    uint32_t n_rows, n_cols, row_words, x_off, x_stride, y_off, y_stride, post, n_tok;
};
/* A weight type's two matmul pipelines. */
struct rwkv_vk_matmul_pipes {
    const struct rwkv_vk_pipe *matvec, *gemm;
};
/* Build both pipelines of weight type `type` into mv and mm. */
int rwkv_vk_matmul_pipes_init(struct rwkv_vk *vk, uint32_t type, struct rwkv_vk_pipe *mv, struct rwkv_vk_pipe *mm,
                              struct rwkv_error *err);
/* Record y = post(W x) for push->n_tok tokens with the shader that suits them, bufs as
 * {W, x, y, bias}; no barrier after it. */
int rwkv_vk_cmd_matmul(struct rwkv_vk *vk, VkCommandBuffer cmd, VkDescriptorPool pool, struct rwkv_vk_matmul_pipes pipes,
                       const struct rwkv_vk_buf *const *bufs, const struct rwkv_vk_matvec_push *push,
                       struct rwkv_error *err);
/* Record a compute/transfer -> compute/transfer/host barrier on all memory. */
void rwkv_vk_cmd_barrier(struct rwkv_vk *vk, VkCommandBuffer cmd);
#endif /* RWKV_HAVE_VULKAN */

#endif
