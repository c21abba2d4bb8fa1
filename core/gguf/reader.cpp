#include "gguf/reader.hpp"

#include <fcntl.h>
#include <fmt/format.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <atomic>
#include <bit>
#include <cerrno>
#include <csignal>
#include <cstring>
#include <functional>
#include <limits>
#include <mutex>

#include "gguf/checked.hpp"
#include "gguf/name_index.hpp"
#include "gguf/regular_file.hpp"

namespace archreg::gguf {
namespace {

constexpr uint64_t kHeaderFixedSize = 24;  // magic, version, n_tensors, n_kv
// Smallest possible encodings, used to cap counts by the bytes actually left in the file.
constexpr uint64_t kMinEntrySize = 8 + 1 + 4 + 1;               // key length, 1-byte key, type, u8
constexpr uint64_t kMinTensorInfoSize = 8 + 1 + 4 + 8 + 4 + 8;  // name, n_dims, ne0, type, offset
constexpr uint64_t kMinArrayHeaderSize = 4 + 8;                 // element type, count
constexpr uint32_t kMaxAlignment = 1u << 24;

// Names the thing being parsed; formatted only when an error is actually raised, so the hot
// path (hundreds of thousands of vocabulary strings) builds no strings.
struct Subject {
  const char* kind = "header";  // "header", "key", "tensor"
  std::string_view name;
  uint64_t ordinal = 0;  // the entry's position, used while its name is not yet known
  bool named = false;

  std::string text() const {
    if (std::string_view(kind) == "header") return "header";
    // A key may be as long as the file: a message shows its start.
    constexpr size_t kShown = 256;
    if (named && name.size() > kShown) return fmt::format("{} '{}...' ({} bytes)", kind, printable(name.substr(0, kShown)), name.size());
    if (named) return fmt::format("{} '{}'", kind, printable(name));
    return fmt::format("{} #{}", kind, ordinal);
  }
};

// SIGBUS is what reading a mapped page raises when the file no longer has it: truncated after
// it was mapped. The mappings of open Readers are registered here; a SIGBUS inside one is
// absorbed by mapping a page of zeros over the faulting page and noting it in the Reader, so
// the read goes on (zeros are one more malformed input to the parser) and the Reader reports
// the change as an error (check_unchanged) instead of the process dying. Free of cost until a
// file actually shrinks: no copy, no check on the hot path.
struct SigbusGuardSlot {
  std::atomic<uintptr_t> begin{0};
  std::atomic<uintptr_t> end{0};
  std::atomic<std::atomic<bool>*> truncated{nullptr};
};

class SigbusGuard {
 public:
  // Registers [begin, begin + size); returns the slot, or -1 when all are taken (that
  // mapping is then unguarded: a truncation kills the process as it would without archreg).
  static int add(const void* begin, size_t size, std::atomic<bool>* truncated) {
    static std::once_flag installed;
    std::call_once(installed, install);
    std::lock_guard lock(mutex_);
    for (size_t i = 0; i < kSlots; ++i) {
      if (slots_[i].begin.load() != 0) continue;
      slots_[i].truncated.store(truncated);
      slots_[i].end.store(reinterpret_cast<uintptr_t>(begin) + size);
      slots_[i].begin.store(reinterpret_cast<uintptr_t>(begin));
      return static_cast<int>(i);
    }
    return -1;
  }
  static void remove(int slot) {
    if (slot < 0) return;
    std::lock_guard lock(mutex_);
    slots_[slot].begin.store(0);
    slots_[slot].end.store(0);
    slots_[slot].truncated.store(nullptr);
  }

 private:
  using Slot = SigbusGuardSlot;
  static constexpr size_t kSlots = 256;
  static inline Slot slots_[kSlots];
  static inline std::mutex mutex_;
  static inline struct sigaction previous_ {};
  static inline uintptr_t page_size_ = 4096;

  static void install() {
    page_size_ = static_cast<uintptr_t>(sysconf(_SC_PAGESIZE));
    struct sigaction action {};
    action.sa_sigaction = on_sigbus;
    action.sa_flags = SA_SIGINFO | SA_ONSTACK;
    sigemptyset(&action.sa_mask);
    sigaction(SIGBUS, &action, &previous_);
  }

  static void on_sigbus(int number, siginfo_t* info, void* context) {
    const auto address = reinterpret_cast<uintptr_t>(info->si_addr);
    for (Slot& slot : slots_) {
      const uintptr_t begin = slot.begin.load();
      if (begin == 0 || address < begin || address >= slot.end.load()) continue;
      void* page = reinterpret_cast<void*>(address & ~(page_size_ - 1));
      if (mmap(page, page_size_, PROT_READ, MAP_PRIVATE | MAP_ANONYMOUS | MAP_FIXED, -1, 0) == MAP_FAILED) break;
      if (std::atomic<bool>* truncated = slot.truncated.load()) truncated->store(true);
      return;  // the read is retried and finds zeros
    }
    // Not a mapping of ours: what would have happened without this handler.
    if ((previous_.sa_flags & SA_SIGINFO) != 0 && previous_.sa_sigaction != nullptr) {
      previous_.sa_sigaction(number, info, context);
    } else if (previous_.sa_handler != SIG_DFL && previous_.sa_handler != SIG_IGN && previous_.sa_handler != nullptr) {
      previous_.sa_handler(number);
    } else {
      ::signal(SIGBUS, SIG_DFL);  // returning re-runs the access, which now kills the process
    }
  }
};

// Bounds-checked little-endian reads over the mapped bytes.
class Cursor {
 public:
  Cursor(std::span<const std::byte> bytes, const std::string& file, uint64_t pos = 0) : bytes_(bytes), file_(file), pos_(pos) {}

  uint64_t pos() const { return pos_; }
  uint64_t left() const { return bytes_.size() - pos_; }

  [[noreturn]] void fail(uint64_t at, const Subject& subject, std::string message) const {
    throw Error(file_, at, subject.text(), std::move(message));
  }

  void need(uint64_t n, const Subject& subject) const {
    if (n > left()) {
      fail(pos_, subject, fmt::format("unexpected end of file: need {} more bytes, {} left", n, left()));
    }
  }

  template <class T>
  T read(const Subject& subject) {
    need(sizeof(T), subject);
    T value;
    std::memcpy(&value, bytes_.data() + pos_, sizeof(T));
    pos_ += sizeof(T);
    return value;
  }

  void skip(uint64_t n, const Subject& subject) {
    need(n, subject);
    pos_ += n;
  }

  std::string_view read_string(const Subject& subject) {
    const uint64_t at = pos_;
    const auto length = read<uint64_t>(subject);
    if (length > left()) {
      fail(at, subject, fmt::format("string length {} exceeds the {} bytes left in the file", length, left()));
    }
    std::string_view text(reinterpret_cast<const char*>(bytes_.data() + pos_), length);
    pos_ += length;
    return text;
  }

  ValueType read_value_type(const Subject& subject) {
    const uint64_t at = pos_;
    const auto id = read<int32_t>(subject);
    if (!is_valid_value_type(id)) {
      fail(at, subject, fmt::format("unknown value type {}: expected 0..{}", id, kValueTypeCount - 1));
    }
    return static_cast<ValueType>(id);
  }

  // Skips one value of `type`, checking every count and length against the bytes left.
  void skip_value(ValueType type, const Subject& subject, uint32_t depth = 0) {
    if (type == ValueType::kString) {
      read_string(subject);
      return;
    }
    if (type != ValueType::kArray) {
      skip(scalar_size(type), subject);
      return;
    }
    if (depth >= kMaxArrayDepth) {
      fail(pos_, subject, fmt::format("arrays nested deeper than {} levels", kMaxArrayDepth));
    }
    const uint64_t at = pos_;
    const ValueType element = read_value_type(subject);
    const auto count = read<uint64_t>(subject);
    const uint64_t min_size = element == ValueType::kString ? 8 : element == ValueType::kArray ? kMinArrayHeaderSize : scalar_size(element);
    if (count > left() / min_size) {
      fail(at, subject,
           fmt::format("array of {} elements of {} cannot fit in the {} bytes left in the file", count, value_type_name(element), left()));
    }
    if (element == ValueType::kString) {
      for (uint64_t i = 0; i < count; ++i) read_string(subject);
    } else if (element == ValueType::kArray) {
      for (uint64_t i = 0; i < count; ++i) skip_value(ValueType::kArray, subject, depth + 1);
    } else {
      pos_ += count * min_size;  // bounded by the check above
    }
  }

 private:
  std::span<const std::byte> bytes_;
  const std::string& file_;
  uint64_t pos_;
};

std::string shrank_message(uint64_t size) {
  return fmt::format("the file shrank while it was being read (it had {} bytes when opened): what was read is not reliable", size);
}

std::string shape_text(const TensorInfo& t) {
  return fmt::format("[{}]", fmt::join(t.shape(), ", "));
}

// Lazily built start offsets of a top-level array's variable-size elements.
struct ElementIndex {
  std::once_flag built;
  std::vector<uint64_t> starts;
};

}  // namespace

struct Reader::State {
  std::string path;
  void* mapping = nullptr;
  size_t mapping_size = 0;
  std::span<const std::byte> bytes;
  uint32_t version = 0;
  uint32_t alignment = kDefaultAlignment;
  uint64_t data_offset = 0;
  uint64_t data_size = 0;
  std::vector<KeyValue> metadata;
  std::vector<TensorInfo> tensors;
  NameIndex key_index;
  NameIndex tensor_index;
  std::vector<std::unique_ptr<ElementIndex>> element_indexes;  // one per entry, made on demand
  std::mutex element_indexes_mutex;
  std::atomic<bool> truncated{false};  // a read of the mapping found the file shorter (SigbusGuard)
  int guard_slot = -1;

  ~State() {
    SigbusGuard::remove(guard_slot);
    if (mapping != nullptr) munmap(mapping, mapping_size);
  }

  void index();
  void index_metadata(Cursor& cursor, uint64_t count);
  void index_tensors(Cursor& cursor, uint64_t count);
  void place_tensor_data();
  // One past the last byte of the value of `type` starting at `begin`.
  uint64_t value_end(ValueType type, uint64_t begin) const;
  ElementIndex& element_index(uint32_t kv_index);
};

void Reader::State::index() {
  Cursor cursor(bytes, path);
  const Subject header;
  if (bytes.size() < kHeaderFixedSize) {
    cursor.fail(0, header, fmt::format("file is {} bytes; a GGUF header needs at least {}", bytes.size(), kHeaderFixedSize));
  }
  const auto magic = cursor.read<uint32_t>(header);
  if (magic != kMagic) {
    cursor.fail(0, header, fmt::format("bad magic: expected \"GGUF\" (0x{:08X}), found 0x{:08X}", kMagic, magic));
  }
  version = cursor.read<uint32_t>(header);
  if (version != 2 && version != 3) {
    const bool big_endian = version == __builtin_bswap32(2u) || version == __builtin_bswap32(3u);
    cursor.fail(4, header,
                fmt::format("unsupported GGUF version {}: expected 2 or 3{}", version,
                            big_endian ? " (this is a big-endian file, which is not supported)" : ""));
  }
  const auto n_tensors = cursor.read<uint64_t>(header);
  const auto n_kv = cursor.read<uint64_t>(header);
  if (n_kv > cursor.left() / kMinEntrySize) {
    cursor.fail(16, header,
                fmt::format("metadata count {} cannot fit in the {} bytes left in the file "
                            "(each entry needs at least {} bytes)",
                            n_kv, cursor.left(), kMinEntrySize));
  }
  if (n_tensors > cursor.left() / kMinTensorInfoSize) {
    cursor.fail(8, header,
                fmt::format("tensor count {} cannot fit in the {} bytes left in the file "
                            "(each tensor info needs at least {} bytes)",
                            n_tensors, cursor.left(), kMinTensorInfoSize));
  }
  index_metadata(cursor, n_kv);
  index_tensors(cursor, n_tensors);

  const uint64_t header_end = cursor.pos();
  data_offset = align_up(header_end, alignment);  // header_end <= file size and alignment <= 2^24
  if (!tensors.empty() && data_offset > bytes.size()) {
    cursor.fail(header_end, header,
                fmt::format("data section would start at byte {} (header padded to alignment {}), "
                            "past the end of the file ({} bytes)",
                            data_offset, alignment, bytes.size()));
  }
  place_tensor_data();
}

void Reader::State::index_metadata(Cursor& cursor, uint64_t count) {
  metadata.reserve(count);
  key_index.reserve(count);
  for (uint64_t i = 0; i < count; ++i) {
    Subject subject{"key", {}, i, false};
    const uint64_t entry_offset = cursor.pos();
    subject.name = cursor.read_string(subject);
    subject.named = true;
    if (subject.name.empty()) {
      cursor.fail(entry_offset, Subject{"key", {}, i, false}, "empty key");
    }
    const uint64_t type_offset = cursor.pos();
    const ValueType type = cursor.read_value_type(subject);
    const uint64_t value_offset = cursor.pos();
    cursor.skip_value(type, subject);

    const auto index = static_cast<uint32_t>(metadata.size());
    const uint32_t existing = key_index.insert(subject.name, index, [&](uint32_t k) { return metadata[k].key; });
    if (existing != index) {
      cursor.fail(entry_offset, subject, fmt::format("duplicate key (first defined at byte {})", metadata[existing].offset));
    }
    metadata.push_back(KeyValue{subject.name, type, entry_offset, value_offset, cursor.pos()});

    if (subject.name == kAlignmentKey) {
      if (type != ValueType::kUint32) {
        cursor.fail(type_offset, subject, fmt::format("expected type UINT32, found {}", value_type_name(type)));
      }
      uint32_t value;
      std::memcpy(&value, bytes.data() + value_offset, sizeof value);
      if (!std::has_single_bit(value) || value > kMaxAlignment) {
        cursor.fail(value_offset, subject,
                    fmt::format("alignment must be a power of two between 1 and {}, found {}", kMaxAlignment, value));
      }
      alignment = value;
    }
  }
}

void Reader::State::index_tensors(Cursor& cursor, uint64_t count) {
  tensors.reserve(count);
  tensor_index.reserve(count);
  for (uint64_t i = 0; i < count; ++i) {
    TensorInfo t{};
    t.info_offset = cursor.pos();
    Subject subject{"tensor", {}, i, false};
    t.name = cursor.read_string(subject);
    if (t.name.empty()) cursor.fail(t.info_offset, subject, "empty tensor name");
    subject.name = t.name;
    subject.named = true;
    if (t.name.size() > kMaxTensorNameLength) {
      cursor.fail(t.info_offset, subject, fmt::format("tensor name is {} bytes; at most {} allowed", t.name.size(), kMaxTensorNameLength));
    }

    const uint64_t dims_offset = cursor.pos();
    t.n_dims = cursor.read<uint32_t>(subject);
    if (t.n_dims < 1 || t.n_dims > kMaxDims) {
      cursor.fail(dims_offset, subject, fmt::format("n_dims = {}: expected 1..{}", t.n_dims, kMaxDims));
    }
    t.ne.fill(1);
    for (uint32_t d = 0; d < t.n_dims; ++d) {
      const uint64_t at = cursor.pos();
      t.ne[d] = cursor.read<uint64_t>(subject);
      if (t.ne[d] == 0) {
        cursor.fail(at, subject, fmt::format("dimension {} is 0: every dimension must be at least 1", d));
      }
      if (t.ne[d] > static_cast<uint64_t>(std::numeric_limits<int64_t>::max())) {
        cursor.fail(at, subject, fmt::format("dimension {} is {}: exceeds INT64_MAX", d, t.ne[d]));
      }
    }

    const uint64_t type_offset = cursor.pos();
    t.type = cursor.read<int32_t>(subject);
    const TypeTraits* traits = ggml_type_any(t.type);
    if (traits == nullptr) {
      cursor.fail(type_offset, subject, fmt::format("invalid ggml type {}: expected 0..{}", t.type, kGgmlTypeCount - 1));
    }
    if (traits->removed) {
      cursor.fail(type_offset, subject, fmt::format("ggml type {} ({}) was removed from ggml", t.type, traits->name));
    }
    t.offset = cursor.read<uint64_t>(subject);

    // ggml counts elements in int64_t: the product must fit there, not merely in uint64_t.
    constexpr uint64_t kMaxElements = static_cast<uint64_t>(std::numeric_limits<int64_t>::max());
    std::optional<uint64_t> elements = 1;
    for (uint32_t d = 0; d < t.n_dims && elements; ++d) elements = checked_mul(*elements, t.ne[d]);
    if (!elements || *elements > kMaxElements) {
      cursor.fail(dims_offset, subject,
                  fmt::format("element count of shape {} overflows int64 (ggml counts elements in int64_t)", shape_text(t)));
    }
    t.n_elements = *elements;
    if (t.ne[0] % traits->block_size != 0) {
      cursor.fail(dims_offset, subject,
                  fmt::format("ne0 = {} is not a multiple of the block size {} of {}", t.ne[0], traits->block_size, traits->name));
    }
    const auto row_bytes = checked_mul(t.ne[0] / traits->block_size, traits->type_size);
    const auto n_bytes = row_bytes ? checked_mul(*row_bytes, t.n_elements / t.ne[0]) : std::nullopt;
    if (!n_bytes || *n_bytes > kMaxElements) {
      cursor.fail(dims_offset, subject, fmt::format("byte size of shape {} as {} overflows int64", shape_text(t), traits->name));
    }
    t.row_bytes = *row_bytes;
    t.n_bytes = *n_bytes;

    const auto index = static_cast<uint32_t>(tensors.size());
    const uint32_t existing = tensor_index.insert(t.name, index, [&](uint32_t k) { return tensors[k].name; });
    if (existing != index) {
      cursor.fail(t.info_offset, subject, fmt::format("duplicate tensor name (first at byte {})", tensors[existing].info_offset));
    }
    tensors.push_back(t);
  }
}

void Reader::State::place_tensor_data() {
  Cursor cursor(bytes, path);
  uint64_t expected = 0;
  for (TensorInfo& t : tensors) {
    const Subject subject{"tensor", t.name, 0, true};
    const uint64_t offset_field = t.info_offset + 8 + t.name.size() + 4 + 8ull * t.n_dims + 4;
    if (t.offset % alignment != 0) {
      cursor.fail(offset_field, subject, fmt::format("data offset {} is not a multiple of the alignment {}", t.offset, alignment));
    }
    if (t.offset != expected) {
      cursor.fail(offset_field, subject,
                  fmt::format("data offset {}, expected {} (tensor data is stored contiguously in "
                              "info order, each tensor padded to the alignment {})",
                              t.offset, expected, alignment));
    }
    const auto begin = checked_add(data_offset, t.offset);
    const auto end = begin ? checked_add(*begin, t.n_bytes) : std::nullopt;
    if (!end || *end > bytes.size()) {
      cursor.fail(offset_field, subject,
                  fmt::format("data [{}, {}) at data offset {} runs past the end of the file ({} bytes)", begin.value_or(0),
                              end ? fmt::format("{}", *end) : "overflow", t.offset, bytes.size()));
    }
    t.data_offset = *begin;
    // end <= file size, so neither the sum nor its padding can wrap.
    expected = align_up(t.offset + t.n_bytes, alignment);
  }
  data_size = expected;
}

uint64_t Reader::State::value_end(ValueType type, uint64_t begin) const {
  Cursor cursor(bytes, path, begin);
  cursor.skip_value(type, Subject{});
  return cursor.pos();
}

ElementIndex& Reader::State::element_index(uint32_t kv_index) {
  {
    std::lock_guard lock(element_indexes_mutex);
    if (element_indexes.empty()) element_indexes.resize(metadata.size());
    if (!element_indexes[kv_index]) element_indexes[kv_index] = std::make_unique<ElementIndex>();
  }
  ElementIndex& index = *element_indexes[kv_index];
  std::call_once(index.built, [&] {
    const KeyValue& kv = metadata[kv_index];
    Cursor cursor(bytes, path, kv.value_offset);
    const ValueType element = cursor.read_value_type(Subject{});
    const auto count = cursor.read<uint64_t>(Subject{});
    index.starts.reserve(count);
    for (uint64_t i = 0; i < count; ++i) {
      index.starts.push_back(cursor.pos());
      cursor.skip_value(element, Subject{});
    }
  });
  return index;
}

// ---- Reader ----

Reader::Reader(std::unique_ptr<State> state) : state_(std::move(state)) {}
Reader::Reader(Reader&&) noexcept = default;
Reader& Reader::operator=(Reader&&) noexcept = default;
Reader::~Reader() = default;

Reader Reader::open(const std::filesystem::path& path) {
  auto state = std::make_unique<State>();
  state->path = path.string();
  uint64_t size = 0;
  {
    std::optional<RegularFile> file;  // only a regular file: a FIFO must not block us
    try {
      file.emplace(RegularFile::open(path));
    } catch (const FileError& error) {
      throw Error(state->path, std::nullopt, "", error.message());
    }
    size = file->size();
    if (size > 0) {
      void* mapping = mmap(nullptr, size, PROT_READ, MAP_PRIVATE, file->fd(), 0);
      if (mapping == MAP_FAILED) {
        throw Error(state->path, std::nullopt, "", fmt::format("cannot map {} bytes: {}", size, std::strerror(errno)));
      }
      state->mapping = mapping;
      state->mapping_size = size;
      state->bytes = {static_cast<const std::byte*>(mapping), size};
      state->guard_slot = SigbusGuard::add(mapping, size, &state->truncated);
    }
  }  // the mapping keeps the file alive
  try {
    state->index();
  } catch (const Error&) {
    if (state->truncated.load()) throw Error(state->path, std::nullopt, "", shrank_message(size));
    throw;
  }
  Reader reader(std::move(state));
  reader.check_unchanged();
  return reader;
}

Reader Reader::from_memory(std::span<const std::byte> bytes, std::string name) {
  auto state = std::make_unique<State>();
  state->path = std::move(name);
  state->bytes = bytes;
  state->index();
  return Reader(std::move(state));
}

void Reader::check_unchanged() const {
  if (state_->truncated.load()) throw Error(state_->path, std::nullopt, "", shrank_message(state_->mapping_size));
}

const std::string& Reader::path() const {
  return state_->path;
}
uint32_t Reader::version() const {
  return state_->version;
}
uint32_t Reader::alignment() const {
  return state_->alignment;
}
uint64_t Reader::file_size() const {
  return state_->bytes.size();
}
uint64_t Reader::data_section_offset() const {
  return state_->data_offset;
}
uint64_t Reader::data_section_size() const {
  return state_->data_size;
}
std::span<const std::byte> Reader::bytes() const {
  return state_->bytes;
}
std::span<const KeyValue> Reader::metadata() const {
  return state_->metadata;
}
std::span<const TensorInfo> Reader::tensors() const {
  return state_->tensors;
}

const KeyValue* Reader::find_key(std::string_view key) const {
  const uint32_t i = state_->key_index.find(key, [&](uint32_t k) { return state_->metadata[k].key; });
  return i == NameIndex::kNotFound ? nullptr : &state_->metadata[i];
}

const TensorInfo* Reader::find_tensor(std::string_view name) const {
  const uint32_t i = state_->tensor_index.find(name, [&](uint32_t k) { return state_->tensors[k].name; });
  return i == NameIndex::kNotFound ? nullptr : &state_->tensors[i];
}

Value Reader::value(const KeyValue& kv) const {
  const auto index = static_cast<uint32_t>(&kv - state_->metadata.data());
  return Value(this, index, -1, kv.type, kv.value_offset, kv.end);
}

std::optional<Value> Reader::find(std::string_view key) const {
  const KeyValue* kv = find_key(key);
  if (kv == nullptr) return std::nullopt;
  return value(*kv);
}

Value Reader::get(std::string_view key) const {
  if (const KeyValue* kv = find_key(key)) return value(*kv);
  throw Error(state_->path, std::nullopt, fmt::format("key '{}'", key), "missing");
}

std::span<const std::byte> Reader::raw_entry(const KeyValue& kv) const {
  return state_->bytes.subspan(kv.offset, kv.end - kv.offset);
}

std::span<const std::byte> Reader::tensor_data(const TensorInfo& tensor) const {
  return state_->bytes.subspan(tensor.data_offset, tensor.n_bytes);
}

// ---- Value ----

namespace {

template <class T>
constexpr ValueType value_type_of() {
  if constexpr (std::is_same_v<T, uint8_t>)
    return ValueType::kUint8;
  else if constexpr (std::is_same_v<T, int8_t>)
    return ValueType::kInt8;
  else if constexpr (std::is_same_v<T, uint16_t>)
    return ValueType::kUint16;
  else if constexpr (std::is_same_v<T, int16_t>)
    return ValueType::kInt16;
  else if constexpr (std::is_same_v<T, uint32_t>)
    return ValueType::kUint32;
  else if constexpr (std::is_same_v<T, int32_t>)
    return ValueType::kInt32;
  else if constexpr (std::is_same_v<T, float>)
    return ValueType::kFloat32;
  else if constexpr (std::is_same_v<T, bool>)
    return ValueType::kBool;
  else if constexpr (std::is_same_v<T, uint64_t>)
    return ValueType::kUint64;
  else if constexpr (std::is_same_v<T, int64_t>)
    return ValueType::kInt64;
  else if constexpr (std::is_same_v<T, double>)
    return ValueType::kFloat64;
}

}  // namespace

Value::Value(const Reader* reader, uint32_t kv_index, int64_t element_index, ValueType type, uint64_t begin, uint64_t end)
    : reader_(reader), kv_index_(kv_index), element_index_(element_index), type_(type), begin_(begin), end_(end) {}

std::string Value::path() const {
  const std::string_view key = reader_->state_->metadata[kv_index_].key;
  return element_index_ < 0 ? std::string(key) : fmt::format("{}[{}]", key, element_index_);
}

void Value::type_mismatch(std::string_view expected) const {
  throw Error(reader_->path(), begin_, fmt::format("key '{}'", path()),
              fmt::format("expected type {}, found {}", expected, value_type_name(type_)));
}

template <class T>
T Value::get() const {
  constexpr ValueType wanted = value_type_of<T>();
  if (type_ != wanted) type_mismatch(value_type_name(wanted));
  const std::byte* at = reader_->state_->bytes.data() + begin_;
  if constexpr (std::is_same_v<T, bool>) {
    return *at != std::byte{0};
  } else {
    T value;
    std::memcpy(&value, at, sizeof value);
    return value;
  }
}

template uint8_t Value::get<uint8_t>() const;
template int8_t Value::get<int8_t>() const;
template uint16_t Value::get<uint16_t>() const;
template int16_t Value::get<int16_t>() const;
template uint32_t Value::get<uint32_t>() const;
template int32_t Value::get<int32_t>() const;
template float Value::get<float>() const;
template bool Value::get<bool>() const;
template uint64_t Value::get<uint64_t>() const;
template int64_t Value::get<int64_t>() const;
template double Value::get<double>() const;

std::string_view Value::as_string() const {
  if (type_ != ValueType::kString) type_mismatch("STRING");
  const std::byte* at = reader_->state_->bytes.data() + begin_ + 8;
  return {reinterpret_cast<const char*>(at), end_ - begin_ - 8};
}

int64_t Value::as_int() const {
  switch (type_) {
    case ValueType::kUint8: return get<uint8_t>();
    case ValueType::kInt8: return get<int8_t>();
    case ValueType::kUint16: return get<uint16_t>();
    case ValueType::kInt16: return get<int16_t>();
    case ValueType::kUint32: return get<uint32_t>();
    case ValueType::kInt32: return get<int32_t>();
    case ValueType::kInt64: return get<int64_t>();
    case ValueType::kUint64: {
      const auto value = get<uint64_t>();
      if (value > static_cast<uint64_t>(std::numeric_limits<int64_t>::max())) {
        throw Error(reader_->path(), begin_, fmt::format("key '{}'", path()),
                    fmt::format("value {} does not fit in a signed 64-bit integer", value));
      }
      return static_cast<int64_t>(value);
    }
    default: type_mismatch("an integer type");
  }
}

double Value::as_number() const {
  if (type_ == ValueType::kFloat32) return get<float>();
  if (type_ == ValueType::kFloat64) return get<double>();
  if (is_integer(type_)) {
    return type_ == ValueType::kUint64 ? static_cast<double>(get<uint64_t>()) : static_cast<double>(as_int());
  }
  type_mismatch("a number");
}

void Value::require_array() const {
  if (type_ != ValueType::kArray) type_mismatch("ARRAY");
}

ValueType Value::element_type() const {
  require_array();
  int32_t id;
  std::memcpy(&id, reader_->state_->bytes.data() + begin_, sizeof id);
  return static_cast<ValueType>(id);
}

uint64_t Value::size() const {
  require_array();
  uint64_t count;
  std::memcpy(&count, reader_->state_->bytes.data() + begin_ + 4, sizeof count);
  return count;
}

Value Value::operator[](uint64_t i) const {
  const uint64_t count = size();
  if (i >= count) {
    throw Error(reader_->path(), begin_, fmt::format("key '{}'", path()),
                fmt::format("index {} out of range for an array of {} elements", i, count));
  }
  const ValueType element = element_type();
  const uint64_t first = begin_ + kMinArrayHeaderSize;
  const auto index = static_cast<int64_t>(i);
  if (const uint32_t size = scalar_size(element); size != 0) {
    const uint64_t at = first + i * size;
    return Value(reader_, kv_index_, index, element, at, at + size);
  }
  Reader::State& state = *reader_->state_;
  uint64_t at = first;
  if (element_index_ < 0) {
    at = state.element_index(kv_index_).starts[i];
  } else {
    for (uint64_t k = 0; k < i; ++k) at = state.value_end(element, at);  // nested arrays: rare
  }
  return Value(reader_, kv_index_, index, element, at, state.value_end(element, at));
}

Value::Iterator Value::begin() const {
  Iterator it;
  it.reader_ = reader_;
  it.kv_index_ = kv_index_;
  it.element_type_ = element_type();
  it.index_ = 0;
  it.offset_ = begin_ + kMinArrayHeaderSize;
  return it;
}

Value::Iterator Value::end() const {
  Iterator it;
  it.index_ = size();
  return it;
}

Value Value::Iterator::operator*() const {
  const uint64_t end = reader_->state_->value_end(element_type_, offset_);
  return Value(reader_, kv_index_, static_cast<int64_t>(index_), element_type_, offset_, end);
}

Value::Iterator& Value::Iterator::operator++() {
  offset_ = reader_->state_->value_end(element_type_, offset_);
  ++index_;
  return *this;
}

std::span<const std::byte> Value::bytes() const {
  return reader_->state_->bytes.subspan(begin_, end_ - begin_);
}

MetaValue Value::to_owned() const {
  switch (type_) {
    case ValueType::kUint8: return get<uint8_t>();
    case ValueType::kInt8: return get<int8_t>();
    case ValueType::kUint16: return get<uint16_t>();
    case ValueType::kInt16: return get<int16_t>();
    case ValueType::kUint32: return get<uint32_t>();
    case ValueType::kInt32: return get<int32_t>();
    case ValueType::kFloat32: return get<float>();
    case ValueType::kBool: return get<bool>();
    case ValueType::kString: return std::string(as_string());
    case ValueType::kUint64: return get<uint64_t>();
    case ValueType::kInt64: return get<int64_t>();
    case ValueType::kFloat64: return get<double>();
    case ValueType::kArray: {
      MetaArray array{element_type(), {}};
      array.items.reserve(size());
      for (Value item : *this) array.items.push_back(item.to_owned());
      return array;
    }
  }
  type_mismatch("a known type");
}

}  // namespace archreg::gguf
