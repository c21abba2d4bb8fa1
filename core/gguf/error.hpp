// The one exception type for malformed or unreadable GGUF files.
#pragma once

#include <cstdint>
#include <optional>
#include <stdexcept>
#include <string>
#include <string_view>

namespace archreg::gguf {

// Every reader and writer failure. what() is complete for a person:
//   "model.gguf: byte 1234: tensor 'blk.0.attn_q.weight': ne0 = 100 is not a multiple of ..."
// and the parts are available separately for JSON output and tests.
class Error : public std::runtime_error {
 public:
  Error(std::string file, std::optional<uint64_t> offset, std::string subject,
        std::string message);

  const std::string& file() const { return file_; }
  const std::optional<uint64_t>& offset() const { return offset_; }
  // "key 'general.alignment'", "tensor 'output.weight'", "header", or empty.
  const std::string& subject() const { return subject_; }
  // The bare description: what was expected, what was found.
  const std::string& message() const { return message_; }

 private:
  std::string file_;
  std::optional<uint64_t> offset_;
  std::string subject_;
  std::string message_;
};

// Names read from a file, made safe to print: bytes outside printable ASCII become \xNN, so a
// hostile key cannot put invalid UTF-8 or terminal escape sequences into a message.
std::string printable(std::string_view text);

}  // namespace archreg::gguf
