// `archreg tokenize MODEL (TEXT | -f FILE | --batch FILE | --chat FILE) [--special] [--json]
// [--no-bos-eos] [--chat-template NAME | --chat-template-file FILE]`: the token ids llama.cpp
// would give for a text, from the model's own vocabulary; with --chat, for a conversation
// rendered with the model's chat template.
#include <fmt/format.h>

#include <chrono>
#include <cstdio>
#include <fstream>
#include <iostream>
#include <iterator>
#include <memory>
#include <nlohmann/json.hpp>
#include <string>

#include "cli/commands.hpp"
#include "gguf/reader.hpp"
#include "text/chat_template.hpp"
#include "text/tokenizer.hpp"
#include "text/unicode.hpp"

namespace archreg::cli {
namespace {

using json = nlohmann::ordered_json;

std::string read_file(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) throw std::runtime_error(fmt::format("cannot read '{}'", gguf::printable(path)));
  return std::string(std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>());
}

std::string to_hex(std::string_view bytes) {
  std::string out;
  out.reserve(bytes.size() * 2);
  for (unsigned char c : bytes) out += fmt::format("{:02x}", c);
  return out;
}

std::string from_hex(std::string_view hex) {
  if (hex.size() % 2 != 0) throw std::runtime_error("\"hex\" has an odd number of digits");
  std::string out;
  for (size_t i = 0; i < hex.size(); i += 2) out += static_cast<char>(std::stoi(std::string(hex.substr(i, 2)), nullptr, 16));
  return out;
}

// One JSON object per input line: {"text": STRING} or {"hex": HEX} (any bytes, e.g. invalid
// UTF-8). One JSON object per output line, in order: {"ids": [...], "decoded_hex": HEX} where
// decoded is llama.cpp's detokenize(ids, remove_special=false, unparse_special=--special), or
// {"error": MESSAGE}.
void run_batch(const text::Tokenizer& tokenizer, const std::string& path, bool add_special, bool special) {
  std::ifstream in(path, std::ios::binary);
  if (!in) throw std::runtime_error(fmt::format("cannot read '{}'", gguf::printable(path)));
  std::string line;
  std::string out;
  for (size_t number = 1; std::getline(in, line); ++number) {
    if (line.empty()) continue;
    json result;
    try {
      const json request = json::parse(line);
      const std::string input =
          request.contains("hex") ? from_hex(request.at("hex").get<std::string>()) : request.at("text").get<std::string>();
      const std::vector<int32_t> ids = tokenizer.encode(input, add_special, special);
      result["ids"] = ids;
      result["decoded_hex"] = to_hex(tokenizer.decode(ids, false, special));
    } catch (const std::exception& error) {
      result = json{{"error", fmt::format("line {}: {}", number, gguf::printable(error.what(), gguf::Escape::kJson))}};
    }
    out += result.dump(-1, ' ', false, json::error_handler_t::replace);
    out += '\n';
    if (out.size() > (1 << 20)) {
      std::fwrite(out.data(), 1, out.size(), stdout);
      out.clear();
    }
  }
  std::fwrite(out.data(), 1, out.size(), stdout);
}

// {"messages": [{"role": ..., "content": ...}, ...], "add_generation_prompt": true} rendered with
// the chosen template.
std::string render_chat(const gguf::Reader& reader, const std::string& path, const std::string& name, const std::string& jinja_file,
                        std::string& family) {
  const json request = json::parse(read_file(path));
  std::vector<text::ChatMessage> messages;
  for (const json& message : request.at("messages")) {
    messages.push_back({message.at("role").get<std::string>(), message.at("content").get<std::string>()});
  }
  const bool add_generation_prompt = request.value("add_generation_prompt", true);
  const text::ChatTemplate chat =
      !jinja_file.empty() ? text::ChatTemplate::from_name_or_jinja(read_file(jinja_file)) : text::ChatTemplate::from_gguf(reader, name);
  family = std::string(chat.family());
  return chat.apply(messages, add_generation_prompt);
}

}  // namespace

void add_tokenize_command(CLI::App& app, int& exit_code) {
  auto* command = app.add_subcommand("tokenize", "Show the token ids of a text, as llama.cpp tokenizes it with the model's vocabulary");
  struct Options {
    std::string model;
    std::string text;
    std::string file;
    std::string batch;
    bool special = false;
    bool json = false;
    bool no_bos_eos = false;
    std::string chat;
    std::string chat_template;
    std::string chat_template_file;
    bool stats = false;
  };
  auto options = std::make_shared<Options>();
  command->add_option("MODEL", options->model, "GGUF file with a tokenizer.ggml.* vocabulary")->required();
  auto* text_option = command->add_option("TEXT", options->text, "Text to tokenize");
  auto* file_option = command->add_option("-f,--file", options->file, "Tokenize the bytes of this file");
  auto* batch_option =
      command->add_option("--batch", options->batch, "JSON lines, each {\"text\": ...} or {\"hex\": ...}: one JSON result line each");
  auto* chat_option = command->add_option("--chat", options->chat,
                                          "JSON {\"messages\": [{\"role\", \"content\"}...], \"add_generation_prompt\": true}: "
                                          "render it with the chat template, then tokenize (control tokens parsed)");
  // The family names are data parsed on first use (text/format_names.cpp): listing them here would
  // parse them on every archreg command, validate included; a wrong name's error lists them.
  auto* template_option = command->add_option("--chat-template", options->chat_template,
                                              "Chat template family instead of the model's (docs/cli.md lists them)");
  auto* template_file_option =
      command->add_option("--chat-template-file", options->chat_template_file, "A Jinja chat template to recognise instead of the model's");
  template_option->excludes(template_file_option);
  template_option->needs(chat_option);
  template_file_option->needs(chat_option);
  text_option->excludes(file_option)->excludes(batch_option)->excludes(chat_option);
  file_option->excludes(batch_option)->excludes(chat_option);
  batch_option->excludes(chat_option);
  command->add_flag("--special", options->special, "Turn the text of control tokens into those tokens (llama.cpp's parse_special)");
  command->add_flag("--no-bos-eos", options->no_bos_eos, "Do not add the BOS/EOS tokens the metadata asks for");
  command->add_flag("--json", options->json, "Print {\"ids\": [...], \"pieces\": [...]}");
  command->add_flag("--stats", options->stats, "Print only {\"bytes\", \"tokens\", \"load_ms\", \"tokenize_ms\"} (for benchmarks)");
  command->callback([options, &exit_code, text_option, file_option, batch_option, chat_option] {
    try {
      if (text_option->count() + file_option->count() + batch_option->count() + chat_option->count() == 0) {
        throw CLI::ValidationError("archreg tokenize", "give TEXT, -f FILE, --batch FILE or --chat FILE");
      }
      using Clock = std::chrono::steady_clock;
      const auto ms_since = [](Clock::time_point start) { return std::chrono::duration<double, std::milli>(Clock::now() - start).count(); };
      const auto load_start = Clock::now();
      const gguf::Reader reader = gguf::Reader::open(options->model);
      const text::Tokenizer tokenizer = text::Tokenizer::from_gguf(reader);
      const double load_ms = ms_since(load_start);
      for (const std::string& warning : tokenizer.warnings())
        fmt::print(stderr, "archreg tokenize: warning: {}\n", gguf::printable(warning));
      const bool add_special = !options->no_bos_eos;
      if (batch_option->count() > 0) {
        run_batch(tokenizer, options->batch, add_special, options->special);
        exit_code = kExitOk;
        return;
      }
      std::string input;
      std::string family;
      if (chat_option->count() > 0) {
        input = render_chat(reader, options->chat, options->chat_template, options->chat_template_file, family);
      } else {
        input = file_option->count() > 0 ? read_file(options->file) : options->text;
      }
      const bool special = options->special || chat_option->count() > 0;
      const auto tokenize_start = Clock::now();
      const std::vector<int32_t> ids = tokenizer.encode(input, add_special, special);
      const double tokenize_ms = ms_since(tokenize_start);
      if (options->stats) {
        fmt::print("{}\n",
                   json{{"bytes", input.size()}, {"tokens", ids.size()}, {"load_ms", load_ms}, {"tokenize_ms", tokenize_ms}}.dump());
        exit_code = kExitOk;
        return;
      }
      if (options->json) {
        json pieces = json::array();
        for (int32_t id : ids) pieces.push_back(gguf::printable(tokenizer.piece(id, true), gguf::Escape::kJson));
        json document;
        if (chat_option->count() > 0) {
          document["template"] = family;
          document["prompt"] = gguf::printable(input, gguf::Escape::kJson);
        }
        document["ids"] = ids;
        document["pieces"] = pieces;
        fmt::print("{}\n", document.dump(2, ' ', false, json::error_handler_t::replace));
      } else {
        if (chat_option->count() > 0) fmt::print("chat template: {}\n", family);
        for (int32_t id : ids) fmt::print("{:>7} -> '{}'\n", id, gguf::printable(tokenizer.piece(id, true)));
      }
      exit_code = kExitOk;
    } catch (const CLI::ValidationError&) {
      throw;
    } catch (const std::exception& error) {
      fmt::print(stderr, "archreg tokenize: {}\n", gguf::printable(error.what()));
      exit_code = kExitUnreadable;
    }
  });
}

}  // namespace archreg::cli
