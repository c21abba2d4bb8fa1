#include "registry/search_path.hpp"

#include <algorithm>
#include <cstdlib>
#include <system_error>

namespace archreg::registry {

std::vector<std::filesystem::path> search_path(const char* env_var, const std::filesystem::path& installed,
                                               std::optional<std::filesystem::path> build_tree) {
  std::vector<std::filesystem::path> dirs;
  if (const char* value = std::getenv(env_var); value != nullptr) {
    std::string_view rest(value);
    while (!rest.empty()) {
      const size_t colon = rest.find(':');
      if (colon != 0) dirs.emplace_back(rest.substr(0, colon));
      if (colon == std::string_view::npos) break;
      rest.remove_prefix(colon + 1);
    }
  }
  std::error_code error;
  const std::filesystem::path self = std::filesystem::read_symlink("/proc/self/exe", error);
  const std::filesystem::path beside = error ? std::filesystem::path() : self.parent_path() / installed;
  if (!beside.empty() && std::filesystem::is_directory(beside, error)) {
    dirs.push_back(beside);
  } else if (build_tree) {
    dirs.push_back(std::move(*build_tree));
  }
  // The same directory reached twice (a build tree inside the source tree) is searched once.
  std::vector<std::filesystem::path> unique;
  for (const std::filesystem::path& dir : dirs) {
    const std::filesystem::path canonical = std::filesystem::weakly_canonical(dir, error);
    const std::filesystem::path& key = error ? dir : canonical;
    if (std::find(unique.begin(), unique.end(), key) == unique.end()) unique.push_back(key);
  }
  return unique;
}

}  // namespace archreg::registry
