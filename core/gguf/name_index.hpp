// Open-addressing hash index from names to positions in a caller-owned array. It stores only
// 32-bit positions and hashes, so indexing 100,000 tensor names costs two small allocations.
#pragma once

#include <bit>
#include <cstdint>
#include <functional>
#include <string_view>
#include <vector>

namespace archreg::gguf {

class NameIndex {
 public:
  static constexpr uint32_t kNotFound = UINT32_MAX;

  void reserve(uint64_t count) {
    const uint64_t capacity = std::bit_ceil(std::max<uint64_t>(16, count * 2));
    slots_.assign(capacity, Slot{0, kNotFound});
    mask_ = capacity - 1;
  }

  // Inserts `position` under `name` unless the name is present; returns the position stored
  // under the name (the existing one for a duplicate). `name_of(position)` gives stored names.
  template <class NameOf>
  uint32_t insert(std::string_view name, uint32_t position, NameOf name_of) {
    if ((size_ + 1) * 2 > slots_.size()) grow(name_of);
    const uint64_t hash = hash_of(name);
    for (uint64_t i = hash & mask_;; i = (i + 1) & mask_) {
      Slot& slot = slots_[i];
      if (slot.position == kNotFound) {
        slot = Slot{static_cast<uint32_t>(hash), position};
        ++size_;
        return position;
      }
      if (slot.hash == static_cast<uint32_t>(hash) && name_of(slot.position) == name) return slot.position;
    }
  }

  template <class NameOf>
  uint32_t find(std::string_view name, NameOf name_of) const {
    if (slots_.empty()) return kNotFound;
    const uint64_t hash = hash_of(name);
    for (uint64_t i = hash & mask_;; i = (i + 1) & mask_) {
      const Slot& slot = slots_[i];
      if (slot.position == kNotFound) return kNotFound;
      if (slot.hash == static_cast<uint32_t>(hash) && name_of(slot.position) == name) return slot.position;
    }
  }

 private:
  struct Slot {
    uint32_t hash;
    uint32_t position;
  };

  static uint64_t hash_of(std::string_view name) { return std::hash<std::string_view>{}(name); }

  template <class NameOf>
  void grow(NameOf name_of) {
    std::vector<Slot> old = std::move(slots_);
    reserve(std::max<uint64_t>(16, old.size()));
    size_ = 0;
    for (const Slot& slot : old) {
      if (slot.position != kNotFound) insert(name_of(slot.position), slot.position, name_of);
    }
  }

  std::vector<Slot> slots_;
  uint64_t mask_ = 0;
  uint64_t size_ = 0;
};

}  // namespace archreg::gguf
