#include "text/pretokenizer.hpp"

#define PCRE2_CODE_UNIT_WIDTH 32
#include <pcre2.h>

#include <stdexcept>
#include <utility>

#include "text/unicode.hpp"

namespace archreg::text {
namespace {

using unicode::flags;

// The three patterns llama.cpp splits with hand-written code (unicode.cpp,
// unicode_regex_split_custom), compared as strings exactly as it does.
constexpr std::string_view kGpt2Pattern = "'s|'t|'re|'ve|'m|'ll|'d| ?\\p{L}+| ?\\p{N}+| ?[^\\s\\p{L}\\p{N}]+|\\s+(?!\\S)";
constexpr std::string_view kWordsDigits3Pattern =
    "(?:'[sS]|'[tT]|'[rR][eE]|'[vV][eE]|'[mM]|'[lL][lL]|'[dD])|[^\\r\\n\\p{L}\\p{N}]?\\p{L}+|\\p{N}{1,3}| "
    "?[^\\s\\p{L}\\p{N}]+[\\r\\n]*|\\s*[\\r\\n]+|\\s+(?!\\S)|\\s+";
constexpr std::string_view kWordsDigits3CaseInsensitivePattern =
    "(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\\r\\n\\p{L}\\p{N}]?\\p{L}+|\\p{N}{1,3}| ?[^\\s\\p{L}\\p{N}]+[\\r\\n]*|\\s*[\\r\\n]+|\\s+(?!\\S)|\\s+";
constexpr std::string_view kWordsDigit1Pattern =
    "(?:'[sS]|'[tT]|'[rR][eE]|'[vV][eE]|'[mM]|'[lL][lL]|'[dD])|[^\\r\\n\\p{L}\\p{N}]?\\p{L}+|\\p{N}| "
    "?[^\\s\\p{L}\\p{N}]+[\\r\\n]*|\\s*[\\r\\n]+|\\s+(?!\\S)|\\s+";

constexpr uint32_t kOutOfRange = 0xFFFFFFFF;
constexpr uint16_t kWs = unicode::kWhitespace, kLetter = unicode::kLetter, kNumber = unicode::kNumber;

// Category escapes and the collapsed unit plus ASCII members each stands for (llama.cpp's
// k_ucat_enum / k_ucat_cpt / k_ucat_map).
struct Category {
  std::string_view escape;
  char unit;
  std::string_view ascii;
};
constexpr Category kCategories[] = {
    {"\\p{N}", '\xD1', "\x30-\x39"},
    {"\\p{L}", '\xD2', "\x41-\x5A\x61-\x7A"},
    {"\\p{P}", '\xD3', "\x21-\x23\x25-\x2A\x2C-\x2F\x3A-\x3B\x3F-\x40\\\x5B-\\\x5D\x5F\\\x7B\\\x7D"},
    {"\\p{M}", '\xD4', ""},
    {"\\p{S}", '\xD5', "\\\x24\\\x2B\x3C-\x3E\x5E\x60\\\x7C\\\x7E"},
    {"\\p{Lu}", '\xD2', "\x41-\x5A\x61-\x7A"},
    {"\\p{Ll}", '\xD2', "\x41-\x5A\x61-\x7A"},
    {"\\p{Lt}", '\xD2', "\x41-\x5A\x61-\x7A"},
    {"\\p{Lm}", '\xD2', "\x41-\x5A\x61-\x7A"},
    {"\\p{Lo}", '\xD2', "\x41-\x5A\x61-\x7A"},
};

bool uses_categories(std::string_view pattern) {
  for (const Category& category : kCategories) {
    if (pattern.find(category.escape) != std::string_view::npos) return true;
  }
  return false;
}

// llama.cpp's regex rewrite for collapsed text: each category escape becomes a class of its
// collapsed unit and its ASCII members.
std::string collapse_pattern(std::string_view pattern) {
  std::string out;
  bool inside = false;
  for (size_t i = 0; i < pattern.size(); ++i) {
    if (pattern[i] == '[' && (i == 0 || pattern[i - 1] != '\\')) {
      out += '[';
      inside = true;
      continue;
    }
    if (inside && pattern[i] == ']' && pattern[i - 1] != '\\') {
      out += ']';
      inside = false;
      continue;
    }
    if (pattern[i] == '\\' && i + 3 < pattern.size() && pattern[i + 1] == 'p' && pattern[i + 2] == '{') {
      const size_t close = pattern.find('}', i + 3);
      if (close != std::string_view::npos && close <= i + 10) {
        const std::string_view escape = pattern.substr(i, close - i + 1);
        for (const Category& category : kCategories) {
          if (category.escape != escape) continue;
          if (!inside) out += '[';
          out += category.unit;
          out += category.ascii;
          if (!inside) out += ']';
          i = close;
          break;
        }
        if (i == close) continue;
      }
    }
    out += pattern[i];
  }
  return out;
}

// Per-thread PCRE2 scratch: a JIT stack big enough for the case-aware patterns on long runs.
struct MatchScratch {
  pcre2_match_context* context = nullptr;
  pcre2_jit_stack* stack = nullptr;
  MatchScratch() {
    context = pcre2_match_context_create(nullptr);
    stack = pcre2_jit_stack_create(32 * 1024, 16 * 1024 * 1024, nullptr);
    if (context != nullptr && stack != nullptr) pcre2_jit_stack_assign(context, nullptr, stack);
  }
  ~MatchScratch() {
    pcre2_jit_stack_free(stack);
    pcre2_match_context_free(context);
  }
  MatchScratch(const MatchScratch&) = delete;
  MatchScratch& operator=(const MatchScratch&) = delete;
};

MatchScratch& scratch() {
  thread_local MatchScratch instance;
  return instance;
}

enum class RuleKind { kGpt2, kWordsDigits3, kWordsDigit1, kRegexCollapsed, kRegexWide };

// Appends the pieces of one chunk [begin, end) that GPT-2's hand-written split makes.
void split_gpt2(std::span<const uint32_t> cps, size_t begin, size_t end, std::vector<uint32_t>& out) {
  const auto cpt_at = [&](size_t p) { return p < end ? cps[p] : kOutOfRange; };
  const auto flags_at = [&](size_t p) -> uint16_t { return p < end ? flags(cps[p]) : 0; };
  size_t prev_end = begin;
  const auto add = [&](size_t until) {
    const size_t length = until - prev_end;
    if (length > 0) out.push_back(static_cast<uint32_t>(length));
    prev_end = until;
    return length;
  };
  for (size_t pos = begin; pos < end;) {
    const uint32_t cpt = cps[pos];
    const uint16_t f = flags(cpt);
    if (cpt == '\'' && pos + 1 < end) {
      const uint32_t next = cps[pos + 1];
      if (next == 's' || next == 't' || next == 'm' || next == 'd') {
        pos += add(pos + 2);
        continue;
      }
      if (pos + 2 < end) {
        const uint32_t after = cps[pos + 2];
        if ((next == 'r' && after == 'e') || (next == 'v' && after == 'e') || (next == 'l' && after == 'l')) {
          pos += add(pos + 3);
          continue;
        }
      }
    }
    uint16_t f2 = cpt == ' ' ? flags_at(pos + 1) : f;
    if (f2 & kLetter) {
      pos += cpt == ' ';
      while (f2 & kLetter) f2 = flags_at(++pos);
      add(pos);
      continue;
    }
    if (f2 & kNumber) {
      pos += cpt == ' ';
      while (f2 & kNumber) f2 = flags_at(++pos);
      add(pos);
      continue;
    }
    if (!(f2 & (kWs | kLetter | kNumber)) && f2 != 0) {
      pos += cpt == ' ';
      while (!(f2 & (kWs | kLetter | kNumber)) && f2 != 0) f2 = flags_at(++pos);
      add(pos);
      continue;
    }
    size_t spaces = 0;
    while (flags_at(pos + spaces) & kWs) ++spaces;
    if (spaces > 1 && cpt_at(pos + spaces) != kOutOfRange) {
      pos += spaces - 1;
      add(pos);
      continue;
    }
    if (spaces > 0) {
      pos += spaces;
      add(pos);
      continue;
    }
    add(++pos);
  }
}

uint32_t ascii_lower(uint32_t cp) {
  return cp >= 'A' && cp <= 'Z' ? cp + 32 : cp;
}

// The contraction/letters/digits split (llama.cpp's two hand-written splitters for these patterns), with
// digit runs cut every `max_digits`.
void split_words_digits(std::span<const uint32_t> cps, size_t begin, size_t end, size_t max_digits, std::vector<uint32_t>& out) {
  const auto cpt_at = [&](size_t p) { return p < end ? cps[p] : kOutOfRange; };
  const auto flags_at = [&](size_t p) -> uint16_t { return p < end ? flags(cps[p]) : 0; };
  size_t prev_end = begin;
  const auto add = [&](size_t until) {
    const size_t length = until - prev_end;
    if (length > 0) out.push_back(static_cast<uint32_t>(length));
    prev_end = until;
    return length;
  };
  for (size_t pos = begin; pos < end;) {
    const uint32_t cpt = cps[pos];
    const uint16_t f = flags(cpt);
    if (cpt == '\'' && pos + 1 < end) {
      const uint32_t next = ascii_lower(cps[pos + 1]);
      if (next == 's' || next == 't' || next == 'm' || next == 'd') {
        pos += add(pos + 2);
        continue;
      }
      if (pos + 2 < end) {
        const uint32_t after = ascii_lower(cps[pos + 2]);
        if ((next == 'r' && after == 'e') || (next == 'v' && after == 'e') || (next == 'l' && after == 'l')) {
          pos += add(pos + 3);
          continue;
        }
      }
    }
    if (!(cpt == '\r' || cpt == '\n' || (f & kNumber))) {
      if ((f & kLetter) || (flags_at(pos + 1) & kLetter)) {
        ++pos;
        while (flags_at(pos) & kLetter) ++pos;
        add(pos);
        continue;
      }
    }
    if (f & kNumber) {
      size_t run_begin = pos;
      while (flags_at(pos) & kNumber) {
        if (++pos - run_begin >= max_digits) {
          add(pos);
          run_begin = pos;
        }
      }
      add(pos);
      continue;
    }
    uint16_t f2 = cpt == ' ' ? flags_at(pos + 1) : f;
    if (!(f2 & (kWs | kLetter | kNumber)) && f != 0) {
      pos += cpt == ' ';
      while (!(f2 & (kWs | kLetter | kNumber)) && f2 != 0) f2 = flags_at(++pos);
      uint32_t c2 = cpt_at(pos);
      while (c2 == '\r' || c2 == '\n') c2 = cpt_at(++pos);
      add(pos);
      continue;
    }
    size_t spaces = 0;
    size_t last_newline_end = 0;
    while (flags_at(pos + spaces) & kWs) {
      const uint32_t c2 = cpt_at(pos + spaces);
      if (c2 == '\r' || c2 == '\n') last_newline_end = pos + spaces + 1;
      ++spaces;
    }
    if (last_newline_end > 0) {
      pos = last_newline_end;
      add(pos);
      continue;
    }
    if (spaces > 1 && cpt_at(pos + spaces) != kOutOfRange) {
      pos += spaces - 1;
      add(pos);
      continue;
    }
    if (spaces > 0) {
      pos += spaces;
      add(pos);
      continue;
    }
    add(++pos);
  }
}

}  // namespace

struct PreTokenizer::Rule {
  RuleKind kind;
  std::string pattern;  // as given, for errors
  pcre2_code* code = nullptr;
  bool jit = false;

  ~Rule() { pcre2_code_free(code); }

  // Appends the pieces of chunk [begin, end) of `units` that the regex makes: each match and
  // each gap between matches (std::regex_iterator over the chunk, as llama.cpp does).
  void split_regex(const std::vector<uint32_t>& units, size_t begin, size_t end, pcre2_match_data* match,
                   std::vector<uint32_t>& out) const {
    const auto* subject = reinterpret_cast<PCRE2_SPTR>(units.data() + begin);
    const size_t length = end - begin;
    size_t gap_begin = 0;
    size_t from = 0;
    while (from <= length) {
      const int rc = jit ? pcre2_jit_match(code, subject, length, from, 0, match, scratch().context)
                         : pcre2_match(code, subject, length, from, 0, match, scratch().context);
      if (rc == PCRE2_ERROR_NOMATCH) break;
      if (rc < 0) {
        PCRE2_UCHAR message[256];
        pcre2_get_error_message(rc, message, 256);
        std::string text;
        for (size_t i = 0; i < 256 && message[i] != 0; ++i) text.push_back(static_cast<char>(message[i]));
        throw std::runtime_error("pre-tokenizer pattern '" + pattern + "' failed on the text: " + text);
      }
      const PCRE2_SIZE* ovector = pcre2_get_ovector_pointer(match);
      const size_t match_begin = ovector[0], match_end = ovector[1];
      if (match_begin > gap_begin) out.push_back(static_cast<uint32_t>(match_begin - gap_begin));
      if (match_end > match_begin) out.push_back(static_cast<uint32_t>(match_end - match_begin));
      gap_begin = match_end;
      from = match_end > match_begin ? match_end : match_end + 1;
    }
    if (gap_begin < length) out.push_back(static_cast<uint32_t>(length - gap_begin));
  }
};

PreTokenizer::PreTokenizer(std::span<const std::string_view> patterns) {
  for (std::string_view pattern : patterns) {
    auto rule = std::make_unique<Rule>();
    rule->pattern = std::string(pattern);
    if (pattern == kGpt2Pattern) {
      rule->kind = RuleKind::kGpt2;
    } else if (pattern == kWordsDigits3Pattern || pattern == kWordsDigits3CaseInsensitivePattern) {
      rule->kind = RuleKind::kWordsDigits3;
    } else if (pattern == kWordsDigit1Pattern) {
      rule->kind = RuleKind::kWordsDigit1;
    } else {
      std::vector<uint32_t> units;
      if (uses_categories(pattern)) {
        rule->kind = RuleKind::kRegexCollapsed;
        std::vector<uint32_t> check;
        unicode::decode(pattern, check);
        for (uint32_t cp : check) {
          if (cp >= 128)
            throw std::invalid_argument("pre-tokenizer pattern '" + rule->pattern + "' mixes categories and non-ASCII characters");
        }
        for (char c : collapse_pattern(pattern)) units.push_back(static_cast<unsigned char>(c));
        needs_collapsed_ = true;
      } else {
        rule->kind = RuleKind::kRegexWide;
        unicode::decode(pattern, units);
        needs_wide_ = true;
      }
      int error = 0;
      PCRE2_SIZE error_offset = 0;
      rule->code =
          pcre2_compile(reinterpret_cast<PCRE2_SPTR>(units.data()), units.size(), PCRE2_DOLLAR_ENDONLY, &error, &error_offset, nullptr);
      if (rule->code == nullptr) {
        throw std::invalid_argument("pre-tokenizer pattern '" + rule->pattern + "' does not compile (PCRE2 error " + std::to_string(error) +
                                    " at " + std::to_string(error_offset) + ")");
      }
      rule->jit = pcre2_jit_compile(rule->code, PCRE2_JIT_COMPLETE) == 0;
    }
    rules_.push_back(std::move(rule));
  }
}

PreTokenizer::PreTokenizer(PreTokenizer&&) noexcept = default;
PreTokenizer& PreTokenizer::operator=(PreTokenizer&&) noexcept = default;
PreTokenizer::~PreTokenizer() = default;

void PreTokenizer::split(std::span<const uint32_t> cps, std::vector<uint32_t>& word_lengths) const {
  word_lengths.assign(1, static_cast<uint32_t>(cps.size()));
  if (cps.empty()) {
    word_lengths.clear();
    return;
  }
  // llama.cpp's collapsed text: ASCII as is, other whitespace as VT, other codepoints as their
  // category's unit (0xD0 for the categories no pattern names).
  std::vector<uint32_t> collapsed, wide;
  if (needs_collapsed_) {
    collapsed.resize(cps.size());
    for (size_t i = 0; i < cps.size(); ++i) {
      const uint32_t cp = cps[i];
      if (cp < 128) {
        collapsed[i] = cp;
        continue;
      }
      const uint16_t f = flags(cp);
      if (f & kWs) {
        collapsed[i] = 0x0B;
        continue;
      }
      switch (f & unicode::kCategoryMask) {
        case unicode::kNumber: collapsed[i] = 0xD1; break;
        case unicode::kLetter: collapsed[i] = 0xD2; break;
        case unicode::kPunctuation: collapsed[i] = 0xD3; break;
        case unicode::kMark: collapsed[i] = 0xD4; break;
        case unicode::kSymbol: collapsed[i] = 0xD5; break;
        default: collapsed[i] = 0xD0; break;
      }
    }
  }
  if (needs_wide_) {
    wide.assign(cps.begin(), cps.end());
    for (uint32_t& cp : wide) {
      if (cp > 0x7F && (flags(cp) & kWs)) cp = 0x0B;
    }
  }
  std::vector<uint32_t> next;
  for (const auto& rule : rules_) {
    next.clear();
    next.reserve(word_lengths.size() * 2);
    pcre2_match_data* match = rule->code != nullptr ? pcre2_match_data_create_from_pattern(rule->code, nullptr) : nullptr;
    size_t begin = 0;
    try {
      for (uint32_t length : word_lengths) {
        const size_t end = begin + length;
        switch (rule->kind) {
          case RuleKind::kGpt2: split_gpt2(cps, begin, end, next); break;
          case RuleKind::kWordsDigits3: split_words_digits(cps, begin, end, 3, next); break;
          case RuleKind::kWordsDigit1: split_words_digits(cps, begin, end, 1, next); break;
          case RuleKind::kRegexCollapsed: rule->split_regex(collapsed, begin, end, match, next); break;
          case RuleKind::kRegexWide: rule->split_regex(wide, begin, end, match, next); break;
        }
        begin = end;
      }
    } catch (...) {
      pcre2_match_data_free(match);
      throw;
    }
    pcre2_match_data_free(match);
    word_lengths.swap(next);
  }
}

}  // namespace archreg::text
