#include "gguf/error.hpp"

#include <fmt/format.h>

namespace archreg::gguf {
namespace {

std::string describe(const std::string& file, const std::optional<uint64_t>& offset,
                     const std::string& subject, const std::string& message) {
  std::string text = file;
  if (offset) text += fmt::format(": byte {}", *offset);
  if (!subject.empty()) text += ": " + subject;
  return text + ": " + message;
}

}  // namespace

Error::Error(std::string file, std::optional<uint64_t> offset, std::string subject,
             std::string message)
    : std::runtime_error(describe(file, offset, subject, message)),
      file_(std::move(file)),
      offset_(offset),
      subject_(std::move(subject)),
      message_(std::move(message)) {}

}  // namespace archreg::gguf
