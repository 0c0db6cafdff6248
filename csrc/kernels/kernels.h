/* kernels.h — the dispatch table: one slot per hot inner loop, one table per ISA.
 *
 * Every slot has a scalar twin (dot_scalar.c) that is the reference the SIMD
 * versions are tested against. cpu.c fills the active table once, at start-up,
 * from CPUID + XGETBV, capped by RWKVFAST_CPU; it is the only global mutable state.
 */
#ifndef RWKV_KERNELS_H
#define RWKV_KERNELS_H

#include <stddef.h>
#include <stdint.h>

#include "../ggml_types.h"

/* y[r] = sum_c W[r][c] * x[c] for r in [0, n_rows): W (n_rows, n_cols) @ x (n_cols,) -> y (n_rows,).
 * Row r starts at (const char *)w + r * row_bytes; elements are of the slot's type. */
typedef void (*rwkv_gemv_fn)(const void *w, size_t row_bytes, const float *x, float *y,
                             int64_t n_rows, int64_t n_cols);

/* Activations quantized for the integer kernels of quantized weights: per block of
 * `block` elements (32, or 256 for K types) x_i ~= d[i / block] * q[i] with
 * |q| <= 16383 (15 bits: ~6e-5 relative error, far below ggml's 8-bit activations),
 * and sum16[i / 16] the exact f32 sum of x over each 16 elements (for the min/offset
 * terms of Q4_1, Q5_1, Q2_K, Q4_K, Q5_K). */
struct rwkv_xq {
    int64_t block;
    int16_t *q;
    float *d;
    float *sum16;
    float *sum32; /* f32 sum of x per 32 elements */
    /* q reordered. block == 32 (for SIMD kernels of Q4_0/Q4_1/Q5_0/Q5_1): per pair of
     * blocks A, B the order [A0..15, B0..15, A16..31, B16..31], matching how packed
     * nibbles widen. K types: per 32 elements the quad order {0,1, 4,5, .., 28,29 |
     * 2,3, 6,7, .., 30,31}, so int16 pair products land in the GEMVs' lanes of 4
     * (qgemm_avx512vnni.c; filled for products of several tokens only). qsum: block ==
     * 32, the integer sum of q per block of 32. */
    int16_t *qp;
    int32_t *qsum;
    /* q split into two int8 planes, q = 128 * hi + lo with lo in 0..127 and hi in
     * -128..127, so byte-operand dot products (vpdpbusd, vpmaddubsw: unsigned weight
     * bytes times signed activation bytes) give the same integer sums as int16
     * operands at twice the lanes. Pair order (as qp) when block == 32, natural
     * order for K types. qsum16: the integer sum of q per 16 elements (the bias
     * term of Q3_K and Q6_K, whose kernels use unsigned weights). */
    int8_t *lo, *hi;
    int32_t *qsum16;
    /* K types: the sums of q's element pairs, q2[i] = q[2i] + q[2i+1] (|q2| <= 32766): the bias
     * term of the byte-plane GEMVs of Q3_K and Q6_K, computed once per token, not per row. */
    int16_t *q2;
    float *dxs; /* block == 32: d and sum32 interleaved, [d_0, sum32_0, d_1, ...] */
};
#define RWKV_XQ_MAX 16383

/* Several tokens at once: y[t * ys + r] = W[r] . x[t * xs ...] for t < n_tok, r < n_rows.
 * Each level's kernel gives every (row, token) exactly the sum its GEMV gives, so the
 * sequence mode and one-token decoding agree to the bit; it only reuses each loaded
 * weight vector for several tokens. */
typedef void (*rwkv_gemm_fn)(const void *w, size_t row_bytes, const float *x, int64_t xs, float *y, int64_t ys,
                             int64_t n_rows, int64_t n_cols, int64_t n_tok);

/* y[r] = W[r] . x for a quantized W, x given as rwkv_xq (see unpack.h for the maths). */
typedef void (*rwkv_gemv_q_fn)(const void *w, size_t row_bytes, const struct rwkv_xq *x, float *y,
                               int64_t n_rows, int64_t n_cols);
/* Several tokens of a quantized W: token t's activations are x[t], its outputs y + t * ys; the
 * same bit-identity promise as rwkv_gemm_fn (weights unpacked once, summed per token as the
 * GEMV sums them). */
typedef void (*rwkv_gemm_q_fn)(const void *w, size_t row_bytes, const struct rwkv_xq *x, float *y, int64_t ys,
                               int64_t n_rows, int64_t n_cols, int64_t n_tok);
/* One head of the WKV6 recurrence for one token (N = head_size): with i the key and
 * j the value index, y_j = sum_i r_i (u_i k_i v_j + S_ij), then S_ij <- w_i S_ij + k_i v_j.
 * S is [N][N] (row i contiguous). */
typedef void (*rwkv_wkv6_fn)(int64_t N, const float *r, const float *k, const float *v, const float *w,
                             const float *u, float *S, float *y);

/* One head of the WKV7 recurrence for one token (N = head_size), the state value-major
 * (S[i][j]: value i, key j; row i contiguous), with every product on the previous S:
 *     sa_i  = sum_j S_ij a_j                      (a = -kk)
 *     S_ij <- S_ij w_j + sa_i b_j + v_i k_j       (b = kk * iclr)
 *     y_i   = sum_j S_ij r_j                      (the new S) */
typedef void (*rwkv_wkv7_fn)(int64_t N, const float *r, const float *w, const float *k, const float *v,
                             const float *a, const float *b, float *S, float *y);

/* y[i] = e^x[i] for i < n (y may be x), to about 1 ulp: range reduction by ln 2 in two parts,
 * a degree-7 Taylor polynomial, and an exact scaling by 2^k; arguments are clamped to
 * [-104, 89] (0 and +inf beyond), NaN stays NaN. Every level computes the same bits (the
 * scalar twin with fmaf and ldexpf), so the activations built on it do not depend on the CPU. */
typedef void (*rwkv_exp_fn)(const float *x, float *y, int64_t n);

/* X-macro lists of the GEMV slots, X(slot name, weight type): float-activation
 * kernels (rwkv_gemv_fn) and quantized-activation kernels (rwkv_gemv_q_fn). A SIMD
 * table may leave a slot NULL; the active table then takes the next lower level's
 * kernel. Supporting a new weight type is one row here, one traits row
 * (ggml_types.c), one unpack function (unpack.h) and its scalar twin (dot_scalar.c). */
#define RWKV_FLOAT_SLOTS(X)           \
    X(gemv_f32, RWKV_TYPE_F32)        \
    X(gemv_f16, RWKV_TYPE_F16)        \
    X(gemv_bf16, RWKV_TYPE_BF16)
#define RWKV_QUANT_SLOTS(X)           \
    X(gemv_q4_0, RWKV_TYPE_Q4_0)      \
    X(gemv_q4_1, RWKV_TYPE_Q4_1)      \
    X(gemv_q5_0, RWKV_TYPE_Q5_0)      \
    X(gemv_q5_1, RWKV_TYPE_Q5_1)      \
    X(gemv_q8_0, RWKV_TYPE_Q8_0)      \
    X(gemv_q2_k, RWKV_TYPE_Q2_K)      \
    X(gemv_q3_k, RWKV_TYPE_Q3_K)      \
    X(gemv_q4_k, RWKV_TYPE_Q4_K)      \
    X(gemv_q5_k, RWKV_TYPE_Q5_K)      \
    X(gemv_q6_k, RWKV_TYPE_Q6_K)
#define RWKV_GEMM_SLOTS(X)            \
    X(gemm_f32, RWKV_TYPE_F32)        \
    X(gemm_f16, RWKV_TYPE_F16)        \
    X(gemm_bf16, RWKV_TYPE_BF16)
#define RWKV_GEMM_Q_SLOTS(X)          \
    X(gemm_q4_0, RWKV_TYPE_Q4_0)      \
    X(gemm_q4_1, RWKV_TYPE_Q4_1)      \
    X(gemm_q5_0, RWKV_TYPE_Q5_0)      \
    X(gemm_q5_1, RWKV_TYPE_Q5_1)      \
    X(gemm_q8_0, RWKV_TYPE_Q8_0)      \
    X(gemm_q4_k, RWKV_TYPE_Q4_K)      \
    X(gemm_q5_k, RWKV_TYPE_Q5_K)      \
    X(gemm_q2_k, RWKV_TYPE_Q2_K)      \
    X(gemm_q3_k, RWKV_TYPE_Q3_K)      \
    X(gemm_q6_k, RWKV_TYPE_Q6_K)
#define RWKV_KERNEL_SLOTS(X) RWKV_FLOAT_SLOTS(X) RWKV_QUANT_SLOTS(X) RWKV_GEMM_SLOTS(X) RWKV_GEMM_Q_SLOTS(X)

struct rwkv_kernels {
    const char *level; /* "scalar", "avx2", "avx512", "avx512vnni", "amx" */
    rwkv_wkv6_fn wkv6;
    rwkv_wkv7_fn wkv7;
    rwkv_exp_fn exp;
#define RWKV_SLOT_F(name, wtype) rwkv_gemv_fn name;
#define RWKV_SLOT_Q(name, wtype) rwkv_gemv_q_fn name;
#define RWKV_SLOT_G(name, wtype) rwkv_gemm_fn name;
#define RWKV_SLOT_GQ(name, wtype) rwkv_gemm_q_fn name;
    RWKV_FLOAT_SLOTS(RWKV_SLOT_F)
    RWKV_QUANT_SLOTS(RWKV_SLOT_Q)
    RWKV_GEMM_SLOTS(RWKV_SLOT_G)
    RWKV_GEMM_Q_SLOTS(RWKV_SLOT_GQ)
#undef RWKV_SLOT_GQ
#undef RWKV_SLOT_F
#undef RWKV_SLOT_Q
#undef RWKV_SLOT_G
};

/* The kernel of weight type `type` in table k, or NULL: one picker per slot family. */
#define RWKV_DEFINE_PICKER(FN, FNTYPE, SLOTS)                                         \
    static inline FNTYPE FN(const struct rwkv_kernels *k, uint32_t type) {            \
        SLOTS(RWKV_PICK_SLOT)                                                          \
        return NULL;                                                                   \
    }
#define RWKV_PICK_SLOT(name, wtype) \
    if (type == (wtype)) return k->name;
RWKV_DEFINE_PICKER(rwkv_kernels_gemv_f, rwkv_gemv_fn, RWKV_FLOAT_SLOTS)
RWKV_DEFINE_PICKER(rwkv_kernels_gemv_q, rwkv_gemv_q_fn, RWKV_QUANT_SLOTS)
RWKV_DEFINE_PICKER(rwkv_kernels_gemm_f, rwkv_gemm_fn, RWKV_GEMM_SLOTS)
RWKV_DEFINE_PICKER(rwkv_kernels_gemm_q, rwkv_gemm_q_fn, RWKV_GEMM_Q_SLOTS)
#undef RWKV_DEFINE_PICKER

extern const struct rwkv_kernels rwkv_kernels_scalar;
extern const struct rwkv_kernels rwkv_kernels_avx2;
extern const struct rwkv_kernels rwkv_kernels_avx512;
extern const struct rwkv_kernels rwkv_kernels_avx512vnni; /* only the slots VNNI speeds up */
extern const struct rwkv_kernels rwkv_kernels_amx;        /* only the slots with tile kernels */

/* The table chosen at start-up (never NULL, every GEMV slot filled; a GEMM slot is NULL
 * where the level of the type's GEMV has none: the product then runs token after token). */
const struct rwkv_kernels *rwkv_kernels_active(void);
/* The table of `level` (slots it lacks filled from lower levels) if this CPU can
 * run it, else NULL (for tests and benchmarks; RWKV_CPU_AMX_EMULATED: the avx512vnni table with the
 * amx kernels' emulated twins, wherever avx512vnni runs). */
const struct rwkv_kernels *rwkv_kernels_for_level(int level);

#endif
