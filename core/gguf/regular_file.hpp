// Opening a file that came from elsewhere (a GGUF file, a spec, a plugin manifest or library):
// only regular files, never blocking, never reading more than a stated limit. A named pipe, a
// device such as /dev/zero, a socket or a directory is refused before a byte is read: open()
// uses O_NONBLOCK, so even a FIFO without a writer cannot block it, and fstat() decides.
#pragma once

#include <fcntl.h>
#include <fmt/format.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstdint>
#include <cstring>
#include <filesystem>
#include <stdexcept>
#include <string>
#include <string_view>
#include <utility>

#include "gguf/error.hpp"

namespace archreg::gguf {

// Why a path could not be used as a regular file. message() is the bare reason, such as
// "is a named pipe (FIFO), not a regular file" or "cannot open: Too many levels of symbolic links".
class FileError : public std::runtime_error {
 public:
  FileError(std::string file, std::string message)
      : std::runtime_error(fmt::format("{}: {}", printable(file), message)), file_(std::move(file)), message_(std::move(message)) {}
  const std::string& file() const { return file_; }
  const std::string& message() const { return message_; }

 private:
  std::string file_;
  std::string message_;
};

// An open regular file: the descriptor (closed on destruction) and its size when opened.
class RegularFile {
 public:
  RegularFile(RegularFile&& other) noexcept : fd_(std::exchange(other.fd_, -1)), size_(other.size_) {}
  RegularFile& operator=(RegularFile&&) = delete;
  RegularFile(const RegularFile&) = delete;
  ~RegularFile() {
    if (fd_ >= 0) ::close(fd_);
  }
  int fd() const { return fd_; }
  uint64_t size() const { return size_; }

  // Throws FileError unless `path` (symbolic links followed) is a regular file we may read.
  static RegularFile open(const std::filesystem::path& path) {
    const int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC | O_NONBLOCK | O_NOCTTY);
    if (fd < 0) throw FileError(path.string(), fmt::format("cannot open: {}", std::strerror(errno)));
    RegularFile file(fd);
    struct stat info {};
    if (fstat(fd, &info) != 0) throw FileError(path.string(), fmt::format("cannot stat: {}", std::strerror(errno)));
    if (!S_ISREG(info.st_mode)) throw FileError(path.string(), fmt::format("is {}, not a regular file", kind_of(info.st_mode)));
    file.size_ = static_cast<uint64_t>(info.st_size);
    return file;
  }

 private:
  explicit RegularFile(int fd) : fd_(fd) {}

  static std::string_view kind_of(mode_t mode) {
    if (S_ISDIR(mode)) return "a directory";
    if (S_ISFIFO(mode)) return "a named pipe (FIFO)";
    if (S_ISCHR(mode)) return "a character device";
    if (S_ISBLK(mode)) return "a block device";
    if (S_ISSOCK(mode)) return "a socket";
    return "a special file";
  }

  int fd_ = -1;
  uint64_t size_ = 0;
};

// The whole content of a regular file of at most `max_bytes`; `what` names the file's role in
// the error ("spec", "plugin manifest"). Files whose size the kernel does not know in advance
// (/proc) are read up to the limit and refused past it.
inline std::string read_regular_file(const std::filesystem::path& path, uint64_t max_bytes, std::string_view what) {
  const RegularFile file = RegularFile::open(path);
  const auto too_big = [&](uint64_t size) {
    return FileError(path.string(), fmt::format("the {} is {} bytes; at most {} are read", what, size, max_bytes));
  };
  if (file.size() > max_bytes) throw too_big(file.size());
  std::string text(static_cast<size_t>(std::max<uint64_t>(file.size(), 4096) + 1), '\0');
  size_t used = 0;
  for (;;) {
    if (used == text.size()) {
      if (text.size() > max_bytes) break;
      text.resize(std::min<size_t>(text.size() * 2, static_cast<size_t>(max_bytes) + 1));
    }
    const ssize_t got = ::read(file.fd(), text.data() + used, text.size() - used);
    if (got < 0 && errno == EINTR) continue;
    if (got < 0) throw FileError(path.string(), fmt::format("cannot read: {}", std::strerror(errno)));
    if (got == 0) break;
    used += static_cast<size_t>(got);
  }
  if (used > max_bytes) throw too_big(used);
  text.resize(used);
  return text;
}

}  // namespace archreg::gguf
