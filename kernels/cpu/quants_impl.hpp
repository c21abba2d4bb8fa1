// Internal to the CPU kernels: ggml's block layouts and the helpers the scalar and the AVX2
// translation units share. Not part of the runtime's interface (that is quants.hpp).
#pragma once

#include <cstdint>
#include <cstring>

#include "cpu/quants.hpp"

namespace archreg::kernels::cpu::detail {

constexpr int kQK = 32;     // QK4_0 = QK4_1 = QK5_0 = QK5_1 = QK8_0 = QK8_1 = QK_MXFP4
constexpr int kQK_K = 256;  // QK_K, the K-quant super-block

// Block layouts, byte for byte those of ggml-common.h (field order and sizes). Every field is
// a byte array, so each struct has alignment 1: a row may start at any address (a GGUF tensor
// of 17- or 22-byte blocks puts rows at odd offsets) and is read without unaligned-access UB.
// Multi-byte fields are little-endian (as in ggml) and read with memcpy.
struct BlockQ4_0 {
  uint8_t d[2];
  uint8_t qs[kQK / 2];
};
struct BlockQ4_1 {
  uint8_t d[2];
  uint8_t m[2];
  uint8_t qs[kQK / 2];
};
struct BlockQ5_0 {
  uint8_t d[2];
  uint8_t qh[4];
  uint8_t qs[kQK / 2];
};
struct BlockQ5_1 {
  uint8_t d[2];
  uint8_t m[2];
  uint8_t qh[4];
  uint8_t qs[kQK / 2];
};
struct BlockQ8_0 {
  uint8_t d[2];
  int8_t qs[kQK];
};
struct BlockQ8_1 {
  uint8_t d[2];
  uint8_t s[2];
  int8_t qs[kQK];
};  // s = d * sum(qs)
struct BlockMXFP4 {
  uint8_t e;
  uint8_t qs[kQK / 2];
};  // e: E8M0 exponent
struct BlockQ2_K {
  uint8_t scales[kQK_K / 16];
  uint8_t qs[kQK_K / 4];
  uint8_t d[2];
  uint8_t dmin[2];
};
struct BlockQ3_K {
  uint8_t hmask[kQK_K / 8];
  uint8_t qs[kQK_K / 4];
  uint8_t scales[12];
  uint8_t d[2];
};
struct BlockQ4_K {
  uint8_t d[2];
  uint8_t dmin[2];
  uint8_t scales[12];
  uint8_t qs[kQK_K / 2];
};
struct BlockQ5_K {
  uint8_t d[2];
  uint8_t dmin[2];
  uint8_t scales[12];
  uint8_t qh[kQK_K / 8];
  uint8_t qs[kQK_K / 2];
};
struct BlockQ6_K {
  uint8_t ql[kQK_K / 2];
  uint8_t qh[kQK_K / 4];
  int8_t scales[kQK_K / 16];
  uint8_t d[2];
};
// float d; int8 qs[256]; int16 bsums[16] (sum of each 16 quants).
struct BlockQ8_K {
  uint8_t d[4];
  int8_t qs[kQK_K];
  uint8_t bsums[2 * kQK_K / 16];
};

static_assert(sizeof(BlockQ4_0) == 18 && sizeof(BlockQ4_1) == 20 && sizeof(BlockQ5_0) == 22 && sizeof(BlockQ5_1) == 24 &&
              sizeof(BlockQ8_0) == 34 && sizeof(BlockQ8_1) == 36 && sizeof(BlockMXFP4) == 17);
static_assert(sizeof(BlockQ2_K) == 84 && sizeof(BlockQ3_K) == 110 && sizeof(BlockQ4_K) == 144 && sizeof(BlockQ5_K) == 176 &&
              sizeof(BlockQ6_K) == 210 && sizeof(BlockQ8_K) == 292);

inline uint16_t load_u16(const uint8_t* p) {
  uint16_t v;
  std::memcpy(&v, p, 2);
  return v;
}
inline int16_t load_i16(const uint8_t* p) {
  int16_t v;
  std::memcpy(&v, p, 2);
  return v;
}
inline float load_f32(const uint8_t* p) {
  float v;
  std::memcpy(&v, p, 4);
  return v;
}
inline void store_u16(uint8_t* p, uint16_t v) {
  std::memcpy(p, &v, 2);
}
inline void store_i16(uint8_t* p, int16_t v) {
  std::memcpy(p, &v, 2);
}
inline void store_f32(uint8_t* p, float v) {
  std::memcpy(p, &v, 4);
}

inline uint32_t f32_bits(float f) {
  uint32_t u;
  std::memcpy(&u, &f, 4);
  return u;
}
inline float f32_from_bits(uint32_t u) {
  float f;
  std::memcpy(&f, &u, 4);
  return f;
}

// IEEE binary16 -> binary32, exact (every half is a float).
inline float half_to_float(uint16_t h) {
  const uint32_t sign = static_cast<uint32_t>(h & 0x8000u) << 16;
  const uint32_t exp = (h >> 10) & 0x1Fu;
  const uint32_t man = h & 0x3FFu;
  if (exp == 0x1F) return f32_from_bits(sign | 0x7F800000u | (man << 13));  // inf, NaN
  if (exp == 0) {                                                           // zero, subnormal
    const float mag = static_cast<float>(man) * 0x1p-24f;                   // exact
    return sign ? -mag : mag;
  }
  return f32_from_bits(sign | ((exp + 112u) << 23) | (man << 13));
}
inline float half_at(const uint8_t* p) {
  return half_to_float(load_u16(p));
}

// ggml_e8m0_to_fp32_half (ggml-impl.h): 2^(e-128), i.e. half the E8M0 scale 2^(e-127), because
// kvalues_mxfp4 holds the E2M1 values doubled. e = 0 and 1 are the subnormals 2^-128 and 2^-127;
// e = 255 is 2^127 (ggml gives the E8M0 NaN code no special meaning, nor do we).
inline float e8m0_to_float_half(uint8_t e) {
  const uint32_t bits = e < 2 ? (0x00200000u << e) : (static_cast<uint32_t>(e - 1) << 23);
  return f32_from_bits(bits);
}

// E2M1 values times two (ggml-common.h kvalues_mxfp4): 0, 0.5, 1, 1.5, 2, 3, 4, 6 and negatives.
inline constexpr int8_t kValuesMXFP4[16] = {0, 1, 2, 3, 4, 6, 8, 12, 0, -1, -2, -3, -4, -6, -8, -12};

// The 6-bit scale and min of sub-block j (0..7) of a Q4_K/Q5_K block (ggml get_scale_min_k4).
inline void scale_min_k4(int j, const uint8_t* q, uint8_t& d, uint8_t& m) {
  if (j < 4) {
    d = static_cast<uint8_t>(q[j] & 63);
    m = static_cast<uint8_t>(q[j + 4] & 63);
  } else {
    d = static_cast<uint8_t>((q[j + 4] & 0xF) | ((q[j - 4] >> 6) << 4));
    m = static_cast<uint8_t>((q[j + 4] >> 4) | ((q[j] >> 6) << 4));
  }
}

// The 16 Q3_K scales (6-bit, stored minus 32 -> int8 in [-32, 31]), unpacked from 12 bytes.
inline void unpack_q3k_scales(const uint8_t* packed, int8_t out[16]) {
  for (int s = 0; s < 16; ++s) {
    const int low = s < 8 ? (packed[s] & 0xF) : (packed[s - 8] >> 4);
    const int high = (packed[8 + (s % 4)] >> (2 * (s / 4))) & 3;
    out[s] = static_cast<int8_t>((low | (high << 4)) - 32);
  }
}

// The 8 scales and 8 mins of a Q4_K/Q5_K block (each 6-bit).
inline void unpack_k4_scales(const uint8_t* packed, uint8_t scales[8], uint8_t mins[8]) {
  for (int j = 0; j < 8; ++j) scale_min_k4(j, packed, scales[j], mins[j]);
}

using VecDotFn = float (*)(int64_t n, const void* w, const void* a);
// One weight row against kMaxCols activation rows (see vec_dot_cols).
using VecDotColsFn = void (*)(int64_t n, const void* w, const void* const* a, float* out);
using QuantizeFn = void (*)(const float* src, void* dst, int64_t n);
using DequantizeFn = void (*)(const void* src, float* dst, int64_t n);

// AVX2+FMA+F16C versions (quants_avx2.cpp); nullptr where a type has none (the scalar
// reference is used). Only call them on a CPU that has those extensions.
VecDotFn avx2_vec_dot(int32_t type);
VecDotColsFn avx2_vec_dot_cols(int32_t type);
QuantizeFn avx2_quantize(int32_t type);
DequantizeFn avx2_dequantize(int32_t type);

}  // namespace archreg::kernels::cpu::detail
