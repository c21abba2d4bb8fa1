// DESIGN.md invariant 1: core/ names no architecture. Architecture knowledge lives in
// arch-specs/ and plugins/; a name creeping into core/ is how per-arch special cases start.
#include <gtest/gtest.h>

#include <algorithm>
#include <cctype>
#include <filesystem>
#include <fstream>
#include <regex>
#include <sstream>

#include "test_support.hpp"

namespace archreg {
namespace {

std::string lowercase(std::string text) {
  std::transform(text.begin(), text.end(), text.begin(), [](unsigned char c) { return static_cast<char>(std::tolower(c)); });
  return text;
}

// Every arch with a spec, plus families that have no spec yet but must not appear either.
std::vector<std::string> architecture_names() {
  std::vector<std::string> names = {"qwen",  "deepseek", "mixtral", "mistral", "gemma",  "glm",
                                    "olmoe", "phi",      "falcon",  "gpt-oss", "gpt_oss"};
  for (const auto& dir : {testing::source_dir() / "arch-specs", testing::source_dir() / "tests" / "fixtures" / "toy-specs"}) {
    for (const auto& entry : std::filesystem::directory_iterator(dir)) {
      if (entry.path().extension() == ".yaml") names.push_back(lowercase(entry.path().stem().string()));
    }
  }
  return names;
}

TEST(Invariants, CoreNamesNoArchitecture) {
  const auto names = architecture_names();
  std::string pattern;
  for (const std::string& name : names) {
    pattern += (pattern.empty() ? "" : "|") + std::regex_replace(name, std::regex(R"([-.])"), R"(\$&)");
  }
  // An arch name as a word or word prefix (qwen3moe, deepseek2); "llama.cpp", the project, is
  // not an architecture and is removed before matching.
  const std::regex arch_word("(^|[^a-z0-9_])(" + pattern + ")[a-z0-9_]*");
  std::vector<std::string> hits;
  size_t files = 0;
  for (const auto& entry : std::filesystem::recursive_directory_iterator(testing::source_dir() / "core")) {
    if (!entry.is_regular_file()) continue;
    ++files;
    std::ifstream in(entry.path());
    std::string line;
    for (int number = 1; std::getline(in, line); ++number) {
      std::string text = std::regex_replace(lowercase(line), std::regex(R"(llama\.cpp)"), "");
      std::smatch match;
      if (std::regex_search(text, match, arch_word)) {
        hits.push_back(entry.path().string() + ":" + std::to_string(number) + ": '" + match.str(2) + "' in: " + line);
      }
    }
  }
  EXPECT_GT(files, 10u);
  EXPECT_TRUE(hits.empty()) << "core/ names an architecture:\n"
                            << [&] {
                                 std::ostringstream out;
                                 for (const auto& hit : hits) out << "  " << hit << "\n";
                                 return out.str();
                               }();
}

}  // namespace
}  // namespace archreg
