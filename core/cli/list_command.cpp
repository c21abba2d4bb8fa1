// `archreg list [--json]`: every known architecture, its spec and plugin files, its state and
// the fused forms its plugin runs.
#include <fmt/format.h>

#include <cstdio>
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
        const plugin::Plugin* plugin = registry.plugin(row.info.arch);
        row.fused = plugin->fused_groups();
        if (!plugin->has_forward()) row.info.state = registry::ArchState::kValidateOnly;
      } catch (const registry::RegistryError& error) {
        row.info.state = registry::ArchState::kBroken;
        row.info.problems.push_back(error.what());
      } catch (const spec::SpecError& error) {
        row.info.state = registry::ArchState::kBroken;
        row.info.problems.push_back(fmt::format("the spec is invalid: {}", error.problems().front()));
      }
    }
    rows.push_back(std::move(row));
  }
  return rows;
}

// Every string of a row comes from a file or a file name: escaped for where it goes.
std::string shown(std::string_view text, gguf::Escape target = gguf::Escape::kTerminal) {
  return gguf::printable(text, target);
}

json json_strings(const auto& items) {
  json out = json::array();
  for (const auto& item : items) {
    if constexpr (std::is_same_v<std::decay_t<decltype(item)>, std::filesystem::path>) {
      out.push_back(shown(item.string(), gguf::Escape::kJson));
    } else {
      out.push_back(shown(item, gguf::Escape::kJson));
    }
  }
  return out;
}

json json_path(const std::optional<std::filesystem::path>& file) {
  return file ? json(shown(file->string(), gguf::Escape::kJson)) : json(nullptr);
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
          doc.push_back({{"arch", shown(row.info.arch, gguf::Escape::kJson)},
                         {"state", state_name(row.info.state)},
                         {"spec", json_path(row.info.spec_file)},
                         {"plugin", json_path(row.info.plugin_file)},
                         {"fused", json_strings(row.fused)},
                         {"problems", json_strings(row.info.problems)},
                         {"shadowed_specs", json_strings(row.info.shadowed_specs)},
                         {"shadowed_plugins", json_strings(row.info.shadowed_plugins)}});
          broken = broken || row.info.state == registry::ArchState::kBroken;
        }
        fmt::print("{}\n", doc.dump(2, ' ', false, json::error_handler_t::replace));
      } else {
        std::string out = fmt::format("{:<14} {:<14} {:<34} {}\n", "arch", "state", "runs fused", "spec / plugin");
        for (const Row& row : rows) {
          out += fmt::format("{:<14} {:<14} {:<34} {}\n", shown(row.info.arch), state_name(row.info.state),
                             row.fused.empty() ? "-" : shown(fmt::format("{}", fmt::join(row.fused, ", "))),
                             row.info.spec_file ? shown(row.info.spec_file->string()) : "(no spec)");
          if (row.info.plugin_file) out += fmt::format("{:<64} {}\n", "", shown(row.info.plugin_file->string()));
          for (const auto& file : row.info.shadowed_specs) out += fmt::format("{:<64} shadows {}\n", "", shown(file.string()));
          for (const auto& file : row.info.shadowed_plugins) out += fmt::format("{:<64} shadows {}\n", "", shown(file.string()));
          for (const std::string& problem : row.info.problems) out += fmt::format("{:<14} problem: {}\n", "", shown(problem));
          broken = broken || row.info.state == registry::ArchState::kBroken;
        }
        std::fwrite(out.data(), 1, out.size(), stdout);
      }
      exit_code = broken ? kExitInvalid : kExitOk;
    } catch (const registry::RegistryError& error) {
      fmt::print(stderr, "archreg list: {}\n", shown(error.what()));
      exit_code = kExitUnreadable;
    }
  });
}

}  // namespace archreg::cli
