// Random weight rows of any ggml type the kernels run, for tests that compare implementations:
// random bytes with every float field made finite and of a sensible size, so each block decodes
// to ordinary numbers.
#pragma once

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

// Random bytes with every float field made finite: f16 scales in +-[1e-3, 1e-1], MXFP4
// exponents in [118, 136], F32/F16/BF16 values in [-2, 2).
inline std::vector<uint8_t> random_weight_rows(int32_t type, int64_t n, int64_t rows, SplitMix64& rng) {
  namespace kc = archreg::kernels::cpu;
  std::vector<uint8_t> row(kc::row_size(type, n) * static_cast<size_t>(rows));
  for (auto& byte : row) byte = static_cast<uint8_t>(rng.next());
  auto value = [&] { return static_cast<float>(4.0 * rng.uniform() - 2.0); };
  auto scale = [&] {
    const float magnitude = static_cast<float>(1e-3 + (1e-1 - 1e-3) * rng.uniform());
    return kc::fp32_to_fp16((rng.next() & 1) ? -magnitude : magnitude);
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
    if (type == kc::kMXFP4) b[0] = static_cast<uint8_t>(118 + rng.next() % 19);
  }
  return row;
}

}  // namespace archreg::testing
