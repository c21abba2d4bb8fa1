// Streaming GGUF writer: declare metadata and tensor infos, then stream each tensor's bytes
// in order from any source. Nothing but the header and a 4 MiB buffer is held in memory.
//
// The output is a gguf::AtomicFile: an unnamed temporary file in the destination's directory,
// given its name by commit() only after it is complete, synced and (optionally) verified. A
// writer destroyed without commit() — an exception, an interruption — leaves nothing behind.
#pragma once

#include <cstddef>
#include <cstdint>
#include <filesystem>
#include <functional>
#include <memory>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "gguf/atomic_file.hpp"
#include "gguf/error.hpp"
#include "gguf/value.hpp"

namespace archreg::gguf {

struct WriterOptions {
  bool overwrite = false;  // replace an existing destination
  // Make the output durable (fsync, with write-back started as it is written) before it gets
  // its name. Off, the output is still complete and verified when named, but a power loss
  // soon after may lose it, as with cp.
  bool sync = true;
};

class Writer {
 public:
  explicit Writer(std::filesystem::path destination, WriterOptions options = {});
  Writer(const Writer&) = delete;
  Writer& operator=(const Writer&) = delete;
  ~Writer();

  // Metadata, in file order. Keys must be unique and non-empty. A `general.alignment` entry
  // (UINT32, power of two) sets the data alignment; any other type for it is an error.
  void add(std::string key, MetaValue value);
  // An entry copied verbatim from a Reader (Reader::raw_entry); `key` is its key.
  void add_raw(std::string_view key, std::span<const std::byte> entry_bytes);

  // Tensor infos, in file order. Validated like the reader validates them. Returns the index.
  size_t add_tensor(std::string name, int32_t ggml_type, std::span<const uint64_t> shape);

  uint32_t alignment() const { return alignment_; }
  uint64_t tensor_bytes(size_t index) const;

  // Streams data: the first call writes the header; the bytes fill the tensors in the order
  // they were added, each padded to the alignment once complete. Any chunking is allowed.
  void write(std::span<const std::byte> bytes);
  // Bytes still expected for the tensor being filled, and its index (== tensor count when done).
  uint64_t remaining_in_current() const;
  size_t current_tensor() const { return current_; }

  // Streams `n` bytes starting at `offset` of the open file `fd` (kernel-side copy where the
  // filesystem allows it), exactly as write() would stream them.
  void write_from(int fd, uint64_t offset, uint64_t n);

  // A path that opens the finished-but-unpublished output (for verification before commit).
  std::filesystem::path temporary_path() const;

  // Checks every tensor was filled, flushes and syncs, runs `verify` on temporary_path() (an
  // exception from it aborts the commit), then gives the file its name.
  void commit(const std::function<void(const std::filesystem::path&)>& verify = {});

 private:
  struct PendingTensor {
    std::string name;
    int32_t type;
    std::vector<uint64_t> shape;
    uint64_t n_bytes;
    uint64_t offset;
  };
  void write_header();
  void put(std::span<const std::byte> bytes);
  void advance(uint64_t n);  // accounts n bytes of the current tensor as written
  void read_through_buffer(int fd, uint64_t offset, uint64_t n);
  void put_padding(uint64_t n);
  void flush();
  void write_all(std::span<const std::byte> bytes);
  void start_writeback();
  [[noreturn]] void fail(std::string subject, std::string message) const;

  std::filesystem::path destination_;
  WriterOptions options_;
  AtomicFile file_;
  bool header_written_ = false;
  bool committed_ = false;
  uint32_t alignment_ = 32;
  std::vector<std::string> keys_;
  std::vector<std::byte> header_;  // serialized metadata entries
  std::vector<PendingTensor> tensors_;
  uint64_t data_size_ = 0;
  size_t current_ = 0;
  uint64_t filled_ = 0;                  // bytes of the current tensor written so far
  std::unique_ptr<std::byte[]> buffer_;  // not a vector: resizing one zero-fills before each read
  size_t buffered_ = 0;
  uint64_t written_ = 0;    // bytes handed to the OS so far
  uint64_t writeback_ = 0;  // bytes whose write-back to disk has been started
};

}  // namespace archreg::gguf
