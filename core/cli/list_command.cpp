// `archreg list [--json]`: every known architecture, its spec and plugin files, its state and
// the fused forms its plugin runs.
#include <cstdio>

#include <fmt/format.h>
#include <nlohmann/json.hpp>

#include "cli/commands.hpp"

namespace archreg::cli {
namespace {

using json = nlohmann::ordered_json;

struct Row {
  registry::ArchInfo info;
  std::vector<std::string> fused;  // groups the plugin runs fused
};

std::string_view state_name(registry::ArchState state) {
  switch (state) {
    case registry::ArchState::kRunnable: return "runnable";
    case registry::ArchState::kValidateOnly: return "validate-only";
    case registry::ArchState::kBroken: break;
  }
  return "broken";
}

std::vector<Row> collect(registry::Registry& registry) {
  std::vector<Row> rows;
  for (registry::ArchInfo info : registry.archs()) {
    Row row{std::move(info), {}};
    if (row.info.state == registry::ArchState::kRunnable) {
      try {
        const registry::Plugin* plugin = registry.plugin(row.info.arch);
        row.fused = plugin->fused_groups();
      } catch (const registry::RegistryError& error) {
        row.info.state = registry::ArchState::kBroken;
        row.info.problems.push_back(error.what());
      }
    }
    rows.push_back(std::move(row));
  }
  return rows;
}

}  // namespace

void add_list_command(CLI::App& app, int& exit_code) {
  auto* command = app.add_subcommand("list", "List known architectures: spec, plugin, state, fused forms the plugin runs");
  struct Options {
    bool json = false;
    RegistryOptions registry;
  };
  auto options = std::make_shared<Options>();
  command->add_flag("--json", options->json, "Print one JSON document on stdout");
  add_registry_options(*command, options->registry);
  command->callback([options, &exit_code] {
    try {
      registry::Registry registry = make_registry(options->registry);
      const std::vector<Row> rows = collect(registry);
      bool broken = false;
      if (options->json) {
        json doc = json::array();
        for (const Row& row : rows) {
          doc.push_back({{"arch", row.info.arch},
                         {"state", state_name(row.info.state)},
                         {"spec", row.info.spec_file ? json(row.info.spec_file->string()) : json(nullptr)},
                         {"plugin", row.info.plugin_file ? json(row.info.plugin_file->string()) : json(nullptr)},
                         {"fused", row.fused},
                         {"problems", row.info.problems}});
          broken = broken || row.info.state == registry::ArchState::kBroken;
        }
        fmt::print("{}\n", doc.dump(2));
      } else {
        std::string out = fmt::format("{:<14} {:<14} {:<34} {}\n", "arch", "state", "runs fused", "spec / plugin");
        for (const Row& row : rows) {
          out += fmt::format("{:<14} {:<14} {:<34} {}\n", row.info.arch, state_name(row.info.state),
                             row.fused.empty() ? "-" : fmt::format("{}", fmt::join(row.fused, ", ")),
                             row.info.spec_file ? row.info.spec_file->string() : "(no spec)");
          if (row.info.plugin_file) out += fmt::format("{:<64} {}\n", "", row.info.plugin_file->string());
          for (const std::string& problem : row.info.problems) out += fmt::format("{:<14} problem: {}\n", "", problem);
          broken = broken || row.info.state == registry::ArchState::kBroken;
        }
        std::fwrite(out.data(), 1, out.size(), stdout);
      }
      exit_code = broken ? kExitInvalid : kExitOk;
    } catch (const registry::RegistryError& error) {
      fmt::print(stderr, "archreg list: {}\n", error.what());
      exit_code = kExitUnreadable;
    }
  });
}

}  // namespace archreg::cli
