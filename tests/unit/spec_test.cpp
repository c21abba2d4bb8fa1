#include "spec/spec.hpp"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include "spec/fused_forms.hpp"

namespace archreg::spec {
namespace {

using ::testing::AllOf;
using ::testing::Contains;
using ::testing::ElementsAre;
using ::testing::HasSubstr;

constexpr const char* kMinimal = R"(schema_version: 1
arch: mini
hparams:
  n_embd:  { key: "{arch}.embedding_length" }
  n_layer: { key: "{arch}.block_count" }
  n_head:  { key: "{arch}.attention.head_count", per_layer: true }
  n_ff:    { key: "{arch}.feed_forward_length", default: 4 * n_embd }
  n_q:     { value: n_head * 8 }
layers: n_layer
tensors:
  token_embd: [n_embd, 100]
layer:
  attn_q:      [n_embd, n_q]
  attn_q.bias: { shape: [n_q], optional: true }
  attn_k:      [n_embd, n_q]
  attn_k.bias: { shape: [n_q], optional: true }
  ffn_up:      { shape: [n_embd, n_ff], when: layer > 0, types: [F16, Q8_0] }
fusable:
  attn_qk: { parts: [attn_q, attn_k], axis: 1, consumers: [llama.cpp] }
)";

// Every problem reported for a spec text, or an empty list when it loads.
std::vector<std::string> problems_of(const std::string& text) {
  try {
    parse_spec(text, "bad.yaml");
    return {};
  } catch (const SpecError& error) {
    return error.problems();
  }
}

std::string with(std::string text, const std::string& from, const std::string& to) {
  const size_t at = text.find(from);
  EXPECT_NE(at, std::string::npos) << from;
  return text.replace(at, from.size(), to);
}

TEST(Spec, ParsesAllSections) {
  const Spec spec = parse_spec(kMinimal, "mini.yaml");
  EXPECT_EQ(spec.arch, "mini");
  ASSERT_EQ(spec.hparams.size(), 5u);
  EXPECT_EQ(spec.hparams[0].key, "mini.embedding_length");
  EXPECT_TRUE(spec.hparams[2].per_layer);
  EXPECT_TRUE(spec.hparams[4].value.has_value());
  ASSERT_EQ(spec.tensors.size(), 6u);
  const TensorDecl* bias = spec.find_tensor(true, "attn_q", "bias");
  ASSERT_NE(bias, nullptr);
  EXPECT_TRUE(bias->optional);
  EXPECT_EQ(bias->gguf_name(3), "blk.3.attn_q.bias");
  EXPECT_EQ(spec.find_tensor(false, "token_embd", "weight")->gguf_name(3), "token_embd.weight");
  const TensorDecl* up = spec.find_tensor(true, "ffn_up", "weight");
  EXPECT_THAT(up->types, ElementsAre(1, 8));
  ASSERT_TRUE(up->when.has_value());
  EXPECT_EQ(up->when->text(), "layer > 0");
  ASSERT_EQ(spec.fusable.size(), 1u);
  EXPECT_THAT(spec.fusable[0].consumers, ElementsAre("llama.cpp"));
}

TEST(Spec, DerivesFusedWeightAndBias) {
  const Spec spec = parse_spec(kMinimal, "mini.yaml");
  ASSERT_EQ(spec.fused_forms.size(), 1u);
  const spec::FusedForm& form = spec.fused_forms[0];
  EXPECT_EQ(form.base, "attn_qk");
  ASSERT_EQ(form.tensors.size(), 2u);
  EXPECT_EQ(form.tensors[0].suffix, "weight");
  EXPECT_EQ(form.tensors[0].axis, 1);
  EXPECT_EQ(form.tensors[0].shape[1].text(), "n_q + n_q");
  EXPECT_EQ(form.tensors[0].offsets[1].text(), "n_q");
  EXPECT_EQ(form.gguf_name(form.tensors[0], 2), "blk.2.attn_qk.weight");
  EXPECT_EQ(form.tensors[1].suffix, "bias");
  EXPECT_EQ(form.tensors[1].axis, 0);  // a bias lacks ne0 of its weight
  EXPECT_TRUE(form.tensors[1].optional);
}

TEST(Spec, ReportsEveryProblemWithItsPosition) {
  std::string text = with(kMinimal, "  n_embd:  { key:", "  n_embd:  { kee: 1, key:");
  text = with(text, "attn_k:      [n_embd, n_q]", "attn_k:      [n_embd, n_qq]");
  const auto problems = problems_of(text);
  ASSERT_EQ(problems.size(), 2u);
  EXPECT_THAT(problems[0], AllOf(HasSubstr("bad.yaml:4:14:"), HasSubstr("unknown key 'kee'")));
  EXPECT_THAT(problems[1], AllOf(HasSubstr("bad.yaml:15:25:"), HasSubstr("unknown name 'n_qq'")));
}

TEST(Spec, RejectsStructuralMistakes) {
  EXPECT_THAT(problems_of(with(kMinimal, "schema_version: 1", "schema_version: 2")), Contains(HasSubstr("unsupported schema_version 2")));
  EXPECT_THAT(problems_of(with(kMinimal, "  attn_k:      [n_embd, n_q]\n", "  attn_q:      [n_embd, n_q]\n")),
              Contains(HasSubstr("duplicate tensor 'attn_q.weight'")));
  EXPECT_THAT(problems_of(with(kMinimal, "layers: n_layer", "layers: n_layer\nextras: 1")), Contains(HasSubstr("unknown key 'extras'")));
  EXPECT_THAT(problems_of(with(kMinimal, "default: 4 * n_embd", "default: 4 * n_q2")), Contains(HasSubstr("unknown name 'n_q2'")));
  EXPECT_THAT(problems_of(with(kMinimal, "{ value: n_head * 8 }", "{ value: n_ff * 8 }")),
              ::testing::IsEmpty());  // forward references are fine
  EXPECT_THAT(problems_of(with(with(kMinimal, "default: 4 * n_embd", "default: n_q"), "{ value: n_head * 8 }", "{ value: n_ff }")),
              Contains(HasSubstr("depends on itself")));
  EXPECT_THAT(problems_of(with(kMinimal, "token_embd: [n_embd, 100]", "token_embd: [n_embd, layer]")),
              Contains(HasSubstr("'layer' exists only in per-layer tensors")));
  EXPECT_THAT(problems_of(with(kMinimal, "types: [F16, Q8_0]", "types: [F16, Q9_9]")), Contains(HasSubstr("unknown ggml type 'Q9_9'")));
  EXPECT_THAT(problems_of("[1, 2]"), Contains(HasSubstr("a spec is a YAML map")));
  EXPECT_THAT(problems_of("a: [1, 2"), Contains(HasSubstr("bad.yaml:")));
}

TEST(Spec, RejectsInconsistentFusableGroups) {
  EXPECT_THAT(problems_of(with(kMinimal, "parts: [attn_q, attn_k]", "parts: [attn_q, attn_x]")),
              Contains(HasSubstr("part 'attn_x' is not a declared tensor")));
  EXPECT_THAT(problems_of(with(kMinimal, "attn_k:      [n_embd, n_q]", "attn_k:      [n_q, n_q]")),
              Contains(HasSubstr("differ off the fusion axis")));
  EXPECT_THAT(problems_of(with(kMinimal, "axis: 1", "axis: 3")), Contains(HasSubstr("axis 3 is out of range")));
  EXPECT_THAT(problems_of(with(kMinimal, "  attn_k.bias: { shape: [n_q], optional: true }\n", "")),
              Contains(HasSubstr("every part needs the same suffixes")));
  EXPECT_THAT(problems_of(with(kMinimal, "  attn_k:      [n_embd, n_q]", "  attn_k:      { shape: [n_embd, n_q], when: layer > 0 }")),
              Contains(HasSubstr("different presence rules")));
  EXPECT_THAT(problems_of(with(kMinimal, "parts: [attn_q, attn_k]", "parts: [attn_q, ffn_up]")),
              Contains(HasSubstr("different presence rules")));
  EXPECT_THAT(problems_of(with(kMinimal, "  attn_k.bias: { shape: [n_q], optional: true }\n",
                               "  attn_k.bias: { shape: [n_q], optional: true }\n  attn_qk: [n_embd, n_q]\n")),
              Contains(HasSubstr("is derived from the parts and must not be declared")));
}

}  // namespace
}  // namespace archreg::spec
