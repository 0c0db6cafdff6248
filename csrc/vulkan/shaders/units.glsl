// units.glsl — weights as the tiled GEMM (matmul.comp) reads them: units of 32 columns of a
// row, each an exact small integer (or, for F32/F16/BF16, the float itself) times a scale
// plus an offset that the whole unit shares:
//     w[c] = scale * q[c] + offset
//     vec4 q4(wo, c): q of columns c..c+3 (c a multiple of 4) of the row whose first word is wo
//     vec2 unit_so(wo, c): (scale, offset) of the unit holding column c
// so a tile sums scale * dot(q, x) + offset * sum(x) per unit, like matvec.comp does per
// block, rather than rounding every weight on its own. DQ_SCALED / DQ_OFFSET say which apply.
// The layouts are csrc/vulkan/weights.c's: GGUF blocks padded to whole 32-bit words.
// Needs: a `uint w[]` buffer.

uint dq_byte(uint wo, uint i) { return (w[wo + (i >> 2)] >> ((i & 3u) * 8u)) & 0xffu; }
vec4 dq_lo(uint v) { return vec4(uvec4(v, v >> 8, v >> 16, v >> 24) & 0xfu); }
vec4 dq_hi(uint v) { return vec4((uvec4(v, v >> 8, v >> 16, v >> 24) >> 4) & 0xfu); }
uvec4 dq_bytes(uint v) { return uvec4(v, v >> 8, v >> 16, v >> 24) & 0xffu; }

#if defined(TYPE_F32)
vec4 q4(uint wo, uint c) {
    return uintBitsToFloat(uvec4(w[wo + c], w[wo + c + 1u], w[wo + c + 2u], w[wo + c + 3u]));
}
#elif defined(TYPE_F16)
vec4 q4(uint wo, uint c) {
    const uint o = wo + (c >> 1);
    return vec4(unpackHalf2x16(w[o]), unpackHalf2x16(w[o + 1u]));
}
#elif defined(TYPE_BF16)
vec4 q4(uint wo, uint c) {
    const uint o = wo + (c >> 1), a = w[o], b = w[o + 1u];
    return uintBitsToFloat(uvec4(a << 16, a & 0xffff0000u, b << 16, b & 0xffff0000u));
}
#elif defined(TYPE_Q8_0)
const uint DQ_BLOCK_WORDS = 9u; // d, 32 int8
vec4 q4(uint wo, uint c) {
    const uint v = w[wo + (c >> 5) * 9u + 1u + ((c & 31u) >> 2)];
    return vec4(ivec4(int(v << 24) >> 24, int(v << 16) >> 24, int(v << 8) >> 24, int(v) >> 24));
}
#elif defined(TYPE_Q4_0) || defined(TYPE_Q4_1)
const uint DQ_BLOCK_WORDS = 5u; // d (Q4_1: | m << 16), 16 bytes: element j low nibble, j + 16 high nibble
vec4 q4(uint wo, uint c) {
    const uint j = c & 31u, v = w[wo + (c >> 5) * 5u + 1u + ((j & 15u) >> 2)];
    const vec4 q = j < 16u ? dq_lo(v) : dq_hi(v);
#ifdef TYPE_Q4_0
    return q - 8.0;
#else
    return q;
#endif
}
#elif defined(TYPE_Q5_0) || defined(TYPE_Q5_1)
const uint DQ_BLOCK_WORDS = 6u; // d (Q5_1: | m << 16), qh (bit j: element j's fifth), 16 bytes of nibbles
vec4 q4(uint wo, uint c) {
    const uint b = wo + (c >> 5) * 6u, j = c & 31u, v = w[b + 2u + ((j & 15u) >> 2)];
    const uint h = w[b + 1u] >> j;
    const vec4 q = (j < 16u ? dq_lo(v) : dq_hi(v)) + 16.0 * vec4(uvec4(h, h >> 1, h >> 2, h >> 3) & 1u);
#ifdef TYPE_Q5_0
    return q - 16.0;
#else
    return q;
#endif
}
#elif defined(TYPE_Q4_K) || defined(TYPE_Q5_K)
// super-blocks of 256: d, dmin, 12 bytes of 6-bit scales and mins for the 8 parts of 32,
// (Q5_K: 32 bytes of fifth bits,) 128 bytes of nibbles: part j takes the low (j even) or
// high nibbles of bytes 32 (j / 2) .. 32 (j / 2) + 31
#define DQ_SCALED
#define DQ_OFFSET
#ifdef TYPE_Q4_K
const uint DQ_SB_WORDS = 36u, DQ_QS = 4u;
#else
const uint DQ_SB_WORDS = 44u, DQ_QS = 12u;
#endif
vec4 q4(uint wo, uint c) {
    const uint b = wo + (c >> 8) * DQ_SB_WORDS, j = (c & 255u) >> 5, i = (c & 31u) >> 2, ch = j >> 1, hi = j & 1u;
    const uint v = w[b + DQ_QS + 8u * ch + i];
    vec4 q = hi == 1u ? dq_hi(v) : dq_lo(v);
#ifdef TYPE_Q5_K
    const uint h = w[b + 4u + i]; // bit 2 ch + hi of each byte: the fifth bits
    q += 16.0 * vec4((dq_bytes(h) >> (2u * ch + hi)) & 1u);
#endif
    return q;
}
vec2 unit_so(uint wo, uint c) {
    const uint b = wo + (c >> 8) * DQ_SB_WORDS, j = (c & 255u) >> 5;
    uint sc, mn;
    if (j < 4u) {
        sc = dq_byte(b, 4u + j) & 63u;
        mn = dq_byte(b, 8u + j) & 63u;
    } else {
        sc = (dq_byte(b, 8u + j) & 0xfu) | ((dq_byte(b, j) >> 6) << 4);
        mn = (dq_byte(b, 8u + j) >> 4) | ((dq_byte(b, 4u + j) >> 6) << 4);
    }
    const vec2 dm = unpackHalf2x16(w[b]);
    return vec2(dm.x * float(sc), -dm.y * float(mn));
}
#elif defined(TYPE_Q6_K)
// super-blocks of 256 padded to 212 bytes: ql[128], qh[64], 16 int8 scales, d; part j of 32
// is quarter k = j % 4 of half n = j / 4. Each 16 of a part has its own int8 scale: it goes
// into q (sc * (q - 32) is an exact integer), d is the unit's scale.
#define DQ_SCALED
vec4 q4(uint wo, uint c) {
    const uint b = wo + (c >> 8) * 53u, j = (c & 255u) >> 5, l = c & 31u, n = j >> 2, k = j & 3u;
    const uint v = w[b + ((64u * n + l + ((k & 1u) == 1u ? 32u : 0u)) >> 2)];
    const uint h = w[b + ((128u + 32u * n + l) >> 2)];
    const vec4 q = (k >= 2u ? dq_hi(v) : dq_lo(v)) + 16.0 * vec4((dq_bytes(h) >> (2u * k)) & 3u);
    const int sc = int(dq_byte(b, 192u + 8u * n + 2u * k + (l >> 4)) << 24) >> 24;
    return float(sc) * (q - 32.0);
}
vec2 unit_so(uint wo, uint c) { return vec2(unpackHalf2x16(w[wo + (c >> 8) * 53u + 52u]).x, 0.0); }
#else
#error "define one TYPE_*"
#endif

#if defined(TYPE_Q8_0) || defined(TYPE_Q4_0) || defined(TYPE_Q4_1) || defined(TYPE_Q5_0) || defined(TYPE_Q5_1)
// blocks of 32 whose first word holds d (and, for Q4_1 and Q5_1, m: the offset)
#define DQ_SCALED
#if defined(TYPE_Q4_1) || defined(TYPE_Q5_1)
#define DQ_OFFSET
#endif
vec2 unit_so(uint wo, uint c) {
    const vec2 dm = unpackHalf2x16(w[wo + (c >> 5) * DQ_BLOCK_WORDS]);
#ifdef DQ_OFFSET
    return dm;
#else
    return vec2(dm.x, 0.0);
#endif
}
#endif
