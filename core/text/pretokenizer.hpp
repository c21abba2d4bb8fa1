// Splits text into the words BPE runs on, exactly where llama.cpp splits them.
//
// Patterns are written in llama.cpp's dialect: ECMAScript-like regexes
// where \p{L}, \p{N}, \p{P}, \p{S}, \p{M} (and \p{Lu}... which mean \p{L}) stand for llama.cpp's
// own codepoint categories (unicode.hpp). Like llama.cpp, each pattern splits every piece the
// previous one produced; a match and the text between matches both become pieces. Three patterns
// llama.cpp runs through hand-written code (GPT-2's and the two contraction/letter/digit ones)
// are run through equivalent code here, because that code differs from the regex on unassigned
// codepoints; the rest run on PCRE2 (JIT) over llama.cpp's "collapsed" text, one code unit per
// codepoint with its category as the unit, so a pattern sees exactly what std::regex sees there.
#pragma once

#include <cstdint>
#include <memory>
#include <span>
#include <string>
#include <string_view>
#include <vector>

namespace archreg::text {

class PreTokenizer {
 public:
  // Throws std::invalid_argument naming the pattern when one does not compile.
  explicit PreTokenizer(std::span<const std::string_view> patterns);
  PreTokenizer(PreTokenizer&&) noexcept;
  PreTokenizer& operator=(PreTokenizer&&) noexcept;
  ~PreTokenizer();

  // Splits `codepoints` (see unicode::decode) into words; replaces `word_lengths` with each
  // word's length in codepoints, in order (they sum to the input's length).
  void split(std::span<const uint32_t> codepoints, std::vector<uint32_t>& word_lengths) const;

 private:
  struct Rule;
  std::vector<std::unique_ptr<Rule>> rules_;
  bool needs_collapsed_ = false;
  bool needs_wide_ = false;
};

}  // namespace archreg::text
