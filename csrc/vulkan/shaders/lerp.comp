#version 450
// The token-shift mixes of time mixing: xm[t][i][c] = xa + sx * (lerp[i][c] + mix[t][i][c])
// for n_mix mixes (RWKV-6: the five data-dependent ones, w k v r g; RWKV-7: the six static
// ones, r w k v a g, has_mix 0 and mix unread). A thread per (i * C + c, token).
layout(constant_id = 0) const uint WG = 64;
layout(local_size_x_id = 0) in;

layout(std430, binding = 0) readonly buffer Xa { float xa[]; };
layout(std430, binding = 1) readonly buffer Sx { float sx[]; };
layout(std430, binding = 2) readonly buffer Lp { float lerp[]; };
layout(std430, binding = 3) readonly buffer Mx { float mix[]; };
layout(std430, binding = 4) writeonly buffer Xm { float xm[]; };
// stride: floats between tokens' rows of xa and sx; stride_m: of mix and xm
layout(push_constant) uniform Push { uint C, T, stride, stride_m, n_mix, has_mix; } p;

void main() {
    const uint ic = gl_GlobalInvocationID.x, t = gl_GlobalInvocationID.y;
    if (ic >= p.n_mix * p.C || t >= p.T) return;
    const uint c = ic % p.C, o = t * p.stride_m + ic;
    const float m = p.has_mix == 1u ? mix[o] : 0.0;
    xm[o] = xa[t * p.stride + c] + sx[t * p.stride + c] * (lerp[ic] + m);
}
