// Memory-mapped, zero-copy GGUF reader that validates everything it indexes.
//
// Opening a file parses the header once: every count, length, type id, dimension, size
// product, alignment and offset is checked against the bytes actually present, and any
// violation throws gguf::Error naming the file, byte offset, key or tensor, what was expected
// and what was found. Arrays (a vocabulary is hundreds of thousands of strings) are indexed by
// their byte span only; their elements are decoded when asked for. Tensor data is never read
// until a caller touches tensor_data().
#pragma once

#include <array>
#include <cstddef>
#include <cstdint>
#include <filesystem>
#include <memory>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "gguf/error.hpp"
#include "gguf/types.hpp"
#include "gguf/value.hpp"

namespace archreg::gguf {

inline constexpr uint32_t kMagic = 0x46554747;  // "GGUF" little-endian
inline constexpr uint32_t kDefaultAlignment = 32;
inline constexpr uint32_t kMaxDims = 4;
inline constexpr uint64_t kMaxTensorNameLength = 63;  // ggml's GGML_MAX_NAME minus the NUL
inline constexpr uint32_t kMaxArrayDepth = 8;         // arrays nested deeper are rejected
inline constexpr std::string_view kAlignmentKey = "general.alignment";

class Reader;

// One metadata entry as it sits in the file.
struct KeyValue {
  std::string_view key;
  ValueType type;
  uint64_t offset;        // first byte of the entry (the key's length field)
  uint64_t value_offset;  // first byte of the value (after the type tag)
  uint64_t end;           // one past the last byte of the entry
};

// A metadata value viewed in place. Cheap to copy; valid while its Reader lives.
class Value {
 public:
  ValueType type() const { return type_; }
  // "key" or "key[12]": names the value in errors.
  std::string path() const;

  // Strict scalar access: the stored type must be exactly T's GGUF type, otherwise a
  // gguf::Error names the key, the expected and the found type. T is one of uint8_t, int8_t,
  // uint16_t, int16_t, uint32_t, int32_t, float, bool, uint64_t, int64_t, double.
  template <class T>
  T get() const;
  std::string_view as_string() const;
  // Any integer type, checked to fit in int64_t (hyperparameters are stored in various widths).
  int64_t as_int() const;
  // Any integer or float type.
  double as_number() const;

  // Arrays.
  bool is_array() const { return type_ == ValueType::kArray; }
  ValueType element_type() const;  // throws unless an array
  uint64_t size() const;           // element count; throws unless an array
  // Element i: O(1) for fixed-size elements; for strings and nested arrays an offset index is
  // built on first random access (sequential iteration never needs it).
  Value operator[](uint64_t i) const;

  class Iterator {
   public:
    using value_type = Value;
    using difference_type = std::ptrdiff_t;
    Value operator*() const;
    Iterator& operator++();
    Iterator operator++(int) {
      Iterator old = *this;
      ++*this;
      return old;
    }
    bool operator==(const Iterator& other) const { return index_ == other.index_; }

   private:
    friend class Value;
    const Reader* reader_ = nullptr;
    uint32_t kv_index_ = 0;
    ValueType element_type_ = ValueType::kUint8;
    uint64_t index_ = 0;
    uint64_t offset_ = 0;  // first byte of element index_
  };
  Iterator begin() const;
  Iterator end() const;

  // The value's bytes in the file (after the type tag).
  std::span<const std::byte> bytes() const;
  // A deep copy, for writing or for printing.
  MetaValue to_owned() const;

 private:
  friend class Reader;
  Value(const Reader* reader, uint32_t kv_index, int64_t element_index, ValueType type, uint64_t begin, uint64_t end);
  void require_array() const;
  [[noreturn]] void type_mismatch(std::string_view expected) const;

  const Reader* reader_ = nullptr;
  uint32_t kv_index_ = 0;
  int64_t element_index_ = -1;  // -1 for a top-level value, else its index in the parent array
  ValueType type_ = ValueType::kUint8;
  uint64_t begin_ = 0;  // first byte of the value
  uint64_t end_ = 0;    // one past its last byte
};

struct TensorInfo {
  std::string_view name;
  int32_t type;                       // a valid ggml type id
  uint32_t n_dims;                    // 1..4
  std::array<uint64_t, kMaxDims> ne;  // unused dimensions are 1
  uint64_t offset;                    // relative to the data section, as stored
  uint64_t data_offset;               // absolute byte offset in the file
  uint64_t n_elements;
  uint64_t n_bytes;      // bytes of data (unpadded)
  uint64_t row_bytes;    // bytes of one ne0 row
  uint64_t info_offset;  // where this tensor's info starts in the header

  std::span<const uint64_t> shape() const { return {ne.data(), n_dims}; }
};

class Reader {
 public:
  // Maps the file read-only and indexes its header. Only a regular file is opened (a FIFO is
  // refused, never waited on). A file truncated while it is mapped cannot kill the process:
  // the pages it lost read as zeros and the change is an error, here or from
  // check_unchanged(). Throws gguf::Error.
  static Reader open(const std::filesystem::path& path);
  // Throws gguf::Error if the file was found shorter than when it was opened (some reads saw
  // zeros instead of its bytes): call it before trusting, printing or writing what was read.
  void check_unchanged() const;
  // Indexes a buffer owned by the caller (tests, fuzzing). `name` stands for the file in errors.
  static Reader from_memory(std::span<const std::byte> bytes, std::string name);

  Reader(Reader&&) noexcept;
  Reader& operator=(Reader&&) noexcept;
  ~Reader();

  const std::string& path() const;
  uint32_t version() const;
  uint32_t alignment() const;
  uint64_t file_size() const;
  uint64_t data_section_offset() const;  // also the header's size including its padding
  uint64_t data_section_size() const;    // sum of tensor sizes with their padding

  std::span<const KeyValue> metadata() const;
  const KeyValue* find_key(std::string_view key) const;
  Value value(const KeyValue& kv) const;
  std::optional<Value> find(std::string_view key) const;
  Value get(std::string_view key) const;  // throws gguf::Error naming a missing key
  // The entry's bytes exactly as stored (key, type tag, value): copied verbatim by rewriters.
  std::span<const std::byte> raw_entry(const KeyValue& kv) const;

  std::span<const TensorInfo> tensors() const;
  const TensorInfo* find_tensor(std::string_view name) const;
  std::span<const std::byte> tensor_data(const TensorInfo& tensor) const;

  // The whole mapped file.
  std::span<const std::byte> bytes() const;

 private:
  struct State;
  explicit Reader(std::unique_ptr<State> state);
  friend class Value;
  std::unique_ptr<State> state_;
};

}  // namespace archreg::gguf
