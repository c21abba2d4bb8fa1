#include "gguf/writer.hpp"

#include <fcntl.h>
#include <fmt/format.h>
#include <stdio.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <bit>
#include <cerrno>
#include <cstring>
#include <limits>

#include "gguf/checked.hpp"
#include "gguf/reader.hpp"

namespace archreg::gguf {
namespace {

constexpr size_t kBufferSize = size_t{4} << 20;
constexpr uint32_t kVersion = 3;
constexpr uint32_t kMaxAlignment = 1u << 24;

// Resize-then-copy rather than insert(): GCC 12 at -O3 reports false -Wstringop-overflow
// warnings for the range insert.
void append_bytes(std::vector<std::byte>& out, const void* data, size_t size) {
  const size_t at = out.size();
  out.resize(at + size);
  if (size != 0) std::memcpy(out.data() + at, data, size);
}

template <class T>
void append(std::vector<std::byte>& out, T value) {
  append_bytes(out, &value, sizeof value);
}

void append_string(std::vector<std::byte>& out, std::string_view text) {
  append<uint64_t>(out, text.size());
  append_bytes(out, text.data(), text.size());
}

void append_value(std::vector<std::byte>& out, const MetaValue& value);

void append_array(std::vector<std::byte>& out, const MetaArray& array) {
  append<int32_t>(out, static_cast<int32_t>(array.element_type));
  append<uint64_t>(out, array.items.size());
  for (const MetaValue& item : array.items) append_value(out, item);
}

void append_value(std::vector<std::byte>& out, const MetaValue& value) {
  std::visit(
      [&](const auto& v) {
        using T = std::decay_t<decltype(v)>;
        if constexpr (std::is_same_v<T, std::string>) {
          append_string(out, v);
        } else if constexpr (std::is_same_v<T, MetaArray>) {
          append_array(out, v);
        } else if constexpr (std::is_same_v<T, bool>) {
          append<uint8_t>(out, v ? 1 : 0);
        } else {
          append<T>(out, v);
        }
      },
      value.v);
}

// Arrays must be homogeneous and declare their element type; nesting is bounded like the reader's.
std::optional<std::string> array_problem(const MetaValue& value, uint32_t depth = 0) {
  const auto* array = std::get_if<MetaArray>(&value.v);
  if (array == nullptr) return std::nullopt;
  if (depth >= kMaxArrayDepth) return fmt::format("arrays nested deeper than {} levels", kMaxArrayDepth);
  if (!is_valid_value_type(static_cast<int32_t>(array->element_type))) return "invalid element type";
  for (size_t i = 0; i < array->items.size(); ++i) {
    const MetaValue& item = array->items[i];
    if (item.type() != array->element_type) {
      return fmt::format("element {} is {}, but the array holds {}", i, value_type_name(item.type()), value_type_name(array->element_type));
    }
    if (auto problem = array_problem(item, depth + 1)) return problem;
  }
  return std::nullopt;
}

}  // namespace

Writer::Writer(std::filesystem::path destination, WriterOptions options)
    : destination_(std::move(destination)),
      options_(options),
      file_(destination_, options.overwrite),
      buffer_(std::make_unique_for_overwrite<std::byte[]>(kBufferSize)) {}

Writer::~Writer() = default;

void Writer::fail(std::string subject, std::string message) const {
  throw Error(destination_.string(), std::nullopt, std::move(subject), std::move(message));
}

void Writer::add(std::string key, MetaValue value) {
  const std::string subject = fmt::format("key '{}'", key);
  if (header_written_) fail(subject, "metadata added after tensor data");
  if (key.empty()) fail("", "empty key");
  if (std::find(keys_.begin(), keys_.end(), key) != keys_.end()) fail(subject, "duplicate key");
  if (auto problem = array_problem(value)) fail(subject, *problem);
  if (key == kAlignmentKey) {
    const auto* alignment = std::get_if<uint32_t>(&value.v);
    if (alignment == nullptr) {
      fail(subject, fmt::format("expected type UINT32, found {}", value_type_name(value.type())));
    }
    if (!std::has_single_bit(*alignment) || *alignment > kMaxAlignment) {
      fail(subject, fmt::format("alignment must be a power of two between 1 and {}, found {}", kMaxAlignment, *alignment));
    }
    alignment_ = *alignment;
  }
  append_string(header_, key);
  append<int32_t>(header_, static_cast<int32_t>(value.type()));
  append_value(header_, value);
  keys_.push_back(std::move(key));
}

void Writer::add_raw(std::string_view key, std::span<const std::byte> entry_bytes) {
  // Re-read the entry with the reader's own checks: a verbatim copy must still be a valid entry.
  std::vector<std::byte> probe;
  append<uint32_t>(probe, kMagic);
  append<uint32_t>(probe, kVersion);
  append<uint64_t>(probe, 0);
  append<uint64_t>(probe, 1);
  append_bytes(probe, entry_bytes.data(), entry_bytes.size());
  const Reader entry = Reader::from_memory(probe, destination_.string());
  const KeyValue& kv = entry.metadata().front();
  if (kv.key != key || kv.end != probe.size()) fail(fmt::format("key '{}'", key), "raw entry does not match its key");
  if (key == kAlignmentKey) {
    add(std::string(key), entry.value(kv).to_owned());
    return;
  }
  if (header_written_) fail(fmt::format("key '{}'", key), "metadata added after tensor data");
  if (std::find(keys_.begin(), keys_.end(), key) != keys_.end()) fail(fmt::format("key '{}'", key), "duplicate key");
  append_bytes(header_, entry_bytes.data(), entry_bytes.size());
  keys_.emplace_back(key);
}

size_t Writer::add_tensor(std::string name, int32_t ggml_type_id, std::span<const uint64_t> shape) {
  const std::string subject = fmt::format("tensor '{}'", name);
  if (header_written_) fail(subject, "tensor added after tensor data");
  if (name.empty()) fail("", "empty tensor name");
  if (name.size() > kMaxTensorNameLength) {
    fail(subject, fmt::format("tensor name is {} bytes; at most {} allowed", name.size(), kMaxTensorNameLength));
  }
  for (const PendingTensor& t : tensors_) {
    if (t.name == name) fail(subject, "duplicate tensor name");
  }
  const TypeTraits* traits = ggml_type(ggml_type_id);
  if (traits == nullptr) fail(subject, fmt::format("{} is not a valid ggml type", ggml_type_label(ggml_type_id)));
  if (shape.empty() || shape.size() > kMaxDims) {
    fail(subject, fmt::format("n_dims = {}: expected 1..{}", shape.size(), kMaxDims));
  }
  std::optional<uint64_t> elements = 1;
  for (uint64_t extent : shape) {
    if (extent == 0 || extent > static_cast<uint64_t>(std::numeric_limits<int64_t>::max())) {
      fail(subject, fmt::format("dimension {} out of range 1..INT64_MAX", extent));
    }
    if (elements) elements = checked_mul(*elements, extent);
  }
  if (!elements || *elements > static_cast<uint64_t>(std::numeric_limits<int64_t>::max())) {
    fail(subject, "element count overflows 64 bits");
  }
  if (shape[0] % traits->block_size != 0) {
    fail(subject, fmt::format("ne0 = {} is not a multiple of the block size {} of {}", shape[0], traits->block_size, traits->name));
  }
  const auto row_bytes = checked_mul(shape[0] / traits->block_size, traits->type_size);
  const auto n_bytes = row_bytes ? checked_mul(*row_bytes, *elements / shape[0]) : std::nullopt;
  if (!n_bytes) fail(subject, "byte size overflows 64 bits");
  tensors_.push_back(PendingTensor{std::move(name), ggml_type_id, {shape.begin(), shape.end()}, *n_bytes, 0});
  return tensors_.size() - 1;
}

uint64_t Writer::tensor_bytes(size_t index) const {
  return tensors_.at(index).n_bytes;
}

uint64_t Writer::remaining_in_current() const {
  return current_ < tensors_.size() ? tensors_[current_].n_bytes - filled_ : 0;
}

void Writer::write_header() {
  std::vector<std::byte> head;
  append<uint32_t>(head, kMagic);
  append<uint32_t>(head, kVersion);
  append<uint64_t>(head, tensors_.size());
  append<uint64_t>(head, keys_.size());
  append_bytes(head, header_.data(), header_.size());
  uint64_t offset = 0;
  for (PendingTensor& t : tensors_) {
    t.offset = offset;
    const auto next = checked_add(offset, t.n_bytes);
    if (!next) fail(fmt::format("tensor '{}'", t.name), "data section size overflows 64 bits");
    offset = align_up(*next, alignment_);
    append_string(head, t.name);
    append<uint32_t>(head, static_cast<uint32_t>(t.shape.size()));
    for (uint64_t extent : t.shape) append<uint64_t>(head, extent);
    append<int32_t>(head, t.type);
    append<uint64_t>(head, t.offset);
  }
  header_written_ = true;
  put(head);
  put_padding(align_up(head.size(), alignment_) - head.size());
  data_size_ = offset;
}

void Writer::write(std::span<const std::byte> bytes) {
  if (!header_written_) write_header();
  while (!bytes.empty()) {
    if (current_ >= tensors_.size()) {
      fail("", fmt::format("{} bytes of data beyond the {} declared tensors", bytes.size(), tensors_.size()));
    }
    const uint64_t n = std::min<uint64_t>(tensors_[current_].n_bytes - filled_, bytes.size());
    put(bytes.first(n));
    bytes = bytes.subspan(n);
    advance(n);
  }
}

std::filesystem::path Writer::temporary_path() const {
  return file_.temporary_path();
}

void Writer::commit(const std::function<void(const std::filesystem::path&)>& verify) {
  if (committed_) return;
  if (!header_written_) write_header();
  if (current_ < tensors_.size()) {
    const PendingTensor& t = tensors_[current_];
    fail(fmt::format("tensor '{}'", t.name),
         fmt::format("only {} of its {} bytes were written ({} tensors incomplete)", filled_, t.n_bytes, tensors_.size() - current_));
  }
  flush();
  if (options_.sync) file_.sync();
  if (verify) verify(temporary_path());
  file_.publish();
  committed_ = true;
}

void Writer::advance(uint64_t n) {
  filled_ += n;
  const PendingTensor& t = tensors_[current_];
  if (filled_ == t.n_bytes) {
    put_padding(align_up(t.n_bytes, alignment_) - t.n_bytes);
    ++current_;
    filled_ = 0;
  }
}

void Writer::write_from(int fd, uint64_t offset, uint64_t n) {
  if (!header_written_) write_header();
  constexpr uint64_t kKernelCopyThreshold = uint64_t{1} << 20;
  while (n > 0) {
    if (current_ >= tensors_.size()) fail("", fmt::format("{} bytes of data beyond the {} declared tensors", n, tensors_.size()));
    const uint64_t take = std::min<uint64_t>(tensors_[current_].n_bytes - filled_, n);
    if (take >= kKernelCopyThreshold) {
      flush();
      uint64_t left = take;
      auto in_offset = static_cast<loff_t>(offset);
      while (left > 0) {
        const ssize_t copied = ::copy_file_range(fd, &in_offset, file_.fd(), nullptr, left, 0);
        if (copied < 0 && errno == EINTR) continue;
        if (copied <= 0) break;  // unsupported here, or a short source: finish through the buffer
        left -= static_cast<uint64_t>(copied);
        written_ += static_cast<uint64_t>(copied);
        start_writeback();
      }
      read_through_buffer(fd, static_cast<uint64_t>(in_offset), left);
    } else {
      read_through_buffer(fd, offset, take);
    }
    offset += take;
    n -= take;
    advance(take);
  }
}

void Writer::read_through_buffer(int fd, uint64_t offset, uint64_t n) {
  while (n > 0) {
    if (buffered_ == kBufferSize) flush();
    const size_t chunk = static_cast<size_t>(std::min<uint64_t>(n, kBufferSize - buffered_));
    const ssize_t got = ::pread(fd, buffer_.get() + buffered_, chunk, static_cast<off_t>(offset));
    if (got < 0 && errno == EINTR) continue;
    if (got <= 0) {
      fail("", got == 0 ? fmt::format("the source ended early at byte {}", offset)
                        : fmt::format("read failed at byte {}: {}", offset, std::strerror(errno)));
    }
    buffered_ += static_cast<size_t>(got);
    offset += static_cast<uint64_t>(got);
    n -= static_cast<uint64_t>(got);
  }
}

void Writer::put(std::span<const std::byte> bytes) {
  if (buffered_ + bytes.size() > kBufferSize) flush();
  if (bytes.size() >= kBufferSize) {
    write_all(bytes);  // large chunks skip the buffer
    return;
  }
  std::memcpy(buffer_.get() + buffered_, bytes.data(), bytes.size());
  buffered_ += bytes.size();
}

void Writer::put_padding(uint64_t n) {
  static constexpr std::byte kZeros[64] = {};
  while (n > 0) {
    const uint64_t chunk = std::min<uint64_t>(n, sizeof kZeros);
    put({kZeros, chunk});
    n -= chunk;
  }
}

void Writer::flush() {
  write_all({buffer_.get(), buffered_});
  buffered_ = 0;
}

void Writer::write_all(std::span<const std::byte> bytes) {
  try {
    file_.write_all(bytes);
  } catch (const Error& error) {
    fail("", fmt::format("{} (after {} bytes)", error.message(), written_));
  }
  written_ += bytes.size();
  start_writeback();
}

// Starts the disk write-back of every full 32 MiB written so far, so the disk works while we
// copy and the final fsync has little left to wait for (and dirty pages stay bounded).
void Writer::start_writeback() {
  constexpr uint64_t kWritebackChunk = uint64_t{32} << 20;
  if (!options_.sync || written_ - writeback_ < kWritebackChunk) return;
  const uint64_t end = written_ / kWritebackChunk * kWritebackChunk;
  // Advisory: a filesystem that does not support it simply syncs everything at commit.
  ::sync_file_range(file_.fd(), static_cast<off64_t>(writeback_), static_cast<off64_t>(end - writeback_), SYNC_FILE_RANGE_WRITE);
  writeback_ = end;
}

}  // namespace archreg::gguf
