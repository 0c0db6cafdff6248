#version 450
// The WKV6 recurrence of one head: thread j keeps column j of the head's N x N state in
// registers, for every token of the sequence in turn:
//     y[j] = sum_i r[i] * (u[i] k[i] v[j] + S[i][j]);   S[i][j] = w[i] S[i][j] + k[i] v[j]
// A workgroup per (head, sequence). Sequence mode: one sequence of T tokens whose state is
// slot slots[0]; batch mode (batch = 1): T sequences of one token each, token t in slot
// slots[t]. The workgroup size is the head size (specialization constant 0).
layout(constant_id = 0) const uint N = 64;
layout(local_size_x_id = 0) in;

layout(std430, binding = 0) readonly buffer Rb { float r[]; };
layout(std430, binding = 1) readonly buffer Kb { float k[]; };
layout(std430, binding = 2) readonly buffer Vb { float v[]; };
layout(std430, binding = 3) readonly buffer Wb { float w[]; };
layout(std430, binding = 4) readonly buffer Ub { float u[]; };
layout(std430, binding = 5) buffer Sb { float S[]; };
layout(std430, binding = 6) writeonly buffer Yb { float y[]; };
layout(std430, binding = 7) readonly buffer Slots { uint slots[]; };
// stride: floats between tokens' rows of r, k, v, w, y; slot_floats: floats per state slot;
// s_off: where this layer's matrices start in a slot
layout(push_constant) uniform Push { uint T, stride, batch, slot_floats, s_off; } p;

shared float sr[N], sk[N], sw[N], su[N];

void main() {
    const uint h = gl_WorkGroupID.x, seq = gl_WorkGroupID.y, j = gl_LocalInvocationID.x;
    const uint H = gl_NumWorkGroups.x;
    const uint t0 = p.batch == 1u ? seq : 0u, t1 = p.batch == 1u ? seq + 1u : p.T;
    const uint base = slots[p.batch == 1u ? seq : 0u] * p.slot_floats + p.s_off + h * N * N;
    float s[N];
    for (uint i = 0u; i < N; i++) s[i] = S[base + i * N + j];
    su[j] = u[h * N + j];
    for (uint t = t0; t < t1; t++) {
        const uint o = t * p.stride + h * N;
        barrier(); // the previous token's reads of the shared vectors are done
        sr[j] = r[o + j];
        sk[j] = k[o + j];
        sw[j] = w[o + j];
        barrier();
        const float vj = v[o + j];
        float acc = 0.0;
        for (uint i = 0u; i < N; i++) {
            const float kv = sk[i] * vj;
            acc += sr[i] * (su[i] * kv + s[i]);
            s[i] = sw[i] * s[i] + kv;
        }
        y[o + j] = acc;
    }
    for (uint i = 0u; i < N; i++) S[base + i * N + j] = s[i];
}
