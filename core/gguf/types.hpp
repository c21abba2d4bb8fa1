// GGUF metadata value types and ggml tensor storage types: the one table of their sizes.
#pragma once

#include <cstdint>
#include <optional>
#include <string_view>

namespace archreg::gguf {

// Metadata value types, numbered as in the file format.
enum class ValueType : int32_t {
  kUint8 = 0,
  kInt8 = 1,
  kUint16 = 2,
  kInt16 = 3,
  kUint32 = 4,
  kInt32 = 5,
  kFloat32 = 6,
  kBool = 7,
  kString = 8,
  kArray = 9,
  kUint64 = 10,
  kInt64 = 11,
  kFloat64 = 12,
};
inline constexpr int32_t kValueTypeCount = 13;

// "UINT32", "STRING", ...; "INVALID(<id>)" style names are produced by callers for bad ids.
std::string_view value_type_name(ValueType type);
bool is_valid_value_type(int32_t id);
// Bytes of one scalar of this type in the file; 0 for STRING and ARRAY (variable size).
uint32_t scalar_size(ValueType type);
bool is_integer(ValueType type);

// ggml tensor storage types, numbered as in ggml.h.
struct TypeTraits {
  int32_t id;
  std::string_view name;  // "Q4_K", "F32", ... ; for removed ids the name they once had
  uint32_t block_size;    // elements per block along ne0
  uint32_t type_size;     // bytes per block
  bool removed;           // the id exists in history but is no longer a valid type
  bool quantized;         // block_size > 1 or an integer-packed format
};
inline constexpr int32_t kGgmlTypeCount = 43;

// Traits of a *valid* ggml type id; nullptr for ids out of range or removed.
const TypeTraits* ggml_type(int32_t id);
// Traits for any id in [0, kGgmlTypeCount), removed ones included; nullptr otherwise.
const TypeTraits* ggml_type_any(int32_t id);
// Case-insensitive lookup of a valid type by name ("q4_k", "MXFP4").
std::optional<int32_t> ggml_type_from_name(std::string_view name);
// "Q4_K", or "removed type 4 (Q4_2)", or "invalid type 99".
std::string ggml_type_label(int32_t id);

}  // namespace archreg::gguf
