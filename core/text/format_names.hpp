// The names the GGUF tokenizer metadata and llama.cpp's chat templates use, each mapped to what
// it means for archreg. The names are data (arch-specs/text/formats.yaml, compiled in and read by
// format_names.cpp); the rest of core/text reads these tables.
#pragma once

#include <span>
#include <string>
#include <string_view>
#include <vector>

namespace archreg::text {

// tokenizer.ggml.model
enum class VocabKind {
  kSentencePiece,  // SentencePiece-style BPE: scores, byte fallback, U+2581 for spaces
  kByteLevelBpe,   // byte-level BPE with merges and a pre-tokenizer
  kUnsupported,
};
struct TokenizerModelName {
  std::string_view name;
  VocabKind kind;
  std::string_view description;  // for refusals: what the model is
};
std::span<const TokenizerModelName> tokenizer_models();

// tokenizer.ggml.pre: the regexes that split text into words before BPE, in llama.cpp's
// dialect (see pretokenizer.hpp), and the vocabulary settings llama.cpp ties to the name.
struct PreTokenizerName {
  std::string_view name;
  std::span<const std::string_view> patterns;
  bool clean_spaces = true;     // detokenize: " ?" -> "?" and friends
  bool ignore_merges = false;   // a word that is itself a token is not split
  bool add_bos = false;         // overrides the model default (metadata still wins)
  bool no_default_bos = false;  // the default BOS id is unset
};
// nullptr for a name archreg does not know.
const PreTokenizerName* find_pre_tokenizer(std::string_view name);
std::vector<std::string_view> pre_tokenizer_names();
inline constexpr std::string_view kDefaultPreTokenizer = "default";

// Chat templates: llama.cpp's built-in family names, the markup each stands for
// (llm_chat_apply_template), and how llama.cpp recognises a Jinja template.
enum class ChatStyle {
  kNotRendered,         // recognised, but archreg does not render it
  kImStartEnd,          // <|im_start|>role\n...<|im_end|>\n
  kImSep,               // <|im_start|>role<|im_sep|>...<|im_end|>
  kInstSys,             // [INST] <<SYS>>...<</SYS>> ... [/INST] (variants below)
  kInstLeading,         // [INST] ... [/INST] with the variants' spacing
  kSystemPromptInst,    // [SYSTEM_PROMPT]...[/SYSTEM_PROMPT][INST]...[/INST]
  kRolePipesEnd,        // <|role|>\n...<|end|>\n
  kRolePipesNewline,    // <|role|>\n...\n
  kRolePipesEndOfText,  // <|role|>\n...<|endoftext|>\n
  kStartOfTurn,         // <start_of_turn>user\n...<end_of_turn>\n, "model" for the assistant
  kFullwidthBars,       // <｜User｜>...<｜Assistant｜>...<｜end▁of▁sentence｜>
  kHeaderIdEot,         // <|start_header_id|>role<|end_header_id|>\n\n...<|eot_id|>
  kHeaderStartEot,      // <|header_start|>role<|header_end|>\n\n...<|eot|>
  kUserAssistantColon,  // <|im_start|>User: ...<end_of_utterance>\n
  kHarmony,             // <|start|>role<|message|>...<|end|>
  kBeginContent,        // <|begin|>role<|content|>...<|end|>
};
// Variant bits of kInstSys and kInstLeading / kSystemPromptInst.
enum ChatVariant : unsigned {
  kSystemInSys = 1,       // kInstSys: the system message inside <<SYS>>
  kBosInsideHistory = 2,  // kInstSys: later turns start with <s>
  kStripContent = 4,      // kInstSys: contents trimmed
  kLeadingSpace = 8,      // kInstLeading: " [INST]"
  kTrailingSpace = 16,    // kInstLeading/kSystemPromptInst: "[INST] "
  kTrimAssistant = 32,    // kInstLeading: assistant contents trimmed
};
struct ChatFamily {
  std::string_view name;  // llama.cpp's name, accepted by --chat-template
  ChatStyle style;
  unsigned variant = 0;
};
std::span<const ChatFamily> chat_families();
// The family name llama.cpp's llm_chat_detect_template picks for `jinja` (a family name is
// itself accepted), or "" when it recognises none.
std::string_view detect_chat_family(std::string_view jinja);

}  // namespace archreg::text
