// `archreg tokenize MODEL (TEXT | -f FILE | --batch FILE) [--special] [--json] [--no-bos-eos]`:
// the token ids llama.cpp would give for a text, from the model's own vocabulary.
#include <cstdio>
#include <fstream>
#include <iostream>
#include <iterator>
#include <memory>
#include <string>

#include <fmt/format.h>
#include <nlohmann/json.hpp>

#include "cli/commands.hpp"
#include "gguf/reader.hpp"
#include "text/tokenizer.hpp"

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
      const std::string input = request.contains("hex") ? from_hex(request.at("hex").get<std::string>()) : request.at("text").get<std::string>();
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
  };
  auto options = std::make_shared<Options>();
  command->add_option("MODEL", options->model, "GGUF file with a tokenizer.ggml.* vocabulary")->required();
  auto* text_option = command->add_option("TEXT", options->text, "Text to tokenize");
  auto* file_option = command->add_option("-f,--file", options->file, "Tokenize the bytes of this file");
  auto* batch_option = command->add_option("--batch", options->batch,
                                           "JSON lines, each {\"text\": ...} or {\"hex\": ...}: one JSON result line each");
  text_option->excludes(file_option)->excludes(batch_option);
  file_option->excludes(batch_option);
  command->add_flag("--special", options->special, "Turn the text of control tokens into those tokens (llama.cpp's parse_special)");
  command->add_flag("--no-bos-eos", options->no_bos_eos, "Do not add the BOS/EOS tokens the metadata asks for");
  command->add_flag("--json", options->json, "Print {\"ids\": [...], \"pieces\": [...]}");
  command->callback([options, &exit_code, text_option, file_option, batch_option] {
    try {
      if (text_option->count() == 0 && file_option->count() == 0 && batch_option->count() == 0) {
        throw CLI::ValidationError("archreg tokenize", "give TEXT, -f FILE or --batch FILE");
      }
      const gguf::Reader reader = gguf::Reader::open(options->model);
      const text::Tokenizer tokenizer = text::Tokenizer::from_gguf(reader);
      for (const std::string& warning : tokenizer.warnings()) fmt::print(stderr, "archreg tokenize: warning: {}\n", gguf::printable(warning));
      const bool add_special = !options->no_bos_eos;
      if (batch_option->count() > 0) {
        run_batch(tokenizer, options->batch, add_special, options->special);
        exit_code = kExitOk;
        return;
      }
      const std::string input = file_option->count() > 0 ? read_file(options->file) : options->text;
      const std::vector<int32_t> ids = tokenizer.encode(input, add_special, options->special);
      if (options->json) {
        json pieces = json::array();
        for (int32_t id : ids) pieces.push_back(gguf::printable(tokenizer.piece(id, true), gguf::Escape::kJson));
        const json document{{"ids", ids}, {"pieces", pieces}};
        fmt::print("{}\n", document.dump(2, ' ', false, json::error_handler_t::replace));
      } else {
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
