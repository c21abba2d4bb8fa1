#include "spec/spec.hpp"

#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <sys/stat.h>

#include <fstream>

#include "spec/fused_forms.hpp"
#include "test_support.hpp"

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

TEST(SpecStrings, StringHyperparametersAreComparedWithLiteralsOnly) {
  const std::string with_string = with(kMinimal, "  n_q:     { value: n_head * 8 }",
                                       "  n_q:     { value: n_head * 8 }\n"
                                       "  scaling: { key: \"{arch}.rope.scaling.type\", type: string, default: linear }");
  // Accepted: a string compared with a literal, in a check and in a condition.
  const Spec ok = parse_spec(with(with_string, "layers: n_layer",
                                  "layers: n_layer\nchecks:\n  - { expr: \"scaling == 'linear' || scaling == 'yarn'\", message: m }"),
                             "ok.yaml");
  const Hparam& scaling = ok.hparams[*ok.hparam_index("scaling")];
  EXPECT_EQ(scaling.default_text, "linear");
  EXPECT_FALSE(scaling.default_value);
  ASSERT_EQ(ok.checks.size(), 1u);
  EXPECT_EQ(ok.checks[0].expr.text(), R"(scaling == "linear" || scaling == "yarn")");

  // Refused at load, with the expression's position: an integer compared with a string, a
  // string used as a number (also when the string is declared after its use).
  EXPECT_THAT(problems_of(with(with_string, "layers: n_layer", "layers: n_layer\nchecks:\n  - { expr: \"n_embd == 'x'\", message: m }")),
              Contains(AllOf(HasSubstr("bad.yaml:"), HasSubstr("'n_embd' is compared with a string, but it is of type u32"))));
  EXPECT_THAT(problems_of(with(with_string, "default: 4 * n_embd }", "default: 4 * n_embd + scaling }")),
              Contains(HasSubstr("'scaling' is a string: compare it with a literal")));
  EXPECT_THAT(problems_of(with(with_string, "layers: n_layer", "layers: n_layer\nchecks:\n  - { expr: \"'yarn'\", message: m }")),
              Contains(HasSubstr("can only be compared")));
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
  EXPECT_THAT(problems_of(with(kMinimal, "schema_version: 1", "schema_version: 3")), Contains(HasSubstr("unsupported schema_version 3")));
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

TEST(Spec, OptionalLayersAreOneRangeOrAListOfRanges) {
  EXPECT_EQ(
      parse_spec(with(kMinimal, "layers: n_layer", "layers: n_layer\noptional_layers: layer > 0"), "mini.yaml").optional_layers.size(), 1u);
  EXPECT_EQ(parse_spec(with(kMinimal, "layers: n_layer", "layers: n_layer\noptional_layers: [layer > 0, layer < 1]"), "mini.yaml")
                .optional_layers.size(),
            2u);
  EXPECT_THAT(problems_of(with(kMinimal, "layers: n_layer", "layers: n_layer\noptional_layers: []")),
              ElementsAre(HasSubstr("bad.yaml:10:18: optional_layers: an empty list")));
  EXPECT_THAT(problems_of(with(kMinimal, "layers: n_layer", "layers: n_layer\noptional_layers: [layer > 0, layer < n_x]")),
              ElementsAre(AllOf(HasSubstr("bad.yaml:10:38:"), HasSubstr("unknown name 'n_x'"))));
}

TEST(Spec, RolesFollowFromNameAndShapeUnlessStated) {
  const Spec spec = parse_spec(
      with(with(kMinimal, "token_embd: [n_embd, 100]", "token_embd: { shape: [n_embd, 100], role: embedding }\n  out_norm: [n_embd]"),
           "  ffn_up:", "  exps: [n_embd, n_ff, 4]\n  scalar: [4]\n  ffn_up:"),
      "mini.yaml");
  const auto role_of = [&](bool per_layer, std::string_view base, std::string_view suffix = "weight") {
    const TensorDecl* t = spec.find_tensor(per_layer, base, suffix);
    return t != nullptr ? std::string(role_name(t->role)) : std::string("(none)");
  };
  EXPECT_EQ(role_of(false, "token_embd"), "embedding");
  EXPECT_EQ(role_of(false, "out_norm"), "norm");
  EXPECT_EQ(role_of(true, "attn_q"), "matrix");
  EXPECT_EQ(role_of(true, "attn_q", "bias"), "bias");
  EXPECT_EQ(role_of(true, "exps"), "experts");
  EXPECT_EQ(role_of(true, "scalar"), "vector");
  // A file's tensor by its GGUF name; a fused tensor has its parts' role.
  EXPECT_EQ(tensor_role(spec, "token_embd.weight"), Role::kEmbedding);
  EXPECT_EQ(tensor_role(spec, "blk.12.exps.weight"), Role::kExperts);
  EXPECT_EQ(tensor_role(spec, "blk.0.attn_qk.weight"), Role::kMatrix);
  EXPECT_EQ(tensor_role(spec, "blk.0.attn_qk.bias"), Role::kBias);
  EXPECT_EQ(tensor_role(spec, "blk.x.attn_q.weight"), std::nullopt);
  EXPECT_EQ(tensor_role(spec, "blk.0.token_embd.weight"), std::nullopt);
  EXPECT_EQ(tensor_role(spec, "attn_q"), std::nullopt);
  EXPECT_THAT(problems_of(with(kMinimal, "token_embd: [n_embd, 100]", "token_embd: { shape: [n_embd, 100], role: lookup }")),
              ElementsAre(AllOf(HasSubstr("bad.yaml:"), HasSubstr("unknown role 'lookup'"))));
}

TEST(Spec, SidecarsAttachOneOptionalF32ValuePerMatrixToListedWeights) {
  const Spec spec = parse_spec(with(kMinimal, "fusable:",
                                    "  exps: { shape: [n_embd, n_ff, 4], when: layer > 0 }\nsidecars:\n  scale: [attn_q, exps, ffn_gate, "
                                    "token_embd]\n  input_scale: [attn_k]\nfusable:"),
                               "mini.yaml");
  const TensorDecl* q = spec.find_tensor(true, "attn_q", "scale");
  ASSERT_NE(q, nullptr);
  EXPECT_EQ(q->role, Role::kScale);
  EXPECT_TRUE(q->optional);
  ASSERT_TRUE(q->sidecar_of.has_value());
  EXPECT_EQ(spec.tensors[*q->sidecar_of].name(), "attn_q.weight");
  ASSERT_EQ(q->shape.size(), 1u);
  EXPECT_EQ(q->shape[0].text(), "1");
  EXPECT_EQ(q->types, std::vector<int32_t>{0});  // F32
  const TensorDecl* e = spec.find_tensor(true, "exps", "scale");
  ASSERT_NE(e, nullptr);
  EXPECT_EQ(e->shape[0].text(), "4") << "one value per expert matrix";
  ASSERT_TRUE(e->when.has_value()) << "present only where the weight may be";
  EXPECT_NE(spec.find_tensor(true, "attn_k", "input_scale"), nullptr);
  EXPECT_EQ(spec.find_tensor(true, "ffn_gate", "scale"), nullptr) << "a listed weight the spec does not declare has none";
  EXPECT_NE(spec.find_tensor(false, "token_embd", "scale"), nullptr);
  // The group's fused form has no sidecar.
  for (const FusedTensor& fused : spec.fused_forms[0].tensors) EXPECT_NE(fused.suffix, "scale");
  EXPECT_THAT(problems_of(with(kMinimal, "fusable:", "sidecars:\n  bias: [attn_q]\nfusable:")),
              ElementsAre(HasSubstr("'bias' cannot be a sidecar suffix")));
  EXPECT_THAT(problems_of(with(kMinimal, "fusable:", "sidecars:\n  scale: [attn_q.bias]\nfusable:")), ::testing::IsEmpty());
  EXPECT_THAT(problems_of(with(with(kMinimal, "layers: n_layer", "layers: n_layer\nsidecars:\n  scale: [attn_q]"),
                               "  attn_k.bias:", "  attn_q.scale: [1]\n  attn_k.bias:")),
              ElementsAre(HasSubstr("sidecar 'attn_q.scale' is declared twice")));
}

TEST(Spec, AlternativesAreRefusedWithAdvice) {
  EXPECT_THAT(problems_of(with(kMinimal, "fusable:", "alternatives:\n  qk: [[attn_q], [attn_k]]\nfusable:")),
              Contains(AllOf(HasSubstr("bad.yaml:"), HasSubstr("'alternatives' was removed"), HasSubstr("`when:` condition"))));
}

TEST(Spec, AGroupMayHaveAnOptionalPart) {
  const Spec spec =
      parse_spec(with(kMinimal, "  attn_k:      [n_embd, n_q]", "  attn_k:      { shape: [n_embd, n_q], optional: true }"), "mini.yaml");
  ASSERT_EQ(spec.fused_forms.size(), 1u);
  const FusedTensor& weight = spec.fused_forms[0].tensors[0];
  EXPECT_THAT(weight.part_optional, ElementsAre(false, true));
  EXPECT_FALSE(weight.optional) << "the fused weight is required where its required part is";
  const FusedTensor& bias = spec.fused_forms[0].tensors[1];
  EXPECT_THAT(bias.part_optional, ElementsAre(true, true));
  EXPECT_TRUE(bias.optional);
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

namespace extends {

constexpr const char* kBase = R"(schema_version: 2
description: a base decoder
hparams:
  n_embd:  { key: "{arch}.embedding_length" }
  n_layer: { key: "{arch}.block_count" }
  n_ff:    { key: "{arch}.feed_forward_length" }
layers: n_layer
tensors:
  token_embd: [n_embd, 100]
layer:
  attn_q: [n_embd, n_embd]
  attn_k: [n_embd, n_embd]
  ffn_up: [n_embd, n_ff]
fusable:
  attn_qk: { parts: [attn_q, attn_k], axis: 1 }
checks:
  - { expr: n_embd > 0, message: base check }
)";

void write(const std::filesystem::path& file, const std::string& text) {
  std::filesystem::create_directories(file.parent_path());
  std::ofstream(file) << text;
}

std::vector<std::string> load_problems(const std::filesystem::path& file) {
  try {
    load_spec(file);
    return {};
  } catch (const SpecError& error) {
    return error.problems();
  }
}

TEST(SpecExtends, MergesSectionsByNameInTheBasesOrder) {
  testing::TempDir dir;
  write(dir / "base" / "decoder.yaml", kBase);
  write(dir / "child.yaml", R"(schema_version: 2
arch: child
extends: base/decoder.yaml
hparams:
  n_ff:     { key: "{arch}.ff_length", default: 4 * n_embd }
  n_expert: { key: "{arch}.expert_count" }
layer:
  ffn_up: ~
  ffn_down: [n_ff, n_embd]
checks:
  - { expr: n_expert > 0, message: child check }
)");
  const Spec spec = load_spec(dir / "child.yaml");
  EXPECT_EQ(spec.arch, "child");
  EXPECT_EQ(spec.description, "a base decoder");
  std::vector<std::string> hparams, tensors;
  for (const Hparam& h : spec.hparams) hparams.push_back(h.name);
  for (const TensorDecl& t : spec.tensors) tensors.push_back(t.base);
  EXPECT_THAT(hparams, ElementsAre("n_embd", "n_layer", "n_ff", "n_expert"));  // replaced where it was
  EXPECT_EQ(spec.hparams[2].key, "child.ff_length");
  EXPECT_EQ(spec.hparams[2].pos.file, (dir / "child.yaml").string());
  EXPECT_EQ(spec.hparams[0].pos.file, (dir / "base" / "decoder.yaml").string());
  EXPECT_THAT(tensors, ElementsAre("token_embd", "attn_q", "attn_k", "ffn_down"));  // ffn_up removed
  ASSERT_EQ(spec.checks.size(), 2u);
  EXPECT_EQ(spec.checks[0].message, "base check");
  ASSERT_EQ(spec.fused_forms.size(), 1u);
  EXPECT_EQ(spec.fused_forms[0].base, "attn_qk");
}

TEST(SpecExtends, ABaseNotBesideTheSpecIsLookedUpInTheSpecSearchPath) {
  testing::TempDir dir;
  write(dir / "builtin" / "base" / "decoder.yaml", kBase);
  const std::string child = "schema_version: 2\narch: child\nextends: base/decoder.yaml\n";
  write(dir / "user" / "child.yaml", child);
  EXPECT_THAT(load_problems(dir / "user" / "child.yaml"), ElementsAre(HasSubstr("cannot read the base spec")));
  const std::vector<std::filesystem::path> search{dir / "elsewhere", dir / "builtin"};
  const Spec spec = load_spec(dir / "user" / "child.yaml", search);
  EXPECT_EQ(spec.description, "a base decoder");
  EXPECT_EQ(spec.hparams[0].pos.file, (dir / "builtin" / "base" / "decoder.yaml").string());
  // A base beside the spec comes first.
  write(dir / "user" / "base" / "decoder.yaml",
        std::string(kBase).replace(std::string(kBase).find("a base decoder"), 14, "the user's base"));
  EXPECT_EQ(load_spec(dir / "user" / "child.yaml", search).description, "the user's base");
}

TEST(SpecExtends, ProblemsInABaseNameTheBaseFileAndLine) {
  testing::TempDir dir;
  write(dir / "base.yaml", with(kBase, "ffn_up: [n_embd, n_ff]", "ffn_up: [n_embd, n_fff]"));
  write(dir / "child.yaml", "schema_version: 2\narch: child\nextends: base.yaml\n");
  EXPECT_THAT(load_problems(dir / "child.yaml"), Contains(AllOf(HasSubstr((dir / "base.yaml").string() + ":13:20:"), HasSubstr("n_fff"))));
}

TEST(SpecExtends, RefusesWhatCannotBeMerged) {
  testing::TempDir dir;
  write(dir / "base.yaml", kBase);
  const auto child = [&](const std::string& name, const std::string& body) {
    write(dir / name, "schema_version: 2\narch: " + std::filesystem::path(name).stem().string() + "\n" + body);
    return load_problems(dir / name);
  };
  EXPECT_THAT(child("missing.yaml", "extends: nowhere.yaml\n"),
              Contains(AllOf(HasSubstr("missing.yaml:3:"), HasSubstr("cannot read the base spec"), HasSubstr("nowhere.yaml"))));
  EXPECT_THAT(child("v1.yaml", "extends: base.yaml\n").size(), 0u);
  write(dir / "old.yaml", "schema_version: 1\narch: old\nextends: base.yaml\n");
  EXPECT_THAT(load_problems(dir / "old.yaml"), Contains(HasSubstr("spec format 2")));
  EXPECT_THAT(child("stray.yaml", "extends: base.yaml\nlayer:\n  attn_v: ~\n"),
              Contains(AllOf(HasSubstr("stray.yaml:5:"), HasSubstr("no base defines 'attn_v'"))));
  write(dir / "a.yaml", "schema_version: 2\nextends: b.yaml\n");
  write(dir / "b.yaml", "schema_version: 2\nextends: a.yaml\n");
  EXPECT_THAT(child("loop.yaml", "extends: a.yaml\n"), Contains(HasSubstr("leads back to a spec already in the chain")));
  write(dir / "with-arch.yaml", "schema_version: 2\narch: x\n");
  EXPECT_THAT(child("archbase.yaml", "extends: with-arch.yaml\n"),
              Contains(AllOf(HasSubstr("with-arch.yaml:2:"), HasSubstr("unknown key 'arch' in a base spec"))));
  std::string chain = "extends: l1.yaml\n";
  for (int i = 1; i <= 6; ++i) write(dir / fmt::format("l{}.yaml", i), fmt::format("schema_version: 2\nextends: l{}.yaml\n", i + 1));
  EXPECT_THAT(child("deep.yaml", chain), Contains(HasSubstr("levels of 'extends'")));
  write(dir / "fifo-base.yaml", "");
  std::filesystem::remove(dir / "fifo-base.yaml");
  ASSERT_EQ(mkfifo((dir / "fifo-base.yaml").c_str(), 0600), 0);
  EXPECT_THAT(child("fifo.yaml", "extends: fifo-base.yaml\n"), Contains(HasSubstr("cannot read the base spec")));
}

}  // namespace extends

}  // namespace
}  // namespace archreg::spec
