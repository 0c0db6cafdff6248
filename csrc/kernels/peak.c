/* peak.c — the machine's arithmetic peaks, for benchmarks to report results as a fraction.
 *
 * Each thread runs independent chains of the widest FMA (f32) or vpdpbusd (u8 x s8 -> s32)
 * the CPU has, enough chains to cover the instruction latency, for a fixed number of steps;
 * the caller divides the operation count by the time it measures. int8 == 2: the AMX tiles'
 * TDPBSSD on full 16 x 64-byte tiles (amx level only), four independent accumulators.
 */
#include <stdint.h>

#include "rwkvfast.h"

#ifdef _OPENMP
#include <omp.h>
#endif

#if defined(__x86_64__) && defined(__GNUC__)
#include <immintrin.h>

#include "tiles.h"

#define CHAINS 12 /* > latency (4) x issue width (2) of FMA on current cores */

__attribute__((target("avx512f"))) static float fma_avx512(int64_t steps) {
    __m512 a[CHAINS];
    const __m512 m = _mm512_set1_ps(0.999999f), c = _mm512_set1_ps(1e-7f);
    for (int i = 0; i < CHAINS; i++) a[i] = _mm512_set1_ps((float)i);
    for (int64_t s = 0; s < steps; s++)
        for (int i = 0; i < CHAINS; i++) a[i] = _mm512_fmadd_ps(a[i], m, c);
    __m512 t = a[0];
    for (int i = 1; i < CHAINS; i++) t = _mm512_add_ps(t, a[i]);
    return _mm512_reduce_add_ps(t);
}

__attribute__((target("avx2,fma"))) static float fma_avx2(int64_t steps) {
    __m256 a[CHAINS];
    const __m256 m = _mm256_set1_ps(0.999999f), c = _mm256_set1_ps(1e-7f);
    for (int i = 0; i < CHAINS; i++) a[i] = _mm256_set1_ps((float)i);
    for (int64_t s = 0; s < steps; s++)
        for (int i = 0; i < CHAINS; i++) a[i] = _mm256_fmadd_ps(a[i], m, c);
    __m256 t = a[0];
    for (int i = 1; i < CHAINS; i++) t = _mm256_add_ps(t, a[i]);
    float o[8];
    _mm256_storeu_ps(o, t);
    return o[0] + o[7];
}

__attribute__((target("avx512f,avx512bw,avx512vl,avx512vnni"))) static int32_t dot_vnni(int64_t steps) {
    __m512i a[CHAINS];
    const __m512i u = _mm512_set1_epi8(3), v = _mm512_set1_epi8(-2);
    for (int i = 0; i < CHAINS; i++) a[i] = _mm512_set1_epi32(i);
    for (int64_t s = 0; s < steps; s++)
        for (int i = 0; i < CHAINS; i++) a[i] = _mm512_dpbusd_epi32(a[i], u, v);
    __m512i t = a[0];
    for (int i = 1; i < CHAINS; i++) t = _mm512_add_epi32(t, a[i]);
    return _mm512_reduce_add_epi32(t);
}

__attribute__((target("amx-tile,amx-int8"))) static int32_t dot_amx(int64_t steps) {
    struct rwkv_tilecfg cfg;
    rwkv_tilecfg_init(&cfg);
    for (int n = 0; n < 8; n++) rwkv_tile_shape(&cfg, n, 16, 64);
    _Alignas(64) int8_t in[16][64];
    _Alignas(64) int32_t out[16][16];
    for (int r = 0; r < 16; r++)
        for (int c = 0; c < 64; c++) in[r][c] = (int8_t)(r - c);
    _tile_loadconfig(&cfg);
    _tile_zero(0);
    _tile_zero(1);
    _tile_zero(2);
    _tile_zero(3);
    _tile_loadd(4, in, 64);
    _tile_loadd(5, in, 64);
    _tile_loadd(6, in, 64);
    _tile_loadd(7, in, 64);
    for (int64_t s = 0; s < steps; s++) {
        _tile_dpbssd(0, 4, 6);
        _tile_dpbssd(1, 4, 7);
        _tile_dpbssd(2, 5, 6);
        _tile_dpbssd(3, 5, 7);
    }
    _tile_stored(0, out, 64);
    _tile_release();
    return out[0][0];
}

__attribute__((target("avx2"))) static int32_t dot_avx2(int64_t steps) {
    __m256i a[CHAINS];
    const __m256i u = _mm256_set1_epi8(3), v = _mm256_set1_epi8(-2), one = _mm256_set1_epi16(1);
    for (int i = 0; i < CHAINS; i++) a[i] = _mm256_set1_epi32(i);
    for (int64_t s = 0; s < steps; s++)
        for (int i = 0; i < CHAINS; i++)
            a[i] = _mm256_add_epi32(a[i], _mm256_madd_epi16(_mm256_maddubs_epi16(u, v), one));
    __m256i t = a[0];
    for (int i = 1; i < CHAINS; i++) t = _mm256_add_epi32(t, a[i]);
    return _mm256_extract_epi32(t, 0);
}
#endif

double rwkv_peak_ops(int int8, int n_threads, int64_t steps, double *checksum) {
    const int level = rwkv_cpu_level();
    double ops_per_step = 0.0, sum = 0.0;
#pragma omp parallel num_threads(n_threads > 0 ? n_threads : 1) reduction(+ : sum)
    {
#if defined(__x86_64__) && defined(__GNUC__)
        if (int8 == 2) sum += level >= RWKV_CPU_AMX ? dot_amx(steps) : 0;
        else if (!int8 && level >= RWKV_CPU_AVX512) sum += fma_avx512(steps);
        else if (!int8 && level >= RWKV_CPU_AVX2) sum += fma_avx2(steps);
        else if (int8 && level >= RWKV_CPU_AVX512_VNNI) sum += dot_vnni(steps);
        else if (int8 && level >= RWKV_CPU_AVX2) sum += dot_avx2(steps);
#endif
    }
#if defined(__x86_64__) && defined(__GNUC__)
    /* operations per step per thread: FMA = 2 flops per lane; vpdpbusd = 4 multiply-adds per lane */
    if (int8 == 2) ops_per_step = level >= RWKV_CPU_AMX ? 4 * 2.0 * 16 * 16 * 64 : 0;
    else if (!int8) ops_per_step = CHAINS * 2.0 * (level >= RWKV_CPU_AVX512 ? 16 : level >= RWKV_CPU_AVX2 ? 8 : 0);
    else ops_per_step = CHAINS * 8.0 * (level >= RWKV_CPU_AVX512_VNNI ? 16 : level >= RWKV_CPU_AVX2 ? 8 : 0);
#endif
    if (checksum) *checksum = sum;
    return ops_per_step * (double)steps * (n_threads > 0 ? n_threads : 1);
}
