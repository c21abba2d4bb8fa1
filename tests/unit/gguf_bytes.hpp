// Assembles GGUF files byte by byte for tests.
//
// Nothing here validates: every field is written exactly as given, so a test can express any
// malformed layout (a count that lies, a length past the end, a type id that does not exist,
// an offset that overlaps its neighbour). The typed helpers only spare the test from spelling
// out the encoding; where a test needs to lie about a field it uses the raw writers instead.
// All integers are little-endian, as GGUF requires.
#pragma once

#include <algorithm>
#include <bit>
#include <cstddef>
#include <cstdint>
#include <initializer_list>
#include <memory>
#include <span>
#include <string_view>
#include <vector>

namespace archreg::test {

// GGUF metadata value type tags, as plain integers so tests can also write invalid ones.
namespace tag {
inline constexpr int32_t kUint8 = 0;
inline constexpr int32_t kInt8 = 1;
inline constexpr int32_t kUint16 = 2;
inline constexpr int32_t kInt16 = 3;
inline constexpr int32_t kUint32 = 4;
inline constexpr int32_t kInt32 = 5;
inline constexpr int32_t kFloat32 = 6;
inline constexpr int32_t kBool = 7;
inline constexpr int32_t kString = 8;
inline constexpr int32_t kArray = 9;
inline constexpr int32_t kUint64 = 10;
inline constexpr int32_t kInt64 = 11;
inline constexpr int32_t kFloat64 = 12;
}  // namespace tag

// ggml storage type ids used by the tests.
namespace ggml {
inline constexpr int32_t kF32 = 0;
inline constexpr int32_t kF16 = 1;
inline constexpr int32_t kQ4_0 = 2;
inline constexpr int32_t kQ8_0 = 8;
inline constexpr int32_t kQ4_K = 12;
inline constexpr int32_t kI8 = 24;
inline constexpr int32_t kI64 = 27;
inline constexpr int32_t kF64 = 28;
inline constexpr int32_t kBF16 = 30;
inline constexpr int32_t kMXFP4 = 39;
}  // namespace ggml

inline constexpr uint32_t kGgufMagic = 0x46554747;  // "GGUF" read as a little-endian u32
inline constexpr uint64_t kHeaderSize = 24;         // magic, version, n_tensors, n_kv

class GgufBytes {
 public:
  // --- Raw fields ------------------------------------------------------------------------
  GgufBytes& u8(uint8_t v) { return little_endian(v); }
  GgufBytes& u16(uint16_t v) { return little_endian(v); }
  GgufBytes& i16(int16_t v) { return little_endian(static_cast<uint16_t>(v)); }
  GgufBytes& u32(uint32_t v) { return little_endian(v); }
  GgufBytes& i32(int32_t v) { return little_endian(static_cast<uint32_t>(v)); }
  GgufBytes& u64(uint64_t v) { return little_endian(v); }
  GgufBytes& i64(int64_t v) { return little_endian(static_cast<uint64_t>(v)); }
  GgufBytes& f32(float v) { return little_endian(std::bit_cast<uint32_t>(v)); }
  GgufBytes& f64(double v) { return little_endian(std::bit_cast<uint64_t>(v)); }
  // Bytes as they are, no length prefix.
  GgufBytes& raw(std::string_view text) {
    for (char c : text) bytes_.push_back(static_cast<std::byte>(c));
    return *this;
  }
  GgufBytes& raw(std::span<const std::byte> more) {
    bytes_.insert(bytes_.end(), more.begin(), more.end());
    return *this;
  }
  GgufBytes& fill(uint64_t count, uint8_t value = 0) {
    bytes_.insert(bytes_.end(), count, static_cast<std::byte>(value));
    return *this;
  }

  // A GGUF string: u64 length, then the bytes (no terminator).
  GgufBytes& str(std::string_view text) { return u64(text.size()).raw(text); }
  // A string whose length field lies: `declared` is written, only `text` follows.
  GgufBytes& str_claiming(uint64_t declared, std::string_view text) { return u64(declared).raw(text); }

  // --- Header ----------------------------------------------------------------------------
  GgufBytes& header(uint32_t version, uint64_t n_tensors, uint64_t n_kv) { return u32(kGgufMagic).u32(version).u64(n_tensors).u64(n_kv); }

  // --- Metadata entries --------------------------------------------------------------------
  // The start of an entry: key and type tag; the caller writes the value.
  GgufBytes& key(std::string_view name, int32_t type) { return str(name).i32(type); }

  GgufBytes& kv_u8(std::string_view name, uint8_t v) { return key(name, tag::kUint8).u8(v); }
  GgufBytes& kv_i8(std::string_view name, int8_t v) { return key(name, tag::kInt8).u8(static_cast<uint8_t>(v)); }
  GgufBytes& kv_u16(std::string_view name, uint16_t v) { return key(name, tag::kUint16).u16(v); }
  GgufBytes& kv_i16(std::string_view name, int16_t v) { return key(name, tag::kInt16).i16(v); }
  GgufBytes& kv_u32(std::string_view name, uint32_t v) { return key(name, tag::kUint32).u32(v); }
  GgufBytes& kv_i32(std::string_view name, int32_t v) { return key(name, tag::kInt32).i32(v); }
  GgufBytes& kv_f32(std::string_view name, float v) { return key(name, tag::kFloat32).f32(v); }
  GgufBytes& kv_bool(std::string_view name, bool v) { return key(name, tag::kBool).u8(v ? 1 : 0); }
  GgufBytes& kv_string(std::string_view name, std::string_view v) { return key(name, tag::kString).str(v); }
  GgufBytes& kv_u64(std::string_view name, uint64_t v) { return key(name, tag::kUint64).u64(v); }
  GgufBytes& kv_i64(std::string_view name, int64_t v) { return key(name, tag::kInt64).i64(v); }
  GgufBytes& kv_f64(std::string_view name, double v) { return key(name, tag::kFloat64).f64(v); }

  // An array value's prefix (element type, count); the caller writes the elements. Used
  // directly after key(name, tag::kArray), or nested as an element of an array of arrays.
  GgufBytes& array_header(int32_t element_type, uint64_t count) { return i32(element_type).u64(count); }
  GgufBytes& kv_array_header(std::string_view name, int32_t element_type, uint64_t count) {
    return key(name, tag::kArray).array_header(element_type, count);
  }
  GgufBytes& kv_u32_array(std::string_view name, std::initializer_list<uint32_t> items) {
    kv_array_header(name, tag::kUint32, items.size());
    for (uint32_t item : items) u32(item);
    return *this;
  }
  GgufBytes& kv_string_array(std::string_view name, std::initializer_list<std::string_view> items) {
    kv_array_header(name, tag::kString, items.size());
    for (std::string_view item : items) str(item);
    return *this;
  }

  // --- Tensor infos --------------------------------------------------------------------------
  // n_dims is taken from the shape; use tensor_info_raw to make it disagree.
  GgufBytes& tensor_info(std::string_view name, std::initializer_list<uint64_t> shape, int32_t type, uint64_t offset) {
    return tensor_info_raw(name, static_cast<uint32_t>(shape.size()), shape, type, offset);
  }
  GgufBytes& tensor_info_raw(std::string_view name, uint32_t n_dims, std::span<const uint64_t> dims, int32_t type, uint64_t offset) {
    str(name).u32(n_dims);
    for (uint64_t dim : dims) u64(dim);
    return i32(type).u64(offset);
  }
  GgufBytes& tensor_info_raw(std::string_view name, uint32_t n_dims, std::initializer_list<uint64_t> dims, int32_t type, uint64_t offset) {
    return tensor_info_raw(name, n_dims, std::span<const uint64_t>(dims.begin(), dims.size()), type, offset);
  }

  // --- Layout ----------------------------------------------------------------------------
  // Zero padding up to the next multiple of `alignment` (the header's or a tensor's end).
  GgufBytes& align(uint64_t alignment) {
    const uint64_t rest = bytes_.size() % alignment;
    return rest == 0 ? *this : fill(alignment - rest);
  }
  // Tensor data: `count` bytes counting up from `first`, so every byte is recognisable.
  GgufBytes& data(uint64_t count, uint8_t first = 0) {
    for (uint64_t i = 0; i < count; ++i) u8(static_cast<uint8_t>(first + i));
    return *this;
  }

  // --- Edits after the fact ----------------------------------------------------------------
  GgufBytes& patch_u32(uint64_t at, uint32_t v) { return patch(at, v); }
  GgufBytes& patch_u64(uint64_t at, uint64_t v) { return patch(at, v); }
  // Keeps only the first `length` bytes.
  GgufBytes& truncate(uint64_t length) {
    if (length < bytes_.size()) bytes_.resize(length);
    return *this;
  }

  uint64_t size() const { return bytes_.size(); }
  const std::vector<std::byte>& bytes() const { return bytes_; }
  std::span<const std::byte> span() const { return bytes_; }
  // The first `length` bytes, for cutting a file short without copying the builder.
  std::span<const std::byte> prefix(uint64_t length) const { return span().first(length < bytes_.size() ? length : bytes_.size()); }

 private:
  template <class Unsigned>
  GgufBytes& little_endian(Unsigned v) {
    for (size_t i = 0; i < sizeof(Unsigned); ++i) {
      bytes_.push_back(static_cast<std::byte>((v >> (8 * i)) & 0xFF));
    }
    return *this;
  }
  template <class Unsigned>
  GgufBytes& patch(uint64_t at, Unsigned v) {
    for (size_t i = 0; i < sizeof(Unsigned); ++i) {
      bytes_.at(at + i) = static_cast<std::byte>((v >> (8 * i)) & 0xFF);
    }
    return *this;
  }

  std::vector<std::byte> bytes_;
};

// A heap copy of exactly `bytes.size()` bytes. A reader handed a vector's data could read past
// its size into spare capacity unnoticed; one byte past this allocation is an ASan report.
class ExactCopy {
 public:
  explicit ExactCopy(std::span<const std::byte> bytes) : data_(std::make_unique<std::byte[]>(bytes.size())), size_(bytes.size()) {
    std::copy(bytes.begin(), bytes.end(), data_.get());
  }
  std::span<const std::byte> span() const { return {data_.get(), size_}; }

 private:
  std::unique_ptr<std::byte[]> data_;
  size_t size_;
};

}  // namespace archreg::test
