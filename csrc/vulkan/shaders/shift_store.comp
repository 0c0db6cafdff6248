#version 450
// After a token shift: the state keeps the last token's normalized x (sequence mode), or
// each sequence its own token's (batch mode). A thread per (channel, sequence).
layout(constant_id = 0) const uint WG = 64;
layout(local_size_x_id = 0) in;

layout(std430, binding = 0) readonly buffer Xa { float xa[]; };
layout(std430, binding = 1) buffer St { float state[]; };
layout(std430, binding = 2) readonly buffer Slots { uint slots[]; };
layout(push_constant) uniform Push { uint C, T, stride, batch, slot_floats, s_off; } p;

void main() {
    const uint c = gl_GlobalInvocationID.x, s = gl_GlobalInvocationID.y;
    const uint n_seq = p.batch == 1u ? p.T : 1u;
    if (c >= p.C || s >= n_seq) return;
    const uint t = p.batch == 1u ? s : p.T - 1u;
    state[slots[s] * p.slot_floats + p.s_off + c] = xa[t * p.stride + c];
}
