#version 450
// The residual stream: MODE 0 x += a; 1 x += a * b; 2 x *= scale. A thread per (channel, token).
layout(constant_id = 0) const uint WG = 64;
layout(local_size_x_id = 0) in;

layout(std430, binding = 0) buffer Xb { float x[]; };
layout(std430, binding = 1) readonly buffer Ab { float a[]; };
layout(std430, binding = 2) readonly buffer Bb { float b[]; };
layout(push_constant) uniform Push { uint C, T, stride, mode; float scale; } p;

void main() {
    const uint c = gl_GlobalInvocationID.x, t = gl_GlobalInvocationID.y;
    if (c >= p.C || t >= p.T) return;
    const uint i = t * p.stride + c;
    if (p.mode == 0u) x[i] += a[i];
    else if (p.mode == 1u) x[i] += a[i] * b[i];
    else x[i] *= p.scale;
}
