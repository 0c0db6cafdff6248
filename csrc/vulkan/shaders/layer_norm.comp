#version 450
// y[t] = (x[t] - mean) / sqrt(var + eps) * w + b over n elements: a workgroup per token.
// Two passes (the mean, then the squared deviations), as the CPU's ops.c does.
layout(constant_id = 0) const uint WG = 256;
layout(local_size_x_id = 0) in;

layout(std430, binding = 0) readonly buffer Xb { float x[]; };
layout(std430, binding = 1) readonly buffer Wb { float w[]; };
layout(std430, binding = 2) readonly buffer Bb { float b[]; };
layout(std430, binding = 3) writeonly buffer Yb { float y[]; };
layout(push_constant) uniform Push { uint n, x_stride, y_stride; float eps; } p;

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
    barrier(); // red is reused by the next reduction
    return s;
}

void main() {
    const uint t = gl_WorkGroupID.x, lane = gl_LocalInvocationID.x;
    const uint xo = t * p.x_stride, yo = t * p.y_stride;
    float s = 0.0;
    for (uint i = lane; i < p.n; i += WG) s += x[xo + i];
    const float mean = reduce_sum(s) / float(p.n);
    float q = 0.0;
    for (uint i = lane; i < p.n; i += WG) {
        float d = x[xo + i] - mean;
        q += d * d;
    }
    const float inv = inversesqrt(reduce_sum(q) / float(p.n) + p.eps);
    for (uint i = lane; i < p.n; i += WG) y[yo + i] = (x[xo + i] - mean) * inv * w[i] + b[i];
}
