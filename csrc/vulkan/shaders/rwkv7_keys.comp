#version 450
// RWKV-7's keys and value residual for one (head, token), before the WKV (csrc/rwkv7.c's keys()
// and the v_first mix):
//   kk = (k * k_k) / max(|k * k_k|, 1e-12)  over the head;   k *= 1 + (a - 1) * k_a
//   b = kk * a;  kk = -kk  (the WKV's a input)
//   layer 0 (first = 1): v_first = v;  later layers: v += (v_first - v) * vg
// A workgroup per (head, token); k, v and v_first are read and written in place.
layout(constant_id = 0) const uint WG = 64;
layout(local_size_x_id = 0) in;

layout(std430, binding = 0) buffer Kb { float k[]; };
layout(std430, binding = 1) readonly buffer Ab { float a[]; };
layout(std430, binding = 2) writeonly buffer KKb { float kk[]; };
layout(std430, binding = 3) writeonly buffer Bb { float b[]; };
layout(std430, binding = 4) readonly buffer Kkw { float k_k[]; };
layout(std430, binding = 5) readonly buffer Kaw { float k_a[]; };
layout(std430, binding = 6) buffer Vb { float v[]; };
layout(std430, binding = 7) buffer VFb { float v_first[]; };
layout(std430, binding = 8) readonly buffer VGb { float vg[]; };
layout(push_constant) uniform Push { uint N, stride, first; } p;

shared float red[WG];

void main() {
    const uint h = gl_WorkGroupID.x, t = gl_WorkGroupID.y, lane = gl_LocalInvocationID.x;
    const uint o = t * p.stride + h * p.N, c0 = h * p.N;
    float q = 0.0;
    for (uint i = lane; i < p.N; i += WG) {
        const float x = k[o + i] * k_k[c0 + i];
        q += x * x;
    }
    red[lane] = q;
    barrier();
    for (uint s = WG / 2u; s > 0u; s >>= 1) {
        if (lane < s) red[lane] += red[lane + s];
        barrier();
    }
    const float inv = 1.0 / max(sqrt(red[0]), 1e-12);
    for (uint i = lane; i < p.N; i += WG) {
        const uint e = o + i, c = c0 + i;
        const float ki = k[e], ai = a[e], n = ki * k_k[c] * inv;
        k[e] = ki * (1.0 + (ai - 1.0) * k_a[c]);
        b[e] = n * ai;
        kk[e] = -n;
        if (p.first == 1u) v_first[e] = v[e];
        else v[e] += (v_first[e] - v[e]) * vg[e];
    }
}
