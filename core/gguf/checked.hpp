// Overflow-checked 64-bit arithmetic for sizes read from untrusted files.
#pragma once

#include <cstdint>
#include <optional>

namespace archreg::gguf {

inline std::optional<uint64_t> checked_mul(uint64_t a, uint64_t b) {
  uint64_t product;
  if (__builtin_mul_overflow(a, b, &product)) return std::nullopt;
  return product;
}

inline std::optional<uint64_t> checked_add(uint64_t a, uint64_t b) {
  uint64_t sum;
  if (__builtin_add_overflow(a, b, &sum)) return std::nullopt;
  return sum;
}

// Rounds up to a multiple of a power-of-two alignment. Callers guarantee no wrap-around
// (value is bounded by a file size and alignment by the reader's maximum).
constexpr uint64_t align_up(uint64_t value, uint64_t alignment) {
  return (value + alignment - 1) & ~(alignment - 1);
}

}  // namespace archreg::gguf
