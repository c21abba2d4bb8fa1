// The deterministic pseudo-random stream shared by the test tools, reproducible in Python.
//
// splitmix64 (Steele, Lea, Flood 2014): output i (i = 1, 2, ...) depends only on
// seed + i * 0x9E3779B97F4A7C15 (mod 2^64), so Python can compute any stretch of it with numpy
// in one vectorised step (tests/interop/test_gguf_interop.py: splitmix64_bytes). A tensor's
// "data_seed" bytes are the outputs in order, each as 8 little-endian bytes, the last one
// truncated to the tensor's size.
#pragma once

#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <span>

namespace archreg::testing {

class SplitMix64 {
 public:
  explicit SplitMix64(uint64_t seed) : state_(seed) {}

  uint64_t next() {
    state_ += 0x9E3779B97F4A7C15ULL;
    uint64_t z = state_;
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ULL;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBULL;
    return z ^ (z >> 31);
  }

  // Uniform in [0, 1) from the top 53 bits.
  double uniform() { return static_cast<double>(next() >> 11) * 0x1.0p-53; }

  // The next bytes of the stream. Calls may be chained as long as every call but the last
  // asks for a multiple of 8 bytes (a partial output's unused bytes are dropped).
  void fill(std::span<std::byte> out) {
    for (size_t pos = 0; pos < out.size(); pos += 8) {
      uint64_t word = next();
      size_t n = std::min<size_t>(8, out.size() - pos);
      for (size_t i = 0; i < n; ++i) {
        out[pos + i] = static_cast<std::byte>(word >> (8 * i));
      }
    }
  }

 private:
  uint64_t state_;
};

}  // namespace archreg::testing
