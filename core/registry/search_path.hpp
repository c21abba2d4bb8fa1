// Where specs and plugins are looked for: one rule for both.
#pragma once

#include <filesystem>
#include <optional>
#include <string_view>
#include <vector>

namespace archreg::registry {

// The search path for one kind of file: the directories in the colon-separated environment
// variable `env_var`, then the binary's own default: `installed` relative to the running
// binary's directory when that exists (an installed archreg), else `build_tree` (the tree the
// binary was built from). Only one default is used, so an installed archreg never also reads
// the source tree it was built from. Duplicates removed.
std::vector<std::filesystem::path> search_path(const char* env_var, const std::filesystem::path& installed,
                                               std::optional<std::filesystem::path> build_tree);

}  // namespace archreg::registry
