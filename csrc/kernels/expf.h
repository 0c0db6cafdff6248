/* expf.h — the constants of the exp slot (kernels.h), shared by its scalar twin and SIMD levels. */
#ifndef RWKV_EXPF_H
#define RWKV_EXPF_H

#define RWKV_EXP_MAX 89.0f   /* e^89 overflows: +inf */
#define RWKV_EXP_MIN -104.0f /* e^-104 < half the smallest subnormal: 0 */
#define RWKV_EXP_LOG2E 1.44269504088896341f
#define RWKV_EXP_LN2_HI 0.693145751953125f /* ln 2 in 16 bits: k * LN2_HI is exact */
#define RWKV_EXP_LN2_LO 1.42860682030941723e-6f
/* e^r = sum r^i / i! for |r| <= ln2 / 2: the degree-7 remainder is below 2^-27 */
#define RWKV_EXP_C7 (1.0f / 5040.0f)
#define RWKV_EXP_C6 (1.0f / 720.0f)
#define RWKV_EXP_C5 (1.0f / 120.0f)
#define RWKV_EXP_C4 (1.0f / 24.0f)
#define RWKV_EXP_C3 (1.0f / 6.0f)
#define RWKV_EXP_C2 0.5f

#endif
