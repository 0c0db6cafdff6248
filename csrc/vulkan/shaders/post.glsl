// post.glsl — the post-ops of matvec.comp and matmul.comp, numbered as the CPU's enum
// rwkv_post (csrc/matmul.h). Needs: the push constant p.post and a `float bias[]` buffer
// (read by the ops that add a per-row bias: 5, 6, 7).

float post(float v, uint r) {
    switch (p.post) {
    case 1u: return tanh(v);
    case 2u: return v / (1.0 + exp(-v));
    case 3u: return 1.0 / (1.0 + exp(-v));
    case 4u: { float m = max(v, 0.0); return m * m; }
    case 5u: return exp(-exp(bias[r] + v));                               // RWKV-6's decay
    case 6u: return exp(-0.606531 / (1.0 + exp(-(bias[r] + v))));         // RWKV-7's: e^-0.5 sigmoid
    case 7u: return 1.0 / (1.0 + exp(-(bias[r] + v)));                    // sigmoid(bias + v)
    default: return v;
    }
}
