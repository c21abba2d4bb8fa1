// Decoding ggml weight rows 32 elements at a time, for CUDA kernels (nvcc, host and device) and
// for host code built by a plain C++ compiler (the tests). Results are bit-identical to the CPU
// reference kernels::cpu::dequantize_row_ref: the same block layouts, the same formulas and the
// same float operations in the same order, each rounded on its own.
//
// A chunk is 32 consecutive elements of a row: chunk c covers elements [32c, 32c + 32). A chunk
// of a 256-element K-quant block is one of its 8 sub-blocks, decoded without touching the
// other 7. Rows are read byte by byte (blocks of 17, 18 or 22 bytes leave multi-byte fields at
// any alignment); multi-byte fields are little-endian, as in ggml.
#pragma once

#include <cstdint>
#include <cstring>

#ifndef ARCHREG_HD
#if defined(__CUDACC__)
#define ARCHREG_HD __host__ __device__ __forceinline__
#else
#define ARCHREG_HD inline
#endif
#endif

namespace archreg::kernels::cuda {

// ggml type ids (ggml.h numbering) of the weight types decoded here.
namespace ggml {
constexpr int32_t kF32 = 0;
constexpr int32_t kF16 = 1;
constexpr int32_t kQ4_0 = 2;
constexpr int32_t kQ4_1 = 3;
constexpr int32_t kQ5_0 = 6;
constexpr int32_t kQ5_1 = 7;
constexpr int32_t kQ8_0 = 8;
constexpr int32_t kQ2_K = 10;
constexpr int32_t kQ3_K = 11;
constexpr int32_t kQ4_K = 12;
constexpr int32_t kQ5_K = 13;
constexpr int32_t kQ6_K = 14;
constexpr int32_t kBF16 = 30;
constexpr int32_t kMXFP4 = 39;
}  // namespace ggml

namespace detail {

ARCHREG_HD uint16_t load_u16(const uint8_t* p) {
  return static_cast<uint16_t>(p[0] | (p[1] << 8));
}
ARCHREG_HD uint32_t load_u32(const uint8_t* p) {
  return static_cast<uint32_t>(p[0]) | (static_cast<uint32_t>(p[1]) << 8) | (static_cast<uint32_t>(p[2]) << 16) |
         (static_cast<uint32_t>(p[3]) << 24);
}
ARCHREG_HD float float_from_bits(uint32_t u) {
  float f;
  std::memcpy(&f, &u, 4);
  return f;
}

// One rounding per operation: the CPU reference is built with -ffp-contract=off, and nvcc
// would otherwise fuse d * q - m into an FMA, which rounds once and changes the result.
ARCHREG_HD float mul(float a, float b) {
#if defined(__CUDA_ARCH__)
  return __fmul_rn(a, b);
#else
  return a * b;
#endif
}
ARCHREG_HD float add(float a, float b) {
#if defined(__CUDA_ARCH__)
  return __fadd_rn(a, b);
#else
  return a + b;
#endif
}
ARCHREG_HD float sub(float a, float b) {
#if defined(__CUDA_ARCH__)
  return __fsub_rn(a, b);
#else
  return a - b;
#endif
}

ARCHREG_HD float to_float(int v) {
  return static_cast<float>(v);
}

}  // namespace detail

// IEEE binary16 -> binary32, exact for every half: subnormals are normalised, inf and NaN keep
// their sign and payload.
ARCHREG_HD float fp16_to_fp32(uint16_t h) {
  const uint32_t sign = static_cast<uint32_t>(h & 0x8000u) << 16;
  const uint32_t exponent = (h >> 10) & 0x1Fu;
  uint32_t man = h & 0x3FFu;
  if (exponent == 0x1F) return detail::float_from_bits(sign | 0x7F800000u | (man << 13));
  if (exponent != 0) return detail::float_from_bits(sign | ((exponent + 112u) << 23) | (man << 13));
  if (man == 0) return detail::float_from_bits(sign);
  // A subnormal, 0.man * 2^-14: shift the leading one into the implicit bit.
  uint32_t exponent32 = 113;  // 2^-14
  while ((man & 0x400u) == 0) {
    man <<= 1;
    --exponent32;
  }
  return detail::float_from_bits(sign | (exponent32 << 23) | ((man & 0x3FFu) << 13));
}

// bfloat16 is the top half of a binary32.
ARCHREG_HD float bf16_to_fp32(uint16_t h) {
  return detail::float_from_bits(static_cast<uint32_t>(h) << 16);
}

namespace detail {

ARCHREG_HD float half_at(const uint8_t* p) {
  return fp16_to_fp32(load_u16(p));
}

// ggml_e8m0_to_fp32_half: 2^(e-128), half the E8M0 scale, because the E2M1 values below are
// doubled. e = 0 and 1 give the subnormals 2^-128 and 2^-127.
ARCHREG_HD float e8m0_to_fp32_half(uint8_t e) {
  return float_from_bits(e < 2 ? (0x00200000u << e) : (static_cast<uint32_t>(e - 1) << 23));
}

// An E2M1 code times two (ggml's kvalues_mxfp4: 0, 1, 2, 3, 4, 6, 8, 12 and their negatives):
// sign bit 3, exponent bits 2..1 (bias 1), mantissa bit 0.
ARCHREG_HD int e2m1_times_two(int code) {
  const int e = (code >> 1) & 3, m = code & 1;
  const int mag = e == 0 ? m : (2 + m) << (e - 1);
  return (code & 8) ? -mag : mag;
}

// The 6-bit scale and min of sub-block j (0..7) of a Q4_K/Q5_K block (ggml get_scale_min_k4).
ARCHREG_HD void k4_scale_min(const uint8_t* q, int j, int& scale, int& mn) {
  if (j < 4) {
    scale = q[j] & 63;
    mn = q[j + 4] & 63;
  } else {
    scale = (q[j + 4] & 0xF) | ((q[j - 4] >> 6) << 4);
    mn = (q[j + 4] >> 4) | ((q[j] >> 6) << 4);
  }
}

// Scale s (0..15) of a Q3_K block: 4 low bits from the first 8 bytes, 2 high bits from the last
// 4, stored plus 32.
ARCHREG_HD int q3k_scale(const uint8_t* packed, int s) {
  const int low = s < 8 ? (packed[s] & 0xF) : (packed[s - 8] >> 4);
  const int high = (packed[8 + (s % 4)] >> (2 * (s / 4))) & 3;
  return (low | (high << 4)) - 32;
}

// The block holding chunk `chunk` of a row.
template <int Block, int Bytes>
ARCHREG_HD const uint8_t* block_of(const uint8_t* row, int64_t chunk) {
  return row + (chunk * 32 / Block) * Bytes;
}

}  // namespace detail

template <int32_t T>
struct Format;

// f32 values.
template <>
struct Format<ggml::kF32> {
  static constexpr int block = 1;
  static constexpr int bytes = 4;
  ARCHREG_HD static void decode32(const uint8_t* row, int64_t chunk, float* out) {
    const uint8_t* p = detail::block_of<block, bytes>(row, chunk);
    for (int i = 0; i < 32; ++i) out[i] = detail::float_from_bits(detail::load_u32(p + 4 * i));
  }
  // One element: the tail of a row whose length is not a multiple of 32.
  ARCHREG_HD static float element(const uint8_t* row, int64_t i) { return detail::float_from_bits(detail::load_u32(row + 4 * i)); }
};

// f16 values.
template <>
struct Format<ggml::kF16> {
  static constexpr int block = 1;
  static constexpr int bytes = 2;
  ARCHREG_HD static void decode32(const uint8_t* row, int64_t chunk, float* out) {
    const uint8_t* p = detail::block_of<block, bytes>(row, chunk);
    for (int i = 0; i < 32; ++i) out[i] = detail::half_at(p + 2 * i);
  }
  ARCHREG_HD static float element(const uint8_t* row, int64_t i) { return detail::half_at(row + 2 * i); }
};

// bf16 values.
template <>
struct Format<ggml::kBF16> {
  static constexpr int block = 1;
  static constexpr int bytes = 2;
  ARCHREG_HD static void decode32(const uint8_t* row, int64_t chunk, float* out) {
    const uint8_t* p = detail::block_of<block, bytes>(row, chunk);
    for (int i = 0; i < 32; ++i) out[i] = bf16_to_fp32(detail::load_u16(p + 2 * i));
  }
  ARCHREG_HD static float element(const uint8_t* row, int64_t i) { return bf16_to_fp32(detail::load_u16(row + 2 * i)); }
};

// d f16 | qs[16]: element j is the low nibble of qs[j], element j+16 the high one; (q - 8) * d.
template <>
struct Format<ggml::kQ4_0> {
  static constexpr int block = 32;
  static constexpr int bytes = 18;
  ARCHREG_HD static void decode32(const uint8_t* row, int64_t chunk, float* out) {
    using namespace detail;
    const uint8_t* b = block_of<block, bytes>(row, chunk);
    const float d = half_at(b);
    const uint8_t* qs = b + 2;
    for (int j = 0; j < 16; ++j) {
      out[j] = mul(to_float((qs[j] & 0xF) - 8), d);
      out[j + 16] = mul(to_float((qs[j] >> 4) - 8), d);
    }
  }
};

// d f16 | m f16 | qs[16]: nibbles as Q4_0; q * d + m.
template <>
struct Format<ggml::kQ4_1> {
  static constexpr int block = 32;
  static constexpr int bytes = 20;
  ARCHREG_HD static void decode32(const uint8_t* row, int64_t chunk, float* out) {
    using namespace detail;
    const uint8_t* b = block_of<block, bytes>(row, chunk);
    const float d = half_at(b);
    const float m = half_at(b + 2);
    const uint8_t* qs = b + 4;
    for (int j = 0; j < 16; ++j) {
      out[j] = add(mul(to_float(qs[j] & 0xF), d), m);
      out[j + 16] = add(mul(to_float(qs[j] >> 4), d), m);
    }
  }
};

// d f16 | qh u32 | qs[16]: nibbles as Q4_0, bit i of qh is bit 4 of element i; (q - 16) * d.
template <>
struct Format<ggml::kQ5_0> {
  static constexpr int block = 32;
  static constexpr int bytes = 22;
  ARCHREG_HD static void decode32(const uint8_t* row, int64_t chunk, float* out) {
    using namespace detail;
    const uint8_t* b = block_of<block, bytes>(row, chunk);
    const float d = half_at(b);
    const uint32_t qh = load_u32(b + 2);
    const uint8_t* qs = b + 6;
    for (int j = 0; j < 16; ++j) {
      const int h0 = static_cast<int>((qh >> j) & 1u) << 4;
      const int h1 = static_cast<int>((qh >> (j + 16)) & 1u) << 4;
      out[j] = mul(to_float(((qs[j] & 0xF) | h0) - 16), d);
      out[j + 16] = mul(to_float(((qs[j] >> 4) | h1) - 16), d);
    }
  }
};

// d f16 | m f16 | qh u32 | qs[16]: bits as Q5_0; q * d + m.
template <>
struct Format<ggml::kQ5_1> {
  static constexpr int block = 32;
  static constexpr int bytes = 24;
  ARCHREG_HD static void decode32(const uint8_t* row, int64_t chunk, float* out) {
    using namespace detail;
    const uint8_t* b = block_of<block, bytes>(row, chunk);
    const float d = half_at(b);
    const float m = half_at(b + 2);
    const uint32_t qh = load_u32(b + 4);
    const uint8_t* qs = b + 8;
    for (int j = 0; j < 16; ++j) {
      const int h0 = static_cast<int>((qh >> j) & 1u) << 4;
      const int h1 = static_cast<int>((qh >> (j + 16)) & 1u) << 4;
      out[j] = add(mul(to_float((qs[j] & 0xF) | h0), d), m);
      out[j + 16] = add(mul(to_float((qs[j] >> 4) | h1), d), m);
    }
  }
};

// d f16 | qs int8[32]; q * d.
template <>
struct Format<ggml::kQ8_0> {
  static constexpr int block = 32;
  static constexpr int bytes = 34;
  ARCHREG_HD static void decode32(const uint8_t* row, int64_t chunk, float* out) {
    using namespace detail;
    const uint8_t* b = block_of<block, bytes>(row, chunk);
    const float d = half_at(b);
    for (int j = 0; j < 32; ++j) out[j] = mul(to_float(static_cast<int8_t>(b[2 + j])), d);
  }
};

// e e8m0 | qs[16]: E2M1 codes, nibbles as Q4_0; value * 2^(e-127).
template <>
struct Format<ggml::kMXFP4> {
  static constexpr int block = 32;
  static constexpr int bytes = 17;
  ARCHREG_HD static void decode32(const uint8_t* row, int64_t chunk, float* out) {
    using namespace detail;
    const uint8_t* b = block_of<block, bytes>(row, chunk);
    const float d = e8m0_to_fp32_half(b[0]);
    const uint8_t* qs = b + 1;
    for (int j = 0; j < 16; ++j) {
      out[j] = mul(to_float(e2m1_times_two(qs[j] & 0xF)), d);
      out[j + 16] = mul(to_float(e2m1_times_two(qs[j] >> 4)), d);
    }
  }
};

// scales[16] (4-bit scale | 4-bit min per 16 elements) | qs[64] | d f16 | dmin f16: sub-block s
// takes bits 2(s%4)..+1 of qs[32(s/4) + l]; (d * scale) * q - dmin * min.
template <>
struct Format<ggml::kQ2_K> {
  static constexpr int block = 256;
  static constexpr int bytes = 84;
  ARCHREG_HD static void decode32(const uint8_t* row, int64_t chunk, float* out) {
    using namespace detail;
    const uint8_t* b = block_of<block, bytes>(row, chunk);
    const int s = static_cast<int>(chunk % 8);
    const float d = half_at(b + 80);
    const float dmin = half_at(b + 82);
    const uint8_t* q = b + 16 + 32 * (s / 4);
    const int shift = 2 * (s % 4);
    for (int group = 0; group < 2; ++group) {
      const uint8_t sc = b[2 * s + group];
      const float dl = mul(d, to_float(sc & 0xF));
      const float ml = mul(dmin, to_float(sc >> 4));
      for (int l = 16 * group; l < 16 * group + 16; ++l) out[l] = sub(mul(dl, to_float((q[l] >> shift) & 3)), ml);
    }
  }
};

// hmask[32] | qs[64] | scales[12] (16 6-bit scales) | d f16: sub-block s takes bits 2(s%4)..+1
// of qs[32(s/4) + l], minus 4 where bit s of hmask[l] is clear; (d * scale) * q.
template <>
struct Format<ggml::kQ3_K> {
  static constexpr int block = 256;
  static constexpr int bytes = 110;
  ARCHREG_HD static void decode32(const uint8_t* row, int64_t chunk, float* out) {
    using namespace detail;
    const uint8_t* b = block_of<block, bytes>(row, chunk);
    const int s = static_cast<int>(chunk % 8);
    const float d = half_at(b + 108);
    const uint8_t* hmask = b;
    const uint8_t* q = b + 32 + 32 * (s / 4);
    const int shift = 2 * (s % 4);
    for (int group = 0; group < 2; ++group) {
      const float dl = mul(d, to_float(q3k_scale(b + 96, 2 * s + group)));
      for (int l = 16 * group; l < 16 * group + 16; ++l) {
        const int v = ((q[l] >> shift) & 3) - (((hmask[l] >> s) & 1) ? 0 : 4);
        out[l] = mul(dl, to_float(v));
      }
    }
  }
};

// d f16 | dmin f16 | scales[12] (8 6-bit scales and mins) | qs[128]: sub-block s is the low
// (s even) or high nibbles of qs[32(s/2) + l]; (d * scale) * q - dmin * min.
template <>
struct Format<ggml::kQ4_K> {
  static constexpr int block = 256;
  static constexpr int bytes = 144;
  ARCHREG_HD static void decode32(const uint8_t* row, int64_t chunk, float* out) {
    using namespace detail;
    const uint8_t* b = block_of<block, bytes>(row, chunk);
    const int s = static_cast<int>(chunk % 8);
    int scale, mn;
    k4_scale_min(b + 4, s, scale, mn);
    const float dl = mul(half_at(b), to_float(scale));
    const float ml = mul(half_at(b + 2), to_float(mn));
    const uint8_t* q = b + 16 + 32 * (s / 2);
    const int shift = 4 * (s % 2);
    for (int l = 0; l < 32; ++l) out[l] = sub(mul(dl, to_float((q[l] >> shift) & 0xF)), ml);
  }
};

// d f16 | dmin f16 | scales[12] | qh[32] | qs[128]: as Q4_K, bit s of qh[l] is bit 4 of q.
template <>
struct Format<ggml::kQ5_K> {
  static constexpr int block = 256;
  static constexpr int bytes = 176;
  ARCHREG_HD static void decode32(const uint8_t* row, int64_t chunk, float* out) {
    using namespace detail;
    const uint8_t* b = block_of<block, bytes>(row, chunk);
    const int s = static_cast<int>(chunk % 8);
    int scale, mn;
    k4_scale_min(b + 4, s, scale, mn);
    const float dl = mul(half_at(b), to_float(scale));
    const float ml = mul(half_at(b + 2), to_float(mn));
    const uint8_t* qh = b + 16;
    const uint8_t* q = b + 48 + 32 * (s / 2);
    const int shift = 4 * (s % 2);
    for (int l = 0; l < 32; ++l) {
      const int v = ((q[l] >> shift) & 0xF) | (((qh[l] >> s) & 1) << 4);
      out[l] = sub(mul(dl, to_float(v)), ml);
    }
  }
};

// ql[128] | qh[64] | scales int8[16] | d f16: sub-block s = 4n + k takes the low (k < 2) or
// high nibbles of ql[64n + 32(k%2) + l] and bits 2k..2k+1 of qh[32n + l]; (d * scale) * (q - 32).
template <>
struct Format<ggml::kQ6_K> {
  static constexpr int block = 256;
  static constexpr int bytes = 210;
  ARCHREG_HD static void decode32(const uint8_t* row, int64_t chunk, float* out) {
    using namespace detail;
    const uint8_t* b = block_of<block, bytes>(row, chunk);
    const int s = static_cast<int>(chunk % 8);
    const int n = s / 4, k = s % 4;
    const float d = half_at(b + 208);
    const uint8_t* ql = b + 64 * n + 32 * (k % 2);
    const uint8_t* qh = b + 128 + 32 * n;
    const int low_shift = 4 * (k / 2), high_shift = 2 * k;
    for (int group = 0; group < 2; ++group) {
      const float dl = mul(d, to_float(static_cast<int8_t>(b[192 + 8 * n + 2 * k + group])));
      for (int l = 16 * group; l < 16 * group + 16; ++l) {
        const int v = (((ql[l] >> low_shift) & 0xF) | (((qh[l] >> high_shift) & 3) << 4)) - 32;
        out[l] = mul(dl, to_float(v));
      }
    }
  }
};

// Calls f(Format<T>{}) for the format of `type`: the one list of the types decoded here.
// False, without calling f, for any other type.
template <typename F>
ARCHREG_HD constexpr bool visit_format(int32_t type, F&& f) {
  switch (type) {
    case ggml::kF32: f(Format<ggml::kF32>{}); return true;
    case ggml::kF16: f(Format<ggml::kF16>{}); return true;
    case ggml::kBF16: f(Format<ggml::kBF16>{}); return true;
    case ggml::kQ4_0: f(Format<ggml::kQ4_0>{}); return true;
    case ggml::kQ4_1: f(Format<ggml::kQ4_1>{}); return true;
    case ggml::kQ5_0: f(Format<ggml::kQ5_0>{}); return true;
    case ggml::kQ5_1: f(Format<ggml::kQ5_1>{}); return true;
    case ggml::kQ8_0: f(Format<ggml::kQ8_0>{}); return true;
    case ggml::kMXFP4: f(Format<ggml::kMXFP4>{}); return true;
    case ggml::kQ2_K: f(Format<ggml::kQ2_K>{}); return true;
    case ggml::kQ3_K: f(Format<ggml::kQ3_K>{}); return true;
    case ggml::kQ4_K: f(Format<ggml::kQ4_K>{}); return true;
    case ggml::kQ5_K: f(Format<ggml::kQ5_K>{}); return true;
    case ggml::kQ6_K: f(Format<ggml::kQ6_K>{}); return true;
    default: return false;
  }
}

ARCHREG_HD constexpr bool supported(int32_t type) {
  return visit_format(type, [](auto) {});
}

// Elements and bytes per block; 0 for a type not decoded here.
ARCHREG_HD constexpr int block_elems(int32_t type) {
  int elems = 0;
  visit_format(type, [&](auto format) { elems = decltype(format)::block; });
  return elems;
}
ARCHREG_HD constexpr int block_bytes(int32_t type) {
  int bytes = 0;
  visit_format(type, [&](auto format) { bytes = decltype(format)::bytes; });
  return bytes;
}

// out[0..31] = elements [32 * chunk, 32 * chunk + 32) of a row of `type`; false (out untouched)
// for a type not decoded here.
ARCHREG_HD bool decode32(int32_t type, const uint8_t* row, int64_t chunk, float* out) {
  return visit_format(type, [&](auto format) { decltype(format)::decode32(row, chunk, out); });
}

}  // namespace archreg::kernels::cuda
