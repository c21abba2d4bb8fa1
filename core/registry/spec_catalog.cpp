#include "registry/spec_catalog.hpp"

#include <fmt/format.h>

#include <system_error>

#include "registry/search_path.hpp"

namespace archreg::registry {

SpecCatalog::SpecCatalog(std::vector<std::filesystem::path> dirs) : dirs_(distinct_dirs(dirs)) {
  for (const std::filesystem::path& dir : dirs_) {
    std::error_code error;
    if (!std::filesystem::is_directory(dir, error)) continue;
    std::filesystem::directory_iterator it(dir, error);
    if (error) throw RegistryError(fmt::format("{}: cannot list the spec directory: {}", dir.string(), error.message()));
    // One file per arch and directory (the name is <arch>.yaml), so each arch's list is in
    // directory order.
    for (const auto& entry : it) {
      if (entry.path().extension() != ".yaml") continue;
      files_[entry.path().stem().string()].push_back(entry.path());
    }
  }
}

std::vector<std::filesystem::path> SpecCatalog::default_dirs() {
#ifdef ARCHREG_SOURCE_SPEC_DIR
  const std::optional<std::filesystem::path> build_tree = ARCHREG_SOURCE_SPEC_DIR;
#else
  const std::optional<std::filesystem::path> build_tree;
#endif
  return search_path("ARCHREG_SPEC_PATH", std::filesystem::path("..") / "share" / "archreg" / "arch-specs", build_tree);
}

std::vector<std::string> SpecCatalog::arch_names() const {
  std::vector<std::string> names;
  for (const auto& [arch, files] : files_) names.push_back(arch);
  return names;
}

std::optional<std::filesystem::path> SpecCatalog::find(const std::string& arch) const {
  const auto it = files_.find(arch);
  if (it == files_.end()) return std::nullopt;
  return it->second.front();
}

std::vector<std::filesystem::path> SpecCatalog::shadowed(const std::string& arch) const {
  const auto it = files_.find(arch);
  if (it == files_.end()) return {};
  return {it->second.begin() + 1, it->second.end()};
}

const spec::Spec* SpecCatalog::load(const std::string& arch) {
  if (const auto it = loaded_.find(arch); it != loaded_.end()) return it->second.get();
  const auto file = find(arch);
  if (!file) return nullptr;
  auto loaded = std::make_unique<spec::Spec>(spec::load_spec(*file, dirs_));
  return loaded_.emplace(arch, std::move(loaded)).first->second.get();
}

}  // namespace archreg::registry
