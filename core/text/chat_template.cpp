#include "text/chat_template.hpp"

#include <fmt/format.h>

#include <algorithm>
#include <cctype>

#include "gguf/error.hpp"
#include "gguf/reader.hpp"

namespace archreg::text {
namespace {

constexpr ChatFamily kRawFamily{ChatTemplate::kRaw, ChatStyle::kNotRendered};

// llama.cpp's chat trim: ASCII whitespace (isspace in the C locale) at both ends.
std::string trim(std::string_view text) {
  const auto space = [](char c) { return std::isspace(static_cast<unsigned char>(c)) != 0; };
  size_t begin = 0, end = text.size();
  while (begin < end && space(text[begin])) ++begin;
  while (end > begin && space(text[end - 1])) --end;
  return std::string(text.substr(begin, end - begin));
}

std::string options_text() {
  std::string names;
  for (std::string_view name : chat_template_names()) names += (names.empty() ? "" : ", ") + std::string(name);
  return names;
}

const ChatFamily* find_family(std::string_view name) {
  for (const ChatFamily& family : chat_families()) {
    if (family.name == name) return &family;
  }
  return nullptr;
}

}  // namespace

std::vector<std::string_view> chat_template_names() {
  std::vector<std::string_view> names;
  for (const ChatFamily& family : chat_families()) {
    if (family.style != ChatStyle::kNotRendered) names.push_back(family.name);
  }
  names.push_back(ChatTemplate::kRaw);
  return names;
}

ChatTemplate ChatTemplate::from_name_or_jinja(std::string_view name) {
  if (name == kRaw) return ChatTemplate(&kRawFamily);
  const std::string_view detected = detect_chat_family(name);
  if (detected.empty()) {
    throw ChatTemplateError(
        fmt::format("the chat template is not one llama.cpp recognises; choose one with "
                    "--chat-template NAME: {} ('raw' sends the prompt as it is)",
                    options_text()));
  }
  const ChatFamily* family = find_family(detected);
  if (family == nullptr || family->style == ChatStyle::kNotRendered) {
    throw ChatTemplateError(
        fmt::format("the chat template is of the '{}' family, which archreg does not render; "
                    "choose one with --chat-template NAME: {} ('raw' sends the prompt as it is)",
                    detected, options_text()));
  }
  return ChatTemplate(family);
}

ChatTemplate ChatTemplate::from_gguf(const gguf::Reader& reader, std::string_view override_name) {
  if (!override_name.empty()) {
    const ChatFamily* family = find_family(override_name);
    if (override_name != kRaw && (family == nullptr || family->style == ChatStyle::kNotRendered)) {
      throw ChatTemplateError(
          fmt::format("unknown chat template '{}'; archreg renders: {}", gguf::printable(override_name), options_text()));
    }
    return from_name_or_jinja(override_name);
  }
  const auto jinja = reader.find("tokenizer.chat_template");
  if (!jinja || jinja->type() != gguf::ValueType::kString) {
    throw ChatTemplateError(
        fmt::format("{}: key 'tokenizer.chat_template': missing, so the chat format is unknown; choose one "
                    "with --chat-template NAME: {} ('raw' sends the prompt as it is)",
                    reader.path(), options_text()));
  }
  try {
    return from_name_or_jinja(jinja->as_string());
  } catch (const ChatTemplateError& error) {
    throw ChatTemplateError(fmt::format("{}: key 'tokenizer.chat_template': {}", reader.path(), error.what()));
  }
}

std::string ChatTemplate::apply(std::span<const ChatMessage> chat, bool add_ass) const {
  std::string out;
  const unsigned variant = family_->variant;
  switch (family_->style) {
    case ChatStyle::kNotRendered:  // raw
      for (const ChatMessage& m : chat) out += m.content;
      break;
    case ChatStyle::kImStartEnd:
      for (const ChatMessage& m : chat) out += "<|im_start|>" + m.role + "\n" + m.content + "<|im_end|>\n";
      if (add_ass) out += "<|im_start|>assistant\n";
      break;
    case ChatStyle::kImSep:
      for (const ChatMessage& m : chat) out += "<|im_start|>" + m.role + "<|im_sep|>" + m.content + "<|im_end|>";
      if (add_ass) out += "<|im_start|>assistant<|im_sep|>";
      break;
    case ChatStyle::kSystemPromptInst: {
      const std::string space = (variant & kTrailingSpace) ? " " : "";
      for (const ChatMessage& m : chat) {
        if (m.role == "system")
          out += "[SYSTEM_PROMPT]" + space + m.content + "[/SYSTEM_PROMPT]";
        else if (m.role == "user")
          out += "[INST]" + space + m.content + "[/INST]";
        else
          out += space + m.content + "</s>";
      }
      break;
    }
    case ChatStyle::kInstLeading: {
      const std::string leading = (variant & kLeadingSpace) ? " " : "";
      const std::string trailing = (variant & kTrailingSpace) ? " " : "";
      bool inside_turn = false;
      for (const ChatMessage& m : chat) {
        if (!inside_turn) {
          out += leading + "[INST]" + trailing;
          inside_turn = true;
        }
        if (m.role == "system") {
          out += m.content + "\n\n";
        } else if (m.role == "user") {
          out += m.content + leading + "[/INST]";
        } else {
          out += trailing + ((variant & kTrimAssistant) ? trim(m.content) : m.content) + "</s>";
          inside_turn = false;
        }
      }
      break;
    }
    case ChatStyle::kInstSys: {
      bool inside_turn = true;
      out += "[INST] ";
      for (const ChatMessage& m : chat) {
        const std::string content = (variant & kStripContent) ? trim(m.content) : m.content;
        if (!inside_turn) {
          inside_turn = true;
          out += (variant & kBosInsideHistory) ? "<s>[INST] " : "[INST] ";
        }
        if (m.role == "system") {
          out += (variant & kSystemInSys) ? "<<SYS>>\n" + content + "\n<</SYS>>\n\n" : content + "\n";
        } else if (m.role == "user") {
          out += content + " [/INST]";
        } else {
          out += content + "</s>";
          inside_turn = false;
        }
      }
      break;
    }
    case ChatStyle::kRolePipesEnd:
      for (const ChatMessage& m : chat) out += "<|" + m.role + "|>\n" + m.content + "<|end|>\n";
      if (add_ass) out += "<|assistant|>\n";
      break;
    case ChatStyle::kRolePipesNewline:
      for (const ChatMessage& m : chat) out += "<|" + m.role + "|>\n" + m.content + "\n";
      if (add_ass) out += "<|assistant|>\n";
      break;
    case ChatStyle::kRolePipesEndOfText:
      for (const ChatMessage& m : chat) out += "<|" + m.role + "|>\n" + m.content + "<|endoftext|>\n";
      if (add_ass) out += "<|assistant|>\n";
      break;
    case ChatStyle::kStartOfTurn: {
      std::string system_prompt;
      for (const ChatMessage& m : chat) {
        if (m.role == "system") {
          system_prompt += trim(m.content);
          continue;
        }
        const std::string role = m.role == "assistant" ? "model" : m.role;
        out += "<start_of_turn>" + role + "\n";
        if (!system_prompt.empty() && role != "model") {
          out += system_prompt + "\n\n";
          system_prompt.clear();
        }
        out += trim(m.content) + "<end_of_turn>\n";
      }
      if (add_ass) out += "<start_of_turn>model\n";
      break;
    }
    case ChatStyle::kFullwidthBars:
      for (const ChatMessage& m : chat) {
        if (m.role == "system")
          out += m.content + "\n\n";
        else if (m.role == "user")
          out += "<｜User｜>" + m.content;
        else if (m.role == "assistant")
          out += "<｜Assistant｜>" + m.content + "<｜end▁of▁sentence｜>";
      }
      if (add_ass) out += "<｜Assistant｜>";
      break;
    case ChatStyle::kHeaderIdEot:
      for (const ChatMessage& m : chat) out += "<|start_header_id|>" + m.role + "<|end_header_id|>\n\n" + trim(m.content) + "<|eot_id|>";
      if (add_ass) out += "<|start_header_id|>assistant<|end_header_id|>\n\n";
      break;
    case ChatStyle::kHeaderStartEot:
      for (const ChatMessage& m : chat) out += "<|header_start|>" + m.role + "<|header_end|>\n\n" + trim(m.content) + "<|eot|>";
      if (add_ass) out += "<|header_start|>assistant<|header_end|>\n\n";
      break;
    case ChatStyle::kUserAssistantColon:
      out += "<|im_start|>";
      for (const ChatMessage& m : chat) {
        if (m.role == "system")
          out += m.content + "\n\n";
        else if (m.role == "user")
          out += "User: " + m.content + "<end_of_utterance>\n";
        else
          out += "Assistant: " + m.content + "<end_of_utterance>\n";
      }
      if (add_ass) out += "Assistant:";
      break;
    case ChatStyle::kHarmony:
      for (const ChatMessage& m : chat)
        out += "<|start|>" + m.role + "<|message|>" + m.content + (m.role == "assistant" ? "<|return|>" : "<|end|>");
      if (add_ass) out += "<|start|>assistant";
      break;
    case ChatStyle::kBeginContent:
      for (const ChatMessage& m : chat) out += "<|begin|>" + m.role + "<|content|>" + m.content + "<|end|>";
      if (add_ass) out += "<|begin|>assistant";
      break;
  }
  return out;
}

}  // namespace archreg::text
