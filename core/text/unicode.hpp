// Codepoints as the tokenizers see them: llama.cpp's category table, its lenient UTF-8 decoder,
// and GPT-2's byte-to-character map.
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

namespace archreg::text::unicode {

// Category flags of a codepoint (llama.cpp's unicode_cpt_flags bit layout).
enum Flag : uint16_t {
  kUndefined = 0x0001,
  kNumber = 0x0002,       // \p{N}
  kLetter = 0x0004,       // \p{L}
  kSeparator = 0x0008,    // \p{Z}
  kMark = 0x0010,         // \p{M}
  kPunctuation = 0x0020,  // \p{P}
  kSymbol = 0x0040,       // \p{S}
  kControl = 0x0080,      // \p{C}
  kCategoryMask = 0x00FF,
  kWhitespace = 0x0100,  // \s
};

inline constexpr uint32_t kMaxCodepoint = 0x10FFFF;
inline constexpr uint32_t kReplacement = 0xFFFD;

// Flags of `cp`; codepoints past U+10FFFF are kUndefined.
uint16_t flags(uint32_t cp);

// Bytes of the UTF-8 sequence a lead byte announces (1 for ASCII and for stray continuation
// bytes), as llama.cpp's unicode_len_utf8.
inline size_t sequence_length(unsigned char lead) {
  static constexpr unsigned char kLengths[16] = {1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 2, 2, 3, 4};
  return kLengths[lead >> 4];
}

// Decodes like llama.cpp (unicode_cpts_from_utf8): a byte that does not start a complete
// sequence becomes U+FFFD and decoding resumes at the next byte. Like llama.cpp it does not
// reject overlong forms or surrogates. Appends to `out`.
void decode(std::string_view text, std::vector<uint32_t>& out);

// Appends the UTF-8 encoding of `cp`. Throws std::invalid_argument past U+10FFFF.
void append_utf8(std::string& out, uint32_t cp);

// True when `text` is well-formed UTF-8 (no overlongs, surrogates or codepoints past U+10FFFF).
bool is_valid_utf8(std::string_view text);
// Length of the longest prefix of `text` that does not end inside a UTF-8 sequence that could
// still be completed by more bytes (an incomplete tail is held back; invalid bytes are not).
size_t complete_prefix(std::string_view text);

// GPT-2's byte-level alphabet: every byte maps to one printable codepoint.
std::string_view byte_to_utf8(unsigned char byte);
// The byte a codepoint stands for, or -1 when it is not in the alphabet.
int utf8_char_to_byte(uint32_t cp);

}  // namespace archreg::text::unicode
