/* q32_amx.c — the block-32 types' (Q4_0, Q4_1, Q5_0, Q5_1, Q8_0) prompt / batch GEMM on AMX tiles
 * (Sapphire Rapids and later Xeons), and the same code with the tile instructions emulated in C:
 * the twin the tests run on every machine.
 *
 * It gives every (row, token) the sums of q32_avx512vnni.c: per block the exact integer T = sum of
 * u * q (u the weight's integer, q - 8 for Q4_0 and so on), then acc = fma((float)T, d * dx, acc)
 * (and side = fma(m, sum32, side) for Q4_1, Q5_1) in block order; so the amx level keeps that
 * level's GEMVs for decoding and stays bit-identical to them. A tile product gives the integers:
 * the activations' two byte planes (q = 128 hi + lo, lo in 0..127) are the A tiles, 16 tokens x
 * the block's 32 bytes, and u of 16 rows the B tile, 8 rows of [row 0's 4 bytes, row 1's, ..,
 * row 15's], so C_lo[token][row] and C_hi are the planes' block sums and T = C_lo + 128 C_hi (the
 * products are signed bytes, TDPBSSD; the sums stay far below 2^31: 32 * 128 * 128 per plane).
 * A row of C is one token's 16 rows: the f32 steps then run 16 rows wide, as in the VNNI GEMM.
 *
 * Tiles: 0, 1 the two C (16 x 64 bytes), 2, 3 the planes (16 x 32), 4 the weights (8 x 64). The
 * activations of up to 64 tokens are staged as planes once per call, the weights of 16 rows
 * (unpacked to int8 u) once per 64 tokens. Untested on hardware so far (no AMX machine at hand
 * when it was written): the tiling logic is tested through the twin, and the level is used only
 * where CPUID, XCR0 and Linux grant the tiles (cpu.c).
 */
#if defined(__x86_64__) && defined(__GNUC__)
#pragma GCC target("amx-tile,amx-int8,avx512f,avx512bw,avx512vl,avx512dq,avx512vnni,avx2,fma,f16c")
#include <immintrin.h>
#include <stdlib.h>
#include <string.h>

#include "qdot.h"
#include "qvnni.h"
#include "tiles.h"
#include "unpack.h"

#define TOKS 64        /* tokens staged per pass */
#define AMX_MIN_TOK 16 /* below one full tile of tokens the VNNI kernels run (same bits) */

/* The emulated tile registers: each up to 16 rows of 64 bytes. */
struct emu {
    _Alignas(64) uint8_t t[8][16][64];
    const struct rwkv_tilecfg *cfg;
};

static void emu_zero(struct emu *e, int n) { memset(e->t[n], 0, sizeof e->t[n]); }

static void emu_load(struct emu *e, int n, const void *p, size_t stride) {
    for (int r = 0; r < e->cfg->rows[n]; r++) memcpy(e->t[n][r], (const uint8_t *)p + r * stride, e->cfg->colsb[n]);
}

static void emu_store(const struct emu *e, int n, void *p, size_t stride) {
    for (int r = 0; r < e->cfg->rows[n]; r++) memcpy((uint8_t *)p + r * stride, e->t[n][r], e->cfg->colsb[n]);
}

/* TDPBSSD: C[m][n] += sum over k of A[m][k] * B[k / 4][4 n + k % 4], signed bytes, int32 lanes that
 * wrap (unsigned arithmetic here, as in the hardware). */
static void emu_dpbssd(struct emu *e, int c, int a, int b) {
    const int M = e->cfg->rows[a], K = e->cfg->colsb[a], N = e->cfg->colsb[b] / 4;
    for (int m = 0; m < M; m++)
        for (int n = 0; n < N; n++) {
            uint32_t acc;
            memcpy(&acc, &e->t[c][m][4 * n], 4);
            for (int k = 0; k < K; k++)
                acc += (uint32_t)((int32_t)(int8_t)e->t[a][m][k] * (int32_t)(int8_t)e->t[b][k / 4][4 * n + k % 4]);
            memcpy(&e->t[c][m][4 * n], &acc, 4);
        }
}

/* One block's 32 weight integers u as int8, in element order (BB 34: Q8_0's bytes; else the
 * nibbles, plus the fifth bits at QH, minus BIAS). */
static inline __attribute__((always_inline)) void block_i8(const uint8_t *blk, const int BB, const int QS, const int QH,
                                                          const int BIAS, int8_t *out) {
    if (BB == 34) {
        memcpy(out, blk + 2, 32);
        return;
    }
    const __m128i p = _mm_loadu_si128((const __m128i *)(blk + QS)), low4 = _mm_set1_epi8(0x0f);
    __m256i v = _mm256_inserti128_si256(_mm256_castsi128_si256(_mm_and_si128(p, low4)),
                                        _mm_and_si128(_mm_srli_epi16(p, 4), low4), 1);
    if (QH) {
        uint32_t qh;
        memcpy(&qh, blk + QH, 4);
        v = _mm256_mask_add_epi8(v, (__mmask32)qh, v, _mm256_set1_epi8(16));
    }
    if (BIAS) v = _mm256_sub_epi8(v, _mm256_set1_epi8((char)BIAS));
    _mm256_storeu_si256((__m256i *)out, v);
}

/* stage: [TOKS / 16][nb][plane][16 tokens][32] bytes; wb: [nb][8][64]; dw, mw: [nb][16]. */
static inline __attribute__((always_inline)) void gemm_tiles(const void *w, size_t rb, const struct rwkv_xq *x,
                                                            float *y, int64_t ys, int64_t nr, int64_t nc, int64_t nt,
                                                            int8_t *stage, int8_t *wb, float *dw, float *mw,
                                                            const int EMU, const int BB, const int QS, const int QH,
                                                            const int HAS_M, const int BIAS) {
    const int64_t nb = nc / 32;
    struct rwkv_tilecfg cfg;
    rwkv_tilecfg_init(&cfg);
    rwkv_tile_shape(&cfg, 0, 16, 64), rwkv_tile_shape(&cfg, 1, 16, 64);
    rwkv_tile_shape(&cfg, 2, 16, 32), rwkv_tile_shape(&cfg, 3, 16, 32);
    rwkv_tile_shape(&cfg, 4, 8, 64);
    struct emu *e = NULL;
    _Alignas(64) struct emu emu_regs;
    if (EMU) e = &emu_regs, e->cfg = &cfg;
    else _tile_loadconfig(&cfg);
    _Alignas(64) int32_t c0[16][16], c1[16][16];
    for (int64_t t0 = 0; t0 < nt; t0 += TOKS) {
        const int64_t tn = nt - t0 < TOKS ? nt - t0 : TOKS, ntt = (tn + 15) / 16;
        /* the activations' byte planes (struct rwkv_xq) in natural order per block, 16 tokens to a
         * tile, padding tokens zero: in the planes' pair order a block's halves are 32 bytes apart
         * (16 for an odd last block, kept in natural order) */
        memset(stage, 0, (size_t)ntt * (size_t)nb * 1024);
        for (int64_t t = 0; t < tn; t++)
            for (int64_t b = 0; b < nb; b++) {
                const int last = (nb & 1) && b == nb - 1;
                const int64_t h0 = last ? 32 * b : 32 * (b & ~(int64_t)1) + 16 * (b & 1), h1 = h0 + (last ? 16 : 32);
                int8_t *lo = stage + (((t / 16) * nb + b) * 2) * 512 + 32 * (t % 16), *hi = lo + 512;
                memcpy(lo, x[t0 + t].lo + h0, 16), memcpy(lo + 16, x[t0 + t].lo + h1, 16);
                memcpy(hi, x[t0 + t].hi + h0, 16), memcpy(hi + 16, x[t0 + t].hi + h1, 16);
            }
        for (int64_t r0 = 0; r0 < nr; r0 += 16) {
            for (int r = 0; r < 16; r++) {
                const uint8_t *row = (const uint8_t *)w + (size_t)(r0 + r < nr ? r0 + r : nr - 1) * rb;
                for (int64_t b = 0; b < nb; b++) {
                    int8_t u[32];
                    dw[b * 16 + r] = rd_f16(row + b * BB);
                    if (HAS_M) mw[b * 16 + r] = rd_f16(row + b * BB + 2);
                    block_i8(row + b * BB, BB, QS, QH, BIAS, u);
                    for (int k4 = 0; k4 < 8; k4++) memcpy(wb + b * 512 + k4 * 64 + 4 * r, u + 4 * k4, 4);
                }
            }
            const __mmask16 valid = nr - r0 >= 16 ? 0xffff : (__mmask16)((1u << (nr - r0)) - 1);
            for (int64_t tt = 0; tt < ntt; tt++) {
                const int nv = tn - 16 * tt < 16 ? (int)(tn - 16 * tt) : 16;
                __m512 acc[16], side[16];
                for (int i = 0; i < 16; i++) acc[i] = side[i] = _mm512_setzero_ps();
                for (int64_t b = 0; b < nb; b++) {
                    const int8_t *lo = stage + ((tt * nb + b) * 2) * 512, *hi = lo + 512, *wt = wb + b * 512;
                    if (EMU) {
                        emu_zero(e, 0), emu_zero(e, 1);
                        emu_load(e, 2, lo, 32), emu_load(e, 3, hi, 32), emu_load(e, 4, wt, 64);
                        emu_dpbssd(e, 0, 2, 4), emu_dpbssd(e, 1, 3, 4);
                        emu_store(e, 0, c0, 64), emu_store(e, 1, c1, 64);
                    } else {
                        _tile_zero(0);
                        _tile_zero(1);
                        _tile_loadd(2, lo, 32);
                        _tile_loadd(3, hi, 32);
                        _tile_loadd(4, wt, 64);
                        _tile_dpbssd(0, 2, 4);
                        _tile_dpbssd(1, 3, 4);
                        _tile_stored(0, c0, 64);
                        _tile_stored(1, c1, 64);
                    }
                    const __m512 d = _mm512_loadu_ps(dw + b * 16), m = HAS_M ? _mm512_loadu_ps(mw + b * 16) : d;
                    for (int i = 0; i < nv; i++) {
                        const __m512i T = _mm512_add_epi32(_mm512_load_si512(c0[i]), _mm512_slli_epi32(_mm512_load_si512(c1[i]), 7));
                        acc[i] = q8_0_step(acc[i], T, d, x[t0 + 16 * tt + i].d[b]);
                        if (HAS_M) side[i] = q32_side(side[i], m, x[t0 + 16 * tt + i].sum32[b]);
                    }
                }
                for (int i = 0; i < nv; i++)
                    _mm512_mask_storeu_ps(y + (t0 + 16 * tt + i) * ys + r0, valid, HAS_M ? _mm512_add_ps(acc[i], side[i]) : acc[i]);
            }
        }
    }
    if (!EMU) _tile_release();
}

/* The scratch of one call, or NULL (the caller then runs the VNNI GEMM: the same bits). */
static void *scratch(int64_t nc, int8_t **stage, int8_t **wb, float **dw, float **mw) {
    const int64_t nb = nc / 32;
    const size_t s = (size_t)(TOKS / 16) * (size_t)nb * 1024, wbytes = (size_t)nb * 512, dbytes = (size_t)nb * 64;
    char *p = aligned_alloc(64, s + wbytes + 2 * dbytes);
    if (!p) return NULL;
    *stage = (int8_t *)p, *wb = (int8_t *)(p + s), *dw = (float *)(p + s + wbytes), *mw = (float *)(p + s + wbytes + dbytes);
    return p;
}

#define DEFINE_TILES(NAME, VNNI, EMU, ...) DEFINE_TILES_(NAME, VNNI, EMU, __VA_ARGS__)
#define DEFINE_TILES_(NAME, VNNI, EMU, BB, QS, QH, HAS_M, BIAS, unpack)                                          \
    void NAME(const void *w, size_t rb, const struct rwkv_xq *x, float *y, int64_t ys, int64_t nr, int64_t nc,     \
              int64_t nt) {                                                                                       \
        int8_t *stage, *wb;                                                                                       \
        float *dw, *mw;                                                                                           \
        void *mem = nt >= AMX_MIN_TOK ? scratch(nc, &stage, &wb, &dw, &mw) : NULL;                                \
        if (!mem) {                                                                                               \
            VNNI(w, rb, x, y, ys, nr, nc, nt);                                                                    \
            return;                                                                                               \
        }                                                                                                         \
        gemm_tiles(w, rb, x, y, ys, nr, nc, nt, stage, wb, dw, mw, EMU, BB, QS, QH, HAS_M, BIAS);                 \
        free(mem);                                                                                                \
    }
#define TYPE_TILES(type, LAYOUT)                                                                                  \
    DEFINE_TILES(rwkv_gemm_##type##_amx, rwkv_gemm_##type##_avx512vnni, 0, LAYOUT)                                \
    DEFINE_TILES(rwkv_gemm_##type##_amx_emulated, rwkv_gemm_##type##_avx512vnni, 1, LAYOUT)
TYPE_TILES(q8_0, RWKV_Q8_0_LAYOUT)
TYPE_TILES(q4_0, RWKV_Q4_0_LAYOUT)
TYPE_TILES(q4_1, RWKV_Q4_1_LAYOUT)
TYPE_TILES(q5_0, RWKV_Q5_0_LAYOUT)
TYPE_TILES(q5_1, RWKV_Q5_1_LAYOUT)

/* One small tile product on the real tiles: 1 when it gives the right integer. cpu.c runs it, under a
 * SIGILL guard, before it lets the amx level be chosen: a VM may report and grant the tiles and still
 * trap their instructions. */
int rwkv_amx_selftest(void) {
    struct rwkv_tilecfg cfg;
    rwkv_tilecfg_init(&cfg);
    for (int n = 0; n < 3; n++) rwkv_tile_shape(&cfg, n, 1, 4);
    const int8_t a[4] = {1, 2, 3, 4}, b[4] = {5, 6, 7, -8};
    int32_t c = -1;
    _tile_loadconfig(&cfg);
    _tile_zero(0);
    _tile_loadd(1, a, 4);
    _tile_loadd(2, b, 4);
    _tile_dpbssd(0, 1, 2);
    _tile_stored(0, &c, 4);
    _tile_release();
    return c == 1 * 5 + 2 * 6 + 3 * 7 - 4 * 8;
}

/* The amx level: the tile GEMMs beside the VNNI GEMVs whose sums they repeat (every other slot comes
 * from the levels below). */
const struct rwkv_kernels rwkv_kernels_amx = {
    .level = "amx",
    .gemm_q8_0 = rwkv_gemm_q8_0_amx,
    .gemm_q4_0 = rwkv_gemm_q4_0_amx,
    .gemm_q4_1 = rwkv_gemm_q4_1_amx,
    .gemm_q5_0 = rwkv_gemm_q5_0_amx,
    .gemm_q5_1 = rwkv_gemm_q5_1_amx,
};
#else
#include "kernels.h"
const struct rwkv_kernels rwkv_kernels_amx = {0};
int rwkv_amx_selftest(void) { return 0; }
#endif
