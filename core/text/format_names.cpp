// The meaning of the names GGUF tokenizer metadata and chat templates use. The names themselves
// are data — arch-specs/text/formats.yaml, compiled in (formats_data.cpp is generated from it by
// CMake) — so core/ names no model (DESIGN.md invariant 1) and a new pre-tokenizer or template
// family is an entry there. What stays here is behaviour: the regex sets a pre-tokenizer name
// selects, in llama.cpp's dialect (its BPE pre-tokenizer table), and the table reader.
#include "text/format_names.hpp"

#include <fmt/format.h>
#include <yaml-cpp/yaml.h>

#include <algorithm>
#include <deque>
#include <map>
#include <stdexcept>

namespace archreg::text {

extern const char kFormatsYaml[];  // formats_data.cpp, generated from arch-specs/text/formats.yaml

namespace {

// Contractions, letters, 1-3 digits, punctuation with trailing newlines, whitespace.
constexpr std::string_view kWordsDigits3[] = {
    "(?:'[sS]|'[tT]|'[rR][eE]|'[vV][eE]|'[mM]|'[lL][lL]|'[dD])|[^\\r\\n\\p{L}\\p{N}]?\\p{L}+|\\p{N}{1,3}| "
    "?[^\\s\\p{L}\\p{N}]+[\\r\\n]*|\\s*[\\r\\n]+|\\s+(?!\\S)|\\s+",
};
// The same with single digits.
constexpr std::string_view kWordsDigit1[] = {
    "(?:'[sS]|'[tT]|'[rR][eE]|'[vV][eE]|'[mM]|'[lL][lL]|'[dD])|[^\\r\\n\\p{L}\\p{N}]?\\p{L}+|\\p{N}| "
    "?[^\\s\\p{L}\\p{N}]+[\\r\\n]*|\\s*[\\r\\n]+|\\s+(?!\\S)|\\s+",
};
// GPT-2's original split.
constexpr std::string_view kGpt2[] = {
    "'s|'t|'re|'ve|'m|'ll|'d| ?\\p{L}+| ?\\p{N}+| ?[^\\s\\p{L}\\p{N}]+|\\s+(?!\\S)",
};
// GPT-2's split after isolating every digit.
constexpr std::string_view kGpt2SingleDigits[] = {
    "\\p{N}",
    "'s|'t|'re|'ve|'m|'ll|'d| ?\\p{L}+| ?\\p{N}+| ?[^\\s\\p{L}\\p{N}]+|\\s+(?!\\S)",
};
// llama.cpp's default for an unnamed pre-tokenizer.
constexpr std::string_view kDefault[] = {
    "[\\p{P}\\$\\+<=>\\^~\\|]+",
    "'s|'t|'re|'ve|'m|'ll|'d| ?\\p{L}+| ?\\p{N}+| ?[^\\s\\p{L}\\p{N}]+|\\s+(?!\\S)",
    "\\p{N}+",
    "[0-9][0-9][0-9]",
};
constexpr std::string_view kPunctuationRuns[] = {
    "[\\p{P}\\$\\+<=>\\^~\\|`]+",
    "'s|'t|'re|'ve|'m|'ll|'d| ?\\p{L}+| ?\\p{N}+| ?[^\\s\\p{L}\\p{N}]+|\\s+(?!\\S)",
    "[0-9][0-9][0-9]",
};
// 1-3 digits, then CJK runs, then ASCII-punctuation-led words and letter/mark runs.
constexpr std::string_view kCjkMarks[] = {
    "\\p{N}{1,3}",
    "[一-龥぀-ゟ゠-ヿ]+",
    "[!\"#$%&'()*+,\\-./:;<=>?@\\[\\\\\\]^_`{|}~][A-Za-z]+|[^\r\n\\p{L}\\p{P}\\p{S}]?[\\p{L}\\p{M}]+| "
    "?[\\p{P}\\p{S}]+[\r\n]*|\\s*[\r\n]+|\\s+(?!\\S)|\\s+",
};
// clang-format re-splits these UTF-8 literals on every run, so it leaves them alone.
// clang-format off
constexpr std::string_view kLatinCjkRanges[] = {
    "[\r\n]",
    "\\s?[A-Za-zµÀ-ÖØ-öø-ƺƼ-ƿǄ-ʓʕ-ʯͰ-ͳͶͷͻ-ͽͿΆΈ-ΊΌΎ-ΡΣ-ϵϷ-ҁҊ-ԯԱ-ՖႠ-ჅᎠ-Ᏽᏸ-ᏽᲐ-ᲺᲽ-Ჿᴀ-ᴫᵫ-ᵷᵹ-ᶚḀ-ἕἘ-Ἕἠ-ὅὈ-Ὅὐ-ὗὙὛὝὟ-ώᾀ-ᾴᾶ-ᾼιῂ-"
    "ῄῆ-"
    "ῌῐ-ΐῖ-Ίῠ-Ῥῲ-ῴῶ-ῼℂℇℊ-ℓℕℙ-ℝℤΩℨK-ℭℯ-ℴℹℼ-ℿⅅ-ⅉⅎↃↄⰀ-ⱻⱾ-ⳤⳫ-ⳮⳲⳳꙀ-ꙭꚀ-ꚛꜢ-ꝯꝱ-ꞇꞋ-ꞎꭰ-ꮿﬀ-ﬆﬓ-ﬗＡ-Ｚａ-ｚ𐐀-𐑏𐒰-𐓓𐓘-𐓻𐲀-"
    "𐲲𐳀-"
    "𐳲𑢠-𑣟𞤀-𞥃]+",
    "\\s?[!-/:-~！-／：-～‘-‟　-。]+",
    "\\s+$",
    "[一-龥ࠀ-一가-퟿]+",
    "\\p{N}+",
};
// clang-format on
constexpr std::string_view kLettersPunctuationCjk[] = {
    "[\r\n]", "\\s?\\p{L}+", "\\s?\\p{P}+", "[一-龥ࠀ-一가-퟿]+", "\\p{N}",
};
// Case-aware words (upper-then-lower runs), as the o200k-style tokenizers split.
constexpr std::string_view kCaseWordsDigits3[] = {
    "[^\\r\\n\\p{L}\\p{N}]?((?=[\\p{L}])([^a-z]))*((?=[\\p{L}])([^A-Z]))+(?:'[sS]|'[tT]|'[rR][eE]|'[vV][eE]|'[mM]|'[lL][lL]|'[dD])?|[^"
    "\\r\\n\\p{L}\\p{N}]?((?=[\\p{L}])([^a-z]))+((?=[\\p{L}])([^A-Z]))*(?:'[sS]|'[tT]|'[rR][eE]|'[vV][eE]|'[mM]|'[lL][lL]|'[dD])?|\\p{N}{1,"
    "3}| ?[^\\s\\p{L}\\p{N}]+[\\r\\n/]*|\\s*[\\r\\n]+|\\s+(?!\\S)|\\s+",
};
constexpr std::string_view kCaseWordsDigit1[] = {
    "[^\\r\\n\\p{L}\\p{N}]?((?=[\\p{L}])([^a-z]))*((?=[\\p{L}])([^A-Z]))+|[^\\r\\n\\p{L}\\p{N}]?((?=[\\p{L}])([^a-z]))+((?=[\\p{L}])([^A-Z]"
    "))*|\\p{N}| ?[^\\s\\p{L}\\p{N}]+[\\r\\n/]*|\\s*[\\r\\n]+|\\s+(?!\\S)|\\s+",
};
constexpr std::string_view kApostropheFirst[] = {
    "'(?:[sSdDmMtT]|[lL][lL]|[vV][eE]|[rR][eE])|[^\\r\\n\\p{L}\\p{N}]?\\p{L}+|\\p{N}| "
    "?[^\\s\\p{L}\\p{N}]+[\\r\\n]*|\\s*[\\r\\n]|\\s+(?!\\S)|\\s+",
};
constexpr std::string_view kWordsDigit1NoNewlinePunct[] = {
    "(?:'[sS]|'[tT]|'[rR][eE]|'[vV][eE]|'[mM]|'[lL][lL]|'[dD])|[^\\r\\n\\p{L}\\p{N}]?\\p{L}+|\\p{N}{1}| "
    "?[^\\s\\p{L}\\p{N}\\r\\n]+|\\s*[\\r\\n]+|\\s+(?!\\S)|\\s+",
};
constexpr std::string_view kNotSeparators[] = {
    " ?[^(\\s|.,!?…。，、।۔،)]+",
};
constexpr std::string_view kNotSeparatorsSingleDigits[] = {
    " ?[^(\\s|.,!?…。，、।۔،)]+",
    "\\p{N}",
};

const std::map<std::string, std::span<const std::string_view>, std::less<>>& splits() {
  static const std::map<std::string, std::span<const std::string_view>, std::less<>> table = {
      {"default", kDefault},
      {"words_digits3", kWordsDigits3},
      {"words_digit1", kWordsDigit1},
      {"gpt2", kGpt2},
      {"gpt2_single_digits", kGpt2SingleDigits},
      {"punctuation_runs", kPunctuationRuns},
      {"cjk_marks", kCjkMarks},
      {"latin_cjk_ranges", kLatinCjkRanges},
      {"letters_punctuation_cjk", kLettersPunctuationCjk},
      {"case_words_digits3", kCaseWordsDigits3},
      {"case_words_digit1", kCaseWordsDigit1},
      {"apostrophe_first", kApostropheFirst},
      {"words_digit1_no_newline_punct", kWordsDigit1NoNewlinePunct},
      {"not_separators", kNotSeparators},
      {"not_separators_single_digits", kNotSeparatorsSingleDigits},
  };
  return table;
}

// One rule of llm_chat_detect_template: every `all` string occurs, and each `any` list has one
// that does ("^x": the template starts with x).
struct DetectionRule {
  std::string_view family;
  std::vector<std::string_view> all;
  std::vector<std::vector<std::string_view>> any;
};

struct Tables {
  std::deque<std::string> strings;  // owns every name the views below point into
  std::vector<TokenizerModelName> models;
  std::vector<PreTokenizerName> pre_tokenizers;
  std::vector<ChatFamily> families;
  std::vector<DetectionRule> rules;
};

[[noreturn]] void bad_data(const YAML::Node& node, const std::string& what) {
  throw std::logic_error(fmt::format("arch-specs/text/formats.yaml (built into archreg), line {}: {}", node.Mark().line + 1, what));
}

template <class T>
T lookup(const std::map<std::string, T, std::less<>>& table, const YAML::Node& node, const char* what) {
  const auto it = table.find(node.as<std::string>());
  if (it == table.end()) bad_data(node, fmt::format("unknown {} '{}'", what, node.as<std::string>()));
  return it->second;
}

Tables load_tables() {
  Tables t;
  const auto keep = [&t](const YAML::Node& node) -> std::string_view { return t.strings.emplace_back(node.as<std::string>()); };
  const auto flag = [](const YAML::Node& node, const char* key) { return node[key] && node[key].as<bool>(); };
  const YAML::Node root = YAML::Load(kFormatsYaml);

  const std::map<std::string, VocabKind, std::less<>> kinds = {
      {"sentencepiece", VocabKind::kSentencePiece}, {"byte_level_bpe", VocabKind::kByteLevelBpe}, {"unsupported", VocabKind::kUnsupported}};
  for (const YAML::Node& m : root["tokenizer_models"])
    t.models.push_back({keep(m["name"]), lookup(kinds, m["kind"], "kind"), keep(m["description"])});

  for (const YAML::Node& group : root["pre_tokenizers"]) {
    const std::span<const std::string_view> patterns = lookup(splits(), group["split"], "split");
    for (const YAML::Node& name : group["names"]) {
      t.pre_tokenizers.push_back({keep(name), patterns, flag(group, "clean_spaces"), flag(group, "ignore_merges"), flag(group, "add_bos"),
                                  flag(group, "no_default_bos")});
    }
  }

  const std::map<std::string, ChatStyle, std::less<>> styles = {
      {"im_start_end", ChatStyle::kImStartEnd},
      {"im_sep", ChatStyle::kImSep},
      {"inst_sys", ChatStyle::kInstSys},
      {"inst_leading", ChatStyle::kInstLeading},
      {"system_prompt_inst", ChatStyle::kSystemPromptInst},
      {"role_pipes_end", ChatStyle::kRolePipesEnd},
      {"role_pipes_newline", ChatStyle::kRolePipesNewline},
      {"role_pipes_end_of_text", ChatStyle::kRolePipesEndOfText},
      {"start_of_turn", ChatStyle::kStartOfTurn},
      {"fullwidth_bars", ChatStyle::kFullwidthBars},
      {"header_id_eot", ChatStyle::kHeaderIdEot},
      {"header_start_eot", ChatStyle::kHeaderStartEot},
      {"user_assistant_colon", ChatStyle::kUserAssistantColon},
      {"harmony", ChatStyle::kHarmony},
      {"begin_content", ChatStyle::kBeginContent},
  };
  const std::map<std::string, unsigned, std::less<>> variants = {
      {"system_in_sys", kSystemInSys},  {"bos_inside_history", kBosInsideHistory}, {"strip_content", kStripContent},
      {"leading_space", kLeadingSpace}, {"trailing_space", kTrailingSpace},        {"trim_assistant", kTrimAssistant},
  };
  for (const YAML::Node& f : root["chat_families"]) {
    ChatFamily family{keep(f["name"]), f["style"] ? lookup(styles, f["style"], "style") : ChatStyle::kNotRendered};
    for (const YAML::Node& v : f["variant"]) family.variant |= lookup(variants, v, "variant");
    t.families.push_back(family);
  }

  for (const YAML::Node& r : root["chat_detection"]) {
    DetectionRule rule{keep(r["family"]), {}, {}};
    for (const YAML::Node& s : r["all"]) rule.all.push_back(keep(s));
    for (const YAML::Node& list : r["any"]) {
      rule.any.emplace_back();
      for (const YAML::Node& s : list) rule.any.back().push_back(keep(s));
    }
    if (rule.all.empty() && rule.any.empty()) bad_data(r, "a detection rule needs 'all' or 'any'");
    t.rules.push_back(std::move(rule));
  }
  if (t.models.empty() || t.pre_tokenizers.empty() || t.families.empty() || t.rules.empty()) {
    bad_data(root, "tokenizer_models, pre_tokenizers, chat_families and chat_detection must all be present");
  }
  return t;
}

const Tables& tables() {
  static const Tables loaded = load_tables();
  return loaded;
}

}  // namespace

std::span<const TokenizerModelName> tokenizer_models() {
  return tables().models;
}

const PreTokenizerName* find_pre_tokenizer(std::string_view name) {
  const auto& table = tables().pre_tokenizers;
  const auto it = std::find_if(table.begin(), table.end(), [&](const PreTokenizerName& entry) { return entry.name == name; });
  return it == table.end() ? nullptr : &*it;
}

std::vector<std::string_view> pre_tokenizer_names() {
  std::vector<std::string_view> names;
  for (const PreTokenizerName& entry : tables().pre_tokenizers) names.push_back(entry.name);
  return names;
}

std::span<const ChatFamily> chat_families() {
  return tables().families;
}

std::string_view detect_chat_family(std::string_view t) {
  for (const ChatFamily& family : tables().families) {
    if (family.name == t) return family.name;
  }
  const auto has = [&](std::string_view needle) {
    return needle.starts_with('^') ? t.starts_with(needle.substr(1)) : t.find(needle) != std::string_view::npos;
  };
  for (const DetectionRule& rule : tables().rules) {
    const bool matches =
        std::all_of(rule.all.begin(), rule.all.end(), has) &&
        std::all_of(rule.any.begin(), rule.any.end(), [&](const auto& list) { return std::any_of(list.begin(), list.end(), has); });
    if (matches) return rule.family;
  }
  return "";
}

}  // namespace archreg::text
