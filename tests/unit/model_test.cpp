// Opening a model to run it: the refusals happen before any weight is used, and fused and
// unfused files bind to byte-identical logical tensors (DESIGN.md invariants 2 and 3). The
// fixtures are written by gguf-py (tests/fixtures/make_fixtures.py, run by ctest first), so
// the fused files are fused independently of archreg's own fusion code.
#include "runtime/model.hpp"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <fstream>
#include <map>
#include <nlohmann/json.hpp>

#include "test_support.hpp"

namespace archreg::runtime {
namespace {

using ::testing::AllOf;
using ::testing::HasSubstr;

const std::filesystem::path kFixtures = ARCHREG_FIXTURE_DIR;
const std::filesystem::path kPlugins = ARCHREG_TEST_PLUGIN_DIR;

registry::Registry make_registry(std::vector<std::filesystem::path> plugin_dirs = {ARCHREG_BUILD_PLUGIN_DIR}) {
  return registry::Registry(
      {{testing::source_dir() / "arch-specs", testing::source_dir() / "tests" / "fixtures" / "toy-specs"}, std::move(plugin_dirs)});
}

// Every fixture pair (unfused, fused) that the fixture index lists as valid, of the runnable archs
// (validate-only archs, whose plugin has no forward pass, do not load as models).
std::vector<std::pair<std::string, std::string>> fixture_pairs(registry::Registry& registry) {
  std::ifstream in(kFixtures / "fixtures.json");
  if (!in)
    throw std::runtime_error("no " + (kFixtures / "fixtures.json").string() + ": run ctest (its generate_fixtures step writes them)");
  const nlohmann::json index = nlohmann::json::parse(in);
  std::vector<std::pair<std::string, std::string>> pairs;
  for (const auto& entry : index) {
    const std::string file = entry.at("file");
    const std::string fused = file.substr(0, file.size() - 5) + ".fused.gguf";
    const std::string arch = entry.at("arch");
    const plugin::Plugin* plugin = arch == "toymoe" ? nullptr : registry.plugin(arch);
    const bool runnable = plugin != nullptr && plugin->has_forward();
    if (file.find(".fused.") == std::string::npos && std::filesystem::exists(kFixtures / fused) && runnable) {
      pairs.emplace_back(file, fused);
    }
  }
  return pairs;
}

std::vector<std::byte> bytes_of(const TensorView& view) {
  std::vector<std::byte> bytes(view.n_bytes());
  view.gather(bytes);
  return bytes;
}

TEST(Model, FusedAndUnfusedFilesBindIdenticalLogicalTensors) {
  registry::Registry registry = make_registry();
  const auto pairs = fixture_pairs(registry);
  ASSERT_GE(pairs.size(), 7u);
  size_t strided = 0;
  for (const auto& [unfused_file, fused_file] : pairs) {
    SCOPED_TRACE(unfused_file);
    const Model unfused = Model::open(kFixtures / unfused_file, registry);
    const Model fused = Model::open(kFixtures / fused_file, registry);
    ASSERT_EQ(unfused.tensors().size(), fused.tensors().size());
    for (const TensorView& logical : unfused.tensors()) {
      const TensorView* other = fused.find(logical.name);
      ASSERT_NE(other, nullptr) << logical.name;
      EXPECT_EQ(other->type, logical.type) << logical.name;
      EXPECT_EQ(other->ne, logical.ne) << logical.name;
      EXPECT_TRUE(bytes_of(*other) == bytes_of(logical)) << logical.name << " differs (stored in " << other->storage->name << ")";
      if (!other->contiguous()) ++strided;
    }
  }
  EXPECT_GT(strided, 0u);  // expert parts of a fused gate_up are strided views
}

// Each logical tensor refers to a storage of the model by (storage, offset): mapped storages are
// the file's bytes in place, one per stored tensor; --fuse-at-load puts a group's parts in one
// new storage; every storage listed is used, so a backend places nothing twice or for nothing.
TEST(Model, LogicalTensorsReferToStoragesPlacedOnce) {
  registry::Registry registry = make_registry();
  const auto pairs = fixture_pairs(registry);
  ASSERT_FALSE(pairs.empty());
  size_t shared = 0;
  size_t fused_at_load = 0;
  for (const auto& [unfused_file, fused_file] : pairs) {
    SCOPED_TRACE(unfused_file);
    for (const auto& [file, options] : {std::pair{unfused_file, OpenOptions{}}, std::pair{fused_file, OpenOptions{}},
                                        std::pair{unfused_file, OpenOptions{.fuse_at_load = true}}}) {
      const Model model = Model::open(kFixtures / file, registry, options);
      std::map<const Storage*, size_t> users;
      for (const auto& storage : model.storages()) users.emplace(storage.get(), 0);
      ASSERT_EQ(users.size(), model.storages().size());
      for (const TensorView& view : model.tensors()) {
        ASSERT_TRUE(users.contains(view.storage)) << view.name << " refers to a storage the model does not list";
        ++users[view.storage];
        EXPECT_LE(view.offset + view.nb[3] * (view.ne[3] - 1) + view.nb[2] * (view.ne[2] - 1) + view.nb[1] * (view.ne[1] - 1),
                  view.storage->bytes)
            << view.name;
        if (view.storage->kind == Storage::Kind::kMapped) {
          const gguf::TensorInfo* stored = model.reader().find_tensor(view.storage->name);
          ASSERT_NE(stored, nullptr) << view.storage->name;
          EXPECT_EQ(view.storage->host, model.reader().tensor_data(*stored).data()) << view.name << ": mapped in place";
        } else {
          ++fused_at_load;
          EXPECT_TRUE(options.fuse_at_load) << view.name;
        }
      }
      for (const auto& [storage, count] : users) {
        EXPECT_GT(count, 0u) << storage->name << " is listed but no tensor uses it";
        if (count > 1) ++shared;
      }
    }
  }
  EXPECT_GT(shared, 0u);         // fused storages hold several logical tensors
  EXPECT_GT(fused_at_load, 0u);  // and --fuse-at-load made some
}

TEST(Model, RefusesUnknownArchitecturesBeforeTouchingWeights) {
  registry::Registry registry = make_registry();
  try {
    Model::open(kFixtures / "unknown-arch.gguf", registry);
    FAIL() << "an unknown architecture must not load";
  } catch (const LoadError& error) {
    EXPECT_THAT(error.what(), AllOf(HasSubstr("unsupported model architecture"), HasSubstr("known: "), HasSubstr("qwen3moe")));
  }
}

TEST(Model, RefusesValidateOnlyArchitectures) {
  registry::Registry registry = make_registry({});
  try {
    Model::open(kFixtures / "toymoe.gguf", registry);
    FAIL() << "an arch without a plugin must not load";
  } catch (const LoadError& error) {
    EXPECT_THAT(error.what(), AllOf(HasSubstr("toymoe.gguf"), HasSubstr("has a spec"), HasSubstr("no plugin")));
  }
}

TEST(Model, RefusesFusedFormsThePluginCannotRun) {
  registry::Registry registry = make_registry({kPlugins / "toy"});
  EXPECT_NO_THROW(Model::open(kFixtures / "toymoe.gguf", registry));
  try {
    Model::open(kFixtures / "toymoe.fused.gguf", registry);
    FAIL() << "attn_qkv fused must be refused by the toy plugin";
  } catch (const LoadError& error) {
    ASSERT_EQ(error.findings().size(), 1u);
    EXPECT_EQ(error.findings()[0].code, "unsupported_fusion");
    EXPECT_EQ(error.findings()[0].subject, "attn_qkv");
  }
}

TEST(Model, RefusesFilesThatDoNotValidateListingEveryFinding) {
  registry::Registry registry = make_registry();
  try {
    Model::open(kFixtures / "qwen3moe-wrong-shape.gguf", registry);
    FAIL() << "an invalid file must not load";
  } catch (const LoadError& error) {
    ASSERT_FALSE(error.findings().empty());
    EXPECT_EQ(error.findings()[0].code, "wrong_shape");
    EXPECT_THAT(error.what(), HasSubstr("refusing to run"));
  }
}

}  // namespace
}  // namespace archreg::runtime
