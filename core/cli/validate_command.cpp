// `archreg validate FILE [--json] [--spec-dir DIR]`: is FILE a complete, well-formed instance
// of its architecture? Reads only the header and reports every finding at once.
#include <cstdio>

#include <fmt/format.h>
#include <nlohmann/json.hpp>

#include "cli/commands.hpp"
#include "gguf/reader.hpp"
#include "validate/validate.hpp"

namespace archreg::cli {
namespace {

using json = nlohmann::ordered_json;

constexpr std::string_view kArchKey = "general.architecture";

// Findings about general.architecture itself, before any spec can be chosen.
validate::Report arch_problem(const gguf::Reader& reader, validate::Finding finding) {
  validate::Report report;
  report.file = reader.path();
  report.findings.push_back(std::move(finding));
  return report;
}

validate::Report check(const gguf::Reader& reader, registry::Registry& registry) {
  const gguf::KeyValue* kv = reader.find_key(kArchKey);
  if (kv == nullptr) {
    return arch_problem(reader, {"missing_hparam", std::string(kArchKey), "every GGUF model names its architecture here", "STRING", "absent"});
  }
  if (kv->type != gguf::ValueType::kString) {
    return arch_problem(reader, {"hparam_type", std::string(kArchKey), "the architecture name must be a string", "STRING",
                                 std::string(gguf::value_type_name(kv->type))});
  }
  const std::string arch(reader.value(*kv).as_string());
  const spec::Spec* spec = registry.spec(arch);
  if (spec == nullptr) {
    const std::vector<std::string> known = registry.spec_arch_names();
    validate::Report report = arch_problem(
        reader, {"unknown_arch", std::string(kArchKey),
                 fmt::format("unsupported model architecture '{}'; known: {}", arch, known.empty() ? "none (no spec directory found)" : fmt::format("{}", fmt::join(known, ", "))),
                 "a known architecture", arch});
    report.arch = arch;
    return report;
  }
  return validate::validate(reader, *spec, registry.plugin(arch));
}

void print_json(const validate::Report& report) {
  json doc;
  doc["file"] = report.file;
  doc["arch"] = report.arch ? json(*report.arch) : json(nullptr);
  doc["valid"] = report.valid();
  json findings = json::array();
  for (const validate::Finding& f : report.findings) {
    findings.push_back({{"code", f.code},
                        {"subject", f.subject},
                        {"message", f.message},
                        {"expected", f.expected ? json(*f.expected) : json(nullptr)},
                        {"found", f.found ? json(*f.found) : json(nullptr)}});
  }
  doc["findings"] = std::move(findings);
  json groups = json::array();
  for (const validate::GroupReport& g : report.groups) {
    groups.push_back({{"name", g.name}, {"state", g.state()}, {"layers", {{"fused", g.fused}, {"unfused", g.unfused}, {"both", g.both}}}});
  }
  doc["groups"] = std::move(groups);
  json hparams = json::object();
  for (const auto& [name, value] : report.hparams) hparams[name] = value;
  doc["hparams"] = std::move(hparams);
  fmt::print("{}\n", doc.dump(2, ' ', false, json::error_handler_t::replace));
}

void print_text(const validate::Report& report) {
  std::string out = fmt::format("{}: {}{}\n", report.file, report.arch ? *report.arch + ", " : "",
                                report.valid() ? "valid" : fmt::format("INVALID ({} finding{})", report.findings.size(), report.findings.size() == 1 ? "" : "s"));
  if (!report.groups.empty()) {
    std::vector<std::string> groups;
    for (const validate::GroupReport& g : report.groups) groups.push_back(fmt::format("{} {}", g.name, g.state()));
    out += fmt::format("  fusable groups: {}\n", fmt::join(groups, ", "));
  }
  for (const validate::Finding& f : report.findings) {
    out += fmt::format("  {:<18} {}: {}", f.code, gguf::printable(f.subject), f.message);
    if (f.expected && f.found) out += fmt::format(" (expected {}, found {})", *f.expected, *f.found);
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
      options->json ? print_json(report) : print_text(report);
      exit_code = report.valid() ? kExitOk : kExitInvalid;
    } catch (const gguf::Error& error) {
      if (options->json) {
        json doc{{"file", options->file},
                 {"arch", nullptr},
                 {"valid", false},
                 {"findings", json::array({{{"code", "malformed_gguf"},
                                            {"subject", error.subject()},
                                            {"message", error.message()},
                                            {"offset", error.offset() ? json(*error.offset()) : json(nullptr)}}})}};
        fmt::print("{}\n", doc.dump(2, ' ', false, json::error_handler_t::replace));
      }
      fmt::print(stderr, "archreg validate: {}\n", error.what());
      exit_code = kExitUnreadable;
    } catch (const spec::SpecError& error) {
      fmt::print(stderr, "archreg validate: the spec is invalid:\n{}\n", error.what());
      exit_code = kExitUnreadable;
    } catch (const registry::RegistryError& error) {
      fmt::print(stderr, "archreg validate: {}\n", error.what());
      exit_code = kExitUnreadable;
    }
  });
}

}  // namespace archreg::cli
