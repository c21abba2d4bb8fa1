// An architecture spec (arch-specs/<arch>.yaml) as loaded: see docs/spec-format.md.
#pragma once

#include <cstdint>
#include <filesystem>
#include <optional>
#include <span>
#include <stdexcept>
#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

#include "gguf/types.hpp"
#include "spec/expr.hpp"
#include "spec/fused_forms.hpp"

namespace archreg::spec {

// The spec format written today; schema_version 1 (the same without `extends`) is still read.
inline constexpr int kSchemaVersion = 2;
// `extends:` chains: at most this many bases above a spec.
inline constexpr size_t kMaxBases = 4;

// Limits on one spec (docs/spec-format.md): loading any file costs bounded time and memory.
inline constexpr uint64_t kMaxSpecBytes = 256 << 10;
// YAML nodes (scalars, lists, maps) in the document: yaml-cpp spends about 500 bytes and a few
// microseconds on each, so this bounds the memory and time of loading the tree.
inline constexpr size_t kMaxYamlNodes = 65536;
inline constexpr size_t kMaxHparams = 256;
inline constexpr size_t kMaxTensors = 4096;  // 'tensors' and 'layer' together
inline constexpr size_t kMaxFusableGroups = 64;
inline constexpr size_t kMaxGroupParts = 16;
inline constexpr size_t kMaxChecks = 256;
inline constexpr size_t kMaxOptionalLayerRanges = 16;
inline constexpr size_t kMaxArchLength = 256;  // the arch name, substituted for {arch} in keys
inline constexpr size_t kMaxKeyLength = 4096;  // a GGUF key, after substitution
// A hyperparameter's default or value may read one that reads another ...: at most this deep.
inline constexpr size_t kMaxHparamChain = 32;
// A spec with more problems than this reports the first ones and stops.
inline constexpr size_t kMaxProblems = 100;

// Every problem found in one spec file, each "file:line:column: message".
class SpecError : public std::runtime_error {
 public:
  explicit SpecError(std::vector<std::string> problems);
  const std::vector<std::string>& problems() const { return problems_; }

 private:
  std::vector<std::string> problems_;
};

struct Hparam {
  std::string name;
  std::optional<std::string> key;  // with {arch} substituted; empty for derived values
  gguf::ValueType type = gguf::ValueType::kUint32;
  bool count = false;      // the value is the element count of the array at `key`
  bool per_layer = false;  // scalar or one value per layer
  // With per_layer: whether tensor shapes use each layer's own value (`in_shapes: each_layer`)
  // or, as llama.cpp's loaders size tensors with n_head() / n_ff() of layer 0, layer 0's value
  // (`in_shapes: layer0`, the default). Conditions and checks always use the layer's own value.
  bool shapes_use_each_layer = false;
  bool optional = false;
  std::optional<Expr> default_value;
  std::optional<std::string> default_text;  // type string: the value when the key is absent
  std::optional<Expr> required_when;        // with a default: the key is still required where this holds
  std::optional<Expr> value;                // derived
  std::optional<Expr> min;
  std::optional<Expr> max;
  SourcePos pos;

  bool is_integer() const { return count || gguf::is_integer(type); }
  bool is_string() const { return !count && !value && type == gguf::ValueType::kString; }
};

// What a tensor is for. The runtime places storages by it (core/runtime/model.hpp), `inspect`
// groups a file's tensors by it. Unless a spec says `role:`, it follows from the name and shape
// (docs/spec-format.md, "Tensors").
enum class Role { kEmbedding, kMatrix, kExperts, kNorm, kBias, kVector, kScale };
inline constexpr Role kRoles[] = {Role::kEmbedding, Role::kMatrix, Role::kExperts, Role::kNorm, Role::kBias, Role::kVector, Role::kScale};
std::string_view role_name(Role role);  // "embedding", "matrix", "experts", ...

struct TensorDecl {
  std::string base;    // "attn_q"
  std::string suffix;  // "weight"
  Role role = Role::kMatrix;
  // A sidecar (`sidecars:`): an optional tensor attached to this weight (index in Spec::tensors),
  // present only where the weight is, one value per matrix.
  std::optional<size_t> sidecar_of;
  bool per_layer = false;
  std::vector<Expr> shape;     // ggml order
  std::vector<int32_t> types;  // allowed ggml types; empty = any
  bool optional = false;
  std::optional<Expr> when;
  std::optional<std::string> tied_to;
  SourcePos pos;

  std::string name() const { return base + "." + suffix; }
  // The GGUF tensor name in `layer` (ignored for global tensors).
  std::string gguf_name(int64_t layer) const;
};

struct FusableGroup {
  std::string name;                // fused base name, e.g. "ffn_gate_up_exps"
  std::vector<std::string> parts;  // part base names in storage order
  int axis = 1;                    // ggml axis of the .weight tensors
  std::vector<std::string> consumers;
  bool partial_allowed = false;
  SourcePos pos;
};

struct Check {
  Expr expr;
  std::string message;
  SourcePos pos;
};

class Spec {
 public:
  int schema_version = kSchemaVersion;
  std::string arch;
  std::string description;
  std::string file;
  std::vector<Hparam> hparams;
  std::optional<Expr> layers;
  // Ranges of layers a file may leave out, each as a whole (no blk.N. tensor for any layer of
  // the range): a range is the layers where its expression (over `layer`) is non-zero, e.g. the
  // NextN blocks of a trunk-only file or the decoder layers of an MTP-only one. A range the file
  // has any layer of is checked in full; a file must hold some layer.
  std::vector<Expr> optional_layers;
  std::vector<TensorDecl> tensors;  // global and per-layer, in file order
  std::vector<FusableGroup> fusable;
  std::vector<Check> checks;
  std::vector<FusedForm> fused_forms;  // derive_fused_forms(*this), after parsing

  Spec();
  Spec(Spec&&) noexcept;
  Spec& operator=(Spec&&) noexcept;
  ~Spec();

  std::optional<uint32_t> hparam_index(std::string_view name) const;
  const TensorDecl* find_tensor(bool per_layer, std::string_view base, std::string_view suffix) const;

 private:
  std::unordered_map<std::string, uint32_t> hparam_index_;
  std::unordered_map<std::string, size_t> tensor_index_;  // tensor_key() -> index in tensors
  friend class SpecParser;
};

// Parses and checks a spec. Throws SpecError listing every problem found (at most
// kMaxProblems). load_spec reads only a regular file of at most kMaxSpecBytes. An `extends:`
// path is relative to the file that says it; where no such file exists, it is looked up in
// `base_dirs` in order (the spec search path: a user's copy of a built-in spec, alone in its
// --spec-dir, still finds the built-in base/).
Spec load_spec(const std::filesystem::path& file, std::span<const std::filesystem::path> base_dirs = {});
Spec parse_spec(std::string_view yaml_text, const std::string& file, std::span<const std::filesystem::path> base_dirs = {});

// The role of a file's tensor by its GGUF name ("blk.3.attn_q.weight"; a fused
// "blk.3.attn_qkv.weight" has its parts' role), or nullopt when the spec has no such tensor.
std::optional<Role> tensor_role(const Spec& spec, std::string_view gguf_name);

// Hyperparameters in dependency order (derived values and defaults after what they read).
std::vector<uint32_t> hparam_order(const Spec& spec);

}  // namespace archreg::spec
