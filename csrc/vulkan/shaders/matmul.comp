#version 450
// The tiled GEMM for prompts and batches: y[t][r] = post(dot(W[r], x[t])) for BM rows x BN
// tokens per workgroup. Each step over K stages one unit of BK = 32 columns of the tile's
// rows (their quants and each row's scale and offset, units.glsl) and of its tokens in
// shared memory; a thread then accumulates TM x TN outputs from there, scaling a unit's sum
// once. A weight is so read from memory once per BN tokens (matvec.comp: 4).
// Same buffers and push constants as matvec.comp; n_cols must be a multiple of 4.
#extension GL_GOOGLE_include_directive : require

layout(constant_id = 0) const uint WG = 128;
layout(local_size_x_id = 0) in;

layout(std430, binding = 0) readonly buffer Wbuf { uint w[]; };
layout(std430, binding = 1) readonly buffer Xbuf { float x[]; };
layout(std430, binding = 2) writeonly buffer Ybuf { float y[]; };
layout(std430, binding = 3) readonly buffer Bbuf { float bias[]; }; // the post-ops' per-row bias (post.glsl)

layout(push_constant) uniform Push {
    uint n_rows, n_cols, row_words;
    uint x_off, x_stride, y_off, y_stride;
    uint post;
    uint n_tok;
} p;

#include "units.glsl"

#include "post.glsl"

// 128 threads as 16 x 8; thread (tr, tc) owns rows tr + 16 i and tokens tc + 8 j. Shared
// rows are padded by one float so that neither the staging stores nor the reads collide
// on a bank.
const uint BM = 64u, BN = 32u, BK = 32u, TM = 4u, TN = 4u;
shared float ws[BK * (BM + 1u)]; // [k][row]: q
shared float xs[BK * (BN + 1u)]; // [k][token]
#ifdef DQ_SCALED
shared vec2 so[BM]; // each row's (scale, offset) in this unit
#endif

void main() {
    const uint lane = gl_LocalInvocationID.x, tr = lane & 15u, tc = lane >> 4;
    const uint r0 = gl_WorkGroupID.x * BM, t0 = gl_WorkGroupID.y * BN;
    // the sum over units is compensated (Kahan): a unit's scaled sum and its offset term can
    // be far larger than the result, and a long row adds many of them one after another
    precise float acc[TM][TN], lost[TM][TN];
    for (uint i = 0u; i < TM; i++)
        for (uint j = 0u; j < TN; j++) acc[i][j] = lost[i][j] = 0.0;
    for (uint k0 = 0u; k0 < p.n_cols; k0 += BK) {
        // BM rows x BK / 4 words of four: 4 per thread, 8 threads to a row (reads of one block)
        for (uint q = 0u; q < BM * BK / 4u / WG; q++) {
            const uint idx = lane + q * WG, row = idx >> 3, c = k0 + 4u * (idx & 7u);
            const uint wo = min(r0 + row, p.n_rows - 1u) * p.row_words; // rows past the end: not written
            const vec4 v = c < p.n_cols ? q4(wo, c) : vec4(0.0);
            const uint o = (c - k0) * (BM + 1u) + row;
            ws[o] = v.x;
            ws[o + BM + 1u] = v.y;
            ws[o + 2u * (BM + 1u)] = v.z;
            ws[o + 3u * (BM + 1u)] = v.w;
#ifdef DQ_SCALED
            if ((idx & 7u) == 0u) so[row] = unit_so(wo, k0);
#endif
        }
        // BN tokens x BK floats: 8 per thread, a token's BK in consecutive lanes
        for (uint q = 0u; q < BN * BK / WG; q++) {
            const uint idx = lane + q * WG, tok = idx / BK, kk = idx % BK, t = t0 + tok, c = k0 + kk;
            xs[kk * (BN + 1u) + tok] = t < p.n_tok && c < p.n_cols ? x[p.x_off + t * p.x_stride + c] : 0.0;
        }
        barrier();
        // a unit's sum is formed apart, then scaled and added
        float part[TM][TN], xsum[TN];
        for (uint j = 0u; j < TN; j++) {
            xsum[j] = 0.0;
            for (uint i = 0u; i < TM; i++) part[i][j] = 0.0;
        }
        for (uint kk = 0u; kk < BK; kk++) {
            float a[TM], b[TN];
            for (uint i = 0u; i < TM; i++) a[i] = ws[kk * (BM + 1u) + tr + 16u * i];
            for (uint j = 0u; j < TN; j++) b[j] = xs[kk * (BN + 1u) + tc + 8u * j];
            for (uint i = 0u; i < TM; i++)
                for (uint j = 0u; j < TN; j++) part[i][j] += a[i] * b[j];
#ifdef DQ_OFFSET
            for (uint j = 0u; j < TN; j++) xsum[j] += b[j];
#endif
        }
        for (uint i = 0u; i < TM; i++) {
#ifdef DQ_SCALED
            const vec2 s = so[tr + 16u * i];
#else
            const vec2 s = vec2(1.0, 0.0);
#endif
            for (uint j = 0u; j < TN; j++) {
                precise const float v = s.x * part[i][j] + s.y * xsum[j] - lost[i][j];
                precise const float sum = acc[i][j] + v;
                lost[i][j] = (sum - acc[i][j]) - v;
                acc[i][j] = sum;
            }
        }
        barrier();
    }
    for (uint j = 0u; j < TN; j++) {
        const uint t = t0 + tc + 8u * j;
        if (t >= p.n_tok) continue;
        for (uint i = 0u; i < TM; i++) {
            const uint r = r0 + tr + 16u * i;
            if (r < p.n_rows) y[p.y_off + t * p.y_stride + r] = post(acc[i][j], r);
        }
    }
}
