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

std::string printable(std::string_view text) {
  std::string out;
  out.reserve(text.size());
  for (const char c : text) {
    const auto byte = static_cast<unsigned char>(c);
    if (byte >= 0x20 && byte < 0x7f && c != '\\') {
      out += c;
    } else {
      out += fmt::format("\\x{:02x}", byte);
    }
  }
  return out;
}

}  // namespace archreg::gguf
