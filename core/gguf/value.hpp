// Owned metadata values: what the writer takes and what Value::to_owned() gives.
#pragma once

#include <cstdint>
#include <string>
#include <variant>
#include <vector>

#include "gguf/types.hpp"

namespace archreg::gguf {

struct MetaValue;

struct MetaArray {
  ValueType element_type = ValueType::kUint8;
  std::vector<MetaValue> items;  // each item's type() equals element_type

  bool operator==(const MetaArray&) const;
};

// The variant's alternatives are ordered like ValueType, so type() is the index.
struct MetaValue {
  using Storage =
      std::variant<uint8_t, int8_t, uint16_t, int16_t, uint32_t, int32_t, float, bool, std::string, MetaArray, uint64_t, int64_t, double>;
  Storage v;

  MetaValue() = default;
  template <class T>
  requires std::is_constructible_v<Storage, T&&> MetaValue(T&& value) : v(std::forward<T>(value)) {}  // NOLINT(google-explicit-constructor)
  MetaValue(const char* s) : v(std::string(s)) {}                                                     // NOLINT(google-explicit-constructor)

  ValueType type() const { return static_cast<ValueType>(v.index()); }
  bool operator==(const MetaValue&) const = default;
};

// Helpers to build arrays without spelling out element types twice.
MetaArray make_array(ValueType element_type, std::vector<MetaValue> items);
MetaArray make_string_array(const std::vector<std::string>& items);

}  // namespace archreg::gguf
