#include "registry/search_path.hpp"

#include <sys/stat.h>

#include <algorithm>
#include <cstdlib>
#include <set>
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
  return distinct_dirs(dirs);
}

std::vector<std::filesystem::path> distinct_dirs(const std::vector<std::filesystem::path>& dirs) {
  std::vector<std::filesystem::path> unique;
  std::set<std::pair<dev_t, ino_t>> seen;
  for (const std::filesystem::path& dir : dirs) {
    struct stat info {};
    if (::stat(dir.c_str(), &info) == 0 && S_ISDIR(info.st_mode)) {
      if (seen.emplace(info.st_dev, info.st_ino).second) unique.push_back(dir);
    } else if (std::find(unique.begin(), unique.end(), dir) == unique.end()) {
      unique.push_back(dir);
    }
  }
  return unique;
}

}  // namespace archreg::registry
