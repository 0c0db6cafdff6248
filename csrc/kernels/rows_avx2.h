/* rows_avx2.h — the pieces of the AVX2 integer kernels with rows in the lanes (q32_avx2.c, and the K
 * types' kernels as they move to the same scheme): 8 rows at a time, their int32 sums turned
 * into one lane per row, the f32 steps that make the GEMV and the panel GEMM bit-identical, and the
 * panel's transpose and multiply-add. Include after the target pragma and immintrin.h.
 */
#ifndef RWKV_ROWS_AVX2_H
#define RWKV_ROWS_AVX2_H

#include <stdint.h>
#include <string.h>

/* Rows r0 .. r0 + 7 (past nr: the last row again) from w. */
static inline void group_rows(const void *w, size_t rb, int64_t r0, int64_t nr, const uint8_t *rows[8]) {
    for (int i = 0; i < 8; i++) rows[i] = (const uint8_t *)w + (size_t)(r0 + i < nr ? r0 + i : nr - 1) * rb;
}

/* Where the bytes read after row i of a group (rows from r0) at byte `at` lie, for a prefetch: the next
 * row's, or after the 8th the first row's next chunk (at byte `next_chunk`, -1 if none), or the row
 * after the group (past the caller's rows: its next rows, or past the matrix, which a prefetch may
 * name). The GEMVs read each row of a group front to back, a chunk at a time. */
static inline const uint8_t *next_rows(const void *w, size_t rb, const uint8_t *const rows[8], int i, int64_t r0,
                                       int64_t at, int64_t next_chunk) {
    if (i < 7) return rows[i + 1] + at;
    if (next_chunk >= 0) return rows[0] + next_chunk;
    return (const uint8_t *)w + (size_t)(r0 + 8) * rb;
}

/* 8 rows' f16 pairs (a scale d, and m where the block has one), one row per int32 lane, as f32. */
static inline void split_dm(__m256i all, __m256 *d, __m256 *m) {
    /* low halves (d) in the first 8 int16 of each 128-bit lane, high halves (m) after them */
    const __m256i split = _mm256_shuffle_epi8(all, _mm256_setr_epi8(0, 1, 4, 5, 8, 9, 12, 13, 2, 3, 6, 7, 10, 11, 14, 15,
                                                                    0, 1, 4, 5, 8, 9, 12, 13, 2, 3, 6, 7, 10, 11, 14, 15));
    const __m256i q = _mm256_permute4x64_epi64(split, _MM_SHUFFLE(3, 1, 2, 0));
    *d = _mm256_cvtph_ps(_mm256_castsi256_si128(q));
    *m = _mm256_cvtph_ps(_mm256_extracti128_si256(q, 1));
}

/* The f16 pair at byte `at` of 8 rows' blocks as f32. */
static inline void gather_dm(const uint8_t *const rows[8], int64_t at, __m256 *d, __m256 *m) {
    int32_t v[8];
    for (int i = 0; i < 8; i++) memcpy(&v[i], rows[i] + at, 4);
    split_dm(_mm256_setr_epi32(v[0], v[1], v[2], v[3], v[4], v[5], v[6], v[7]), d, m);
}

/* The 8 lane sums of each of 8 vectors: lane i of the result is the sum of v[i]'s lanes. */
static inline __m256i reduce8(const __m256i v[8]) {
    __m256i a[4], b[2];
    for (int k = 0; k < 4; k++) /* [v2k: 0+1.. | v2k+1 ..] pairs interleaved */
        a[k] = _mm256_add_epi32(_mm256_unpacklo_epi32(v[2 * k], v[2 * k + 1]), _mm256_unpackhi_epi32(v[2 * k], v[2 * k + 1]));
    for (int k = 0; k < 2; k++) /* per 128-bit half: rows 4k..4k+3, one partial each */
        b[k] = _mm256_add_epi32(_mm256_unpacklo_epi64(a[2 * k], a[2 * k + 1]), _mm256_unpackhi_epi64(a[2 * k], a[2 * k + 1]));
    /* b[0] = [rows 0 1 2 3 (half 0) | rows 0 1 2 3 (half 1)], b[1] the same for rows 4..7 */
    return _mm256_add_epi32(_mm256_permute2x128_si256(b[0], b[1], 0x20), _mm256_permute2x128_si256(b[0], b[1], 0x31));
}

/* 8 vectors (one per row, 8 int32 lanes each) transposed: v[k] lane r = old v[r] lane k. */
static inline void transpose8(__m256i v[8]) {
    __m256i t[8], s[8];
    for (int i = 0; i < 8; i += 2) {
        t[i] = _mm256_unpacklo_epi32(v[i], v[i + 1]);
        t[i + 1] = _mm256_unpackhi_epi32(v[i], v[i + 1]);
    }
    for (int i = 0; i < 8; i += 4)
        for (int j = 0; j < 2; j++) {
            s[i + 2 * j] = _mm256_unpacklo_epi64(t[i + j], t[i + 2 + j]);
            s[i + 2 * j + 1] = _mm256_unpackhi_epi64(t[i + j], t[i + 2 + j]);
        }
    /* s[c] (c < 4) holds, per 128-bit half h, column 4h + c of rows 0..3; s[4 + c] of rows 4..7 */
    for (int c = 0; c < 4; c++) {
        v[c] = _mm256_permute2x128_si256(s[c], s[4 + c], 0x20);
        v[4 + c] = _mm256_permute2x128_si256(s[c], s[4 + c], 0x31);
    }
}

/* An exact integer's f32 step for 8 rows (lanes) of one token, the rows' scale d times the token's
 * dx; the GEMV and the panel GEMM both take their steps from here, so they stay bit-identical. */
static inline __m256 step_acc(__m256 acc, __m256i T, __m256 d, float dx) {
    return _mm256_fmadd_ps(_mm256_cvtepi32_ps(T), _mm256_mul_ps(d, _mm256_set1_ps(dx)), acc);
}
/* The mins' term: the rows' m (already scaled) times the token's f32 sum of the block. */
static inline __m256 step_side(__m256 side, __m256 m, float sum) {
    return _mm256_fmadd_ps(m, _mm256_set1_ps(sum), side);
}

/* y[r0 + i] = lane i of v, for the rows that exist. */
static inline void store_rows(float *y, __m256 v, int64_t r0, int64_t nr) {
    if (nr - r0 >= 8) {
        _mm256_storeu_ps(y + r0, v);
        return;
    }
    float t[8];
    _mm256_storeu_ps(t, v);
    for (int64_t i = 0; i < nr - r0; i++) y[r0 + i] = t[i];
}

/* acc + the int16 pair products of a and b; in asm, as a loop written with intrinsics had GCC copy
 * every accumulator out and back around each step, and unrolled it spilled them. */
static inline __m256i madd_acc(__m256i acc, __m256i a, __m256i b) {
    __m256i t;
    __asm__("vpmaddwd %3, %2, %1\n\tvpaddd %1, %0, %0" : "+x"(acc), "=&x"(t) : "x"(a), "x"(b));
    return acc;
}

#endif
