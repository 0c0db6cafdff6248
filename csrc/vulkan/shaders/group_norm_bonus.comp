#version 450
// RWKV-7's ln_x, bonus and gate for one (head, token): y normalized over the head (eps 64e-5),
// scaled by w and shifted by b, plus the token's own (sum_head r * k * r_k) * v, times g:
//   y = (GroupNorm(y) * w + b + (sum r k r_k) v) * g
// A workgroup per (head, token); y is read and written in place.
layout(constant_id = 0) const uint WG = 64;
layout(local_size_x_id = 0) in;

layout(std430, binding = 0) buffer Yb { float y[]; };
layout(std430, binding = 1) readonly buffer Wb { float w[]; };
layout(std430, binding = 2) readonly buffer Bb { float b[]; };
layout(std430, binding = 3) readonly buffer Gb { float g[]; };
layout(std430, binding = 4) readonly buffer Rb { float r[]; };
layout(std430, binding = 5) readonly buffer Kb { float k[]; };
layout(std430, binding = 6) readonly buffer Vb { float v[]; };
layout(std430, binding = 7) readonly buffer RKb { float r_k[]; };
layout(push_constant) uniform Push { uint N, stride; float eps; } p;

shared float red[WG];

float reduce_sum(float x) {
    const uint lane = gl_LocalInvocationID.x;
    red[lane] = x;
    barrier();
    for (uint s = WG / 2u; s > 0u; s >>= 1) {
        if (lane < s) red[lane] += red[lane + s];
        barrier();
    }
    const float total = red[0];
    barrier();
    return total;
}

void main() {
    const uint h = gl_WorkGroupID.x, t = gl_WorkGroupID.y, lane = gl_LocalInvocationID.x;
    const uint o = t * p.stride + h * p.N, c0 = h * p.N;
    float s = 0.0, rk = 0.0;
    for (uint i = lane; i < p.N; i += WG) {
        s += y[o + i];
        rk += r[o + i] * k[o + i] * r_k[c0 + i];
    }
    const float mean = reduce_sum(s) / float(p.N);
    const float bonus = reduce_sum(rk);
    float q = 0.0;
    for (uint i = lane; i < p.N; i += WG) {
        const float d = y[o + i] - mean;
        q += d * d;
    }
    const float inv = inversesqrt(reduce_sum(q) / float(p.N) + p.eps);
    for (uint i = lane; i < p.N; i += WG)
        y[o + i] = ((y[o + i] - mean) * inv * w[c0 + i] + b[c0 + i] + bonus * v[o + i]) * g[o + i];
}
