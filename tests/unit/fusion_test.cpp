#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <filesystem>
#include <functional>

#include "spec/fused_forms.hpp"
#include "spec/spec.hpp"
#include "test_support.hpp"

namespace archreg::fusion {
namespace {

using spec::fused_layout;
using spec::FusedForm;
using spec::FusedTensor;

std::vector<std::filesystem::path> all_specs() {
  std::vector<std::filesystem::path> files;
  for (const auto& dir : {testing::source_dir() / "arch-specs", testing::source_dir() / "tests" / "fixtures" / "toy-specs"}) {
    for (const auto& entry : std::filesystem::directory_iterator(dir)) {
      if (entry.path().extension() == ".yaml") files.push_back(entry.path());
    }
  }
  std::sort(files.begin(), files.end());
  return files;
}

// Evaluates spec expressions with made-up but distinct values for every keyed
// hyperparameter (its default where it has one), and derived values from their expressions.
class SyntheticHparams {
 public:
  explicit SyntheticHparams(const spec::Spec& spec) : spec_(spec) {}

  int64_t eval(const spec::Expr& e, int64_t layer) const {
    return e.eval([&](uint32_t s) { return s == spec::kLayerSymbol ? layer : value(s, layer); });
  }

 private:
  int64_t value(uint32_t index, int64_t layer) const {
    const spec::Hparam& h = spec_.hparams[index];
    if (h.value) return eval(*h.value, layer);
    if (h.default_value) return eval(*h.default_value, layer);
    return 64 + 16 * static_cast<int64_t>(index);
  }
  const spec::Spec& spec_;
};

// Every spec with gated experts (an ffn_gate_exps tensor) offers them fused; dense specs have
// none to offer.
TEST(Fusion, EverySpecLoadsAndDeclaresGateUpExperts) {
  const auto files = all_specs();
  ASSERT_GE(files.size(), 8u);
  size_t with_experts = 0;
  for (const auto& file : files) {
    SCOPED_TRACE(file.string());
    const spec::Spec spec = spec::load_spec(file);
    const bool has_experts =
        std::any_of(spec.tensors.begin(), spec.tensors.end(), [](const spec::TensorDecl& t) { return t.base == "ffn_gate_exps"; });
    const bool has_gate_up =
        std::any_of(spec.fused_forms.begin(), spec.fused_forms.end(), [](const FusedForm& f) { return f.base == "ffn_gate_up_exps"; });
    EXPECT_EQ(has_gate_up, has_experts);
    with_experts += has_experts ? 1 : 0;
  }
  EXPECT_GE(with_experts, 8u);
}

TEST(Fusion, FusedExtentIsTheSumOfPartsAndOffsetsAccumulate) {
  for (const auto& file : all_specs()) {
    SCOPED_TRACE(file.string());
    const spec::Spec spec = spec::load_spec(file);
    const SyntheticHparams hp(spec);
    for (const FusedForm& form : spec.fused_forms) {
      for (const FusedTensor& fused : form.tensors) {
        SCOPED_TRACE(form.name(fused));
        const auto axis = static_cast<size_t>(fused.axis);
        int64_t running = 0;
        for (size_t p = 0; p < fused.parts.size(); ++p) {
          const spec::TensorDecl& part = spec.tensors[fused.parts[p]];
          EXPECT_EQ(part.suffix, fused.suffix);
          ASSERT_EQ(part.shape.size(), fused.shape.size());
          EXPECT_EQ(hp.eval(fused.offsets[p], 1), running);
          for (size_t d = 0; d < part.shape.size(); ++d) {
            if (d != axis) {
              EXPECT_EQ(hp.eval(part.shape[d], 1), hp.eval(fused.shape[d], 1)) << "dimension " << d;
            }
          }
          running += hp.eval(part.shape[axis], 1);
        }
        EXPECT_EQ(hp.eval(fused.shape[axis], 1), running);
      }
    }
  }
}

TEST(Fusion, ToyExtentsMatchTheHandComputedValues) {
  const spec::Spec spec = spec::load_spec(testing::source_dir() / "tests" / "fixtures" / "toy-specs" / "toymoe.yaml");
  // n_embd 64 + 16*0, n_head 64 + 16*3 ... are synthetic; recompute the textbook formulas.
  const SyntheticHparams hp(spec);
  auto value = [&](const char* name) {
    return hp.eval(spec::Expr::parse(name, {}, [&](std::string_view n) { return spec.hparam_index(n); }), 0);
  };
  for (const FusedForm& form : spec.fused_forms) {
    const FusedTensor& weight = form.tensors.front();
    if (form.base == "attn_qkv") {
      // GQA: Q rows, then K rows, then V rows.
      EXPECT_EQ(hp.eval(weight.shape[1], 0), value("n_head * head_dim") + 2 * value("n_head_kv * head_dim"));
      EXPECT_EQ(hp.eval(weight.offsets[2], 0), value("n_head * head_dim") + value("n_head_kv * head_dim"));
    } else if (form.base == "ffn_gate_up_exps") {
      // Per expert: the gate rows, then the up rows.
      EXPECT_EQ(hp.eval(weight.shape[1], 0), 2 * value("n_ff_exp"));
      EXPECT_EQ(hp.eval(weight.shape[2], 0), value("n_expert"));
    }
  }
}

TEST(Fusion, ConcreteLayoutChecksOffAxisAgreement) {
  const std::vector<std::vector<uint64_t>> parts = {{64, 48, 4}, {64, 48, 4}};
  const auto fused = fused_layout(parts, 1);
  ASSERT_TRUE(fused.has_value());
  EXPECT_THAT(fused->shape, ::testing::ElementsAre(64, 96, 4));
  EXPECT_THAT(fused->offsets, ::testing::ElementsAre(0, 48));
  const std::vector<std::vector<uint64_t>> disagree = {{64, 48, 4}, {64, 48, 8}};
  EXPECT_FALSE(fused_layout(disagree, 1).has_value());
  EXPECT_FALSE(fused_layout(parts, 3).has_value());
}

}  // namespace
}  // namespace archreg::fusion
