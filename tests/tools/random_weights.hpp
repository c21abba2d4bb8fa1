// Random weight rows of any ggml type the kernels run, for tests that compare implementations:
// random bytes with every float field made finite and of a sensible size, so each block decodes
// to ordinary numbers.
#pragma once

#include <cmath>
#include <cstdint>
#include <cstring>
#include <vector>

#include "cpu/quants.hpp"
#include "splitmix64.hpp"

namespace archreg::testing {

inline void put_u16(uint8_t* p, uint16_t v) {
  p[0] = static_cast<uint8_t>(v);
  p[1] = static_cast<uint8_t>(v >> 8);
}

// The largest |quantized integer x sub-block scale| of a block of `type`: what its f16 scale
// fields multiply (1 for the float types).
inline double integer_range(int32_t type) {
  namespace kc = archreg::kernels::cpu;
  switch (type) {
    case kc::kQ4_0: return 8;
    case kc::kQ4_1: return 16;
    case kc::kQ5_0: return 16;
    case kc::kQ5_1: return 32;
    case kc::kQ8_0: return 128;
    case kc::kQ2_K: return 45;
    case kc::kQ3_K: return 128;
    case kc::kQ4_K: return 945;
    case kc::kQ5_K: return 1953;
    case kc::kQ6_K: return 4064;
    case kc::kMXFP4: return 12;
    default: return 1;
  }
}

// Random bytes with every float field made finite. By default f16 scales in +-[1e-3, 1e-1],
// MXFP4 exponents in [118, 136], F32/F16/BF16 values in [-2, 2) (the decoders' full range). With
// `magnitude` > 0, scales are chosen so that decoded weights stay within about +-magnitude
// (weights that a chain of products keeps finite).
inline std::vector<uint8_t> random_weight_rows(int32_t type, int64_t n, int64_t rows, SplitMix64& rng, double magnitude = 0) {
  namespace kc = archreg::kernels::cpu;
  std::vector<uint8_t> row(kc::row_size(type, n) * static_cast<size_t>(rows));
  for (auto& byte : row) byte = static_cast<uint8_t>(rng.next());
  const double top = magnitude > 0 ? magnitude / integer_range(type) : 1e-1;
  auto value = [&] { return static_cast<float>((magnitude > 0 ? magnitude : 2.0) * (2.0 * rng.uniform() - 1.0)); };
  auto scale = [&] {
    const float m = static_cast<float>(top * (1e-2 + (1 - 1e-2) * rng.uniform()));
    return kc::fp32_to_fp16((rng.next() & 1) ? -m : m);
  };
  // MXFP4's e8m0 exponent e scales values of up to 12 by 2^(e - 128): the 6 below the one that
  // reaches `magnitude`, or [118, 136].
  const int exponent_top = magnitude > 0 ? 128 + static_cast<int>(std::floor(std::log2(magnitude / 12.0))) : 0;
  auto exponent = [&] {
    return static_cast<uint8_t>(magnitude > 0 ? exponent_top - static_cast<int>(rng.next() % 6) : 118 + static_cast<int>(rng.next() % 19));
  };
  // Byte offsets of the f16 scale fields of one block.
  std::vector<int> scales;
  switch (type) {
    case kc::kQ4_0:
    case kc::kQ5_0:
    case kc::kQ8_0: scales = {0}; break;
    case kc::kQ4_1:
    case kc::kQ5_1:
    case kc::kQ4_K:
    case kc::kQ5_K: scales = {0, 2}; break;
    case kc::kQ2_K: scales = {80, 82}; break;
    case kc::kQ3_K: scales = {108}; break;
    case kc::kQ6_K: scales = {208}; break;
    default: break;
  }
  const size_t bytes = kc::type_size(type);
  for (size_t at = 0; at < row.size(); at += bytes) {
    uint8_t* b = row.data() + at;
    for (int offset : scales) put_u16(b + offset, scale());
    if (type == kc::kF32) {
      const float f = value();
      std::memcpy(b, &f, 4);
    }
    if (type == kc::kF16) put_u16(b, kc::fp32_to_fp16(value()));
    if (type == kc::kBF16) put_u16(b, kc::fp32_to_bf16(value()));
    if (type == kc::kMXFP4) b[0] = exponent();
  }
  return row;
}

}  // namespace archreg::testing
