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
// the source tree it was built from. Duplicates removed (distinct_dirs).
std::vector<std::filesystem::path> search_path(const char* env_var, const std::filesystem::path& installed,
                                               std::optional<std::filesystem::path> build_tree);

// `dirs` in order, each directory once: two paths reaching the same directory (a symbolic
// link, a bind mount, "dir/." or a --spec-dir naming a default directory) are one directory,
// by identity (st_dev, st_ino); the first path is kept. Paths that name no directory are
// kept once each (they are skipped when searched).
std::vector<std::filesystem::path> distinct_dirs(const std::vector<std::filesystem::path>& dirs);

}  // namespace archreg::registry
