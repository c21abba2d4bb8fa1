// Where specs and plugins are looked for: one rule for both.
#pragma once

#include <filesystem>
#include <optional>
#include <string_view>
#include <vector>

namespace archreg::registry {

// The search path for one kind of file: the directories in the colon-separated environment
// variable `env_var`, then `installed` relative to the running binary's directory (an
// installed tree), then `build_tree` (the tree the binary was built from); duplicates removed.
std::vector<std::filesystem::path> search_path(const char* env_var, const std::filesystem::path& installed,
                                               std::optional<std::filesystem::path> build_tree);

}  // namespace archreg::registry
