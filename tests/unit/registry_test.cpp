#include "registry/registry.hpp"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include "test_support.hpp"

namespace archreg::registry {
namespace {

using ::testing::AllOf;
using ::testing::ElementsAre;
using ::testing::HasSubstr;

const std::filesystem::path kPlugins = ARCHREG_TEST_PLUGIN_DIR;
const std::filesystem::path kToySpecs = testing::source_dir() / "tests" / "fixtures" / "toy-specs";
const std::filesystem::path kArchSpecs = testing::source_dir() / "arch-specs";

Registry make(std::vector<std::filesystem::path> plugin_dirs, std::vector<std::filesystem::path> spec_dirs = {kToySpecs}) {
  return Registry(Registry::Dirs{std::move(spec_dirs), std::move(plugin_dirs)});
}

// The message of the RegistryError that opening `arch`'s plugin raises.
std::string open_error(Registry& registry, const std::string& arch) {
  try {
    registry.plugin(arch);
  } catch (const RegistryError& error) {
    return error.what();
  }
  return "no error";
}

TEST(Registry, ToyArchIsRunnableFromItsOwnDirectories) {
  Registry registry = make({kPlugins / "toy"});
  const ArchInfo info = registry.info("toymoe");
  EXPECT_EQ(info.state, ArchState::kRunnable);
  ASSERT_TRUE(info.plugin_file.has_value());
  EXPECT_EQ(info.plugin_file->filename(), "archreg-toymoe.so");
  const plugin::Plugin* plugin = registry.plugin("toymoe");
  ASSERT_NE(plugin, nullptr);
  EXPECT_EQ(plugin->name(), "toymoe");
  EXPECT_THAT(plugin->archs(), ElementsAre("toymoe"));
  EXPECT_TRUE(plugin->runs_fused("ffn_gate_up_exps"));
  EXPECT_FALSE(plugin->runs_fused("attn_qkv"));
  EXPECT_EQ(registry.plugin("toymoe"), plugin);  // opened once
  const Runnable runnable = require_runnable(registry, "toymoe");
  EXPECT_EQ(runnable.plugin, plugin);
  EXPECT_EQ(runnable.spec->arch, "toymoe");
}

TEST(Registry, SpecWithoutPluginIsValidateOnlyAndCannotRun) {
  Registry registry = make({});
  EXPECT_EQ(registry.info("toymoe").state, ArchState::kValidateOnly);
  EXPECT_EQ(registry.plugin("toymoe"), nullptr);
  try {
    require_runnable(registry, "toymoe");
    FAIL() << "a validate-only arch must not run";
  } catch (const RegistryError& error) {
    EXPECT_THAT(error.what(), AllOf(HasSubstr("'toymoe' has a spec"), HasSubstr("no plugin")));
  }
}

TEST(Registry, UnknownArchListsTheKnownOnes) {
  Registry registry = make({}, {kToySpecs, kArchSpecs});
  try {
    require_runnable(registry, "mamba9");
    FAIL() << "an unknown arch must not run";
  } catch (const RegistryError& error) {
    EXPECT_THAT(error.what(),
                AllOf(HasSubstr("unsupported model architecture 'mamba9'; known: "), HasSubstr("qwen3moe"), HasSubstr("toymoe")));
  }
}

TEST(Registry, RefusesAPluginOfAnotherAbiVersionNamingBothVersions) {
  Registry registry = make({kPlugins / "wrong-abi"});
  EXPECT_THAT(open_error(registry, "toymoe"),
              AllOf(HasSubstr("archreg-wrong-abi.so"), HasSubstr("plugin ABI version 999"), HasSubstr("speaks version 2")));
}

TEST(Registry, RefusesAVersionOnePluginNamingBothVersions) {
  Registry registry = make({kPlugins / "old-abi"});
  EXPECT_THAT(open_error(registry, "toymoe"),
              AllOf(HasSubstr("archreg-old-abi.so"), HasSubstr("plugin ABI version 1,"), HasSubstr("speaks version 2")));
}

TEST(Registry, RefusesALibraryWithoutTheEntryPoint) {
  Registry registry = make({kPlugins / "no-entry"});
  EXPECT_THAT(open_error(registry, "toymoe"),
              AllOf(HasSubstr("archreg-no-entry.so"), HasSubstr("exports no 'archreg_plugin' entry point")));
}

TEST(Registry, CatchesAPluginThatThrowsWhileRegistering) {
  Registry registry = make({kPlugins / "throwing"});
  EXPECT_THAT(open_error(registry, "toymoe"),
              AllOf(HasSubstr("archreg-throwing.so"), HasSubstr("threw while registering: registration exploded")));
}

TEST(Registry, RefusesAPluginThatDisagreesWithItsManifest) {
  Registry registry = make({kPlugins / "mismatch"});
  EXPECT_THAT(open_error(registry, "toymoe"),
              AllOf(HasSubstr("archreg-mismatch.so"), HasSubstr("serves [otherarch]"), HasSubstr("lists [toymoe]")));
}

TEST(Registry, RefusesALibraryThatCannotBeOpened) {
  Registry registry = make({kPlugins / "garbage"});
  EXPECT_THAT(open_error(registry, "toymoe"), AllOf(HasSubstr("archreg-garbage.so"), HasSubstr("cannot open the plugin")));
}

TEST(Registry, TwoPluginsForOneArchInOneDirectoryIsAnError) {
  testing::TempDir dir;
  for (const auto& [from, name] :
       {std::pair{kPlugins / "toy", "archreg-toymoe"}, std::pair{kPlugins / "duplicate", "archreg-toymoe-again"}}) {
    for (const char* extension : {".archs", ".so"}) {
      std::filesystem::create_symlink(from / (std::string(name) + extension), dir / (std::string(name) + extension));
    }
  }
  Registry registry = make({dir.path()});
  const ArchInfo info = registry.info("toymoe");
  EXPECT_EQ(info.state, ArchState::kBroken);
  ASSERT_EQ(info.problems.size(), 1u);
  EXPECT_THAT(info.problems[0],
              AllOf(HasSubstr("claimed by 2 plugins"), HasSubstr("archreg-toymoe.so"), HasSubstr("archreg-toymoe-again.so")));
  EXPECT_THAT(open_error(registry, "toymoe"), HasSubstr("claimed by 2 plugins"));
}

TEST(Registry, TheFirstDirectoryWinsForTwoPluginsOrSpecsOfOneArch) {
  // Searched in order, like PATH: a user's directory overrides a default one (tests of the
  // shadowing itself: hostile_files_test.cpp).
  testing::TempDir dir;
  std::filesystem::copy_file(kToySpecs / "toymoe.yaml", dir / "toymoe.yaml");
  Registry registry = make({kPlugins / "toy", kPlugins / "duplicate"}, {kToySpecs, dir.path()});
  const ArchInfo info = registry.info("toymoe");
  EXPECT_EQ(info.state, ArchState::kRunnable);
  EXPECT_EQ(info.spec_file, kToySpecs / "toymoe.yaml");
  EXPECT_THAT(info.shadowed_specs, ElementsAre(dir / "toymoe.yaml"));
  EXPECT_EQ(info.plugin_file->filename(), "archreg-toymoe.so");
}

TEST(Registry, PluginWithoutSpecIsAnError) {
  Registry registry = make({kPlugins / "ghost"});
  const ArchInfo info = registry.info("ghostarch");
  EXPECT_EQ(info.state, ArchState::kBroken);
  EXPECT_THAT(info.problems, ElementsAre(AllOf(HasSubstr("archreg-ghost.so"), HasSubstr("no spec describes it"))));
  const auto all = registry.archs();
  EXPECT_EQ(all.size(), 2u);  // ghostarch (broken) and toymoe (validate-only)
}

TEST(Registry, IndexingOpensNoPlugin) {
  // The broken libraries are only ever reported when their arch is used.
  Registry registry = make({kPlugins / "wrong-abi", kPlugins / "throwing", kPlugins / "ghost"});
  EXPECT_EQ(registry.archs().size(), 2u);
}

}  // namespace
}  // namespace archreg::registry
