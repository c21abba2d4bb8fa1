// A file that appears under its name only once it is complete. It is written as an unnamed
// temporary file in the destination's directory (O_TMPFILE; a hidden ".NAME.tmp-XXXXXX" where the
// filesystem lacks it) and published by a link or an atomic rename. Destroyed unpublished — an
// exception, an interruption — it leaves nothing behind; with O_TMPFILE not even a killed
// process leaves a partial file. gguf::Writer and `run --dump-logits` write through it.
#pragma once

#include <cstddef>
#include <filesystem>
#include <span>
#include <string>

namespace archreg::gguf {

class AtomicFile {
 public:
  // Creates the temporary file. Throws gguf::Error naming `destination` when it is a directory,
  // exists without `overwrite`, or its directory cannot hold a new file.
  AtomicFile(std::filesystem::path destination, bool overwrite);
  AtomicFile(const AtomicFile&) = delete;
  AtomicFile& operator=(const AtomicFile&) = delete;
  ~AtomicFile();

  int fd() const { return fd_; }
  const std::filesystem::path& destination() const { return destination_; }
  // A path that opens the unpublished file (to verify it before publishing).
  std::filesystem::path temporary_path() const;

  // Writes every byte (retrying short writes and EINTR). Throws gguf::Error.
  void write_all(std::span<const std::byte> bytes);
  // Makes the written bytes durable. Throws gguf::Error.
  void sync();
  // Gives the file its name — atomically replacing the destination with `overwrite`, failing if
  // it appeared meanwhile without — and closes it. Throws gguf::Error; the file is then gone.
  void publish();

 private:
  void publish_unnamed();
  void move_into_place(const std::filesystem::path& from);
  [[noreturn]] void fail(const std::string& message) const;

  std::filesystem::path destination_;
  std::filesystem::path temporary_;  // empty with O_TMPFILE: the file has no name until published
  bool overwrite_ = false;
  bool published_ = false;
  int fd_ = -1;
};

}  // namespace archreg::gguf
