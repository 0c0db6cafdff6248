#version 450
// y[t][r] = post(dot(W[r], x[t])) for one weight type (chosen by -DTYPE_*): one workgroup per
// (row, token); its threads stride over the row's blocks and the partial sums are reduced
// with subgroupAdd (-DSUBGROUP) or through shared memory.
//
// Weights are as uploaded by csrc/vulkan/weights.c: every row starts on a 4-byte word, and
// the block types whose GGUF block is not a whole number of words (Q8_0: 34 bytes) are
// padded to one (36), so every load here is a 32-bit word.
#extension GL_GOOGLE_include_directive : require
#ifdef SUBGROUP
#extension GL_KHR_shader_subgroup_arithmetic : enable
#endif

layout(constant_id = 0) const uint WG = 64;
layout(local_size_x_id = 0) in;

layout(std430, binding = 0) readonly buffer Wbuf { uint w[]; };
layout(std430, binding = 1) readonly buffer Xbuf { float x[]; };
layout(std430, binding = 2) writeonly buffer Ybuf { float y[]; };
layout(std430, binding = 3) readonly buffer Bbuf { float bias[]; }; // the post-ops' per-row bias (post.glsl)

layout(push_constant) uniform Push {
    uint n_rows, n_cols, row_words; // row_words: 32-bit words per uploaded row
    uint x_off, x_stride, y_off, y_stride;
    uint post; // post.glsl
    uint n_tok;
} p;

#include "post.glsl"

// The unit of work of one thread: UNIT elements (a block, or a 32-element part of a K-quant
// super-block), unit_dot(row's first word, unit index, x offset of the unit).
uint byte_at(uint wo, uint i) { return (w[wo + (i >> 2)] >> ((i & 3u) * 8u)) & 0xffu; }
float half_at(uint wo, uint i) { return unpackHalf2x16(w[wo + (i >> 2)] >> ((i & 2u) * 8u)).x; }
float dot4(uvec4 q, uint xi) { return float(q.x) * x[xi] + float(q.y) * x[xi + 1u] + float(q.z) * x[xi + 2u] + float(q.w) * x[xi + 3u]; }
uvec4 nibbles_lo(uint v) { return uvec4(v, v >> 8, v >> 16, v >> 24) & 0xfu; }
uvec4 nibbles_hi(uint v) { return (uvec4(v, v >> 8, v >> 16, v >> 24) >> 4) & 0xfu; }
float sum4(uint xi) { return x[xi] + x[xi + 1u] + x[xi + 2u] + x[xi + 3u]; }

#if defined(TYPE_F32)
const uint UNIT = 1u;
float unit_dot(uint wo, uint u, uint xo) { return uintBitsToFloat(w[wo + u]) * x[xo]; }
#elif defined(TYPE_F16)
const uint UNIT = 2u;
float unit_dot(uint wo, uint u, uint xo) {
    vec2 a = unpackHalf2x16(w[wo + u]);
    return a.x * x[xo] + a.y * x[xo + 1u];
}
#elif defined(TYPE_BF16)
const uint UNIT = 2u;
float unit_dot(uint wo, uint u, uint xo) {
    uint v = w[wo + u];
    return uintBitsToFloat(v << 16) * x[xo] + uintBitsToFloat(v & 0xffff0000u) * x[xo + 1u];
}
#elif defined(TYPE_Q8_0)
// 9 words: d (f16, low half), 32 int8 quants
const uint UNIT = 32u;
float unit_dot(uint wo, uint u, uint xo) {
    uint b = wo + u * 9u;
    float s = 0.0;
    for (uint i = 0u; i < 8u; i++) {
        uint v = w[b + 1u + i];
        ivec4 q = ivec4(int(v << 24) >> 24, int(v << 16) >> 24, int(v << 8) >> 24, int(v) >> 24);
        uint xi = xo + 4u * i;
        s += float(q.x) * x[xi] + float(q.y) * x[xi + 1u] + float(q.z) * x[xi + 2u] + float(q.w) * x[xi + 3u];
    }
    return unpackHalf2x16(w[b]).x * s;
}
#elif defined(TYPE_Q4_0)
// 5 words: d, 16 bytes: element j low nibble, j + 16 high nibble, both minus 8
const uint UNIT = 32u;
float unit_dot(uint wo, uint u, uint xo) {
    uint b = wo + u * 5u;
    float s = 0.0, xs = 0.0;
    for (uint i = 0u; i < 4u; i++) {
        uint v = w[b + 1u + i];
        s += dot4(nibbles_lo(v), xo + 4u * i) + dot4(nibbles_hi(v), xo + 16u + 4u * i);
        xs += sum4(xo + 4u * i) + sum4(xo + 16u + 4u * i);
    }
    return unpackHalf2x16(w[b]).x * (s - 8.0 * xs);
}
#elif defined(TYPE_Q4_1)
// 5 words: d | m << 16, 16 bytes of nibbles: d * q + m
const uint UNIT = 32u;
float unit_dot(uint wo, uint u, uint xo) {
    uint b = wo + u * 5u;
    float s = 0.0, xs = 0.0;
    for (uint i = 0u; i < 4u; i++) {
        uint v = w[b + 1u + i];
        s += dot4(nibbles_lo(v), xo + 4u * i) + dot4(nibbles_hi(v), xo + 16u + 4u * i);
        xs += sum4(xo + 4u * i) + sum4(xo + 16u + 4u * i);
    }
    vec2 dm = unpackHalf2x16(w[b]);
    return dm.x * s + dm.y * xs;
}
#elif defined(TYPE_Q5_0) || defined(TYPE_Q5_1)
// 6 words: d (Q5_1: | m << 16), qh (bit j: the fifth bit of element j), 16 bytes of nibbles
const uint UNIT = 32u;
float unit_dot(uint wo, uint u, uint xo) {
    uint b = wo + u * 6u, qh = w[b + 1u];
    float s = 0.0, xs = 0.0;
    for (uint i = 0u; i < 4u; i++) {
        uint v = w[b + 2u + i];
        uvec4 hl = (uvec4(qh >> (4u * i), qh >> (4u * i + 1u), qh >> (4u * i + 2u), qh >> (4u * i + 3u)) & 1u) << 4;
        uvec4 hh = (uvec4(qh >> (4u * i + 16u), qh >> (4u * i + 17u), qh >> (4u * i + 18u), qh >> (4u * i + 19u)) & 1u) << 4;
        s += dot4(nibbles_lo(v) | hl, xo + 4u * i) + dot4(nibbles_hi(v) | hh, xo + 16u + 4u * i);
        xs += sum4(xo + 4u * i) + sum4(xo + 16u + 4u * i);
    }
    vec2 dm = unpackHalf2x16(w[b]);
#ifdef TYPE_Q5_0
    return dm.x * (s - 16.0 * xs);
#else
    return dm.x * s + dm.y * xs;
#endif
}
#elif defined(TYPE_Q4_K) || defined(TYPE_Q5_K)
// super-blocks of 256: d, dmin (f16), 12 bytes of 6-bit scales and mins for the 8 parts of
// 32, (Q5_K: 32 bytes of fifth bits,) 128 bytes of nibbles: part j of a 64-chunk c = j / 2
// takes the low (j even) or high nibbles of bytes 32c..32c+31
#ifdef TYPE_Q4_K
const uint SB_WORDS = 36u, QS = 16u;
#else
const uint SB_WORDS = 44u, QS = 48u;
#endif
const uint UNIT = 32u;
float unit_dot(uint wo, uint u, uint xo) {
    uint b = wo + (u >> 3) * SB_WORDS, j = u & 7u, c = j >> 1, hi = j & 1u;
    uint sc, mn;
    if (j < 4u) {
        sc = byte_at(b, 4u + j) & 63u;
        mn = byte_at(b, 8u + j) & 63u;
    } else {
        sc = (byte_at(b, 8u + j) & 0xfu) | ((byte_at(b, j) >> 6) << 4);
        mn = (byte_at(b, 8u + j) >> 4) | ((byte_at(b, 4u + j) >> 6) << 4);
    }
    float s = 0.0, xs = 0.0;
    for (uint i = 0u; i < 8u; i++) {
        uint v = w[b + (QS >> 2) + 8u * c + i];
        uvec4 q = hi == 1u ? nibbles_hi(v) : nibbles_lo(v);
#ifdef TYPE_Q5_K
        uint h = w[b + 4u + i]; // the fifth bits of bytes 4i..4i+3 of the 32, bit 2c + hi of each
        q |= ((uvec4(h, h >> 8, h >> 16, h >> 24) >> (2u * c + hi)) & 1u) << 4;
#endif
        s += dot4(q, xo + 4u * i);
        xs += sum4(xo + 4u * i);
    }
    vec2 dm = unpackHalf2x16(w[b]);
    return dm.x * float(sc) * s - dm.y * float(mn) * xs;
}
#elif defined(TYPE_Q6_K)
// super-blocks of 256 padded to 212 bytes: ql[128], qh[64], 16 int8 scales, d (f16); part j
// (32 elements) of half n = j / 4: quarter k = j % 4 of that half's 128
const uint UNIT = 32u;
float unit_dot(uint wo, uint u, uint xo) {
    uint b = wo + (u >> 3) * 53u, j = u & 7u, n = j >> 2, k = j & 3u;
    float d = half_at(b, 208u), s0 = 0.0, s1 = 0.0;
    for (uint i = 0u; i < 8u; i++) {
        uint l = 4u * i;
        uint v = w[b + ((64u * n + l + ((k & 1u) == 1u ? 32u : 0u)) >> 2)];
        uvec4 q = k >= 2u ? nibbles_hi(v) : nibbles_lo(v);
        uint h = w[b + ((128u + 32u * n + l) >> 2)];
        q |= ((uvec4(h, h >> 8, h >> 16, h >> 24) >> (2u * k)) & 3u) << 4;
        float part = dot4(q, xo + l) - 32.0 * sum4(xo + l);
        if (i < 4u) s0 += part; else s1 += part;
    }
    int sc0 = int(byte_at(b, 192u + 8u * n + 2u * k) << 24) >> 24;
    int sc1 = int(byte_at(b, 192u + 8u * n + 1u + 2u * k) << 24) >> 24;
    return d * (float(sc0) * s0 + float(sc1) * s1);
}
#else
#error "define one TYPE_*"
#endif

// A workgroup computes TOK tokens of its row: the row is read from memory once for them
// (unpacked again per token, from the cache).
const uint TOK = 4u;

#ifndef SUBGROUP
shared float partial[TOK * WG];
#else
shared float partial[TOK * 32u]; // per token, one per subgroup (subgroups of >= 4 lanes, WG <= 128)
#endif

void main() {
    // rows beyond the 65535 workgroups a dimension may hold go on in z
    const uint r = gl_WorkGroupID.x + gl_NumWorkGroups.x * gl_WorkGroupID.z;
    const uint t0 = gl_WorkGroupID.y * TOK, lane = gl_LocalInvocationID.x;
    if (r >= p.n_rows) return; // the whole workgroup: no barrier is left waiting
    const uint nt = min(TOK, p.n_tok - t0);
    const uint n_units = p.n_cols / UNIT;
    const uint wo = r * p.row_words;
    float acc[TOK];
    for (uint j = 0u; j < TOK; j++) acc[j] = 0.0;
    for (uint u = lane; u < n_units; u += WG)
        for (uint j = 0u; j < TOK; j++)
            if (j < nt) acc[j] += unit_dot(wo, u, p.x_off + (t0 + j) * p.x_stride + u * UNIT);
#ifdef SUBGROUP
    for (uint j = 0u; j < TOK; j++) {
        const float a = subgroupAdd(acc[j]);
        if (gl_SubgroupInvocationID == 0u) partial[j * 32u + gl_SubgroupID] = a;
    }
    barrier();
    if (lane < nt) {
        float s = 0.0;
        for (uint i = 0u; i < gl_NumSubgroups; i++) s += partial[lane * 32u + i];
        y[p.y_off + (t0 + lane) * p.y_stride + r] = post(s, r);
    }
#else
    for (uint j = 0u; j < TOK; j++) partial[j * WG + lane] = acc[j];
    barrier();
    for (uint h = WG / 2u; h > 0u; h >>= 1) {
        if (lane < h)
            for (uint j = 0u; j < TOK; j++) partial[j * WG + lane] += partial[j * WG + lane + h];
        barrier();
    }
    if (lane < nt) y[p.y_off + (t0 + lane) * p.y_stride + r] = post(partial[lane * WG], r);
#endif
}
