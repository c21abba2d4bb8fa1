#include "gguf/atomic_file.hpp"

#include <fcntl.h>
#include <fmt/format.h>
#include <stdio.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>

#include "gguf/error.hpp"

namespace archreg::gguf {

AtomicFile::AtomicFile(std::filesystem::path destination, bool overwrite) : destination_(std::move(destination)), overwrite_(overwrite) {
  std::error_code error;
  if (std::filesystem::is_directory(destination_, error)) fail("is a directory");
  if (!overwrite_ && std::filesystem::exists(destination_, error)) fail("already exists (use --force to replace it)");
  std::filesystem::path directory = destination_.parent_path();
  if (directory.empty()) directory = ".";
  fd_ = ::open(directory.c_str(), O_TMPFILE | O_WRONLY | O_CLOEXEC, 0666);  // mode honours the umask
  if (fd_ < 0) {
    std::string pattern = (directory / fmt::format(".{}.tmp-XXXXXX", destination_.filename().string())).string();
    fd_ = mkostemp(pattern.data(), O_CLOEXEC);
    if (fd_ < 0) fail(fmt::format("cannot create a temporary file in {}: {}", directory.string(), std::strerror(errno)));
    temporary_ = pattern;
  }
}

AtomicFile::~AtomicFile() {
  if (fd_ >= 0) ::close(fd_);  // an unnamed temporary file vanishes with its descriptor
  if (!published_ && !temporary_.empty()) ::unlink(temporary_.c_str());
}

void AtomicFile::fail(const std::string& message) const {
  throw Error(destination_.string(), std::nullopt, "", message);
}

std::filesystem::path AtomicFile::temporary_path() const {
  return temporary_.empty() ? std::filesystem::path(fmt::format("/proc/self/fd/{}", fd_)) : temporary_;
}

void AtomicFile::write_all(std::span<const std::byte> bytes) {
  const std::byte* data = bytes.data();
  size_t left = bytes.size();
  while (left > 0) {
    const ssize_t n = ::write(fd_, data, left);
    if (n < 0) {
      if (errno == EINTR) continue;
      fail(fmt::format("write failed: {}", std::strerror(errno)));
    }
    data += n;
    left -= static_cast<size_t>(n);
  }
}

void AtomicFile::sync() {
  if (::fsync(fd_) != 0) fail(fmt::format("cannot sync the output: {}", std::strerror(errno)));
}

void AtomicFile::publish() {
  if (published_) return;
  if (temporary_.empty()) {
    publish_unnamed();
  } else {
    if (::fchmod(fd_, 0644) != 0) fail(fmt::format("cannot set permissions: {}", std::strerror(errno)));
    move_into_place(temporary_);
  }
  const int fd = fd_;
  fd_ = -1;
  published_ = true;
  if (::close(fd) != 0) fail(fmt::format("cannot close the published file: {}", std::strerror(errno)));
}

void AtomicFile::publish_unnamed() {
  // Linking the unnamed file fails with EEXIST when the destination exists: no-overwrite for free.
  const std::string self = fmt::format("/proc/self/fd/{}", fd_);
  if (!overwrite_) {
    if (::linkat(AT_FDCWD, self.c_str(), AT_FDCWD, destination_.c_str(), AT_SYMLINK_FOLLOW) != 0) {
      const int saved = errno;
      fail(saved == EEXIST ? std::string("already exists (use --force to replace it)")
                           : fmt::format("cannot give the finished file its name: {}", std::strerror(saved)));
    }
    return;
  }
  // Replacing: link under a unique temporary name, then rename over the destination atomically.
  for (int attempt = 0;; ++attempt) {
    const std::filesystem::path named =
        destination_.parent_path() / fmt::format(".{}.tmp-{}-{}", destination_.filename().string(), ::getpid(), attempt);
    if (::linkat(AT_FDCWD, self.c_str(), AT_FDCWD, named.c_str(), AT_SYMLINK_FOLLOW) == 0) {
      temporary_ = named;
      move_into_place(named);
      return;
    }
    if (errno != EEXIST || attempt > 100) fail(fmt::format("cannot give the finished file its name: {}", std::strerror(errno)));
  }
}

void AtomicFile::move_into_place(const std::filesystem::path& from) {
  const unsigned flags = overwrite_ ? 0 : RENAME_NOREPLACE;
  if (::renameat2(AT_FDCWD, from.c_str(), AT_FDCWD, destination_.c_str(), flags) != 0) {
    const int saved = errno;
    ::unlink(from.c_str());
    temporary_.clear();
    fail(saved == EEXIST ? std::string("already exists (use --force to replace it)")
                         : fmt::format("cannot move the finished file into place: {}", std::strerror(saved)));
  }
  temporary_.clear();
}

}  // namespace archreg::gguf
