#include "cli/commands.hpp"

namespace archreg::cli {

void add_registry_options(CLI::App& command, RegistryOptions& options) {
  command.add_option("--spec-dir", options.spec_dirs, "Directory of arch specs searched before the defaults (repeatable)")
      ->check(CLI::ExistingDirectory);
  command.add_option("--plugin-dir", options.plugin_dirs, "Directory of plugins searched before the defaults (repeatable)")
      ->check(CLI::ExistingDirectory);
}

registry::Registry make_registry(const RegistryOptions& options) {
  registry::Registry::Dirs dirs;
  dirs.specs.assign(options.spec_dirs.begin(), options.spec_dirs.end());
  for (auto& dir : registry::SpecCatalog::default_dirs()) dirs.specs.push_back(std::move(dir));
  dirs.plugins.assign(options.plugin_dirs.begin(), options.plugin_dirs.end());
  for (auto& dir : registry::Registry::default_plugin_dirs()) dirs.plugins.push_back(std::move(dir));
  return registry::Registry(std::move(dirs));
}

}  // namespace archreg::cli
