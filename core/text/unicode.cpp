#include "text/unicode.hpp"

#include <array>
#include <memory>
#include <stdexcept>
#include <utility>

namespace archreg::text::unicode {
namespace {

#include "text/unicode_table.inc"

// One flag word per codepoint: 2.2 MB, built on first use (about a millisecond).
const std::vector<uint16_t>& flag_table() {
  static const std::vector<uint16_t> table = [] {
    std::vector<uint16_t> result(kMaxCodepoint + 1, kUndefined);
    constexpr size_t n = std::size(kCategoryRanges);
    for (size_t i = 0; i + 1 < n; ++i) {
      for (uint32_t cp = kCategoryRanges[i].first; cp < kCategoryRanges[i + 1].first; ++cp) {
        result[cp] = kCategoryRanges[i].second;
      }
    }
    for (uint32_t cp : kWhitespaceCodepoints) result[cp] = static_cast<uint16_t>(result[cp] | kWhitespace);
    return result;
  }();
  return table;
}

struct ByteAlphabet {
  std::array<std::string, 256> utf8;
  std::array<int16_t, 512> byte_of;  // codepoint (< 512) -> byte, or -1
};

const ByteAlphabet& byte_alphabet() {
  static const ByteAlphabet alphabet = [] {
    ByteAlphabet result;
    result.byte_of.fill(-1);
    auto printable = [](int b) { return (b >= 0x21 && b <= 0x7E) || (b >= 0xA1 && b <= 0xAC) || (b >= 0xAE && b <= 0xFF); };
    uint32_t next = 256;
    for (int b = 0; b < 256; ++b) {
      const uint32_t cp = printable(b) ? static_cast<uint32_t>(b) : next++;
      append_utf8(result.utf8[static_cast<size_t>(b)], cp);
      result.byte_of[cp] = static_cast<int16_t>(b);
    }
    return result;
  }();
  return alphabet;
}

}  // namespace

uint16_t flags(uint32_t cp) {
  return cp <= kMaxCodepoint ? flag_table()[cp] : static_cast<uint16_t>(kUndefined);
}

void decode(std::string_view text, std::vector<uint32_t>& out) {
  const auto* bytes = reinterpret_cast<const unsigned char*>(text.data());
  const size_t size = text.size();
  out.reserve(out.size() + size);
  size_t i = 0;
  auto continuation = [&](size_t at) { return (bytes[at] & 0xC0) == 0x80; };
  while (i < size) {
    const unsigned char lead = bytes[i];
    if (lead < 0x80) {
      out.push_back(lead);
      i += 1;
    } else if ((lead & 0xE0) == 0xC0 && i + 1 < size && continuation(i + 1)) {
      out.push_back((uint32_t{lead & 0x1Fu} << 6) | (bytes[i + 1] & 0x3Fu));
      i += 2;
    } else if ((lead & 0xF0) == 0xE0 && i + 2 < size && continuation(i + 1) && continuation(i + 2)) {
      out.push_back((uint32_t{lead & 0x0Fu} << 12) | (uint32_t{bytes[i + 1] & 0x3Fu} << 6) | (bytes[i + 2] & 0x3Fu));
      i += 3;
    } else if ((lead & 0xF8) == 0xF0 && i + 3 < size && continuation(i + 1) && continuation(i + 2) && continuation(i + 3)) {
      out.push_back((uint32_t{lead & 0x07u} << 18) | (uint32_t{bytes[i + 1] & 0x3Fu} << 12) | (uint32_t{bytes[i + 2] & 0x3Fu} << 6) |
                    (bytes[i + 3] & 0x3Fu));
      i += 4;
    } else {
      out.push_back(kReplacement);
      i += 1;
    }
  }
}

void append_utf8(std::string& out, uint32_t cp) {
  if (cp <= 0x7F) {
    out.push_back(static_cast<char>(cp));
  } else if (cp <= 0x7FF) {
    out.push_back(static_cast<char>(0xC0 | (cp >> 6)));
    out.push_back(static_cast<char>(0x80 | (cp & 0x3F)));
  } else if (cp <= 0xFFFF) {
    out.push_back(static_cast<char>(0xE0 | (cp >> 12)));
    out.push_back(static_cast<char>(0x80 | ((cp >> 6) & 0x3F)));
    out.push_back(static_cast<char>(0x80 | (cp & 0x3F)));
  } else if (cp <= kMaxCodepoint) {
    out.push_back(static_cast<char>(0xF0 | (cp >> 18)));
    out.push_back(static_cast<char>(0x80 | ((cp >> 12) & 0x3F)));
    out.push_back(static_cast<char>(0x80 | ((cp >> 6) & 0x3F)));
    out.push_back(static_cast<char>(0x80 | (cp & 0x3F)));
  } else {
    throw std::invalid_argument("codepoint past U+10FFFF");
  }
}

namespace {
// Length of the valid UTF-8 sequence at text[i], 0 when invalid, -1 when valid so far but cut
// short by the end of the text.
int valid_sequence(std::string_view text, size_t i) {
  const auto byte = [&](size_t at) { return static_cast<unsigned char>(text[at]); };
  const unsigned char lead = byte(i);
  if (lead < 0x80) return 1;
  int length = 0;
  unsigned char low = 0x80, high = 0xBF;  // allowed range of the second byte
  if (lead >= 0xC2 && lead <= 0xDF) {
    length = 2;
  } else if (lead >= 0xE0 && lead <= 0xEF) {
    length = 3;
    if (lead == 0xE0) low = 0xA0;
    if (lead == 0xED) high = 0x9F;
  } else if (lead >= 0xF0 && lead <= 0xF4) {
    length = 4;
    if (lead == 0xF0) low = 0x90;
    if (lead == 0xF4) high = 0x8F;
  } else {
    return 0;
  }
  for (int k = 1; k < length; ++k) {
    if (i + static_cast<size_t>(k) >= text.size()) return -1;
    const unsigned char next = byte(i + static_cast<size_t>(k));
    if (k == 1 ? (next < low || next > high) : (next & 0xC0) != 0x80) return 0;
  }
  return length;
}
}  // namespace

bool is_valid_utf8(std::string_view text) {
  for (size_t i = 0; i < text.size();) {
    const int length = valid_sequence(text, i);
    if (length <= 0) return false;
    i += static_cast<size_t>(length);
  }
  return true;
}

size_t complete_prefix(std::string_view text) {
  size_t i = 0;
  while (i < text.size()) {
    const int length = valid_sequence(text, i);
    if (length < 0) return i;  // a sequence that more bytes may complete
    i += length == 0 ? 1 : static_cast<size_t>(length);
  }
  return i;
}

std::string_view byte_to_utf8(unsigned char byte) {
  return byte_alphabet().utf8[byte];
}

int utf8_char_to_byte(uint32_t cp) {
  return cp < 512 ? byte_alphabet().byte_of[cp] : -1;
}

}  // namespace archreg::text::unicode
