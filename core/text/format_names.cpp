// Names the file format and llama.cpp define, mapped to behaviour. Quoted names here are data:
// tests/unit/core_names_no_arch_test.cpp exempts string literals in this one file, because a
// pre-tokenizer or chat-template name is how a GGUF file says which rules it was made with.
// Patterns and settings follow llama.cpp's vocabulary code (its BPE pre-tokenizer table and vocabulary
// loader); detection follows its chat code (llm_chat_detect_template).
#include "text/format_names.hpp"

#include <algorithm>
#include <array>

namespace archreg::text {
namespace {

constexpr std::array<TokenizerModelName, 13> kTokenizerModels = {{
    {"llama", VocabKind::kSentencePiece, "SentencePiece BPE"},
    {"gpt2", VocabKind::kByteLevelBpe, "byte-level BPE"},
    {"bert", VocabKind::kUnsupported, "WordPiece (WPM)"},
    {"t5", VocabKind::kUnsupported, "Unigram (UGM)"},
    {"rwkv", VocabKind::kUnsupported, "RWKV greedy trie"},
    {"plamo2", VocabKind::kUnsupported, "PLaMo-2 Aho-Corasick"},
    {"gemma4", VocabKind::kUnsupported, "raw-UTF-8 BPE"},
    {"hybriddna", VocabKind::kUnsupported, "DNA k-mer BPE"},
    {"whitespace", VocabKind::kUnsupported, "whitespace-split BPE"},
    {"test", VocabKind::kUnsupported, "llama.cpp's test vocabulary"},
    {"none", VocabKind::kUnsupported, "no vocabulary"},
    {"no_vocab", VocabKind::kUnsupported, "no vocabulary"},
    {"", VocabKind::kUnsupported, ""},
}};

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
constexpr std::string_view kLatinCjkRanges[] = {
    "[\r\n]",
    "\\s?[A-Za-zµÀ-ÖØ-öø-ƺƼ-ƿǄ-ʓʕ-ʯͰ-ͳͶͷͻ-ͽͿΆΈ-ΊΌΎ-ΡΣ-ϵϷ-ҁҊ-ԯԱ-ՖႠ-ჅᎠ-Ᏽᏸ-ᏽᲐ-ᲺᲽ-Ჿᴀ-ᴫᵫ-ᵷᵹ-ᶚḀ-ἕἘ-Ἕἠ-ὅὈ-Ὅὐ-ὗὙὛὝὟ-ώᾀ-ᾴᾶ-ᾼιῂ-ῄῆ-"
    "ῌῐ-ΐῖ-Ίῠ-Ῥῲ-ῴῶ-ῼℂℇℊ-ℓℕℙ-ℝℤΩℨK-ℭℯ-ℴℹℼ-ℿⅅ-ⅉⅎↃↄⰀ-ⱻⱾ-ⳤⳫ-ⳮⳲⳳꙀ-ꙭꚀ-ꚛꜢ-ꝯꝱ-ꞇꞋ-ꞎꭰ-ꮿﬀ-ﬆﬓ-ﬗＡ-Ｚａ-ｚ𐐀-𐑏𐒰-𐓓𐓘-𐓻𐲀-𐲲𐳀-"
    "𐳲𑢠-𑣟𞤀-𞥃]+",
    "\\s?[!-/:-~！-／：-～‘-‟　-。]+",
    "\\s+$",
    "[一-龥ࠀ-一가-퟿]+",
    "\\p{N}+",
};
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

struct PreGroup {
  std::span<const std::string_view> patterns;
  bool clean_spaces;
  bool ignore_merges;
  bool add_bos;
  bool no_default_bos;
  std::initializer_list<std::string_view> names;
};

// {patterns, clean_spaces, ignore_merges, add_bos, no_default_bos, names}, as llama.cpp sets
// them in its vocabulary loader.
const std::vector<PreTokenizerName>& pre_tokenizers() {
  static const std::vector<PreTokenizerName> table = [] {
    const PreGroup groups[] = {
        {kDefault, true, false, false, false, {"default"}},
        {kWordsDigits3,
         true,
         true,
         true,
         false,
         {"llama3", "llama-v3", "llama-bpe", "falcon3", "falcon-h1", "pixtral", "midm-2.0", "lfm2", "jina-v5-nano"}},
        {kWordsDigits3, true, false, false, false, {"dbrx", "smaug-bpe"}},
        {kWordsDigits3, true, false, false, true, {"chatglm-bpe"}},
        {kWordsDigits3, true, true, false, true, {"glm4", "glm5"}},
        {kLatinCjkRanges, false, false, false, false, {"deepseek-llm"}},
        {kLettersPunctuationCjk, false, false, false, false, {"deepseek-coder"}},
        {kCjkMarks, false, false, false, false, {"deepseek-v3", "hunyuan-dense", "joyai-llm", "hy_v4"}},
        {kPunctuationRuns, true, false, false, false, {"falcon"}},
        {kGpt2SingleDigits, true, false, false, false, {"starcoder", "refact", "codeshell", "exaone", "minerva-7b", "mellum2"}},
        {kGpt2SingleDigits, false, false, false, false, {"smollm", "command-r"}},
        {kGpt2,
         true,
         false,
         false,
         false,
         {"gpt-2", "phi-2", "jina-es", "jina-de", "gigachat", "jina-v2-es", "jina-v2-de", "a.x-4.0", "mellum", "modern-bert", "mpt", "olmo",
          "jais", "exaone4"}},
        {kGpt2, false, false, false, false, {"trillion", "granite-docling"}},
        {kWordsDigit1, false, false, false, false, {"qwen2", "deepseek-r1-qwen", "kormo", "f2llmv2", "hunyuan", "solar-open", "grok-2"}},
        {kWordsDigit1, true, false, false, false, {"megrez", "stablelm2"}},
        {kNotSeparators, false, false, false, false, {"poro-chat"}},
        {kNotSeparators, true, false, false, false, {"bloom", "gpt3-finnish"}},
        {kNotSeparatorsSingleDigits, false, false, false, false, {"viking"}},
        {kCaseWordsDigit1, false, true, true, false, {"tekken"}},
        {kCaseWordsDigits3, false, false, false, false, {"gpt-4o", "llama4", "kanana2", "talkie", "minimax-m2"}},
        {kApostropheFirst, false, false, false, false, {"bailingmoe", "bailingmoe2", "llada-moe"}},
        {kWordsDigit1NoNewlinePunct, false, false, false, false, {"seed-coder"}},
    };
    std::vector<PreTokenizerName> result;
    for (const PreGroup& group : groups) {
      for (std::string_view name : group.names) {
        result.push_back({name, group.patterns, group.clean_spaces, group.ignore_merges, group.add_bos, group.no_default_bos});
      }
    }
    return result;
  }();
  return table;
}

constexpr ChatStyle kNo = ChatStyle::kNotRendered;
constexpr ChatFamily kChatFamilies[] = {
    {"chatml", ChatStyle::kImStartEnd},
    {"llama2", ChatStyle::kInstSys},
    {"llama2-sys", ChatStyle::kInstSys, kSystemInSys},
    {"llama2-sys-bos", ChatStyle::kInstSys, kSystemInSys | kBosInsideHistory},
    {"llama2-sys-strip", ChatStyle::kInstSys, kSystemInSys | kStripContent},
    {"mistral-v1", ChatStyle::kInstLeading, kLeadingSpace | kTrailingSpace},
    {"mistral-v3", ChatStyle::kInstLeading, kTrailingSpace | kTrimAssistant},
    {"mistral-v3-tekken", ChatStyle::kInstLeading, 0},
    {"mistral-v7", ChatStyle::kSystemPromptInst, kTrailingSpace},
    {"mistral-v7-tekken", ChatStyle::kSystemPromptInst, 0},
    {"phi3", ChatStyle::kRolePipesEnd},
    {"phi4", ChatStyle::kImSep},
    {"falcon3", ChatStyle::kRolePipesNewline},
    {"zephyr", ChatStyle::kRolePipesEndOfText},
    {"monarch", kNo},
    {"gemma", ChatStyle::kStartOfTurn},
    {"orion", kNo},
    {"openchat", kNo},
    {"vicuna", kNo},
    {"vicuna-orca", kNo},
    {"deepseek", kNo},
    {"deepseek2", kNo},
    {"deepseek3", ChatStyle::kFullwidthBars},
    {"deepseek-ocr", kNo},
    {"command-r", kNo},
    {"llama3", ChatStyle::kHeaderIdEot},
    {"chatglm3", kNo},
    {"chatglm4", kNo},
    {"glmedge", kNo},
    {"minicpm", kNo},
    {"exaone3", kNo},
    {"exaone4", kNo},
    {"exaone-moe", kNo},
    {"rwkv-world", kNo},
    {"granite", kNo},
    {"granite-4.0", kNo},
    {"granite-4.1", kNo},
    {"gigachat", kNo},
    {"megrez", kNo},
    {"yandex", kNo},
    {"bailing", kNo},
    {"bailing-think", kNo},
    {"bailing2", kNo},
    {"llama4", ChatStyle::kHeaderStartEot},
    {"smolvlm", ChatStyle::kUserAssistantColon},
    {"hunyuan-moe", kNo},
    {"gpt-oss", ChatStyle::kHarmony},
    {"hunyuan-dense", kNo},
    {"hunyuan-vl", kNo},
    {"kimi-k2", kNo},
    {"seed_oss", kNo},
    {"grok-2", kNo},
    {"pangu-embedded", kNo},
    {"solar-open", ChatStyle::kBeginContent},
};

}  // namespace

std::span<const TokenizerModelName> tokenizer_models() {
  return {kTokenizerModels.data(), kTokenizerModels.size() - 1};
}

const PreTokenizerName* find_pre_tokenizer(std::string_view name) {
  const auto& table = pre_tokenizers();
  const auto it = std::find_if(table.begin(), table.end(), [&](const PreTokenizerName& entry) { return entry.name == name; });
  return it == table.end() ? nullptr : &*it;
}

std::vector<std::string_view> pre_tokenizer_names() {
  std::vector<std::string_view> names;
  for (const PreTokenizerName& entry : pre_tokenizers()) names.push_back(entry.name);
  return names;
}

std::span<const ChatFamily> chat_families() {
  return kChatFamilies;
}

std::string_view detect_chat_family(std::string_view t) {
  for (const ChatFamily& family : kChatFamilies) {
    if (family.name == t) return family.name;
  }
  const auto has = [&](std::string_view needle) { return t.find(needle) != std::string_view::npos; };
  if (has("<|im_start|>")) {
    return has("<|im_sep|>") ? "phi4" : has("<end_of_utterance>") ? "smolvlm" : "chatml";
  }
  if (t.substr(0, 7) == "mistral" || has("[INST]")) {
    if (has("[SYSTEM_PROMPT]")) return "mistral-v7";
    if (has("' [INST] ' + system_message") || has("[AVAILABLE_TOOLS]")) {
      if (has(" [INST]")) return "mistral-v1";
      if (has("\"[INST]\"")) return "mistral-v3-tekken";
      return "mistral-v3";
    }
    if (has("content.strip()")) return "llama2-sys-strip";
    if (has("bos_token + '[INST]")) return "llama2-sys-bos";
    if (has("<<SYS>>")) return "llama2-sys";
    return "llama2";
  }
  if (has("<|assistant|>") && has("<|end|>")) return "phi3";
  if (has("[gMASK]<sop>")) return "chatglm4";
  if (has("<|assistant|>") && has("<|user|>")) {
    if (has("<|tool_declare|>")) return "exaone-moe";
    return has("</s>") ? "falcon3" : "glmedge";
  }
  if (has("<|{{ item['role'] }}|>") && has("<|begin_of_image|>")) return "glmedge";
  if (has("<|user|>") && has("<|endoftext|>")) return "zephyr";
  if (has("bos_token + message['role']")) return "monarch";
  if (has("<start_of_turn>")) return "gemma";
  if (has("'\\n\\nAssistant: ' + eos_token")) return "orion";
  if (has("GPT4 Correct ")) return "openchat";
  if (has("USER: ") && has("ASSISTANT: ")) return has("SYSTEM: ") ? "vicuna-orca" : "vicuna";
  if (has("### Instruction:") && has("<|EOT|>")) return "deepseek";
  if (has("<|START_OF_TURN_TOKEN|>") && has("<|USER_TOKEN|>")) return "command-r";
  if (has("<|start_header_id|>") && has("<|end_header_id|>")) return "llama3";
  if (has("[gMASK]sop")) return "chatglm3";
  if (has("<用户>")) return "minicpm";
  if (has("'Assistant: ' + message['content'] + eos_token")) return "deepseek2";
  if (has("<｜Assistant｜>") && has("<｜User｜>") && has("<｜end▁of▁sentence｜>")) return "deepseek3";
  if (has("[|system|]") && has("[|assistant|]") && has("[|endofturn|]")) return has("[|tool|]") ? "exaone4" : "exaone3";
  if (has("rwkv-world") || has("{{- 'User: ' + message['content']|trim + '\\n\\n' -}}")) return "rwkv-world";
  if (has("<|start_of_role|>")) {
    if (has("<tool_call>") || has("<tools>")) return has("g4_default_system_message") ? "granite-4.0" : "granite-4.1";
    return "granite";
  }
  if (has("message['role'] + additional_special_tokens[0] + message['content'] + additional_special_tokens[1]")) return "gigachat";
  if (has("<|role_start|>")) return "megrez";
  if (has(" Ассистент:")) return "yandex";
  if (has("<role>ASSISTANT</role>") && has("'HUMAN'")) return "bailing";
  if (has("<role>ASSISTANT</role>") && has("\"HUMAN\"") && has("<think>")) return "bailing-think";
  if (has("<role>ASSISTANT</role>") && has("<role>HUMAN</role>") && has("<|role_end|>")) return "bailing2";
  if (has("<|header_start|>") && has("<|header_end|>")) return "llama4";
  if (has("<|endofuserprompt|>")) return "dots1";
  if (has("<|extra_0|>") && has("<|extra_4|>")) return "hunyuan-moe";
  if (has("<|start|>") && has("<|channel|>")) return "gpt-oss";
  if (has("<｜hy_Assistant｜>") && has("<｜hy_begin▁of▁sentence｜>")) return "hunyuan-vl";
  if (has("<｜hy_Assistant｜>") && has("<｜hy_place▁holder▁no▁3｜>")) return "hunyuan-dense";
  if (has("<|im_assistant|>assistant<|im_middle|>")) return "kimi-k2";
  if (has("<seed:bos>")) return "seed_oss";
  if (has("'Assistant: '  + message['content'] + '<|separator|>")) return "grok-2";
  if (has("[unused9]系统：[unused10]")) return "pangu-embedded";
  if (has("<|begin|>") && has("<|end|>") && has("<|content|>")) return "solar-open";
  return "";
}

}  // namespace archreg::text
