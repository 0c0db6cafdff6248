/* qgemm_avx512vnni.c — the prompt / batch GEMMs of the K types (Q2_K..Q6_K) for CPUs with
 * AVX512-VNNI: weights unpacked once into int16 panels, then 512-bit vpdpwssd against the
 * exact 15-bit activations of many tokens.
 *
 * The GEMVs of qdot_avx512vnni.c unpack every weight byte per token and run two byte-plane
 * dot products per 32 weights; here the 4 rows of a panel are unpacked once per up to
 * TOK_BLOCK tokens into int16 values sc * u (the sub-block scale already multiplied in), so
 * each 32 products of a token cost one 512-bit vpdpwssd and nothing else.
 *
 * Bit-identity with the GEMV (so prompt, batch and decode give the same logits): the GEMV's
 * integer sums live in 8 int32 lanes per row, lane i holding elements 4i..4i+3 of every 32,
 * and are converted and scaled in f32 per super-block (Q6_K: per half). The activations'
 * quad order (x->qp, see kernels.h) puts elements {4i, 4i+1} of a 32 in the first 16 int16
 * and {4i+2, 4i+3} in the next 16, each half broadcast to both 256-bit halves of a vector;
 * a panel vector holds the same positions of two rows A and B side by side. Two vpdpwssd then
 * leave in lane i row A's lane-i sum and in lane 8 + i row B's: exactly the GEMV's integers
 * (sums below 2^31 as the GEMV proves), followed by the GEMV's f32 operations lane for lane,
 * two rows per instruction.
 */
#if defined(__x86_64__) && defined(__GNUC__)
#pragma GCC target("avx512f,avx512bw,avx512vl,avx512dq,avx512vnni,avx2,fma,f16c")
#include <immintrin.h>
#include <string.h>

#include "qdot.h"
#include "qvnni.h"
#include "unpack.h"

#define NP 4         /* row pairs per panel */
#define PANEL_SB 4   /* super-blocks per panel: 8 rows x 1024 int16 = 16 KiB, inside L1 */
#define TOK_BLOCK 64 /* tokens per pass over a panel (their f32 accumulators on the stack) */
#define TB 4         /* tokens per microkernel call */

enum ktype { K_Q2, K_Q3, K_Q4, K_Q5, K_Q6 };

/* A panel: NP row pairs (A, B) x PANEL_SB super-blocks x 8 groups of 32 elements, each group
 * two vectors [A's first quad half | B's first quad half], [A's second | B's second]; and per
 * pair and super-block the f32 values the GEMV's per-super-block steps take. */
struct panel {
    int16_t w[NP][PANEL_SB][8][2][32];
    float d[NP][PANEL_SB][16];      /* [d_A x 8 | d_B x 8] */
    float md[NP][PANEL_SB][16];     /* Q4_K/Q5_K: the mins' factors, [A's 8 | B's 8] */
    float rs[2 * NP][PANEL_SB][16]; /* per row: Q2_K mins * dmin; Q3_K/Q6_K the sub-block scales */
    float rd[2 * NP][PANEL_SB];     /* per row: d */
};

/* int16 lane indices of vpermt2w that take quad half `h` of a 32-group of A (lanes 0..15) and
 * of B (lanes 16..31). */
static inline __m512i quad_index(int h) {
    int16_t idx[32];
    for (int j = 0; j < 16; j++) {
        idx[j] = (int16_t)((j / 2) * 4 + 2 * h + (j & 1));
        idx[16 + j] = (int16_t)(32 + idx[j]);
    }
    return _mm512_loadu_si512(idx);
}

/* 32 unsigned bytes times the int16 scales s: 32 int16 weights. */
static inline __m512i scaled(__m256i u, __m512i s) { return _mm512_mullo_epi16(_mm512_cvtepu8_epi16(u), s); }

/* int16 lanes [s_a x 16 | s_b x 16] of the 16 scales in sc (int16 lanes 0..15). */
static inline __m512i two_scales(__m512i sc, int a, int b) {
    return _mm512_permutexvar_epi16(_mm512_inserti64x4(_mm512_set1_epi16((short)a), _mm256_set1_epi16((short)b), 1), sc);
}

/* One super-block of one row in natural order as int16 sc * u (unsigned u: Q3_K's and Q6_K's
 * offsets and the mins stay in the f32 side terms, as in the GEMV), and its per-row values. */
static inline __attribute__((always_inline)) void unpack_row(const enum ktype T, const uint8_t *blk, int16_t *out,
                                                            float *rs, float *rd, float *md) {
    const __m256i low4 = _mm256_set1_epi8(0x0f), three = _mm256_set1_epi8(3);
    if (T == K_Q4 || T == K_Q5) {
        const __m128i bytes = k4_scales_mins(blk + 4);
        const __m256 m = _mm256_mul_ps(_mm256_cvtepi32_ps(_mm256_cvtepu8_epi32(_mm_srli_si128(bytes, 8))),
                                       _mm256_set1_ps(rd_f16(blk + 2)));
        _mm256_storeu_ps(md, m);
        *rd = rd_f16(blk);
        const __m512i sc = _mm512_cvtepu8_epi16(_mm256_castsi128_si256(bytes));
        const __m256i qh = T == K_Q5 ? _mm256_loadu_si256((const __m256i *)(blk + 16)) : _mm256_setzero_si256();
        const int QS = T == K_Q5 ? 48 : 16;
        for (int j = 0; j < 4; j++) {
            const __m256i v = _mm256_loadu_si256((const __m256i *)(blk + QS + 32 * j));
            __m256i lo = _mm256_and_si256(v, low4), hi = _mm256_and_si256(_mm256_srli_epi16(v, 4), low4);
            if (T == K_Q5) {
                lo = _mm256_or_si256(lo, _mm256_and_si256(_mm256_slli_epi16(_mm256_srli_epi16(qh, 2 * j), 4),
                                                          _mm256_set1_epi8(16)));
                hi = _mm256_or_si256(hi, _mm256_and_si256(_mm256_slli_epi16(_mm256_srli_epi16(qh, 2 * j + 1), 4),
                                                          _mm256_set1_epi8(16)));
            }
            _mm512_storeu_si512(out + 64 * j, scaled(lo, two_scales(sc, 2 * j, 2 * j)));
            _mm512_storeu_si512(out + 64 * j + 32, scaled(hi, two_scales(sc, 2 * j + 1, 2 * j + 1)));
        }
    } else if (T == K_Q6) {
        const __m128i scb = _mm_loadu_si128((const __m128i *)(blk + 192));
        _mm512_storeu_ps(rs, _mm512_cvtepi32_ps(_mm512_cvtepi8_epi32(scb)));
        *rd = rd_f16(blk + 208);
        const __m512i sc = _mm512_cvtepi8_epi16(_mm256_castsi128_si256(scb));
        for (int h = 0; h < 2; h++) {
            __m256i u[4];
            q6_k_half(blk, h, u);
            for (int k = 0; k < 4; k++) {
                const int s = 8 * h + 2 * k;
                _mm512_storeu_si512(out + 128 * h + 32 * k, scaled(u[k], two_scales(sc, s, s + 1)));
            }
        }
    } else if (T == K_Q2) {
        const __m128i scb = _mm_loadu_si128((const __m128i *)blk);
        _mm512_storeu_ps(rs, _mm512_mul_ps(_mm512_cvtepi32_ps(_mm512_srli_epi32(_mm512_cvtepu8_epi32(scb), 4)),
                                           _mm512_set1_ps(rd_f16(blk + 82))));
        *rd = rd_f16(blk + 80);
        const __m512i sc = _mm512_cvtepu8_epi16(_mm256_castsi128_si256(_mm_and_si128(scb, _mm_set1_epi8(15))));
        for (int n = 0; n < 2; n++) {
            const __m256i bits = _mm256_loadu_si256((const __m256i *)(blk + 16 + 32 * n));
            for (int j = 0; j < 4; j++) {
                const int s = 8 * n + 2 * j;
                const __m256i u = _mm256_and_si256(_mm256_srli_epi16(bits, 2 * j), three);
                _mm512_storeu_si512(out + 128 * n + 32 * j, scaled(u, two_scales(sc, s, s + 1)));
            }
        }
    } else { /* K_Q3 */
        const __m128i scb = _mm_sub_epi8(q3_k_scales_biased(blk), _mm_set1_epi8(32));
        _mm512_storeu_ps(rs, _mm512_cvtepi32_ps(_mm512_cvtepi8_epi32(scb)));
        *rd = rd_f16(blk + 108);
        const __m512i sc = _mm512_cvtepi8_epi16(_mm256_castsi128_si256(scb));
        const __m256i hm = _mm256_loadu_si256((const __m256i *)blk);
        for (int n = 0; n < 2; n++) {
            const __m256i bits = _mm256_loadu_si256((const __m256i *)(blk + 32 + 32 * n));
            for (int j = 0; j < 4; j++) {
                const int s = 8 * n + 2 * j, b = 4 * n + j;
                __m256i u = _mm256_and_si256(_mm256_srli_epi16(bits, 2 * j), three);
                u = _mm256_or_si256(u, _mm256_and_si256(_mm256_slli_epi16(_mm256_srli_epi16(hm, b), 2),
                                                        _mm256_set1_epi8(4)));
                _mm512_storeu_si512(out + 128 * n + 32 * j, scaled(u, two_scales(sc, s, s + 1)));
            }
        }
    }
}

static inline int64_t super_bytes(const enum ktype T) {
    return T == K_Q2 ? 84 : T == K_Q3 ? 110 : T == K_Q4 ? 144 : T == K_Q5 ? 176 : 210;
}

/* Super-blocks [sb0, sb0 + ns) of rows[0 .. 2 NP) into the panel. */
static inline __attribute__((always_inline)) void build_panel(const enum ktype T, struct panel *p,
                                                             const uint8_t *const rows[2 * NP], int64_t sb0, int ns) {
    const __m512i q0 = quad_index(0), q1 = quad_index(1);
    _Alignas(64) int16_t nat[2][256];
    float md[2][8];
    for (int s = 0; s < ns; s++)
        for (int pr = 0; pr < NP; pr++) {
            for (int i = 0; i < 2; i++) {
                const int r = 2 * pr + i;
                unpack_row(T, rows[r] + (sb0 + s) * super_bytes(T), nat[i], p->rs[r][s], &p->rd[r][s], md[i]);
                for (int l = 0; l < 8; l++) {
                    p->d[pr][s][8 * i + l] = p->rd[r][s];
                    if (T == K_Q4 || T == K_Q5) p->md[pr][s][8 * i + l] = md[i][l];
                }
            }
            for (int g = 0; g < 8; g++) {
                const __m512i a = _mm512_load_si512(nat[0] + 32 * g), b = _mm512_load_si512(nat[1] + 32 * g);
                _mm512_storeu_si512(p->w[pr][s][g][0], _mm512_permutex2var_epi16(a, q0, b));
                _mm512_storeu_si512(p->w[pr][s][g][1], _mm512_permutex2var_epi16(a, q1, b));
            }
        }
}

/* The f32 state of one token: per pair the GEMV's acc (and Q4_K/Q5_K's side) two rows wide;
 * Q2_K/Q3_K/Q6_K's 16-lane side per row. */
struct kacc {
    __m512 acc[NP], side[2 * NP]; /* side: pair-packed (Q4_K, Q5_K, first NP) or per row */
};

/* acc += int16 pair products of a and b. In asm, so that the accumulator stays in its register:
 * with the intrinsic GCC copies every accumulator out and back around each vpdpwssd (and
 * spills), which ran the loop at 40% of its speed. */
static inline __m512i dpw(__m512i acc, __m512i a, __m512i b) {
    __asm__("vpdpwssd %2, %1, %0" : "+v"(acc) : "v"(a), "v"(b));
    return acc;
}

/* Groups [g0, g0 + ng) of super-block s for tb tokens: integer sums in registers, then the
 * GEMV's f32 step acc += cvt(sum) * (d * dx) (from zero at the matrix's first super-block). */
static inline __attribute__((always_inline)) void kernel_span(const struct panel *p, int s, int g0, const int ng,
                                                             const struct rwkv_xq *x, int64_t sb, const int tb,
                                                             struct kacc *st, const int first) {
    __m512i a[NP][TB];
    for (int pr = 0; pr < NP; pr++)
        for (int t = 0; t < tb; t++) a[pr][t] = _mm512_setzero_si512();
    for (int g = g0; g < g0 + ng; g++) {
        __m512i xa[TB], xb[TB];
        for (int t = 0; t < tb; t++) {
            const int16_t *q = x[t].qp + sb * 256 + 32 * g;
            xa[t] = _mm512_broadcast_i64x4(_mm256_loadu_si256((const __m256i *)q));
            xb[t] = _mm512_broadcast_i64x4(_mm256_loadu_si256((const __m256i *)(q + 16)));
        }
        for (int pr = 0; pr < NP; pr++) {
            const __m512i wa = _mm512_load_si512(p->w[pr][s][g][0]), wb = _mm512_load_si512(p->w[pr][s][g][1]);
            for (int t = 0; t < tb; t++) a[pr][t] = dpw(dpw(a[pr][t], wa, xa[t]), wb, xb[t]);
        }
    }
    for (int t = 0; t < tb; t++) {
        const __m512 dx = _mm512_set1_ps(x[t].d[sb]);
        for (int pr = 0; pr < NP; pr++) {
            const __m512 f = _mm512_cvtepi32_ps(a[pr][t]);
            st[t].acc[pr] = _mm512_fmadd_ps(f, _mm512_mul_ps(_mm512_load_ps(p->d[pr][s]), dx),
                                            first ? _mm512_setzero_ps() : st[t].acc[pr]);
        }
    }
}

/* Panel super-block s (the matrix's sb) for tb tokens, side terms included. */
static inline __attribute__((always_inline)) void kernel_sb(const enum ktype T, const struct panel *p, int s,
                                                           const struct rwkv_xq *x, int64_t sb, const int tb,
                                                           struct kacc *st) {
    const int first = sb == 0;
    if (T == K_Q6) {
        kernel_span(p, s, 0, 4, x, sb, tb, st, first);
        kernel_span(p, s, 4, 4, x, sb, tb, st, 0);
    } else {
        kernel_span(p, s, 0, 8, x, sb, tb, st, first);
    }
    const __m512 zero = _mm512_setzero_ps();
    for (int t = 0; t < tb; t++) {
        __m512 *side = st[t].side;
        if (T == K_Q4 || T == K_Q5) {
            const __m512 s32 = _mm512_castpd_ps(_mm512_broadcast_f64x4(_mm256_castps_pd(_mm256_loadu_ps(x[t].sum32 + sb * 8))));
            for (int pr = 0; pr < NP; pr++)
                side[pr] = _mm512_fmadd_ps(_mm512_load_ps(p->md[pr][s]), s32, first ? zero : side[pr]);
        } else if (T == K_Q2) {
            const __m512 s16 = _mm512_loadu_ps(x[t].sum16 + sb * 16);
            for (int r = 0; r < 2 * NP; r++)
                side[r] = _mm512_fmadd_ps(_mm512_load_ps(p->rs[r][s]), s16, first ? zero : side[r]);
        } else {
            /* the GEMV's cvt(sc * qsum16): both it and this f32 product are the correctly
             * rounded value of one exact integer (|sc| <= 128, |qsum16| < 2^24) */
            const __m512 qs = _mm512_cvtepi32_ps(_mm512_loadu_si512(x[t].qsum16 + sb * 16));
            const float dx = x[t].d[sb];
            for (int r = 0; r < 2 * NP; r++)
                side[r] = _mm512_fmadd_ps(_mm512_mul_ps(_mm512_load_ps(p->rs[r][s]), qs),
                                          _mm512_set1_ps(p->rd[r][s] * dx), first ? zero : side[r]);
        }
    }
}

/* Half i (0: lanes 0..7, row A; 1: row B) of a pair-packed vector. */
static inline __m256 half_of(__m512 v, int i) { return i ? _mm512_extractf32x8_ps(v, 1) : _mm512_castps512_ps256(v); }

/* Row i (0 .. 2 NP) of a token's state as the GEMV ends it. */
static inline float kresult(const enum ktype T, const struct kacc *st, int i) {
    const __m512 acc = st->acc[i / 2];
    if (T == K_Q4 || T == K_Q5) return hsum256(half_of(_mm512_sub_ps(acc, st->side[i / 2]), i & 1));
    const float bias = T == K_Q2 ? 1.0f : T == K_Q3 ? 4.0f : 32.0f;
    return hsum256(half_of(acc, i & 1)) - bias * _mm512_reduce_add_ps(st->side[i]);
}

/* The 2 NP rows of the panel at row r0; past the last row a copy of it, its results dropped. */
static inline void panel_rows(const void *w, size_t rb, int64_t r0, int64_t nr, const uint8_t *rows[2 * NP]) {
    for (int i = 0; i < 2 * NP; i++) rows[i] = (const uint8_t *)w + (size_t)(r0 + i < nr ? r0 + i : nr - 1) * rb;
}

static inline __attribute__((always_inline)) void gemm_k(const enum ktype T, const void *w, size_t rb,
                                                        const struct rwkv_xq *x, float *y, int64_t ys, int64_t nr,
                                                        int64_t nc, int64_t nt) {
    const int64_t nsb = nc / 256;
    _Alignas(64) struct panel p;
    _Alignas(64) struct kacc st[TOK_BLOCK];
    for (int64_t t0 = 0; t0 < nt; t0 += TOK_BLOCK) {
        const int64_t tn = nt - t0 < TOK_BLOCK ? nt - t0 : TOK_BLOCK;
        for (int64_t r0 = 0; r0 < nr; r0 += 2 * NP) {
            const uint8_t *rows[2 * NP];
            panel_rows(w, rb, r0, nr, rows);
            for (int64_t sb0 = 0; sb0 < nsb; sb0 += PANEL_SB) {
                const int ns = nsb - sb0 < PANEL_SB ? (int)(nsb - sb0) : PANEL_SB;
                build_panel(T, &p, rows, sb0, ns);
                /* the next panel's bytes on their way to L2 while this one computes: with few
                 * tokens (batched decoding) the rows' stream from memory is as long as the maths */
                if (sb0 + PANEL_SB < nsb) {
                    const int64_t nx = nsb - sb0 - PANEL_SB < PANEL_SB ? nsb - sb0 - PANEL_SB : PANEL_SB;
                    for (int i = 0; i < 2 * NP; i++)
                        for (int64_t o = 0; o < nx * super_bytes(T); o += 64)
                            _mm_prefetch((const char *)rows[i] + (sb0 + PANEL_SB) * super_bytes(T) + o, _MM_HINT_T1);
                } else if (r0 + 2 * NP < nr) {
                    const int64_t nx = nsb < PANEL_SB ? nsb : PANEL_SB;
                    for (int64_t i = r0 + 2 * NP; i < nr && i < r0 + 4 * NP; i++)
                        for (int64_t o = 0; o < nx * super_bytes(T); o += 64)
                            _mm_prefetch((const char *)w + (size_t)i * rb + o, _MM_HINT_T1);
                }
                int64_t t = 0;
                for (; t + TB <= tn; t += TB)
                    for (int s = 0; s < ns; s++) kernel_sb(T, &p, s, x + t0 + t, sb0 + s, TB, st + t);
                if (t + 2 <= tn) {
                    for (int s = 0; s < ns; s++) kernel_sb(T, &p, s, x + t0 + t, sb0 + s, 2, st + t);
                    t += 2;
                }
                if (t < tn)
                    for (int s = 0; s < ns; s++) kernel_sb(T, &p, s, x + t0 + t, sb0 + s, 1, st + t);
            }
            for (int64_t t = 0; t < tn; t++)
                for (int i = 0; i < 2 * NP && r0 + i < nr; i++) y[(t0 + t) * ys + r0 + i] = kresult(T, &st[t], i);
        }
    }
}

/* Below this many tokens (batched decoding) unpacking the panels costs more than it saves: the
 * byte-plane GEMMs of qdot_avx512vnni.c run instead (the same bits either way). Measured on a
 * 2048 x 2048 matrix, one thread (Xeon, AVX512-VNNI): K types 1.0x at 4 tokens, 1.5-2.1x at 8;
 * block-32 types 0.8-0.9x at 4, 1.1-1.15x at 8. */
#define PANEL_MIN_TOK 4

/* rwkv_gemm_<name>_avx512vnni: the panel GEMM PANEL(args) from MIN tokens, the few-token one below. */
#define DEFINE_GEMM_PANEL(name, MIN, PANEL, ...)                                                                \
    void rwkv_gemm_##name##_avx512vnni(const void *w, size_t rb, const struct rwkv_xq *x, float *y, int64_t ys, \
                                       int64_t nr, int64_t nc, int64_t nt) {                                  \
        if (nt < (MIN)) rwkv_gemm_##name##_avx512vnni_few(w, rb, x, y, ys, nr, nc, nt);                       \
        else PANEL(__VA_ARGS__, w, rb, x, y, ys, nr, nc, nt);                                                  \
    }
#define DEFINE_GEMM_K(name, T) DEFINE_GEMM_PANEL(name, PANEL_MIN_TOK, gemm_k, T)
DEFINE_GEMM_K(q2_k, K_Q2)
DEFINE_GEMM_K(q3_k, K_Q3)
DEFINE_GEMM_K(q4_k, K_Q4)
DEFINE_GEMM_K(q5_k, K_Q5)
DEFINE_GEMM_K(q6_k, K_Q6)
#endif
