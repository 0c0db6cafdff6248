#version 450
// The token shift of time mixing (MODE 0) and channel mixing (MODE 1): the previous token's
// normalized x (the state's shift vector for the first token of a sequence, and for every
// token in batch mode) against this one's, sx = prev - xa:
//   MODE 0: out0 = sx,  out1 = xa + sx * lerp0        (RWKV-6's xxx; RWKV-7's channel-mix xk)
//   MODE 1: out0 = xa + sx * lerp0 (xk), out1 = xa + sx * lerp1 (xr)      (RWKV-6's channel mix)
//   MODE 2: out0 = sx                              (RWKV-7's time mix: lerp.comp mixes after)
// A thread per (channel, token). The state is updated by shift_store.comp afterwards.
layout(constant_id = 0) const uint WG = 64;
layout(local_size_x_id = 0) in;

layout(std430, binding = 0) readonly buffer Xa { float xa[]; };
layout(std430, binding = 1) readonly buffer St { float state[]; };
layout(std430, binding = 2) readonly buffer L0 { float lerp0[]; };
layout(std430, binding = 3) readonly buffer L1 { float lerp1[]; };
layout(std430, binding = 4) writeonly buffer O0 { float out0[]; };
layout(std430, binding = 5) writeonly buffer O1 { float out1[]; };
layout(std430, binding = 6) readonly buffer Slots { uint slots[]; };
layout(push_constant) uniform Push {
    uint C, T, stride, out_stride, batch, slot_floats, s_off, mode;
} p;

void main() {
    const uint c = gl_GlobalInvocationID.x, t = gl_GlobalInvocationID.y;
    if (c >= p.C || t >= p.T) return;
    const float a = xa[t * p.stride + c];
    const float prev = (p.batch == 1u || t == 0u)
        ? state[slots[p.batch == 1u ? t : 0u] * p.slot_floats + p.s_off + c]
        : xa[(t - 1u) * p.stride + c];
    const float sx = prev - a;
    const uint o = t * p.out_stride + c;
    if (p.mode == 2u) {
        out0[o] = sx;
    } else if (p.mode == 0u) {
        out0[o] = sx;
        out1[o] = a + sx * lerp0[c];
    } else {
        out0[o] = a + sx * lerp0[c];
        out1[o] = a + sx * lerp1[c];
    }
}
