/* device.c — finding Vulkan devices and opening one: instance, compute queue, buffers,
 * pipelines, and the recording of dispatches into one command buffer. */
#include "vulkan/vk.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "error.h"

#ifndef RWKV_HAVE_VULKAN

int rwkv_vk_built(void) { return 0; }

static int not_built(struct rwkv_error *err) {
    return rwkv_set_error(err, RWKV_ERR_BACKEND,
                          "this build of rwkvfast has no Vulkan backend (build with RWKVFAST_VULKAN=1, "
                          "which needs the Vulkan headers and glslc)");
}

int rwkv_vk_devices(struct rwkv_vk_device_info *out, int cap, int *n, struct rwkv_error *err) {
    (void)out, (void)cap;
    *n = 0;
    return not_built(err);
}
int rwkv_vk_init(struct rwkv_vk **out, int device, struct rwkv_error *err) {
    (void)device;
    *out = NULL;
    return not_built(err);
}
void rwkv_vk_free(struct rwkv_vk *vk) { (void)vk; }
void rwkv_vk_info(const struct rwkv_vk *vk, struct rwkv_vk_device_info *out) {
    (void)vk;
    memset(out, 0, sizeof *out);
}

#else

int rwkv_vk_built(void) { return 1; }

#define VK_CHECK(call, what)                                                                    \
    do {                                                                                        \
        VkResult r_ = (call);                                                                   \
        RWKV_CHECK(r_ == VK_SUCCESS, RWKV_ERR_BACKEND, "Vulkan: %s failed: %s", what, rwkv_vk_result_name(r_)); \
    } while (0)

static int make_instance(struct rwkv_vk_fns *f, VkInstance *inst, struct rwkv_error *err) {
    int rc = RWKV_OK;
    uint32_t version = VK_API_VERSION_1_0;
    if (f->vkEnumerateInstanceVersion) f->vkEnumerateInstanceVersion(&version);
    RWKV_CHECK(version >= VK_API_VERSION_1_1, RWKV_ERR_BACKEND,
               "Vulkan: the loader supports only Vulkan %u.%u; rwkvfast needs 1.1", VK_API_VERSION_MAJOR(version),
               VK_API_VERSION_MINOR(version));
    const VkApplicationInfo app = {.sType = VK_STRUCTURE_TYPE_APPLICATION_INFO, .pApplicationName = "rwkvfast",
                                   .pEngineName = "rwkvfast", .apiVersion = VK_API_VERSION_1_2};
    const VkInstanceCreateInfo ci = {.sType = VK_STRUCTURE_TYPE_INSTANCE_CREATE_INFO, .pApplicationInfo = &app};
    VK_CHECK(f->vkCreateInstance(&ci, NULL, inst), "vkCreateInstance");
    rc = rwkv_vk_load_instance(f, *inst, err);
fail:
    return rc;
}

static const char *type_name(VkPhysicalDeviceType t) {
    switch (t) {
    case VK_PHYSICAL_DEVICE_TYPE_DISCRETE_GPU: return "discrete";
    case VK_PHYSICAL_DEVICE_TYPE_INTEGRATED_GPU: return "integrated";
    case VK_PHYSICAL_DEVICE_TYPE_VIRTUAL_GPU: return "virtual";
    case VK_PHYSICAL_DEVICE_TYPE_CPU: return "cpu";
    default: return "other";
    }
}

static void describe(const struct rwkv_vk_fns *f, VkPhysicalDevice pd, struct rwkv_vk_device_info *out,
                     VkPhysicalDeviceSubgroupProperties *sg_out) {
    VkPhysicalDeviceSubgroupProperties sg = {.sType = VK_STRUCTURE_TYPE_PHYSICAL_DEVICE_SUBGROUP_PROPERTIES};
    VkPhysicalDeviceProperties2 p2 = {.sType = VK_STRUCTURE_TYPE_PHYSICAL_DEVICE_PROPERTIES_2, .pNext = &sg};
    f->vkGetPhysicalDeviceProperties2(pd, &p2);
    VkPhysicalDeviceMemoryProperties mp;
    f->vkGetPhysicalDeviceMemoryProperties(pd, &mp);
    memset(out, 0, sizeof *out);
    snprintf(out->name, sizeof out->name, "%s", p2.properties.deviceName);
    snprintf(out->type, sizeof out->type, "%s", type_name(p2.properties.deviceType));
    out->api_version = p2.properties.apiVersion;
    out->subgroup_size = sg.subgroupSize;
    for (uint32_t i = 0; i < mp.memoryHeapCount; i++)
        if (mp.memoryHeaps[i].flags & VK_MEMORY_HEAP_DEVICE_LOCAL_BIT) out->device_local_bytes += mp.memoryHeaps[i].size;
    if (sg_out) *sg_out = sg;
}

/* At most this many devices are looked at: more GPUs than this in one machine are rare. */
#define MAX_DEVICES 16

int rwkv_vk_devices(struct rwkv_vk_device_info *out, int cap, int *n, struct rwkv_error *err) {
    int rc = RWKV_OK;
    struct rwkv_vk_fns f;
    VkInstance inst = VK_NULL_HANDLE;
    *n = 0;
    RWKV_TRY(rwkv_vk_load(&f, err));
    RWKV_TRY(make_instance(&f, &inst, err));
    VkPhysicalDevice pds[MAX_DEVICES];
    uint32_t count = MAX_DEVICES;
    VkResult r = f.vkEnumeratePhysicalDevices(inst, &count, pds);
    RWKV_CHECK(r == VK_SUCCESS || r == VK_INCOMPLETE, RWKV_ERR_BACKEND, "Vulkan: vkEnumeratePhysicalDevices failed: %s",
               rwkv_vk_result_name(r));
    *n = (int)count;
    for (uint32_t i = 0; i < count && (int)i < cap; i++) describe(&f, pds[i], &out[i], NULL);
fail:
    if (inst && f.vkDestroyInstance) f.vkDestroyInstance(inst, NULL);
    if (f.lib) rwkv_vk_unload(&f);
    return rc;
}

/* The default device: a discrete GPU, else an integrated one, else a virtual one; never a CPU
 * implementation (llvmpipe, lavapipe: 60-600x slower than rwkvfast's own CPU path), which
 * runs only when named by its index. -1 when there is no GPU. */
static int pick(const struct rwkv_vk_fns *f, VkPhysicalDevice *pds, uint32_t count) {
    static const VkPhysicalDeviceType order[] = {VK_PHYSICAL_DEVICE_TYPE_DISCRETE_GPU,
                                                 VK_PHYSICAL_DEVICE_TYPE_INTEGRATED_GPU,
                                                 VK_PHYSICAL_DEVICE_TYPE_VIRTUAL_GPU};
    for (size_t k = 0; k < sizeof order / sizeof order[0]; k++)
        for (uint32_t i = 0; i < count; i++) {
            VkPhysicalDeviceProperties p;
            f->vkGetPhysicalDeviceProperties(pds[i], &p);
            if (p.deviceType == order[k]) return (int)i;
        }
    return -1;
}

int rwkv_vk_init(struct rwkv_vk **out, int device, struct rwkv_error *err) {
    int rc = RWKV_OK;
    *out = NULL;
    struct rwkv_vk *vk = calloc(1, sizeof *vk);
    RWKV_CHECK(vk, RWKV_ERR_NOMEM, "out of memory");
    RWKV_TRY(rwkv_vk_load(&vk->f, err));
    struct rwkv_vk_fns *f = &vk->f;
    RWKV_TRY(make_instance(f, &vk->inst, err));

    VkPhysicalDevice pds[MAX_DEVICES];
    uint32_t count = MAX_DEVICES;
    VkResult r = f->vkEnumeratePhysicalDevices(vk->inst, &count, pds);
    RWKV_CHECK(r == VK_SUCCESS || r == VK_INCOMPLETE, RWKV_ERR_BACKEND, "Vulkan: vkEnumeratePhysicalDevices failed: %s",
               rwkv_vk_result_name(r));
    RWKV_CHECK(count > 0, RWKV_ERR_BACKEND, "Vulkan: no device found (is a driver installed?)");
    if (device < 0) {
        device = pick(f, pds, count);
        VkPhysicalDeviceProperties p0;
        f->vkGetPhysicalDeviceProperties(pds[0], &p0);
        RWKV_CHECK(device >= 0, RWKV_ERR_BACKEND,
                   "Vulkan: no GPU, only %u CPU device%s ('%s'), which is slower than the CPU path; name it "
                   "(RWKVFAST_VK_DEVICE=0, -dev 0) to use it anyway", count, count == 1 ? "" : "s", p0.deviceName);
    }
    RWKV_CHECK((uint32_t)device < count, RWKV_ERR_BACKEND, "Vulkan: no device %d (this machine has %u)", device, count);
    vk->phys = pds[device];
    f->vkGetPhysicalDeviceProperties(vk->phys, &vk->props);
    f->vkGetPhysicalDeviceMemoryProperties(vk->phys, &vk->mem_props);
    RWKV_CHECK(vk->props.apiVersion >= VK_API_VERSION_1_1, RWKV_ERR_BACKEND,
               "Vulkan: device %s supports only Vulkan %u.%u; rwkvfast needs 1.1", vk->props.deviceName,
               VK_API_VERSION_MAJOR(vk->props.apiVersion), VK_API_VERSION_MINOR(vk->props.apiVersion));
    struct rwkv_vk_device_info info;
    VkPhysicalDeviceSubgroupProperties sg;
    describe(f, vk->phys, &info, &sg);
    vk->subgroup_size = sg.subgroupSize;
    vk->subgroup_arith = (sg.supportedStages & VK_SHADER_STAGE_COMPUTE_BIT) &&
                         (sg.supportedOperations & VK_SUBGROUP_FEATURE_ARITHMETIC_BIT) && sg.subgroupSize >= 4;
    const char *no_sg = getenv("RWKVFAST_VK_SUBGROUP");
    if (no_sg && !strcmp(no_sg, "0")) vk->subgroup_arith = 0;
    const char *staging = getenv("RWKVFAST_VK_STAGING");
    vk->no_map_device_local = staging && !strcmp(staging, "1");

    VkQueueFamilyProperties qf[32];
    uint32_t n_qf = 32;
    f->vkGetPhysicalDeviceQueueFamilyProperties(vk->phys, &n_qf, qf);
    vk->queue_family = UINT32_MAX;
    for (uint32_t i = 0; i < n_qf && vk->queue_family == UINT32_MAX; i++) /* a compute-only queue if there is one */
        if ((qf[i].queueFlags & VK_QUEUE_COMPUTE_BIT) && !(qf[i].queueFlags & VK_QUEUE_GRAPHICS_BIT)) vk->queue_family = i;
    for (uint32_t i = 0; i < n_qf && vk->queue_family == UINT32_MAX; i++)
        if (qf[i].queueFlags & VK_QUEUE_COMPUTE_BIT) vk->queue_family = i;
    RWKV_CHECK(vk->queue_family != UINT32_MAX, RWKV_ERR_BACKEND, "Vulkan: %s has no compute queue", vk->props.deviceName);

    const float prio = 1.0f;
    const VkDeviceQueueCreateInfo qci = {.sType = VK_STRUCTURE_TYPE_DEVICE_QUEUE_CREATE_INFO,
                                         .queueFamilyIndex = vk->queue_family, .queueCount = 1,
                                         .pQueuePriorities = &prio};
    const VkDeviceCreateInfo dci = {.sType = VK_STRUCTURE_TYPE_DEVICE_CREATE_INFO, .queueCreateInfoCount = 1,
                                    .pQueueCreateInfos = &qci};
    VK_CHECK(f->vkCreateDevice(vk->phys, &dci, NULL, &vk->dev), "vkCreateDevice");
    RWKV_TRY(rwkv_vk_load_device(f, vk->dev, err));
    f->vkGetDeviceQueue(vk->dev, vk->queue_family, 0, &vk->queue);

    const VkCommandPoolCreateInfo pci = {.sType = VK_STRUCTURE_TYPE_COMMAND_POOL_CREATE_INFO,
                                         .flags = VK_COMMAND_POOL_CREATE_RESET_COMMAND_BUFFER_BIT,
                                         .queueFamilyIndex = vk->queue_family};
    VK_CHECK(f->vkCreateCommandPool(vk->dev, &pci, NULL, &vk->cmd_pool), "vkCreateCommandPool");
    const VkCommandBufferAllocateInfo cai = {.sType = VK_STRUCTURE_TYPE_COMMAND_BUFFER_ALLOCATE_INFO,
                                             .commandPool = vk->cmd_pool, .level = VK_COMMAND_BUFFER_LEVEL_PRIMARY,
                                             .commandBufferCount = 1};
    VK_CHECK(f->vkAllocateCommandBuffers(vk->dev, &cai, &vk->cmd), "vkAllocateCommandBuffers");
    const VkFenceCreateInfo fci = {.sType = VK_STRUCTURE_TYPE_FENCE_CREATE_INFO};
    VK_CHECK(f->vkCreateFence(vk->dev, &fci, NULL, &vk->fence), "vkCreateFence");
    const VkDescriptorPoolSize ps = {VK_DESCRIPTOR_TYPE_STORAGE_BUFFER, 1024};
    const VkDescriptorPoolCreateInfo dpi = {.sType = VK_STRUCTURE_TYPE_DESCRIPTOR_POOL_CREATE_INFO, .maxSets = 256,
                                            .poolSizeCount = 1, .pPoolSizes = &ps};
    VK_CHECK(f->vkCreateDescriptorPool(vk->dev, &dpi, NULL, &vk->desc_pool), "vkCreateDescriptorPool");
    *out = vk;
    return RWKV_OK;
fail:
    rwkv_vk_free(vk);
    return rc;
}

void rwkv_vk_free(struct rwkv_vk *vk) {
    if (!vk) return;
    struct rwkv_vk_fns *f = &vk->f;
    if (vk->dev) {
        f->vkQueueWaitIdle(vk->queue);
        if (vk->desc_pool) f->vkDestroyDescriptorPool(vk->dev, vk->desc_pool, NULL);
        if (vk->fence) f->vkDestroyFence(vk->dev, vk->fence, NULL);
        if (vk->cmd_pool) f->vkDestroyCommandPool(vk->dev, vk->cmd_pool, NULL);
        f->vkDestroyDevice(vk->dev, NULL);
    }
    if (vk->inst) f->vkDestroyInstance(vk->inst, NULL);
    if (f->lib) rwkv_vk_unload(f);
    free(vk);
}

void rwkv_vk_info(const struct rwkv_vk *vk, struct rwkv_vk_device_info *out) {
    describe(&vk->f, vk->phys, out, NULL);
    out->subgroup_ops = vk->subgroup_arith;
}

/* ---------------------------------------------------------------- buffers -- */

static int memory_type(const struct rwkv_vk *vk, uint32_t bits, VkMemoryPropertyFlags want, uint32_t *out) {
    for (uint32_t i = 0; i < vk->mem_props.memoryTypeCount; i++)
        if ((bits & (1u << i)) && (vk->mem_props.memoryTypes[i].propertyFlags & want) == want) {
            *out = i;
            return 1;
        }
    return 0;
}

int rwkv_vk_buf_init(struct rwkv_vk *vk, struct rwkv_vk_buf *b, VkDeviceSize size, enum rwkv_vk_mem where,
                     struct rwkv_error *err) {
    int rc = RWKV_OK;
    struct rwkv_vk_fns *f = &vk->f;
    memset(b, 0, sizeof *b);
    b->size = size ? size : 4;
    const VkBufferCreateInfo bci = {.sType = VK_STRUCTURE_TYPE_BUFFER_CREATE_INFO, .size = b->size,
                                    .usage = VK_BUFFER_USAGE_STORAGE_BUFFER_BIT | VK_BUFFER_USAGE_TRANSFER_SRC_BIT |
                                             VK_BUFFER_USAGE_TRANSFER_DST_BIT,
                                    .sharingMode = VK_SHARING_MODE_EXCLUSIVE};
    VK_CHECK(f->vkCreateBuffer(vk->dev, &bci, NULL, &b->buf), "vkCreateBuffer");
    VkMemoryRequirements req;
    f->vkGetBufferMemoryRequirements(vk->dev, b->buf, &req);
    uint32_t type = 0;
    const VkMemoryPropertyFlags host = VK_MEMORY_PROPERTY_HOST_VISIBLE_BIT | VK_MEMORY_PROPERTY_HOST_COHERENT_BIT;
    int found = 0;
    if (where == RWKV_VK_DEVICE_LOCAL)
        found = memory_type(vk, req.memoryTypeBits, VK_MEMORY_PROPERTY_DEVICE_LOCAL_BIT, &type);
    else if (where == RWKV_VK_HOST_CACHED)
        found = memory_type(vk, req.memoryTypeBits, host | VK_MEMORY_PROPERTY_HOST_CACHED_BIT, &type);
    if (!found) found = memory_type(vk, req.memoryTypeBits, host, &type); /* e.g. no device-local heap (lavapipe) */
    RWKV_CHECK(found, RWKV_ERR_BACKEND, "Vulkan: no memory type for a %llu-byte buffer", (unsigned long long)size);
    const VkMemoryAllocateInfo mai = {.sType = VK_STRUCTURE_TYPE_MEMORY_ALLOCATE_INFO, .allocationSize = req.size,
                                      .memoryTypeIndex = type};
    VK_CHECK(f->vkAllocateMemory(vk->dev, &mai, NULL, &b->mem), "vkAllocateMemory");
    VK_CHECK(f->vkBindBufferMemory(vk->dev, b->buf, b->mem, 0), "vkBindBufferMemory");
    const VkMemoryPropertyFlags flags = vk->mem_props.memoryTypes[type].propertyFlags;
    if ((flags & VK_MEMORY_PROPERTY_HOST_VISIBLE_BIT) && !(where == RWKV_VK_DEVICE_LOCAL && vk->no_map_device_local)) {
        VK_CHECK(f->vkMapMemory(vk->dev, b->mem, 0, VK_WHOLE_SIZE, 0, &b->map), "vkMapMemory");
        b->coherent = !!(flags & VK_MEMORY_PROPERTY_HOST_COHERENT_BIT);
    }
    return RWKV_OK;
fail:
    rwkv_vk_buf_free(vk, b);
    return rc;
}

void rwkv_vk_buf_free(struct rwkv_vk *vk, struct rwkv_vk_buf *b) {
    if (b->map) vk->f.vkUnmapMemory(vk->dev, b->mem);
    if (b->buf) vk->f.vkDestroyBuffer(vk->dev, b->buf, NULL);
    if (b->mem) vk->f.vkFreeMemory(vk->dev, b->mem, NULL);
    memset(b, 0, sizeof *b);
}

/* -------------------------------------------------------------- pipelines -- */

int rwkv_vk_pipe_init(struct rwkv_vk *vk, struct rwkv_vk_pipe *p, const uint32_t *spirv, size_t spirv_bytes,
                      uint32_t n_bufs, uint32_t push_bytes, uint32_t local_x, struct rwkv_error *err) {
    int rc = RWKV_OK;
    struct rwkv_vk_fns *f = &vk->f;
    VkShaderModule mod = VK_NULL_HANDLE;
    memset(p, 0, sizeof *p);
    p->n_bufs = n_bufs, p->push_bytes = push_bytes, p->local_x = local_x;
    VkDescriptorSetLayoutBinding binds[16];
    RWKV_CHECK(n_bufs <= 16, RWKV_ERR_BACKEND, "a pipeline binds at most 16 buffers");
    for (uint32_t i = 0; i < n_bufs; i++)
        binds[i] = (VkDescriptorSetLayoutBinding){.binding = i, .descriptorType = VK_DESCRIPTOR_TYPE_STORAGE_BUFFER,
                                                  .descriptorCount = 1, .stageFlags = VK_SHADER_STAGE_COMPUTE_BIT};
    const VkDescriptorSetLayoutCreateInfo dli = {.sType = VK_STRUCTURE_TYPE_DESCRIPTOR_SET_LAYOUT_CREATE_INFO,
                                                 .bindingCount = n_bufs, .pBindings = binds};
    VK_CHECK(f->vkCreateDescriptorSetLayout(vk->dev, &dli, NULL, &p->dsl), "vkCreateDescriptorSetLayout");
    const VkPushConstantRange pcr = {VK_SHADER_STAGE_COMPUTE_BIT, 0, push_bytes};
    const VkPipelineLayoutCreateInfo pli = {.sType = VK_STRUCTURE_TYPE_PIPELINE_LAYOUT_CREATE_INFO, .setLayoutCount = 1,
                                            .pSetLayouts = &p->dsl, .pushConstantRangeCount = push_bytes ? 1 : 0,
                                            .pPushConstantRanges = &pcr};
    VK_CHECK(f->vkCreatePipelineLayout(vk->dev, &pli, NULL, &p->layout), "vkCreatePipelineLayout");
    const VkShaderModuleCreateInfo smi = {.sType = VK_STRUCTURE_TYPE_SHADER_MODULE_CREATE_INFO, .codeSize = spirv_bytes,
                                          .pCode = spirv};
    VK_CHECK(f->vkCreateShaderModule(vk->dev, &smi, NULL, &mod), "vkCreateShaderModule");
    /* constant 0: the workgroup size; 1: whether subgroup arithmetic may be used */
    const uint32_t spec[2] = {local_x, (uint32_t)vk->subgroup_arith};
    const VkSpecializationMapEntry ent[2] = {{0, 0, 4}, {1, 4, 4}};
    const VkSpecializationInfo si = {2, ent, sizeof spec, spec};
    const VkComputePipelineCreateInfo cpi = {
        .sType = VK_STRUCTURE_TYPE_COMPUTE_PIPELINE_CREATE_INFO,
        .stage = {.sType = VK_STRUCTURE_TYPE_PIPELINE_SHADER_STAGE_CREATE_INFO, .stage = VK_SHADER_STAGE_COMPUTE_BIT,
                  .module = mod, .pName = "main", .pSpecializationInfo = &si},
        .layout = p->layout};
    VK_CHECK(f->vkCreateComputePipelines(vk->dev, VK_NULL_HANDLE, 1, &cpi, NULL, &p->pipe), "vkCreateComputePipelines");
fail:
    if (mod) f->vkDestroyShaderModule(vk->dev, mod, NULL);
    if (rc != RWKV_OK) rwkv_vk_pipe_free(vk, p);
    return rc;
}

void rwkv_vk_pipe_free(struct rwkv_vk *vk, struct rwkv_vk_pipe *p) {
    if (p->pipe) vk->f.vkDestroyPipeline(vk->dev, p->pipe, NULL);
    if (p->layout) vk->f.vkDestroyPipelineLayout(vk->dev, p->layout, NULL);
    if (p->dsl) vk->f.vkDestroyDescriptorSetLayout(vk->dev, p->dsl, NULL);
    memset(p, 0, sizeof *p);
}

/* -------------------------------------------------------------- recording -- */

int rwkv_vk_begin(struct rwkv_vk *vk, struct rwkv_error *err) {
    int rc = RWKV_OK;
    struct rwkv_vk_fns *f = &vk->f;
    VK_CHECK(f->vkResetCommandBuffer(vk->cmd, 0), "vkResetCommandBuffer");
    VK_CHECK(f->vkResetDescriptorPool(vk->dev, vk->desc_pool, 0), "vkResetDescriptorPool");
    const VkCommandBufferBeginInfo bi = {.sType = VK_STRUCTURE_TYPE_COMMAND_BUFFER_BEGIN_INFO,
                                         .flags = VK_COMMAND_BUFFER_USAGE_ONE_TIME_SUBMIT_BIT};
    VK_CHECK(f->vkBeginCommandBuffer(vk->cmd, &bi), "vkBeginCommandBuffer");
fail:
    return rc;
}

int rwkv_vk_submit_wait(struct rwkv_vk *vk, struct rwkv_error *err) {
    int rc = RWKV_OK;
    VK_CHECK(vk->f.vkEndCommandBuffer(vk->cmd), "vkEndCommandBuffer");
    rc = rwkv_vk_submit_cmds(vk, 1, &vk->cmd, err);
fail:
    return rc;
}

int rwkv_vk_submit_cmds(struct rwkv_vk *vk, uint32_t n, const VkCommandBuffer *cmds, struct rwkv_error *err) {
    int rc = RWKV_OK;
    struct rwkv_vk_fns *f = &vk->f;
    const VkSubmitInfo si = {.sType = VK_STRUCTURE_TYPE_SUBMIT_INFO, .commandBufferCount = n, .pCommandBuffers = cmds};
    VK_CHECK(f->vkResetFences(vk->dev, 1, &vk->fence), "vkResetFences");
    VK_CHECK(f->vkQueueSubmit(vk->queue, 1, &si, vk->fence), "vkQueueSubmit");
    VK_CHECK(f->vkWaitForFences(vk->dev, 1, &vk->fence, VK_TRUE, UINT64_MAX), "vkWaitForFences");
fail:
    return rc;
}

int rwkv_vk_cmd_dispatch(struct rwkv_vk *vk, VkCommandBuffer cmd, VkDescriptorPool pool, const struct rwkv_vk_pipe *p,
                         const struct rwkv_vk_buf *const *bufs, const void *push, uint32_t gx, uint32_t gy,
                         uint32_t gz, struct rwkv_error *err) {
    int rc = RWKV_OK;
    struct rwkv_vk_fns *f = &vk->f;
    VkDescriptorSet set;
    const VkDescriptorSetAllocateInfo ai = {.sType = VK_STRUCTURE_TYPE_DESCRIPTOR_SET_ALLOCATE_INFO,
                                            .descriptorPool = pool, .descriptorSetCount = 1,
                                            .pSetLayouts = &p->dsl};
    VK_CHECK(f->vkAllocateDescriptorSets(vk->dev, &ai, &set), "vkAllocateDescriptorSets");
    VkDescriptorBufferInfo infos[16];
    VkWriteDescriptorSet writes[16];
    for (uint32_t i = 0; i < p->n_bufs; i++) {
        infos[i] = (VkDescriptorBufferInfo){bufs[i]->buf, 0, VK_WHOLE_SIZE};
        writes[i] = (VkWriteDescriptorSet){.sType = VK_STRUCTURE_TYPE_WRITE_DESCRIPTOR_SET, .dstSet = set,
                                           .dstBinding = i, .descriptorCount = 1,
                                           .descriptorType = VK_DESCRIPTOR_TYPE_STORAGE_BUFFER, .pBufferInfo = &infos[i]};
    }
    f->vkUpdateDescriptorSets(vk->dev, p->n_bufs, writes, 0, NULL);
    f->vkCmdBindPipeline(cmd, VK_PIPELINE_BIND_POINT_COMPUTE, p->pipe);
    f->vkCmdBindDescriptorSets(cmd, VK_PIPELINE_BIND_POINT_COMPUTE, p->layout, 0, 1, &set, 0, NULL);
    if (p->push_bytes) f->vkCmdPushConstants(cmd, p->layout, VK_SHADER_STAGE_COMPUTE_BIT, 0, p->push_bytes, push);
    f->vkCmdDispatch(cmd, gx, gy, gz);
fail:
    return rc;
}

void rwkv_vk_cmd_barrier(struct rwkv_vk *vk, VkCommandBuffer cmd) {
    const VkMemoryBarrier mb = {.sType = VK_STRUCTURE_TYPE_MEMORY_BARRIER,
                                .srcAccessMask = VK_ACCESS_SHADER_WRITE_BIT | VK_ACCESS_TRANSFER_WRITE_BIT,
                                .dstAccessMask = VK_ACCESS_SHADER_READ_BIT | VK_ACCESS_SHADER_WRITE_BIT |
                                                 VK_ACCESS_TRANSFER_READ_BIT | VK_ACCESS_HOST_READ_BIT};
    vk->f.vkCmdPipelineBarrier(cmd, VK_PIPELINE_STAGE_COMPUTE_SHADER_BIT | VK_PIPELINE_STAGE_TRANSFER_BIT,
                               VK_PIPELINE_STAGE_COMPUTE_SHADER_BIT | VK_PIPELINE_STAGE_TRANSFER_BIT |
                                   VK_PIPELINE_STAGE_HOST_BIT,
                               0, 1, &mb, 0, NULL, 0, NULL);
}
#endif
