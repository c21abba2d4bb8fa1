// libFuzzer target for the GGUF reader.
//
// Any input must either be rejected with gguf::Error or be read completely: every metadata
// value decoded (deep copies, iteration, random access including the lazily built string
// index), every tensor's data touched at both ends. A crash, a sanitizer report, any other
// exception, or a broken invariant of an accepted file (checked below) is a finding.
#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <span>

#include "gguf/error.hpp"
#include "gguf/reader.hpp"
#include "gguf/types.hpp"

namespace {

using archreg::gguf::Error;
using archreg::gguf::KeyValue;
using archreg::gguf::Reader;
using archreg::gguf::TensorInfo;
using archreg::gguf::Value;
using archreg::gguf::ValueType;

// Reads land here so the optimizer cannot drop them.
volatile uint8_t g_sink = 0;

void touch(std::span<const std::byte> bytes) {
  if (bytes.empty()) return;
  g_sink = static_cast<uint8_t>(g_sink ^ std::to_integer<uint8_t>(bytes.front()) ^ std::to_integer<uint8_t>(bytes.back()));
}

// An accepted file broke a promise the reader makes: abort so libFuzzer saves the input.
void require(bool condition, const char* what) {
  if (condition) return;
  std::fprintf(stderr, "gguf_reader_fuzz: invariant violated: %s\n", what);
  std::abort();
}

void walk_value(const Value& value) {
  touch(value.bytes());
  static_cast<void>(value.path());
  switch (value.type()) {
    case ValueType::kString: g_sink = static_cast<uint8_t>(g_sink ^ value.as_string().size()); return;
    case ValueType::kArray: break;
    default:
      static_cast<void>(value.as_number());
      try {
        static_cast<void>(value.as_int());
      } catch (const Error&) {
        // Floats and UINT64 values past INT64_MAX are not integers: rejecting them is right.
      }
      return;
  }

  const uint64_t size = value.size();
  uint64_t iterated = 0;
  for (const Value element : value) {
    require(element.type() == value.element_type(), "array element of the declared type");
    walk_value(element);
    ++iterated;
  }
  require(iterated == size, "iteration visits size() elements");
  if (size > 0) {
    // Random access out of order: the last element first builds the offset index for strings.
    for (uint64_t i : {size - 1, size / 2, uint64_t{0}}) {
      const Value element = value[i];
      touch(element.bytes());
      if (element.type() == ValueType::kString) static_cast<void>(element.as_string());
    }
  }
  try {
    static_cast<void>(value[size]);
    require(false, "operator[] rejects an index past the end");
  } catch (const Error&) {
    // Expected: the index is out of range.
  }
}

void walk(const Reader& reader) {
  const uint64_t file_size = reader.file_size();
  const uint32_t alignment = reader.alignment();
  require(alignment != 0 && (alignment & (alignment - 1)) == 0, "alignment is a power of two");

  for (const KeyValue& kv : reader.metadata()) {
    require(!kv.key.empty(), "keys are not empty");
    require(kv.offset < kv.value_offset && kv.value_offset <= kv.end && kv.end <= file_size, "metadata entries lie inside the file");
    require(reader.find_key(kv.key) == &kv, "keys are unique and indexed");
    touch(reader.raw_entry(kv));
    const Value value = reader.value(kv);
    walk_value(value);
    require(value.to_owned().type() == value.type(), "to_owned keeps the type");
  }

  for (const TensorInfo& tensor : reader.tensors()) {
    require(!tensor.name.empty() && tensor.name.size() <= archreg::gguf::kMaxTensorNameLength, "tensor names are 1 to 63 bytes");
    require(reader.find_tensor(tensor.name) == &tensor, "tensor names are unique and indexed");
    const archreg::gguf::TypeTraits* traits = archreg::gguf::ggml_type(tensor.type);
    require(traits != nullptr, "tensor types are valid");
    require(tensor.n_dims >= 1 && tensor.n_dims <= archreg::gguf::kMaxDims, "n_dims is 1 to 4");
    // Recompute the sizes independently: a wrapped product would still look self-consistent.
    uint64_t elements = 1;
    for (uint32_t d = 0; d < archreg::gguf::kMaxDims; ++d) {
      require(tensor.ne[d] >= 1, "dimensions are at least 1");
      require(d < tensor.n_dims || tensor.ne[d] == 1, "unused dimensions are 1");
      require(!__builtin_mul_overflow(elements, tensor.ne[d], &elements), "the element count does not overflow");
    }
    require(elements == tensor.n_elements, "n_elements is the product of the shape");
    require(tensor.ne[0] % traits->block_size == 0, "rows are whole blocks");
    uint64_t row_bytes = 0;
    uint64_t n_bytes = 0;
    require(!__builtin_mul_overflow(tensor.ne[0] / traits->block_size, uint64_t{traits->type_size}, &row_bytes) &&
                !__builtin_mul_overflow(row_bytes, elements / tensor.ne[0], &n_bytes),
            "the byte size does not overflow");
    require(row_bytes == tensor.row_bytes && n_bytes == tensor.n_bytes, "row_bytes and n_bytes follow from the shape and type");
    require(tensor.data_offset % alignment == 0, "tensor data is aligned");
    require(tensor.data_offset >= reader.data_section_offset() && tensor.data_offset <= file_size &&
                tensor.n_bytes <= file_size - tensor.data_offset,
            "tensor data lies inside the file");
    const auto data = reader.tensor_data(tensor);
    require(data.size() == tensor.n_bytes, "tensor_data spans n_bytes");
    touch(data);
  }
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const std::span<const std::byte> bytes(reinterpret_cast<const std::byte*>(data), size);
  try {
    walk(Reader::from_memory(bytes, "fuzz.gguf"));
  } catch (const Error&) {
    // A clear rejection is the right outcome for almost every input.
  }
  return 0;
}
