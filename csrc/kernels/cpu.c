/* cpu.c — runtime ISA detection and the start-up choice of the kernel table.
 *
 * CPUID says what the core implements; XGETBV says whether the OS saves the
 * wider registers on a context switch (a CPU may have AVX-512 that the kernel
 * has not enabled). Both must agree before a level is used. RWKVFAST_CPU caps
 * the level so every path can be tested on one machine.
 */
#if defined(__linux__)
#define _GNU_SOURCE /* syscall() under -std=c11 */
#include <sys/syscall.h>
#include <unistd.h>
#endif
#include <pthread.h>
#include <setjmp.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../rwkvfast.h"
#include "kernels.h"
#include "qdot.h"

#ifdef _OPENMP
#include <omp.h>
#endif
#if defined(__x86_64__) && defined(__GNUC__)
#include <immintrin.h>
#endif

#if defined(__x86_64__) && defined(__GNUC__)
#include <cpuid.h>

static uint64_t xgetbv0(void) {
    uint32_t lo, hi;
    __asm__ volatile("xgetbv" : "=a"(lo), "=d"(hi) : "c"(0));
    return ((uint64_t)hi << 32) | lo;
}

static int detect(void) {
    unsigned a, b, c, d;
    if (!__get_cpuid(1, &a, &b, &c, &d)) return RWKV_CPU_SCALAR;
    int osxsave = (c >> 27) & 1, avx = (c >> 28) & 1, fma = (c >> 12) & 1, f16c = (c >> 29) & 1;
    if (!osxsave || !avx) return RWKV_CPU_SCALAR;
    uint64_t xcr0 = xgetbv0();
    if ((xcr0 & 0x6) != 0x6) return RWKV_CPU_SCALAR; /* XMM+YMM state saved */
    if (!__get_cpuid_count(7, 0, &a, &b, &c, &d)) return RWKV_CPU_SCALAR;
    int avx2 = (b >> 5) & 1;
    if (!(avx2 && fma && f16c)) return RWKV_CPU_SCALAR;
    int avx512f = (b >> 16) & 1, avx512dq = (b >> 17) & 1, avx512bw = (b >> 30) & 1, avx512vl = (b >> 31) & 1;
    int zmm_os = (xcr0 & 0xe6) == 0xe6; /* opmask + ZMM_Hi256 + Hi16_ZMM */
    int vnni = (c >> 11) & 1;
    if (avx512f && avx512dq && avx512bw && avx512vl && zmm_os) return vnni ? RWKV_CPU_AVX512_VNNI : RWKV_CPU_AVX512;
    return RWKV_CPU_AVX2;
}

/* One tile product (rwkv_amx_selftest) with SIGILL caught: 1 right, 0 wrong, -1 trapped. Runs once,
 * under pthread_once at start-up, and puts the previous SIGILL handler back. */
#if defined(__linux__)
static sigjmp_buf g_amx_jmp;
static void amx_sigill(int sig) {
    (void)sig;
    siglongjmp(g_amx_jmp, 1);
}
static int amx_try(void) {
    struct sigaction sa, old;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = amx_sigill;
    sigemptyset(&sa.sa_mask);
    if (sigaction(SIGILL, &sa, &old) != 0) return -1;
    volatile int ok = -1;
    if (sigsetjmp(g_amx_jmp, 1) == 0) ok = rwkv_amx_selftest();
    sigaction(SIGILL, &old, NULL);
    return ok;
}
#endif

/* AMX tiles: whether the CPU has them (CPUID 7.0 EDX: 24 tile, 25 int8, 22 bf16), the OS saves
 * their state (XCR0 bits 17-18) and Linux lets this process use them (the permission request is
 * the kernel's rule, and a process that skips it dies of SIGILL at its first tile load). The
 * request enlarges the process's signal frames, so it is made only where the tiles exist. Sets
 * *int8 where the int8 tile products (what the amx level's kernels use) are granted. */
static const char *amx_probe(int *granted_int8) {
    unsigned a, b, c, d;
    *granted_int8 = 0;
    if (!__get_cpuid_count(7, 0, &a, &b, &c, &d) || !((d >> 24) & 1)) return "no (not in this CPU)";
    const int int8 = (d >> 25) & 1, bf16 = (d >> 22) & 1;
    if (!__get_cpuid(1, &a, &b, &c, &d) || !((c >> 27) & 1) || (xgetbv0() & 0x60000) != 0x60000)
        return "no (the OS does not save the tile state)";
#if defined(__linux__)
    if (syscall(SYS_arch_prctl, 0x1023 /* ARCH_REQ_XCOMP_PERM */, 18 /* XFEATURE_XTILEDATA */) != 0)
        return "no (Linux refused the tile permission)";
    if (int8) {
        const int ok = amx_try();
        if (ok < 0) return "no (the tile instructions trap here: SIGILL)";
        if (ok == 0) return "no (a tile product gave a wrong result)";
    }
    *granted_int8 = int8;
    return int8 && bf16 ? "granted: int8, bf16" : int8 ? "granted: int8" : "granted, without int8 (unused)";
#else
    (void)int8, (void)bf16;
    return "no (the tile permission is requested on Linux only)";
#endif
}
#else
static int detect(void) { return RWKV_CPU_SCALAR; }
static const char *amx_probe(int *granted_int8) {
    *granted_int8 = 0;
    return "no (not x86-64)";
}
#endif

static const char *const LEVEL_NAMES[] = {"scalar", "avx2", "avx512", "avx512vnni", "amx", "amx-emulated"};
static const struct rwkv_kernels *const TABLES[] = {&rwkv_kernels_scalar, &rwkv_kernels_avx2, &rwkv_kernels_avx512,
                                                    &rwkv_kernels_avx512vnni, &rwkv_kernels_amx};

/* The dispatch state: written once under pthread_once, read-only afterwards. */
static pthread_once_t g_once = PTHREAD_ONCE_INIT;
static int g_supported, g_level;
static const char *g_amx;
static struct rwkv_kernels g_filled[RWKV_CPU_AMX + 1]; /* per level, NULL slots filled from below */
static struct rwkv_kernels g_emulated;                 /* RWKV_CPU_AMX_EMULATED */
static char g_info[1024];

static void init_once(void) {
    int amx_int8;
    g_supported = detect();
    g_amx = amx_probe(&amx_int8);
    if (g_supported == RWKV_CPU_AVX512_VNNI && amx_int8) g_supported = RWKV_CPU_AMX;
    g_level = g_supported;
    const char *cap = getenv("RWKVFAST_CPU");
    if (cap && *cap) {
        for (int l = 0; l <= RWKV_CPU_AMX; l++)
            if (strcmp(cap, LEVEL_NAMES[l]) == 0 && l < g_level) g_level = l;
    }
    /* Each slot takes the best level (up to the table's own) that implements it, except that a
     * GEMM slot is kept only from the level of its type's GEMV: a GEMM promises the GEMV's sums
     * bit for bit, so with another level's GEMV the product runs token after token instead. */
    const char *slot_level[64] = {0};
    int i;
    for (int top = 0; top <= g_supported; top++) {
        struct rwkv_kernels *dst = &g_filled[top];
        int from[64] = {0}, gemv_from[RWKV_TYPE_COUNT];
        dst->level = LEVEL_NAMES[top];
        for (int l = 0; l <= top; l++) {
            const struct rwkv_kernels *t = TABLES[l];
            i = 0;
#define FILL(name, wtype)                                        \
    if (t->name) {                                        \
        dst->name = t->name;                              \
        from[i] = l;                                      \
    }                                                     \
    i++;
            RWKV_KERNEL_SLOTS(FILL)
#undef FILL
            if (t->wkv6) dst->wkv6 = t->wkv6;
            if (t->wkv7) dst->wkv7 = t->wkv7;
            if (t->exp) dst->exp = t->exp;
        }
        i = 0;
#define GEMV_FROM(name, wtype) gemv_from[wtype] = dst->name ? from[i] : -1, i++;
#define KEEP_GEMM(name, wtype)                                      \
    if (dst->name && from[i] != gemv_from[wtype]) dst->name = NULL; \
    i++;
        RWKV_FLOAT_SLOTS(GEMV_FROM) RWKV_QUANT_SLOTS(GEMV_FROM)
        RWKV_GEMM_SLOTS(KEEP_GEMM) RWKV_GEMM_Q_SLOTS(KEEP_GEMM)
#undef GEMV_FROM
#undef KEEP_GEMM
        if (top == g_level) {
            i = 0;
#define NAME_LEVEL(name, wtype) slot_level[i] = dst->name ? LEVEL_NAMES[from[i]] : "gemv per token", i++;
            RWKV_KERNEL_SLOTS(NAME_LEVEL)
#undef NAME_LEVEL
        }
    }
    if (g_supported >= RWKV_CPU_AVX512_VNNI) {
        g_emulated = g_filled[RWKV_CPU_AVX512_VNNI];
        g_emulated.level = LEVEL_NAMES[RWKV_CPU_AMX_EMULATED];
        g_emulated.gemm_q8_0 = rwkv_gemm_q8_0_amx_emulated;
        g_emulated.gemm_q4_0 = rwkv_gemm_q4_0_amx_emulated;
        g_emulated.gemm_q4_1 = rwkv_gemm_q4_1_amx_emulated;
        g_emulated.gemm_q5_0 = rwkv_gemm_q5_0_amx_emulated;
        g_emulated.gemm_q5_1 = rwkv_gemm_q5_1_amx_emulated;
    }
    const char *wkv6_level = "scalar", *wkv7_level = "scalar";
    for (int l = 0; l <= g_level; l++) {
        if (TABLES[l]->wkv6) wkv6_level = LEVEL_NAMES[l];
        if (TABLES[l]->wkv7) wkv7_level = LEVEL_NAMES[l];
    }
    int n = snprintf(g_info, sizeof g_info, "cpu: %s (supported: %s) | amx: %s | wkv6 = %s | wkv7 = %s |",
                     LEVEL_NAMES[g_level], LEVEL_NAMES[g_supported], g_amx, wkv6_level, wkv7_level);
    i = 0;
#define INFO(name, wtype)                                                                           \
    if (n >= 0 && (size_t)n < sizeof g_info)                                                 \
        n += snprintf(g_info + n, sizeof g_info - (size_t)n, " %s = %s |", #name, slot_level[i]); \
    i++;
    RWKV_KERNEL_SLOTS(INFO)
#undef INFO
}

int rwkv_cpu_level(void) {
    pthread_once(&g_once, init_once);
    return g_level;
}

int rwkv_cpu_level_supported(void) {
    pthread_once(&g_once, init_once);
    return g_supported;
}

const char *rwkv_cpu_level_name(int level) {
    return level >= 0 && level <= RWKV_CPU_AMX_EMULATED ? LEVEL_NAMES[level] : "?";
}

const struct rwkv_kernels *rwkv_kernels_active(void) {
    pthread_once(&g_once, init_once);
    return &g_filled[g_level];
}

const struct rwkv_kernels *rwkv_kernels_for_level(int level) {
    if (level == RWKV_CPU_AMX_EMULATED) return rwkv_cpu_level_supported() >= RWKV_CPU_AVX512_VNNI ? &g_emulated : NULL;
    if (level < 0 || level > rwkv_cpu_level_supported()) return NULL;
    return &g_filled[level];
}

void rwkv_system_info(char *buf, size_t size) {
    pthread_once(&g_once, init_once);
    snprintf(buf, size, "%s", g_info);
}

/* Roofline probe: the widest plain loads this CPU has, one contiguous range per thread. */
#if defined(__x86_64__) && defined(__GNUC__)
__attribute__((target("avx2"))) static uint64_t read_avx2(const uint8_t *p, size_t n) {
    __m256i a = _mm256_setzero_si256(), b = a, c = a, d = a;
    size_t i = 0;
    for (; i + 128 <= n; i += 128) {
        a = _mm256_xor_si256(a, _mm256_loadu_si256((const __m256i *)(p + i)));
        b = _mm256_xor_si256(b, _mm256_loadu_si256((const __m256i *)(p + i + 32)));
        c = _mm256_xor_si256(c, _mm256_loadu_si256((const __m256i *)(p + i + 64)));
        d = _mm256_xor_si256(d, _mm256_loadu_si256((const __m256i *)(p + i + 96)));
    }
    a = _mm256_xor_si256(_mm256_xor_si256(a, b), _mm256_xor_si256(c, d));
    uint64_t out[4];
    _mm256_storeu_si256((__m256i *)out, a);
    uint64_t s = out[0] ^ out[1] ^ out[2] ^ out[3];
    for (; i < n; i++) s += p[i];
    return s;
}
#endif

static uint64_t read_scalar(const uint8_t *p, size_t n) {
    uint64_t s = 0;
    for (size_t i = 0; i + 8 <= n; i += 8) {
        uint64_t v;
        memcpy(&v, p + i, 8);
        s ^= v;
    }
    return s;
}

uint64_t rwkv_stream_read(const void *p, size_t size, int n_threads) {
    uint64_t total = 0;
    const int avx2 = rwkv_cpu_level() >= RWKV_CPU_AVX2;
#pragma omp parallel num_threads(n_threads > 0 ? n_threads : 1) reduction(^ : total)
    {
#ifdef _OPENMP
        int nt = omp_get_num_threads(), it = omp_get_thread_num();
#else
        int nt = 1, it = 0;
#endif
        size_t per = (size / (size_t)nt) & ~(size_t)127;
        const uint8_t *q = (const uint8_t *)p + per * (size_t)it;
        size_t n = it == nt - 1 ? size - per * (size_t)it : per;
#if defined(__x86_64__) && defined(__GNUC__)
        total ^= avx2 ? read_avx2(q, n) : read_scalar(q, n);
#else
        (void)avx2;
        total ^= read_scalar(q, n);
#endif
    }
    return total;
}
