// `archreg inspect FILE [--json] [--full]`: metadata, tensor table and totals per type.
#include <fmt/format.h>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <map>
#include <nlohmann/json.hpp>
#include <string>

#include "cli/commands.hpp"
#include "gguf/reader.hpp"
#include "registry/spec_catalog.hpp"
#include "spec/spec.hpp"

namespace archreg::cli {
namespace {

using gguf::Value;
using gguf::ValueType;
using json = nlohmann::ordered_json;

constexpr uint64_t kArrayPreviewJson = 16;
constexpr uint64_t kArrayPreviewText = 8;

json scalar_json(const Value& value) {
  switch (value.type()) {
    case ValueType::kFloat32:
    case ValueType::kFloat64: {
      const double number = value.as_number();
      return std::isfinite(number) ? json(number) : json(fmt::format("{}", number));
    }
    case ValueType::kBool: return value.get<bool>();
    case ValueType::kString: return gguf::printable(value.as_string(), gguf::Escape::kJson);
    case ValueType::kUint64: return value.get<uint64_t>();
    default: return value.as_int();
  }
}

// Arrays are shown up to `limit` elements (all of them when limit is 0).
json value_json(const Value& value, uint64_t limit) {
  if (!value.is_array()) return scalar_json(value);
  json items = json::array();
  uint64_t shown = 0;
  for (Value item : value) {
    if (limit != 0 && shown++ == limit) break;
    items.push_back(value_json(item, limit));
  }
  return items;
}

std::string scalar_text(const Value& value) {
  switch (value.type()) {
    case ValueType::kString: return fmt::format("\"{}\"", gguf::printable(value.as_string()));
    case ValueType::kBool: return value.get<bool>() ? "true" : "false";
    case ValueType::kFloat32: return fmt::format("{}", value.get<float>());
    case ValueType::kFloat64: return fmt::format("{}", value.get<double>());
    case ValueType::kUint64: return fmt::format("{}", value.get<uint64_t>());
    default: return fmt::format("{}", value.as_int());
  }
}

std::string value_text(const Value& value, bool full) {
  if (!value.is_array()) return scalar_text(value);
  std::string text = "[";
  uint64_t shown = 0;
  for (Value item : value) {
    if (!full && shown == kArrayPreviewText) {
      text += fmt::format(", ... {} more]", value.size() - shown);
      return text;
    }
    text += (shown++ == 0 ? "" : ", ") + value_text(item, full);
  }
  return text + "]";
}

std::string type_text(const Value& value) {
  if (!value.is_array()) return std::string(gguf::value_type_name(value.type()));
  return fmt::format("{}[{}]", gguf::value_type_name(value.element_type()), value.size());
}

struct TypeTotal {
  uint64_t count = 0;
  uint64_t bytes = 0;
};

std::map<std::string, TypeTotal> totals_by_type(const gguf::Reader& reader) {
  std::map<std::string, TypeTotal> totals;
  for (const gguf::TensorInfo& t : reader.tensors()) {
    TypeTotal& total = totals[gguf::ggml_type_label(t.type)];
    ++total.count;
    total.bytes += t.n_bytes;
  }
  return totals;
}

// Each tensor's role from the spec of the file's architecture ("" where the spec has no such
// tensor); empty when there is no readable spec for it (inspect is about the file, not its
// validity: `validate` reports what is wrong).
std::vector<std::string> tensor_roles(const gguf::Reader& reader, const std::vector<std::string>& spec_dirs) {
  const auto arch = reader.find("general.architecture");
  if (!arch || arch->type() != gguf::ValueType::kString) return {};
  std::vector<std::filesystem::path> dirs(spec_dirs.begin(), spec_dirs.end());
  for (auto& dir : registry::SpecCatalog::default_dirs()) dirs.push_back(std::move(dir));
  const spec::Spec* spec = nullptr;
  registry::SpecCatalog catalog(dirs);
  try {
    spec = catalog.load(std::string(arch->as_string()));
  } catch (const std::exception&) {
    return {};  // a broken spec: `archreg list` and `validate` say why
  }
  if (spec == nullptr) return {};
  std::vector<std::string> roles;
  for (const gguf::TensorInfo& t : reader.tensors()) {
    const auto role = spec::tensor_role(*spec, t.name);
    roles.emplace_back(role ? spec::role_name(*role) : "");
  }
  return roles;
}

// Tensor count and bytes per role, in the order of spec::kRoles, then "unknown" (no such tensor
// in the spec).
std::vector<std::pair<std::string, TypeTotal>> totals_by_role(const gguf::Reader& reader, const std::vector<std::string>& roles) {
  std::vector<std::pair<std::string, TypeTotal>> totals;
  for (spec::Role role : spec::kRoles) totals.emplace_back(spec::role_name(role), TypeTotal{});
  totals.emplace_back("unknown", TypeTotal{});
  for (size_t i = 0; i < roles.size(); ++i) {
    const std::string& role = roles[i].empty() ? "unknown" : roles[i];
    auto it = std::find_if(totals.begin(), totals.end(), [&](const auto& total) { return total.first == role; });
    ++it->second.count;
    it->second.bytes += reader.tensors()[i].n_bytes;
  }
  std::erase_if(totals, [](const auto& total) { return total.second.count == 0; });
  return totals;
}

void print_json(const gguf::Reader& reader, bool full, const std::vector<std::string>& roles) {
  json doc;
  doc["file"] = gguf::printable(reader.path(), gguf::Escape::kJson);
  doc["version"] = reader.version();
  doc["alignment"] = reader.alignment();
  doc["file_size"] = reader.file_size();
  doc["data_offset"] = reader.data_section_offset();
  json metadata = json::array();
  for (const gguf::KeyValue& kv : reader.metadata()) {
    const Value value = reader.value(kv);
    json entry{{"key", gguf::printable(kv.key, gguf::Escape::kJson)}, {"type", gguf::value_type_name(kv.type)}};
    if (value.is_array()) {
      entry["element_type"] = gguf::value_type_name(value.element_type());
      entry["count"] = value.size();
      entry["truncated"] = !full && value.size() > kArrayPreviewJson;
    }
    entry["value"] = value_json(value, full ? 0 : kArrayPreviewJson);
    metadata.push_back(std::move(entry));
  }
  doc["metadata"] = std::move(metadata);
  json tensors = json::array();
  for (size_t i = 0; i < reader.tensors().size(); ++i) {
    const gguf::TensorInfo& t = reader.tensors()[i];
    tensors.push_back({{"name", gguf::printable(t.name, gguf::Escape::kJson)},
                       {"type", gguf::ggml_type_label(t.type)},
                       {"shape", t.shape()},
                       {"n_bytes", t.n_bytes},
                       {"offset", t.offset},
                       {"data_offset", t.data_offset},
                       {"role", roles.empty() || roles[i].empty() ? json(nullptr) : json(roles[i])}});
  }
  doc["tensors"] = std::move(tensors);
  json totals = json::array();
  for (const auto& [type, total] : totals_by_type(reader)) {
    totals.push_back({{"type", type}, {"count", total.count}, {"n_bytes", total.bytes}});
  }
  doc["totals"] = std::move(totals);
  json by_role = json::array();
  if (!roles.empty()) {
    for (const auto& [role, total] : totals_by_role(reader, roles)) {
      by_role.push_back({{"role", role}, {"count", total.count}, {"n_bytes", total.bytes}});
    }
  }
  doc["totals_by_role"] = std::move(by_role);
  const std::string text = doc.dump(2, ' ', false, json::error_handler_t::replace);
  reader.check_unchanged();
  std::fwrite(text.data(), 1, text.size(), stdout);
  std::fputc('\n', stdout);
}

void print_text(const gguf::Reader& reader, bool full, const std::vector<std::string>& roles) {
  std::string out;
  auto line = [&out](std::string text) {
    out += text;
    out += '\n';
  };
  line(fmt::format("{}: GGUF v{}, {} metadata entries, {} tensors, alignment {}", gguf::printable(reader.path()), reader.version(),
                   reader.metadata().size(), reader.tensors().size(), reader.alignment()));
  line(fmt::format("  file {} ({}), header {}, data {}", human_bytes(static_cast<double>(reader.file_size())), reader.file_size(),
                   human_bytes(static_cast<double>(reader.data_section_offset())),
                   human_bytes(static_cast<double>(reader.data_section_size()))));
  line("");
  line("metadata:");
  size_t key_width = 0;
  for (const gguf::KeyValue& kv : reader.metadata()) key_width = std::max(key_width, kv.key.size());
  for (const gguf::KeyValue& kv : reader.metadata()) {
    const Value value = reader.value(kv);
    line(fmt::format("  {:<{}}  {:<14} {}", gguf::printable(kv.key), key_width, type_text(value), value_text(value, full)));
  }
  line("");
  line("tensors:");
  size_t name_width = 4;
  for (const gguf::TensorInfo& t : reader.tensors()) name_width = std::max(name_width, t.name.size());
  line(fmt::format("  {:<{}}  {:<8} {:<24} {:>14} {:>14}{}", "name", name_width, "type", "shape", "bytes", "offset",
                   roles.empty() ? "" : "  role"));
  for (size_t i = 0; i < reader.tensors().size(); ++i) {
    const gguf::TensorInfo& t = reader.tensors()[i];
    line(fmt::format("  {:<{}}  {:<8} {:<24} {:>14} {:>14}{}", gguf::printable(t.name), name_width, gguf::ggml_type_label(t.type),
                     fmt::format("[{}]", fmt::join(t.shape(), ", ")), t.n_bytes, t.data_offset,
                     roles.empty() ? "" : "  " + (roles[i].empty() ? std::string("?") : roles[i])));
  }
  line("");
  line("totals:");
  uint64_t all_count = 0;
  uint64_t all_bytes = 0;
  for (const auto& [type, total] : totals_by_type(reader)) {
    line(fmt::format("  {:<8} {:>8} tensors {:>14}", type, total.count, human_bytes(static_cast<double>(total.bytes))));
    all_count += total.count;
    all_bytes += total.bytes;
  }
  line(fmt::format("  {:<8} {:>8} tensors {:>14}", "all", all_count, human_bytes(static_cast<double>(all_bytes))));
  if (!roles.empty()) {
    line("");
    line("by role (from the spec):");
    for (const auto& [role, total] : totals_by_role(reader, roles)) {
      line(fmt::format("  {:<10} {:>8} tensors {:>14}", role, total.count, human_bytes(static_cast<double>(total.bytes))));
    }
  }
  reader.check_unchanged();
  std::fwrite(out.data(), 1, out.size(), stdout);
}

}  // namespace

void add_inspect_command(CLI::App& app, int& exit_code) {
  auto* command =
      app.add_subcommand("inspect", "Show a GGUF file's metadata, tensors and totals per type (and per role, when its arch has a spec)");
  struct Options {
    std::string file;
    bool json = false;
    bool full = false;
    std::vector<std::string> spec_dirs;
  };
  auto options = std::make_shared<Options>();
  command->add_option("FILE", options->file, "GGUF file")->required();
  command->add_flag("--json", options->json, "Print one JSON document on stdout");
  command->add_flag("--full", options->full, "Show every element of long arrays");
  command->add_option("--spec-dir", options->spec_dirs, "Directory of arch specs searched before the defaults (repeatable)")
      ->check(CLI::ExistingDirectory);
  command->callback([options, &exit_code] {
    try {
      const gguf::Reader reader = gguf::Reader::open(options->file);
      const std::vector<std::string> roles = tensor_roles(reader, options->spec_dirs);
      if (options->json) {
        print_json(reader, options->full, roles);
      } else {
        print_text(reader, options->full, roles);
      }
      exit_code = kExitOk;
    } catch (const gguf::Error& error) {
      fmt::print(stderr, "archreg inspect: {}\n", gguf::printable(error.what()));
      exit_code = kExitUnreadable;
    }
  });
}

}  // namespace archreg::cli
