#include "validate/validate.hpp"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <functional>

#include "gguf/reader.hpp"
#include "gguf/writer.hpp"
#include "spec/spec.hpp"
#include "test_support.hpp"

namespace archreg::validate {
namespace {

using ::testing::ElementsAre;
using ::testing::UnorderedElementsAre;

constexpr const char* kSpec = R"(schema_version: 1
arch: unit
hparams:
  n_embd:  { key: "{arch}.embedding_length" }
  n_layer: { key: "{arch}.block_count", max: 8 }
  n_head:  { key: "{arch}.attention.head_count", per_layer: true, in_shapes: each_layer }
  n_dense: { key: "{arch}.leading_dense_block_count", default: 0 }
  eps:     { key: "{arch}.eps", type: f32 }
  mla:     { key: "{arch}.mla", default: 1 }
layers: n_layer
tensors:
  token_embd: [n_embd, 10]
  output:     { shape: [n_embd, 10], tied_to: token_embd }
layer:
  attn_q:    [n_embd, n_head * 32]
  attn_k:    [n_embd, n_head * 32]
  kv:        { shape: [n_embd, 64], when: "!mla" }
  k_b:       { shape: [n_embd, 32], when: mla }
  v_b:       { shape: [n_embd, 32], when: mla }
  ffn:       { shape: [n_embd, 64], when: layer < n_dense, types: [F32] }
  exps_gate: { shape: [n_embd, 16, 4], when: layer >= n_dense }
  exps_up:   { shape: [n_embd, 16, 4], when: layer >= n_dense }
fusable:
  attn_qk:  { parts: [attn_q, attn_k], axis: 1 }
  exps_gate_up: { parts: [exps_gate, exps_up], axis: 1 }
)";

using Tensors = std::vector<std::pair<std::string, std::vector<uint64_t>>>;
using Metadata = std::function<void(gguf::Writer&)>;

// Two layers, head counts per layer {1, 2}, layer 0 dense, unfused, split kv form.
Tensors base_tensors() {
  return {{"token_embd.weight", {32, 10}},   {"blk.0.attn_q.weight", {32, 32}},       {"blk.0.attn_k.weight", {32, 32}},
          {"blk.0.k_b.weight", {32, 32}},    {"blk.0.v_b.weight", {32, 32}},          {"blk.0.ffn.weight", {32, 64}},
          {"blk.1.attn_q.weight", {32, 64}}, {"blk.1.attn_k.weight", {32, 64}},       {"blk.1.k_b.weight", {32, 32}},
          {"blk.1.v_b.weight", {32, 32}},    {"blk.1.exps_gate.weight", {32, 16, 4}}, {"blk.1.exps_up.weight", {32, 16, 4}}};
}

void base_metadata(gguf::Writer& w) {
  w.add("general.architecture", "unit");
  w.add("unit.embedding_length", uint32_t{32});
  w.add("unit.block_count", uint32_t{2});
  w.add("unit.attention.head_count", gguf::make_array(gguf::ValueType::kUint32, {uint32_t{1}, uint32_t{2}}));
  w.add("unit.leading_dense_block_count", uint32_t{1});
  w.add("unit.eps", 1e-5f);
}

class ValidateTest : public ::testing::Test {
 protected:
  Report run(const Tensors& tensors, const Metadata& metadata = base_metadata) {
    const auto path = dir_ / ("f" + std::to_string(counter_++) + ".gguf");
    {
      gguf::Writer writer(path);
      metadata(writer);
      uint64_t bytes = 0;
      for (const auto& [name, shape] : tensors) bytes += writer.tensor_bytes(writer.add_tensor(name, 0, shape));
      writer.write(std::vector<std::byte>(bytes));
      writer.commit();
    }
    readers_.push_back(std::make_unique<gguf::Reader>(gguf::Reader::open(path)));
    return validate(*readers_.back(), spec_);
  }

  static std::vector<std::string> codes(const Report& report) {
    std::vector<std::string> out;
    for (const report::Finding& f : report.findings) out.push_back(f.code + " " + f.subject);
    return out;
  }

  static Tensors without(Tensors tensors, const std::string& name) {
    std::erase_if(tensors, [&](const auto& t) { return t.first == name; });
    return tensors;
  }

  static Tensors fuse_qk(Tensors tensors, int layer, uint64_t rows) {
    const std::string p = "blk." + std::to_string(layer) + ".";
    tensors = without(without(std::move(tensors), p + "attn_q.weight"), p + "attn_k.weight");
    tensors.push_back({p + "attn_qk.weight", {32, rows}});
    return tensors;
  }

  testing::TempDir dir_;
  int counter_ = 0;
  std::vector<std::unique_ptr<gguf::Reader>> readers_;
  spec::Spec spec_ = spec::parse_spec(kSpec, "unit.yaml");
};

TEST_F(ValidateTest, CleanFileHasNoFindingsAndReportsGroupStates) {
  const Report report = run(base_tensors());
  EXPECT_THAT(codes(report), ElementsAre());
  ASSERT_EQ(report.groups.size(), 2u);
  EXPECT_EQ(report.groups[0].state(), "unfused");
  EXPECT_THAT(report.groups[0].unfused, ElementsAre(0, 1));
  EXPECT_THAT(report.groups[1].unfused, ElementsAre(1));  // the MoE group exists only from layer 1
}

TEST_F(ValidateTest, PerLayerValuesShapeEachLayer) {
  Tensors tensors = base_tensors();
  tensors[1].second = {32, 64};  // layer 0 has one head: 32 rows, not 64
  EXPECT_THAT(codes(run(tensors)), ElementsAre("wrong_shape blk.0.attn_q.weight"));
}

TEST_F(ValidateTest, ByDefaultShapesUseLayerZerosValueAsLlamaCppDoes) {
  // Without in_shapes: each_layer, a per-layer value sizes every layer's tensors with layer 0's
  // value (llama.cpp's n_head() / n_ff()), while conditions still see each layer's own value.
  std::string text = kSpec;
  text.replace(text.find(", in_shapes: each_layer"), 23, "");
  for (int i = 0; i < 2; ++i) text.replace(text.find("when: layer >= n_dense }"), 24, "when: n_head == 2 }");
  spec_ = spec::parse_spec(text, "unit.yaml");
  // Head counts {1, 2}: layer 1's tensors sized with 2 heads are wrong by llama.cpp's rule...
  EXPECT_THAT(codes(run(base_tensors())), ElementsAre("wrong_shape blk.1.attn_q.weight", "wrong_shape blk.1.attn_k.weight"));
  // ...and right when sized with layer 0's one head; the experts, present where n_head == 2,
  // are still expected in layer 1 only.
  Tensors tensors = base_tensors();
  tensors[6].second = {32, 32};
  tensors[7].second = {32, 32};
  const Report report = run(tensors);
  EXPECT_THAT(codes(report), ElementsAre());
  EXPECT_THAT(report.per_layer, ElementsAre(std::pair<std::string, std::vector<int64_t>>{"n_head", {1, 2}}));
  // in_shapes is checked.
  text.replace(text.find("per_layer: true }"), 17, "per_layer: true, in_shapes: first }");
  EXPECT_THROW(spec::parse_spec(text, "unit.yaml"), spec::SpecError);
}

TEST_F(ValidateTest, FusedLayersValidateAndMixingIsReported) {
  Tensors both_fused = fuse_qk(fuse_qk(base_tensors(), 0, 64), 1, 128);
  const Report fused = run(both_fused);
  EXPECT_THAT(codes(fused), ElementsAre());
  EXPECT_EQ(fused.groups[0].state(), "fused");
  const Report mixed = run(fuse_qk(base_tensors(), 1, 128));
  EXPECT_THAT(codes(mixed), ElementsAre("partial_fusion attn_qk"));
  EXPECT_EQ(mixed.groups[0].state(), "mixed");
  EXPECT_THAT(codes(run(fuse_qk(base_tensors(), 1, 100))),
              UnorderedElementsAre("partial_fusion attn_qk", "wrong_shape blk.1.attn_qk.weight"));
  Tensors doubled = base_tensors();
  doubled.push_back({"blk.1.attn_qk.weight", {32, 128}});
  EXPECT_THAT(codes(run(doubled)), ElementsAre("fused_and_unfused blk.1.attn_qk.weight"));
}

TEST_F(ValidateTest, ConditionsByLayerAndByKey) {
  Tensors tensors = base_tensors();
  tensors.push_back({"blk.1.ffn.weight", {32, 64}});  // dense tensor in a MoE layer
  tensors = without(tensors, "blk.0.v_b.weight");     // half of the split form
  tensors.push_back({"blk.1.kv.weight", {32, 64}});   // the legacy form in a file whose key says split
  EXPECT_THAT(codes(run(tensors)), UnorderedElementsAre("unexpected_tensor blk.1.ffn.weight", "missing_tensor blk.0.v_b.weight",
                                                        "unexpected_tensor blk.1.kv.weight"));
  // The key decides the form, as llama.cpp's loaders decide it (deepseek2's kv_b).
  const Metadata legacy_key = [](gguf::Writer& w) {
    base_metadata(w);
    w.add("unit.mla", uint32_t{0});
  };
  Tensors legacy =
      without(without(without(without(base_tensors(), "blk.0.k_b.weight"), "blk.0.v_b.weight"), "blk.1.k_b.weight"), "blk.1.v_b.weight");
  legacy.push_back({"blk.0.kv.weight", {32, 64}});
  legacy.push_back({"blk.1.kv.weight", {32, 64}});
  EXPECT_THAT(codes(run(legacy, legacy_key)), ElementsAre());
  EXPECT_THAT(codes(run(without(legacy, "blk.0.kv.weight"), legacy_key)), ElementsAre("missing_tensor blk.0.kv.weight"));
}

TEST_F(ValidateTest, HyperparameterProblemsAreReportedOnceNotPerTensor) {
  const Report missing = run(base_tensors(), [](gguf::Writer& w) {
    w.add("general.architecture", "unit");
    w.add("unit.block_count", uint32_t{2});
    w.add("unit.attention.head_count", uint32_t{2});
    w.add("unit.leading_dense_block_count", uint32_t{1});
    w.add("unit.eps", 1e-5f);
  });
  EXPECT_THAT(codes(missing), ElementsAre("missing_hparam unit.embedding_length"));
  const Report typed = run(base_tensors(), [](gguf::Writer& w) {
    base_metadata(w);
    w.add("unit.extra", uint32_t{0});
  });
  EXPECT_THAT(codes(typed), ElementsAre());
  const Report wrong = run(base_tensors(), [](gguf::Writer& w) {
    w.add("general.architecture", "unit");
    w.add("unit.embedding_length", int32_t{32});  // INT32 where the spec says u32
    w.add("unit.block_count", uint32_t{2});
    w.add("unit.attention.head_count", gguf::make_array(gguf::ValueType::kUint32, {uint32_t{1}, uint32_t{2}, uint32_t{3}}));
    w.add("unit.leading_dense_block_count", uint32_t{1});
    w.add("unit.eps", 1.0);  // FLOAT64 where the spec says f32
  });
  EXPECT_THAT(codes(wrong),
              UnorderedElementsAre("hparam_type unit.embedding_length", "hparam_type unit.eps", "hparam_value unit.attention.head_count"));
  EXPECT_EQ(wrong.findings[0].expected, "UINT32");
  EXPECT_EQ(wrong.findings[0].found, "INT32");
}

TEST_F(ValidateTest, StringComparisonsUseTheStoredValueOrTheDefault) {
  std::string text = kSpec;
  text.replace(text.find("layers: n_layer"), 15,
               "  scaling: { key: \"{arch}.rope.scaling.type\", type: string, default: linear }\n"
               "layers: n_layer\nchecks:\n"
               "  - { expr: \"scaling == 'none' || scaling == 'linear' || scaling == 'yarn'\", message: \"unknown rope scaling\" }");
  spec_ = spec::parse_spec(text, "unit.yaml");
  EXPECT_THAT(codes(run(base_tensors())), ElementsAre()) << "absent: the default 'linear' applies";
  EXPECT_THAT(codes(run(base_tensors(),
                        [](gguf::Writer& w) {
                          base_metadata(w);
                          w.add("unit.rope.scaling.type", "yarn");
                        })),
              ElementsAre());
  const Report bad = run(base_tensors(), [](gguf::Writer& w) {
    base_metadata(w);
    w.add("unit.rope.scaling.type", "dynamic");
  });
  ASSERT_THAT(codes(bad), ElementsAre("hparam_value scaling == \"none\" || scaling == \"linear\" || scaling == \"yarn\""));
  EXPECT_EQ(bad.findings[0].message, "unknown rope scaling");
}

TEST_F(ValidateTest, OptionalLayersMayBeLeftOutWholeButNotInPart) {
  std::string text = kSpec;
  text.replace(text.find("layers: n_layer\n"), 16, "layers: n_layer\noptional_layers: layer >= 1\n");
  spec_ = spec::parse_spec(text, "unit.yaml");
  Tensors trunk_only;
  for (auto& t : base_tensors()) {
    if (t.first.rfind("blk.1.", 0) != 0) trunk_only.push_back(t);
  }
  EXPECT_THAT(codes(run(trunk_only)), ElementsAre());
  EXPECT_THAT(codes(run(without(base_tensors(), "blk.1.exps_up.weight"))), ElementsAre("missing_tensor blk.1.exps_up.weight"));
  // Layer 0 is not optional: leaving it out is reported tensor by tensor.
  Tensors no_first;
  for (auto& t : base_tensors()) {
    if (t.first.rfind("blk.0.", 0) != 0) no_first.push_back(t);
  }
  EXPECT_EQ(codes(run(no_first)).size(), 5u);  // attn_q, attn_k, k_b, v_b, ffn
}

TEST_F(ValidateTest, EachOptionalLayerRangeMayBeLeftOutButNotEveryLayer) {
  std::string text = kSpec;
  // a trunk-only file leaves out the last layer, an MTP-only one the first
  text.replace(text.find("layers: n_layer\n"), 16, "layers: n_layer\noptional_layers: [layer >= 1, layer < 1]\n");
  spec_ = spec::parse_spec(text, "unit.yaml");
  const auto only = [](std::string_view prefix) {
    Tensors kept;
    for (auto& t : base_tensors()) {
      if (t.first.rfind("blk.", 0) != 0 || t.first.rfind(prefix, 0) == 0) kept.push_back(t);
    }
    return kept;
  };
  const Report trunk = run(only("blk.0."));
  EXPECT_THAT(codes(trunk), ElementsAre());
  EXPECT_THAT(trunk.absent_layers, ElementsAre(1));
  const Report mtp = run(only("blk.1."));
  EXPECT_THAT(codes(mtp), ElementsAre());
  EXPECT_THAT(mtp.absent_layers, ElementsAre(0));
  // A range the file has any tensor of is checked in full.
  EXPECT_THAT(codes(run(without(base_tensors(), "blk.0.attn_q.weight"))), ElementsAre("missing_tensor blk.0.attn_q.weight"));
  // A file with no layer at all leaves out none: every layer's tensors are missing.
  const Report none = run(only("blk.none."));
  EXPECT_EQ(codes(none).size(), 11u);  // 5 tensors of layer 0, 6 of layer 1
  EXPECT_THAT(none.absent_layers, ElementsAre());
  EXPECT_THAT(run(base_tensors()).absent_layers, ElementsAre());
}

TEST_F(ValidateTest, SidecarsAreOptionalBesideTheirWeightAndKeepALayerUnfused) {
  std::string text = kSpec;
  text.replace(text.find("fusable:\n"), 9, "sidecars:\n  scale: [attn_q, exps_up, kv]\nfusable:\n");
  spec_ = spec::parse_spec(text, "unit.yaml");
  Tensors with_scales = base_tensors();
  with_scales.push_back({"blk.0.attn_q.scale", {1}});
  with_scales.push_back({"blk.1.exps_up.scale", {4}});
  const Report report = run(with_scales);
  EXPECT_THAT(codes(report), ElementsAre());
  EXPECT_THAT(report.groups[0].unfused, ElementsAre(1));
  EXPECT_THAT(report.groups[0].unfusable, ElementsAre(0)) << "a layer whose part carries a sidecar cannot be fused";
  EXPECT_THAT(report.groups[1].unfusable, ElementsAre(1));
  // One value per matrix, F32.
  Tensors wrong = base_tensors();
  wrong.push_back({"blk.1.exps_up.scale", {1}});
  EXPECT_THAT(codes(run(wrong)), ElementsAre("wrong_shape blk.1.exps_up.scale"));
  // Not beside an absent weight: kv exists only where !mla.
  Tensors orphan = base_tensors();
  orphan.push_back({"blk.0.kv.scale", {1}});
  EXPECT_THAT(codes(run(orphan)), ElementsAre("unexpected_tensor blk.0.kv.scale"));
}

TEST_F(ValidateTest, AHugeLayerCountStopsAtTheFindingLimit) {
  spec_ = spec::parse_spec(std::string(kSpec).replace(std::string(kSpec).find("max: 8"), 6, "max: 65536"), "unit.yaml");
  const Report report = run(base_tensors(), [](gguf::Writer& w) {
    w.add("general.architecture", "unit");
    w.add("unit.embedding_length", uint32_t{32});
    w.add("unit.block_count", uint32_t{60000});
    w.add("unit.attention.head_count", uint32_t{1});
    w.add("unit.eps", 1e-5f);
  });
  ASSERT_EQ(report.findings.size(), kMaxFindings + 1);
  EXPECT_EQ(report.findings.back().code, "too_many_findings");
  EXPECT_THAT(report.findings.back().message, ::testing::HasSubstr("validation stopped at layer"));
}

TEST_F(ValidateTest, LayerCountIsBoundedAndExtraLayersAreNamed) {
  Tensors tensors = base_tensors();
  tensors.push_back({"blk.7.attn_q.weight", {32, 32}});
  EXPECT_THAT(codes(run(tensors)), ElementsAre("unexpected_tensor blk.7.attn_q.weight"));
  const Report huge = run(base_tensors(), [](gguf::Writer& w) {
    w.add("general.architecture", "unit");
    w.add("unit.embedding_length", uint32_t{32});
    w.add("unit.block_count", uint32_t{4000000000u});
    w.add("unit.attention.head_count", uint32_t{1});
    w.add("unit.eps", 1e-5f);
  });
  EXPECT_THAT(codes(huge), UnorderedElementsAre("hparam_value unit.block_count", "hparam_value n_layer"));
}

}  // namespace
}  // namespace archreg::validate
