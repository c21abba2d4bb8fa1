#include "gguf/types.hpp"

#include <fmt/format.h>

#include <array>
#include <cctype>
#include <string>

namespace archreg::gguf {
namespace {

constexpr std::array<std::string_view, kValueTypeCount> kValueTypeNames = {
    "UINT8", "INT8", "UINT16", "INT16", "UINT32", "INT32", "FLOAT32", "BOOL", "STRING", "ARRAY", "UINT64", "INT64", "FLOAT64",
};
constexpr std::array<uint32_t, kValueTypeCount> kScalarSizes = {1, 1, 2, 2, 4, 4, 4, 1, 0, 0, 8, 8, 8};

constexpr TypeTraits valid(int32_t id, std::string_view name, uint32_t block, uint32_t bytes) {
  return {id, name, block, bytes, false, block > 1};
}
constexpr TypeTraits removed(int32_t id, std::string_view name) {
  return {id, name, 0, 0, true, false};
}

// ggml.h / ggml.c type_traits, ids 0..42. Removed ids keep their historical names for messages.
constexpr std::array<TypeTraits, kGgmlTypeCount> kGgmlTypes = {
    valid(0, "F32", 1, 4),
    valid(1, "F16", 1, 2),
    valid(2, "Q4_0", 32, 18),
    valid(3, "Q4_1", 32, 20),
    removed(4, "Q4_2"),
    removed(5, "Q4_3"),
    valid(6, "Q5_0", 32, 22),
    valid(7, "Q5_1", 32, 24),
    valid(8, "Q8_0", 32, 34),
    valid(9, "Q8_1", 32, 36),
    valid(10, "Q2_K", 256, 84),
    valid(11, "Q3_K", 256, 110),
    valid(12, "Q4_K", 256, 144),
    valid(13, "Q5_K", 256, 176),
    valid(14, "Q6_K", 256, 210),
    valid(15, "Q8_K", 256, 292),
    valid(16, "IQ2_XXS", 256, 66),
    valid(17, "IQ2_XS", 256, 74),
    valid(18, "IQ3_XXS", 256, 98),
    valid(19, "IQ1_S", 256, 50),
    valid(20, "IQ4_NL", 32, 18),
    valid(21, "IQ3_S", 256, 110),
    valid(22, "IQ2_S", 256, 82),
    valid(23, "IQ4_XS", 256, 136),
    valid(24, "I8", 1, 1),
    valid(25, "I16", 1, 2),
    valid(26, "I32", 1, 4),
    valid(27, "I64", 1, 8),
    valid(28, "F64", 1, 8),
    valid(29, "IQ1_M", 256, 56),
    valid(30, "BF16", 1, 2),
    removed(31, "Q4_0_4_4"),
    removed(32, "Q4_0_4_8"),
    removed(33, "Q4_0_8_8"),
    valid(34, "TQ1_0", 256, 54),
    valid(35, "TQ2_0", 256, 66),
    removed(36, "IQ4_NL_4_4"),
    removed(37, "IQ4_NL_4_8"),
    removed(38, "IQ4_NL_8_8"),
    valid(39, "MXFP4", 32, 17),
    valid(40, "NVFP4", 64, 36),
    valid(41, "Q1_0", 128, 18),
    valid(42, "Q2_0", 64, 18),
};

static_assert([] {
  for (int32_t i = 0; i < kGgmlTypeCount; ++i) {
    if (kGgmlTypes[static_cast<size_t>(i)].id != i) return false;
  }
  return true;
}());

}  // namespace

std::string_view value_type_name(ValueType type) {
  const auto id = static_cast<int32_t>(type);
  return is_valid_value_type(id) ? kValueTypeNames[static_cast<size_t>(id)] : "INVALID";
}

bool is_valid_value_type(int32_t id) {
  return id >= 0 && id < kValueTypeCount;
}

uint32_t scalar_size(ValueType type) {
  const auto id = static_cast<int32_t>(type);
  return is_valid_value_type(id) ? kScalarSizes[static_cast<size_t>(id)] : 0;
}

bool is_integer(ValueType type) {
  switch (type) {
    case ValueType::kUint8:
    case ValueType::kInt8:
    case ValueType::kUint16:
    case ValueType::kInt16:
    case ValueType::kUint32:
    case ValueType::kInt32:
    case ValueType::kUint64:
    case ValueType::kInt64: return true;
    default: return false;
  }
}

const TypeTraits* ggml_type_any(int32_t id) {
  if (id < 0 || id >= kGgmlTypeCount) return nullptr;
  return &kGgmlTypes[static_cast<size_t>(id)];
}

const TypeTraits* ggml_type(int32_t id) {
  const TypeTraits* traits = ggml_type_any(id);
  return traits != nullptr && !traits->removed ? traits : nullptr;
}

std::optional<int32_t> ggml_type_from_name(std::string_view name) {
  for (const TypeTraits& traits : kGgmlTypes) {
    if (traits.removed || traits.name.size() != name.size()) continue;
    bool same = true;
    for (size_t i = 0; i < name.size() && same; ++i) {
      same = std::toupper(static_cast<unsigned char>(name[i])) == traits.name[i];
    }
    if (same) return traits.id;
  }
  return std::nullopt;
}

std::string ggml_type_label(int32_t id) {
  const TypeTraits* traits = ggml_type_any(id);
  if (traits == nullptr) return fmt::format("invalid type {}", id);
  if (traits->removed) return fmt::format("removed type {} ({})", id, traits->name);
  return std::string(traits->name);
}

}  // namespace archreg::gguf
