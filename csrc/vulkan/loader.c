/* loader.c — opening libvulkan at run time and resolving its entry points. */
#include "vulkan/vk.h"

#ifdef RWKV_HAVE_VULKAN
#include <dlfcn.h>
#include <string.h>

#include "error.h"

int rwkv_vk_load(struct rwkv_vk_fns *f, struct rwkv_error *err) {
    int rc = RWKV_OK;
    memset(f, 0, sizeof *f);
    /* the SONAME first (what a runtime package installs), the dev symlink as a fallback */
    static const char *const names[] = {"libvulkan.so.1", "libvulkan.so", "libvulkan.1.dylib", "libMoltenVK.dylib"};
    for (size_t i = 0; i < sizeof names / sizeof names[0] && !f->lib; i++) f->lib = dlopen(names[i], RTLD_NOW | RTLD_LOCAL);
    RWKV_CHECK(f->lib, RWKV_ERR_BACKEND, "no Vulkan loader (libvulkan.so.1) on this machine");
    f->vkGetInstanceProcAddr = (PFN_vkGetInstanceProcAddr)dlsym(f->lib, "vkGetInstanceProcAddr");
    RWKV_CHECK(f->vkGetInstanceProcAddr, RWKV_ERR_BACKEND, "the Vulkan loader has no vkGetInstanceProcAddr");
#define X(name) f->name = (PFN_##name)f->vkGetInstanceProcAddr(NULL, #name);
    RWKV_VK_GLOBAL_FNS(X)
#undef X
    RWKV_CHECK(f->vkCreateInstance, RWKV_ERR_BACKEND, "the Vulkan loader has no vkCreateInstance");
    return RWKV_OK;
fail:
    rwkv_vk_unload(f);
    return rc;
}

int rwkv_vk_load_instance(struct rwkv_vk_fns *f, VkInstance inst, struct rwkv_error *err) {
    int rc = RWKV_OK;
#define X(name)                                                                                  \
    f->name = (PFN_##name)f->vkGetInstanceProcAddr(inst, #name);                                 \
    RWKV_CHECK(f->name, RWKV_ERR_BACKEND, "the Vulkan instance has no %s", #name);
    RWKV_VK_INSTANCE_FNS(X)
#undef X
fail:
    return rc;
}

int rwkv_vk_load_device(struct rwkv_vk_fns *f, VkDevice dev, struct rwkv_error *err) {
    int rc = RWKV_OK;
#define X(name)                                                                                  \
    f->name = (PFN_##name)f->vkGetDeviceProcAddr(dev, #name);                                    \
    RWKV_CHECK(f->name, RWKV_ERR_BACKEND, "the Vulkan device has no %s", #name);
    RWKV_VK_DEVICE_FNS(X)
#undef X
fail:
    return rc;
}

void rwkv_vk_unload(struct rwkv_vk_fns *f) {
    if (f->lib) dlclose(f->lib);
    memset(f, 0, sizeof *f);
}

const char *rwkv_vk_result_name(VkResult r) {
    switch (r) {
#define R(x) case x: return #x;
        R(VK_SUCCESS) R(VK_NOT_READY) R(VK_TIMEOUT) R(VK_INCOMPLETE) R(VK_ERROR_OUT_OF_HOST_MEMORY)
        R(VK_ERROR_OUT_OF_DEVICE_MEMORY) R(VK_ERROR_INITIALIZATION_FAILED) R(VK_ERROR_DEVICE_LOST)
        R(VK_ERROR_MEMORY_MAP_FAILED) R(VK_ERROR_LAYER_NOT_PRESENT) R(VK_ERROR_EXTENSION_NOT_PRESENT)
        R(VK_ERROR_FEATURE_NOT_PRESENT) R(VK_ERROR_INCOMPATIBLE_DRIVER) R(VK_ERROR_TOO_MANY_OBJECTS)
        R(VK_ERROR_FORMAT_NOT_SUPPORTED) R(VK_ERROR_FRAGMENTED_POOL) R(VK_ERROR_OUT_OF_POOL_MEMORY)
        R(VK_ERROR_INVALID_SHADER_NV) R(VK_ERROR_UNKNOWN)
#undef R
    default: return "VK_ERROR_(unnamed)";
    }
}
#endif
