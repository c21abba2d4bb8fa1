// Chat prompts rendered the way llama.cpp's chat_apply_template renders them: the model's
// tokenizer.chat_template (a Jinja program) is recognised by family with llama.cpp's own
// heuristics and rendered by fixed code for that family, not by running the Jinja
// (docs/decisions.md, "Chat templates: families, not Jinja").
#pragma once

#include <span>
#include <stdexcept>
#include <string>
#include <string_view>
#include <vector>

#include "text/format_names.hpp"

namespace archreg::gguf {
class Reader;
}

namespace archreg::text {

class ChatTemplateError : public std::runtime_error {
 public:
  using std::runtime_error::runtime_error;
};

struct ChatMessage {
  std::string role;  // "system", "user", "assistant" (others are passed through as llama.cpp does)
  std::string content;
};

class ChatTemplate {
 public:
  // "raw": no markup at all, the contents concatenated (for base models and custom prompts).
  static constexpr std::string_view kRaw = "raw";

  // `name` is a family name (chat_template_names()), "raw", or a Jinja template to recognise.
  // Throws ChatTemplateError naming the options when nothing archreg renders matches.
  static ChatTemplate from_name_or_jinja(std::string_view name);
  // The file's tokenizer.chat_template, unless `override_name` is given. A file without a
  // template is an error naming the options (llama.cpp falls back to chatml silently).
  static ChatTemplate from_gguf(const gguf::Reader& reader, std::string_view override_name = {});

  std::string_view family() const { return family_->name; }
  bool is_raw() const { return family_ == nullptr || family_->name == kRaw; }
  // The prompt for `messages`, ending with the assistant's turn opened when
  // `add_generation_prompt`.
  std::string apply(std::span<const ChatMessage> messages, bool add_generation_prompt) const;

 private:
  explicit ChatTemplate(const ChatFamily* family) : family_(family) {}
  const ChatFamily* family_;
};

// Family names archreg renders, for --chat-template and messages.
std::vector<std::string_view> chat_template_names();

}  // namespace archreg::text
