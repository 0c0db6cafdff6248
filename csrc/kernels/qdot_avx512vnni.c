/* qdot_avx512vnni.c — Q4_K/Q5_K kernels for CPUs with AVX512-VNNI (Ice Lake, Zen 4 and later).
 *
 * The integer sub-block scales are folded into the widened weights (vpmullw; 6-bit scale
 * times a 5-bit value fits int16), so a whole 256-element super-block accumulates in int32
 * with vpdpwssd and is converted and scaled once, instead of once per sub-block.
 * Overflow: |sc * q| <= 63 * 31 and |x| <= 16383, 16 products per lane: < 2^30.
 * AVX512-VL provides the 256-bit forms of the AVX512-BW/VNNI instructions used here.
 */
#if defined(__x86_64__) && defined(__GNUC__)
#pragma GCC target("avx512f,avx512bw,avx512vl,avx512dq,avx512vnni,avx2,fma,f16c")
#include <immintrin.h>
#include <string.h>

#include "qdot.h"
#include "unpack.h"

#define PREFETCH_AHEAD 2048

/* 256-bit vectors on purpose: 512-bit vpmullw/vpdpwssd issue on one port (and can lower
 * the clock) on current Intel cores, while the 256-bit forms use two; measured faster. */
static inline __attribute__((always_inline)) void gemv_q45k(const void *w, size_t rb, const struct rwkv_xq *x,
                                                               float *y, int64_t nr, int64_t nc, const int BB,
                                                               const int QS, const int QH) {
    const int64_t nsb = nc / 256;
    const __m256i low4 = _mm256_set1_epi16(0x0f), sixteen = _mm256_set1_epi16(16);
    uint32_t pairs[8] __attribute__((aligned(32)));
    for (int64_t r = 0; r < nr; r++) {
        const uint8_t *row = (const uint8_t *)w + (size_t)r * rb;
        __m256 acc[2] = {_mm256_setzero_ps(), _mm256_setzero_ps()};
        __m256 side = _mm256_setzero_ps();
        for (int64_t sb = 0; sb < nsb; sb++) {
            const uint8_t *blk = row + sb * BB;
            _mm_prefetch((const char *)blk + PREFETCH_AHEAD, _MM_HINT_T0);
            _mm_prefetch((const char *)blk + PREFETCH_AHEAD + 64, _MM_HINT_T0);
            _mm_prefetch((const char *)blk + PREFETCH_AHEAD + 128, _MM_HINT_T0);
            const __m256i sc32 = _mm256_cvtepu8_epi32(k4_superblock(blk, x->sum32 + sb * 8, &side));
            /* each scale in both int16 halves of a dword, for a 32-bit broadcast */
            _mm256_store_si256((__m256i *)pairs, _mm256_or_si256(sc32, _mm256_slli_epi32(sc32, 16)));
            __m256i qa = _mm256_setzero_si256(), qb = qa;
            if (QH) {
                qa = _mm256_cvtepu8_epi16(_mm_loadu_si128((const __m128i *)(blk + QH)));
                qb = _mm256_cvtepu8_epi16(_mm_loadu_si128((const __m128i *)(blk + QH + 16)));
            }
            const int16_t *q = x->q + sb * 256;
            __m256i isum[2] = {_mm256_setzero_si256(), _mm256_setzero_si256()};
            for (int j = 0; j < 4; j++) {
                const uint8_t *qs = blk + QS + 32 * j;
                __m256i wa = _mm256_cvtepu8_epi16(_mm_loadu_si128((const __m128i *)qs));
                __m256i wb = _mm256_cvtepu8_epi16(_mm_loadu_si128((const __m128i *)(qs + 16)));
                __m256i la = _mm256_and_si256(wa, low4), lb = _mm256_and_si256(wb, low4);
                __m256i ha = _mm256_srli_epi16(wa, 4), hb = _mm256_srli_epi16(wb, 4);
                if (QH) {
                    const __m256i bl = _mm256_set1_epi16((short)(1 << (2 * j))), bh = _mm256_set1_epi16((short)(2 << (2 * j)));
                    la = _mm256_mask_add_epi16(la, _mm256_test_epi16_mask(qa, bl), la, sixteen);
                    lb = _mm256_mask_add_epi16(lb, _mm256_test_epi16_mask(qb, bl), lb, sixteen);
                    ha = _mm256_mask_add_epi16(ha, _mm256_test_epi16_mask(qa, bh), ha, sixteen);
                    hb = _mm256_mask_add_epi16(hb, _mm256_test_epi16_mask(qb, bh), hb, sixteen);
                }
                const __m256i slo = _mm256_set1_epi32((int)pairs[2 * j]), shi = _mm256_set1_epi32((int)pairs[2 * j + 1]);
                const int16_t *qj = q + 64 * j;
                isum[0] = _mm256_dpwssd_epi32(isum[0], _mm256_mullo_epi16(la, slo), _mm256_loadu_si256((const __m256i *)qj));
                isum[1] = _mm256_dpwssd_epi32(isum[1], _mm256_mullo_epi16(lb, slo),
                                              _mm256_loadu_si256((const __m256i *)(qj + 16)));
                isum[0] = _mm256_dpwssd_epi32(isum[0], _mm256_mullo_epi16(ha, shi),
                                              _mm256_loadu_si256((const __m256i *)(qj + 32)));
                isum[1] = _mm256_dpwssd_epi32(isum[1], _mm256_mullo_epi16(hb, shi),
                                              _mm256_loadu_si256((const __m256i *)(qj + 48)));
            }
            const __m256 d = _mm256_set1_ps(rd_f16(blk) * x->d[sb]);
            acc[sb & 1] = _mm256_fmadd_ps(_mm256_cvtepi32_ps(_mm256_add_epi32(isum[0], isum[1])), d, acc[sb & 1]);
        }
        __m256 t = _mm256_sub_ps(_mm256_add_ps(acc[0], acc[1]), side);
        __m128 s4 = _mm_add_ps(_mm256_castps256_ps128(t), _mm256_extractf128_ps(t, 1));
        s4 = _mm_add_ps(s4, _mm_movehl_ps(s4, s4));
        s4 = _mm_add_ss(s4, _mm_movehdup_ps(s4));
        y[r] = _mm_cvtss_f32(s4);
    }
}

void rwkv_gemv_q4_k_avx512vnni(const void *w, size_t rb, const struct rwkv_xq *x, float *y, int64_t nr, int64_t nc) {
    gemv_q45k(w, rb, x, y, nr, nc, 144, 16, 0);
}
void rwkv_gemv_q5_k_avx512vnni(const void *w, size_t rb, const struct rwkv_xq *x, float *y, int64_t nr, int64_t nc) {
    gemv_q45k(w, rb, x, y, nr, nc, 176, 48, 16);
}
const struct rwkv_kernels rwkv_kernels_avx512vnni = {
    .level = "avx512vnni",
    .gemv_q4_k = rwkv_gemv_q4_k_avx512vnni,
    .gemv_q5_k = rwkv_gemv_q5_k_avx512vnni,
};
#else
#include "kernels.h"
const struct rwkv_kernels rwkv_kernels_avx512vnni = {0};
#endif
