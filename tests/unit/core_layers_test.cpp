// docs/decisions.md 30: core/ is layered. A directory includes only directories of earlier
// layers (or kernels/), so no include cycle can come back unnoticed.
#include <gtest/gtest.h>

#include <algorithm>
#include <filesystem>
#include <fstream>
#include <regex>
#include <string>
#include <vector>

#include "test_support.hpp"

namespace archreg {
namespace {

// Bottom first. text/ stands beside the others: it needs only gguf/.
const std::vector<std::string> kLayers = {"gguf",     "report", "spec", "hparams", "validate", "plugin",
                                          "registry", "fusion", "text", "runtime", "cli"};

TEST(Invariants, CoreDirectoriesIncludeOnlyEarlierLayers) {
  const std::regex include_line(R"re(^\s*#\s*include\s*"([a-z_]+)/)re");
  std::vector<std::string> violations;
  size_t includes = 0;
  for (const auto& entry : std::filesystem::recursive_directory_iterator(testing::source_dir() / "core")) {
    const std::filesystem::path relative = std::filesystem::relative(entry.path(), testing::source_dir() / "core");
    if (!entry.is_regular_file() || std::distance(relative.begin(), relative.end()) < 2) continue;  // core/CMakeLists.txt
    const std::string dir = relative.begin()->string();
    const auto own = std::find(kLayers.begin(), kLayers.end(), dir);
    ASSERT_NE(own, kLayers.end()) << "core/" << dir << " is not in kLayers: give it its place in the order (and in decision 30)";
    std::ifstream in(entry.path());
    std::string line;
    for (int number = 1; std::getline(in, line); ++number) {
      std::smatch match;
      if (!std::regex_search(line, match, include_line)) continue;
      ++includes;
      const std::string target = match.str(1);
      if (target == dir || target == "cpu" || target == "cuda") continue;  // its own files; kernels/
      const auto used = std::find(kLayers.begin(), kLayers.end(), target);
      if (used == kLayers.end() || used > own) {
        violations.push_back(entry.path().string() + ":" + std::to_string(number) + ": " + dir + "/ includes " + target + "/");
      }
    }
  }
  EXPECT_GT(includes, 50u);
  std::string listed;
  for (const std::string& v : violations) listed += "  " + v + "\n";
  EXPECT_TRUE(violations.empty()) << "core/ includes a later layer:\n" << listed;
}

}  // namespace
}  // namespace archreg
