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
  Error(std::string file, std::optional<uint64_t> offset, std::string subject, std::string message);

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

// Where a string from a file (a GGUF key or value, a spec, a manifest, a file name) is going.
enum class Escape {
  kTerminal,  // a terminal or a log line: one line of printable text
  kJson,      // a JSON string: nlohmann escapes control characters itself
};

// The one way a string from a file reaches a person or a JSON document. Valid UTF-8 is kept;
// each byte that is not part of valid UTF-8 becomes the four characters \xNN, so every JSON
// document is valid and nothing is lost silently. For a terminal, control characters (C0,
// DEL, C1) and the bidirectional overrides (U+202A..U+202E, U+2066..U+2069) become \xNN too
// (one escape per byte), so a hostile name cannot move the cursor, recolour the terminal,
// split a line or reorder what is shown. Idempotent: escaping escaped text changes nothing.
std::string printable(std::string_view text, Escape target = Escape::kTerminal);

}  // namespace archreg::gguf
