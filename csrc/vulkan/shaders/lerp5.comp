#version 450
// The five data-dependent mixes of time mixing: xm[t][i][c] = xa + sx * (lerp[i][c] + mix[t][i][c])
// for i in w, k, v, r, g. A thread per (i * C + c, token).
layout(constant_id = 0) const uint WG = 64;
layout(local_size_x_id = 0) in;

layout(std430, binding = 0) readonly buffer Xa { float xa[]; };
layout(std430, binding = 1) readonly buffer Sx { float sx[]; };
layout(std430, binding = 2) readonly buffer Lp { float lerp[]; };
layout(std430, binding = 3) readonly buffer Mx { float mix[]; };
layout(std430, binding = 4) writeonly buffer Xm { float xm[]; };
layout(push_constant) uniform Push { uint C, T, stride, stride5; } p;

void main() {
    const uint ic = gl_GlobalInvocationID.x, t = gl_GlobalInvocationID.y;
    if (ic >= 5u * p.C || t >= p.T) return;
    const uint c = ic % p.C;
    xm[t * p.stride5 + ic] = xa[t * p.stride + c] + sx[t * p.stride + c] * (lerp[ic] + mix[t * p.stride5 + ic]);
}
