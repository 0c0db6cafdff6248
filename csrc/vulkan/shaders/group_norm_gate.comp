#version 450
// ln_x and the gate of time mixing: each head's N values of y normalized (eps as the CPU:
// 64e-5), scaled by w, shifted by b, then times g (silu'ed already). A workgroup per
// (head, token); y is read and written in place.
layout(constant_id = 0) const uint WG = 64;
layout(local_size_x_id = 0) in;

layout(std430, binding = 0) buffer Yb { float y[]; };
layout(std430, binding = 1) readonly buffer Wb { float w[]; };
layout(std430, binding = 2) readonly buffer Bb { float b[]; };
layout(std430, binding = 3) readonly buffer Gb { float g[]; };
layout(push_constant) uniform Push { uint N, stride; float eps; } p;

shared float red[WG];

float reduce_sum(float v) {
    const uint lane = gl_LocalInvocationID.x;
    red[lane] = v;
    barrier();
    for (uint h = WG / 2u; h > 0u; h >>= 1) {
        if (lane < h) red[lane] += red[lane + h];
        barrier();
    }
    float s = red[0];
    barrier();
    return s;
}

void main() {
    const uint h = gl_WorkGroupID.x, t = gl_WorkGroupID.y, lane = gl_LocalInvocationID.x;
    const uint o = t * p.stride + h * p.N, c0 = h * p.N;
    float s = 0.0;
    for (uint i = lane; i < p.N; i += WG) s += y[o + i];
    const float mean = reduce_sum(s) / float(p.N);
    float q = 0.0;
    for (uint i = lane; i < p.N; i += WG) {
        float d = y[o + i] - mean;
        q += d * d;
    }
    const float inv = inversesqrt(reduce_sum(q) / float(p.N) + p.eps);
    for (uint i = lane; i < p.N; i += WG)
        y[o + i] = ((y[o + i] - mean) * inv * w[c0 + i] + b[c0 + i]) * g[t * p.stride + c0 + i];
}
