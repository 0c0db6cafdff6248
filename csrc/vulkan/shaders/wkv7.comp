#version 450
// The WKV7 recurrence of one head (csrc/rwkv7.c has the maths): thread i keeps row i (value i)
// of the head's value-major N x N state in registers, for every token of the sequence in turn:
//     sa = sum_j S[i][j] a[j];   S[i][j] = S[i][j] w[j] + sa b[j] + v[i] k[j];   y[i] = sum_j S[i][j] r[j]
// (a = -kk, b = kk * iclr: rwkv7_keys.comp). A workgroup per (head, sequence); sequence and
// batch modes and the slots as wkv6.comp. The workgroup size is the head size.
layout(constant_id = 0) const uint N = 64;
layout(local_size_x_id = 0) in;

layout(std430, binding = 0) readonly buffer Rb { float r[]; };
layout(std430, binding = 1) readonly buffer Wb { float w[]; };
layout(std430, binding = 2) readonly buffer Kb { float k[]; };
layout(std430, binding = 3) readonly buffer Vb { float v[]; };
layout(std430, binding = 4) readonly buffer Ab { float a[]; };
layout(std430, binding = 5) readonly buffer Bb { float b[]; };
layout(std430, binding = 6) buffer Sb { float S[]; };
layout(std430, binding = 7) writeonly buffer Yb { float y[]; };
layout(std430, binding = 8) readonly buffer Slots { uint slots[]; };
layout(push_constant) uniform Push { uint T, stride, batch, slot_floats, s_off; } p;

shared float sr[N], sw[N], sk[N], sa[N], sb[N];

void main() {
    const uint h = gl_WorkGroupID.x, seq = gl_WorkGroupID.y, i = gl_LocalInvocationID.x;
    const uint t0 = p.batch == 1u ? seq : 0u, t1 = p.batch == 1u ? seq + 1u : p.T;
    const uint row = slots[p.batch == 1u ? seq : 0u] * p.slot_floats + p.s_off + (h * N + i) * N;
    float s[N];
    for (uint j = 0u; j < N; j++) s[j] = S[row + j];
    for (uint t = t0; t < t1; t++) {
        const uint o = t * p.stride + h * N;
        barrier(); // the previous token's reads of the shared vectors are done
        sr[i] = r[o + i];
        sw[i] = w[o + i];
        sk[i] = k[o + i];
        sa[i] = a[o + i];
        sb[i] = b[o + i];
        barrier();
        const float vi = v[o + i];
        float dot_a = 0.0;
        for (uint j = 0u; j < N; j++) dot_a += s[j] * sa[j];
        float acc = 0.0;
        for (uint j = 0u; j < N; j++) {
            s[j] = s[j] * sw[j] + dot_a * sb[j] + vi * sk[j];
            acc += s[j] * sr[j];
        }
        y[o + i] = acc;
    }
    for (uint j = 0u; j < N; j++) S[row + j] = s[j];
}
