// `archreg validate FILE [--json] [--spec-dir DIR]`: is FILE a complete, well-formed instance
// of its architecture? Reads only the header and reports every finding at once.
#include <fmt/format.h>

#include <cstdio>
#include <nlohmann/json.hpp>

#include "cli/commands.hpp"
#include "gguf/reader.hpp"
#include "validate/validate.hpp"

namespace archreg::cli {
namespace {

using json = nlohmann::ordered_json;

constexpr std::string_view kArchKey = "general.architecture";

// Findings about general.architecture itself, before any spec can be chosen.
validate::Report arch_problem(const gguf::Reader& reader, report::Finding finding) {
  validate::Report report;
  report.file = reader.path();
  report.findings.push_back(std::move(finding));
  return report;
}

validate::Report check(const gguf::Reader& reader, registry::Registry& registry) {
  const gguf::KeyValue* kv = reader.find_key(kArchKey);
  if (kv == nullptr) {
    return arch_problem(reader,
                        {"missing_hparam", std::string(kArchKey), "every GGUF model names its architecture here", "STRING", "absent"});
  }
  if (kv->type != gguf::ValueType::kString) {
    return arch_problem(reader, {"hparam_type", std::string(kArchKey), "the architecture name must be a string", "STRING",
                                 std::string(gguf::value_type_name(kv->type))});
  }
  const std::string arch(reader.value(*kv).as_string());
  const spec::Spec* spec = registry.spec(arch);
  if (spec == nullptr) {
    const std::vector<std::string> known = registry.spec_arch_names();
    validate::Report report =
        arch_problem(reader, {"unknown_arch", std::string(kArchKey),
                              fmt::format("unsupported model architecture '{}'; known: {}", arch,
                                          known.empty() ? "none (no spec directory found)" : fmt::format("{}", fmt::join(known, ", "))),
                              "a known architecture", arch});
    report.arch = arch;
    return report;
  }
  const plugin::Plugin* plugin = registry.plugin(arch);
  if (plugin == nullptr) return validate::validate(reader, *spec);
  const validate::PluginHooks hooks = plugin->hooks(arch);
  return validate::validate(reader, *spec, &hooks);
}

// Strings in a report come from the file and the spec (names, messages quoting them).
std::string for_json(std::string_view text) {
  return gguf::printable(text, gguf::Escape::kJson);
}
std::string for_terminal(std::string_view text) {
  return gguf::printable(text);
}
json optional_json(const std::optional<std::string>& text) {
  return text ? json(for_json(*text)) : json(nullptr);
}

void print_json(const validate::Report& report) {
  json doc;
  doc["file"] = for_json(report.file);
  doc["arch"] = report.arch ? json(for_json(*report.arch)) : json(nullptr);
  doc["valid"] = report.valid();
  json findings = json::array();
  for (const report::Finding& f : report.findings) {
    findings.push_back({{"code", for_json(f.code)},
                        {"subject", for_json(f.subject)},
                        {"message", for_json(f.message)},
                        {"expected", optional_json(f.expected)},
                        {"found", optional_json(f.found)}});
  }
  doc["findings"] = std::move(findings);
  json groups = json::array();
  for (const validate::GroupReport& g : report.groups) {
    groups.push_back({{"name", for_json(g.name)},
                      {"state", g.state()},
                      {"layers", {{"fused", g.fused}, {"unfused", g.unfused}, {"both", g.both}, {"unfusable", g.unfusable}}}});
  }
  doc["groups"] = std::move(groups);
  json hparams = json::object();
  for (const auto& [name, value] : report.hparams) hparams[for_json(name)] = value;
  doc["hparams"] = std::move(hparams);
  json per_layer = json::object();
  for (const auto& [name, values] : report.per_layer) per_layer[for_json(name)] = values;
  doc["per_layer"] = std::move(per_layer);
  doc["absent_layers"] = report.absent_layers;
  fmt::print("{}\n", doc.dump(2, ' ', false, json::error_handler_t::replace));
}

// The JSON document of a file that could not be validated at all (exit 2): one finding.
void print_error_json(const std::string& file, std::string_view code, std::string_view subject, std::string_view message,
                      std::optional<uint64_t> offset = std::nullopt) {
  json doc{{"file", for_json(file)},
           {"arch", nullptr},
           {"valid", false},
           {"findings", json::array({{{"code", code},
                                      {"subject", for_json(subject)},
                                      {"message", for_json(message)},
                                      {"offset", offset ? json(*offset) : json(nullptr)}}})}};
  fmt::print("{}\n", doc.dump(2, ' ', false, json::error_handler_t::replace));
}

// "0-45, 47" for sorted layer numbers.
std::string layer_ranges(const std::vector<int64_t>& layers) {
  std::vector<std::string> parts;
  for (size_t i = 0; i < layers.size();) {
    size_t j = i;
    while (j + 1 < layers.size() && layers[j + 1] == layers[j] + 1) ++j;
    parts.push_back(j == i ? fmt::format("{}", layers[i]) : fmt::format("{}-{}", layers[i], layers[j]));
    i = j + 1;
  }
  return fmt::format("{}", fmt::join(parts, ", "));
}

void print_text(const validate::Report& report) {
  std::string out = fmt::format(
      "{}: {}{}\n", for_terminal(report.file), report.arch ? for_terminal(*report.arch) + ", " : "",
      report.valid() ? "valid" : fmt::format("INVALID ({} finding{})", report.findings.size(), report.findings.size() == 1 ? "" : "s"));
  if (!report.groups.empty()) {
    std::vector<std::string> groups;
    for (const validate::GroupReport& g : report.groups) groups.push_back(fmt::format("{} {}", for_terminal(g.name), g.state()));
    out += fmt::format("  fusable groups: {}\n", fmt::join(groups, ", "));
  }
  if (!report.absent_layers.empty()) {
    out += fmt::format("  layers left out:   {} (the spec's optional_layers)\n", layer_ranges(report.absent_layers));
  }
  for (const report::Finding& f : report.findings) {
    out += fmt::format("  {:<18} {}: {}", for_terminal(f.code), for_terminal(f.subject), for_terminal(f.message));
    if (f.expected && f.found) out += fmt::format(" (expected {}, found {})", for_terminal(*f.expected), for_terminal(*f.found));
    out += '\n';
  }
  std::fwrite(out.data(), 1, out.size(), stdout);
}

}  // namespace

void add_validate_command(CLI::App& app, int& exit_code) {
  auto* command = app.add_subcommand("validate", "Check a GGUF file against its architecture's spec (header only; every finding at once)");
  struct Options {
    std::string file;
    bool json = false;
    RegistryOptions registry;
  };
  auto options = std::make_shared<Options>();
  command->add_option("FILE", options->file, "GGUF file")->required();
  command->add_flag("--json", options->json, "Print one JSON document on stdout");
  add_registry_options(*command, options->registry);
  command->callback([options, &exit_code] {
    try {
      registry::Registry registry = make_registry(options->registry);
      const gguf::Reader reader = gguf::Reader::open(options->file);
      const validate::Report report = check(reader, registry);
      reader.check_unchanged();
      options->json ? print_json(report) : print_text(report);
      exit_code = report.valid() ? kExitOk : kExitInvalid;
    } catch (const gguf::Error& error) {
      if (options->json) print_error_json(options->file, "malformed_gguf", error.subject(), error.message(), error.offset());
      fmt::print(stderr, "archreg validate: {}\n", for_terminal(error.what()));
      exit_code = kExitUnreadable;
    } catch (const spec::SpecError& error) {
      if (options->json) print_error_json(options->file, "invalid_spec", "", fmt::format("{}", fmt::join(error.problems(), "\n")));
      std::string lines;
      for (const std::string& problem : error.problems()) lines += for_terminal(problem) + "\n";
      fmt::print(stderr, "archreg validate: the spec is invalid:\n{}", lines);
      exit_code = kExitUnreadable;
    } catch (const registry::RegistryError& error) {
      if (options->json) print_error_json(options->file, "registry_error", "", error.what());
      fmt::print(stderr, "archreg validate: {}\n", for_terminal(error.what()));
      exit_code = kExitUnreadable;
    }
  });
}

}  // namespace archreg::cli
