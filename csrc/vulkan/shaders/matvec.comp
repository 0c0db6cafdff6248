#version 450
// y[t][r] = dot(W[r], x[t]) for one weight type (chosen by -DTYPE_*): one workgroup per
// (row, token); its threads stride over the row's blocks and the partial sums are reduced
// with subgroupAdd (-DSUBGROUP) or through shared memory.
//
// Weights are as uploaded by csrc/vulkan/weights.c: every row starts on a 4-byte word, and
// the block types whose GGUF block is not a whole number of words (Q8_0: 34 bytes) are
// padded to one (36), so every load here is a 32-bit word.
#ifdef SUBGROUP
#extension GL_KHR_shader_subgroup_arithmetic : enable
#endif

layout(constant_id = 0) const uint WG = 64;
layout(local_size_x_id = 0) in;

layout(std430, binding = 0) readonly buffer Wbuf { uint w[]; };
layout(std430, binding = 1) readonly buffer Xbuf { float x[]; };
layout(std430, binding = 2) writeonly buffer Ybuf { float y[]; };

layout(push_constant) uniform Push {
    uint n_rows, n_cols, row_words; // row_words: 32-bit words per uploaded row
    uint x_off, x_stride, y_off, y_stride;
} p;

#if defined(TYPE_F32)
const uint BLOCK = 1u, BLOCK_WORDS = 1u;
float block_dot(uint wo, uint xo) { return uintBitsToFloat(w[wo]) * x[xo]; }
#elif defined(TYPE_F16)
const uint BLOCK = 2u, BLOCK_WORDS = 1u;
float block_dot(uint wo, uint xo) {
    vec2 a = unpackHalf2x16(w[wo]);
    return a.x * x[xo] + a.y * x[xo + 1u];
}
#elif defined(TYPE_BF16)
const uint BLOCK = 2u, BLOCK_WORDS = 1u;
float block_dot(uint wo, uint xo) {
    uint v = w[wo];
    return uintBitsToFloat(v << 16) * x[xo] + uintBitsToFloat(v & 0xffff0000u) * x[xo + 1u];
}
#elif defined(TYPE_Q8_0)
// word 0: d (f16, low half); words 1..8: 32 int8 quants
const uint BLOCK = 32u, BLOCK_WORDS = 9u;
float block_dot(uint wo, uint xo) {
    float d = unpackHalf2x16(w[wo]).x, s = 0.0;
    for (uint i = 0u; i < 8u; i++) {
        ivec4 q = ivec4(int(w[wo + 1u + i] << 24) >> 24, int(w[wo + 1u + i] << 16) >> 24,
                        int(w[wo + 1u + i] << 8) >> 24, int(w[wo + 1u + i]) >> 24);
        uint xi = xo + 4u * i;
        s += float(q.x) * x[xi] + float(q.y) * x[xi + 1u] + float(q.z) * x[xi + 2u] + float(q.w) * x[xi + 3u];
    }
    return d * s;
}
#else
#error "define one TYPE_*"
#endif

#ifndef SUBGROUP
shared float partial[WG];
#else
shared float partial[32]; // one per subgroup (subgroups of at least 4 lanes, WG <= 128)
#endif

void main() {
    // rows beyond the 65535 workgroups a dimension may hold go on in z
    const uint r = gl_WorkGroupID.x + gl_NumWorkGroups.x * gl_WorkGroupID.z;
    const uint t = gl_WorkGroupID.y, lane = gl_LocalInvocationID.x;
    if (r >= p.n_rows) return; // the whole workgroup: no barrier is left waiting
    const uint n_blocks = p.n_cols / BLOCK;
    const uint wo = r * p.row_words, xo = p.x_off + t * p.x_stride;
    float acc = 0.0;
    for (uint b = lane; b < n_blocks; b += WG) acc += block_dot(wo + b * BLOCK_WORDS, xo + b * BLOCK);
#ifdef SUBGROUP
    acc = subgroupAdd(acc);
    if (gl_SubgroupInvocationID == 0u) partial[gl_SubgroupID] = acc;
    barrier();
    if (lane == 0u) {
        float s = 0.0;
        for (uint i = 0u; i < gl_NumSubgroups; i++) s += partial[i];
        y[p.y_off + t * p.y_stride + r] = s;
    }
#else
    partial[lane] = acc;
    barrier();
    for (uint h = WG / 2u; h > 0u; h >>= 1) {
        if (lane < h) partial[lane] += partial[lane + h];
        barrier();
    }
    if (lane == 0u) y[p.y_off + t * p.y_stride + r] = partial[0];
#endif
}
