#include "gguf/error.hpp"

#include <fmt/format.h>

namespace archreg::gguf {
namespace {

std::string describe(const std::string& file, const std::optional<uint64_t>& offset, const std::string& subject,
                     const std::string& message) {
  std::string text = file;
  if (offset) text += fmt::format(": byte {}", *offset);
  if (!subject.empty()) text += ": " + subject;
  return text + ": " + message;
}

}  // namespace

Error::Error(std::string file, std::optional<uint64_t> offset, std::string subject, std::string message)
    : std::runtime_error(describe(file, offset, subject, message)),
      file_(std::move(file)),
      offset_(offset),
      subject_(std::move(subject)),
      message_(std::move(message)) {}

namespace {

// Length of the valid UTF-8 sequence starting text[at], or 0 if it is not one (overlong
// forms, surrogates and code points above U+10FFFF are invalid).
size_t utf8_sequence_length(std::string_view text, size_t at, uint32_t& code_point) {
  const auto byte = [&](size_t i) { return static_cast<unsigned char>(text[i]); };
  const unsigned char lead = byte(at);
  size_t length = 0;
  if (lead < 0x80) {
    code_point = lead;
    return 1;
  }
  if (lead >= 0xc2 && lead <= 0xdf) {
    length = 2;
    code_point = lead & 0x1fu;
  } else if (lead >= 0xe0 && lead <= 0xef) {
    length = 3;
    code_point = lead & 0x0fu;
  } else if (lead >= 0xf0 && lead <= 0xf4) {
    length = 4;
    code_point = lead & 0x07u;
  } else {
    return 0;
  }
  if (text.size() - at < length) return 0;
  for (size_t i = 1; i < length; ++i) {
    if ((byte(at + i) & 0xc0u) != 0x80u) return 0;
    code_point = (code_point << 6) | (byte(at + i) & 0x3fu);
  }
  constexpr uint32_t kSmallest[] = {0, 0, 0x80, 0x800, 0x10000};
  if (code_point < kSmallest[length] || code_point > 0x10ffff || (code_point >= 0xd800 && code_point <= 0xdfff)) return 0;
  return length;
}

bool unsafe_on_a_terminal(uint32_t code_point) {
  return code_point < 0x20 || (code_point >= 0x7f && code_point <= 0x9f) || (code_point >= 0x202a && code_point <= 0x202e) ||
         (code_point >= 0x2066 && code_point <= 0x2069);
}

}  // namespace

std::string printable(std::string_view text, Escape target) {
  std::string out;
  out.reserve(text.size());
  size_t at = 0;
  while (at < text.size()) {
    uint32_t code_point = 0;
    size_t length = utf8_sequence_length(text, at, code_point);
    const bool escape = length == 0 || (target == Escape::kTerminal && unsafe_on_a_terminal(code_point));
    if (length == 0) length = 1;
    if (escape) {
      for (size_t i = 0; i < length; ++i) {
        constexpr char kHex[] = "0123456789abcdef";
        const auto byte = static_cast<unsigned char>(text[at + i]);
        const char escaped[4] = {'\\', 'x', kHex[byte >> 4], kHex[byte & 0xf]};
        out.append(escaped, 4);
      }
    } else {
      out.append(text.substr(at, length));
    }
    at += length;
  }
  return out;
}

}  // namespace archreg::gguf
