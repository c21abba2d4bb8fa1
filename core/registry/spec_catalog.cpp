#include "registry/spec_catalog.hpp"

#include <unistd.h>

#include <cstdlib>
#include <system_error>

#include <fmt/format.h>
#include <fmt/std.h>

namespace archreg::registry {
namespace {

std::optional<std::filesystem::path> executable_dir() {
  std::error_code error;
  const std::filesystem::path self = std::filesystem::read_symlink("/proc/self/exe", error);
  if (error) return std::nullopt;
  return self.parent_path();
}

}  // namespace

SpecCatalog::SpecCatalog(std::vector<std::filesystem::path> dirs) : dirs_(std::move(dirs)) {
  for (const std::filesystem::path& dir : dirs_) {
    std::error_code error;
    if (!std::filesystem::is_directory(dir, error)) continue;
    std::filesystem::directory_iterator it(dir, error);
    if (error) throw RegistryError(fmt::format("{}: cannot list the spec directory: {}", dir.string(), error.message()));
    for (const auto& entry : it) {
      if (entry.path().extension() != ".yaml") continue;
      files_[entry.path().stem().string()].push_back(entry.path());
    }
  }
}

std::vector<std::filesystem::path> SpecCatalog::default_dirs() {
  std::vector<std::filesystem::path> dirs;
  if (const char* path = std::getenv("ARCHREG_SPEC_PATH"); path != nullptr && *path != '\0') {
    std::string_view rest(path);
    while (!rest.empty()) {
      const size_t colon = rest.find(':');
      if (colon != 0) dirs.emplace_back(rest.substr(0, colon));
      if (colon == std::string_view::npos) break;
      rest.remove_prefix(colon + 1);
    }
  }
  if (const auto exe = executable_dir()) dirs.push_back(*exe / ".." / "share" / "archreg" / "arch-specs");
#ifdef ARCHREG_SOURCE_SPEC_DIR
  dirs.emplace_back(ARCHREG_SOURCE_SPEC_DIR);
#endif
  // The same directory reached twice (build tree inside the source tree) is searched once.
  std::vector<std::filesystem::path> unique;
  for (const std::filesystem::path& dir : dirs) {
    std::error_code error;
    const std::filesystem::path canonical = std::filesystem::weakly_canonical(dir, error);
    const std::filesystem::path& key = error ? dir : canonical;
    if (std::find(unique.begin(), unique.end(), key) == unique.end()) unique.push_back(key);
  }
  return unique;
}

std::vector<std::string> SpecCatalog::arch_names() const {
  std::vector<std::string> names;
  for (const auto& [arch, files] : files_) names.push_back(arch);
  return names;
}

std::optional<std::filesystem::path> SpecCatalog::find(const std::string& arch) const {
  const auto it = files_.find(arch);
  if (it == files_.end()) return std::nullopt;
  if (it->second.size() > 1) {
    std::vector<std::string> paths;
    for (const auto& file : it->second) paths.push_back(file.string());
    throw RegistryError(fmt::format("architecture '{}' is claimed by {} specs: {}", arch, paths.size(), fmt::join(paths, ", ")));
  }
  return it->second.front();
}

const spec::Spec* SpecCatalog::load(const std::string& arch) {
  if (const auto it = loaded_.find(arch); it != loaded_.end()) return it->second.get();
  const auto file = find(arch);
  if (!file) return nullptr;
  auto loaded = std::make_unique<spec::Spec>(spec::load_spec(*file));
  return loaded_.emplace(arch, std::move(loaded)).first->second.get();
}

}  // namespace archreg::registry
