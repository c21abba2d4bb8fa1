#include "cli/commands.hpp"

namespace archreg::cli {

void add_spec_dir_option(CLI::App& command, std::vector<std::string>& dirs) {
  command.add_option("--spec-dir", dirs, "Directory of arch specs searched before the defaults (repeatable)")->check(CLI::ExistingDirectory);
}

registry::SpecCatalog make_spec_catalog(const std::vector<std::string>& extra_dirs) {
  std::vector<std::filesystem::path> dirs(extra_dirs.begin(), extra_dirs.end());
  for (auto& dir : registry::SpecCatalog::default_dirs()) dirs.push_back(std::move(dir));
  return registry::SpecCatalog(std::move(dirs));
}

}  // namespace archreg::cli
