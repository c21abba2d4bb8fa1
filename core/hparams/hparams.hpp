// A spec's hyperparameters bound to one file's metadata: stored values, per-layer arrays,
// defaults and derived values, evaluated lazily and memoised per layer.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <unordered_map>
#include <vector>

#include "gguf/reader.hpp"
#include "report/finding.hpp"
#include "spec/spec.hpp"

namespace archreg::hparams {

// More layers than this is treated as a hostile value (the loader's arrays are sized by it).
inline constexpr int64_t kMaxLayers = 1 << 16;

// Raised when a per-layer value is used where no layer is given and the layers disagree.
class LayerDependent : public spec::EvalError {
 public:
  using spec::EvalError::EvalError;
};

// Raised when an expression reads a hyperparameter that has no usable value: a missing,
// mistyped or malformed key, already reported as a finding of its own.
class Unavailable : public spec::EvalError {
 public:
  using spec::EvalError::EvalError;
};

class Hparams {
 public:
  // Reads every keyed hyperparameter; problems (missing_hparam, hparam_type, hparam_value)
  // are appended to `findings`. Values that could not be read make the expressions using them
  // throw spec::EvalError, so later checks skip what cannot be evaluated.
  static Hparams bind(const spec::Spec& spec, const gguf::Reader& reader, std::vector<report::Finding>& findings);

  // Value of an expression globally (layer unset) or in one layer. Throws spec::EvalError.
  int64_t eval(const spec::Expr& expr, std::optional<int64_t> layer) const;
  // The same for a tensor's shape (an extent, or a fused part's offset): there a per-layer
  // hyperparameter stands for layer 0's value unless the spec says `in_shapes: each_layer`
  // (llama.cpp sizes tensors with n_head() / n_ff(), which read layer 0).
  int64_t eval_shape(const spec::Expr& expr, std::optional<int64_t> layer) const;
  int64_t value(uint32_t hparam, std::optional<int64_t> layer) const;
  // Per-layer hyperparameters stored as arrays, for reports: name -> one value per layer.
  std::vector<std::pair<std::string, std::vector<int64_t>>> per_layer_values() const;
  // A string hyperparameter's value (stored, or its default). Throws spec::EvalError.
  std::string_view text(uint32_t hparam) const;
  // The number of layers, when it could be evaluated and is within kMaxLayers.
  std::optional<int64_t> layers() const { return layers_; }
  // Integer hyperparameters that have one global value, for reports: name -> value.
  std::vector<std::pair<std::string, int64_t>> global_values() const;

 private:
  enum class State { kStored, kPerLayer, kComputed, kAbsent, kNotInteger, kString };
  struct Slot {
    State state = State::kAbsent;
    int64_t scalar = 0;
    std::string text;  // kString
    std::vector<int64_t> per_layer;
    std::string why_absent;
  };

  explicit Hparams(const spec::Spec& spec) : spec_(&spec) {}
  int64_t eval_in(const spec::Expr& expr, std::optional<int64_t> layer, bool shape) const;
  int64_t value_in(uint32_t hparam, std::optional<int64_t> layer, bool shape) const;
  void read(uint32_t index, const gguf::Reader& reader, std::vector<report::Finding>& findings);
  void check_ranges(std::vector<report::Finding>& findings) const;

  const spec::Spec* spec_;
  std::vector<Slot> slots_;
  std::vector<bool> key_present_;
  std::optional<int64_t> layers_;
  // Memoised computed values: [0] global, [1 + layer] per layer, then the same for shapes
  // ([1 + layers] global, [2 + layers + layer] per layer); allocated on first use.
  mutable std::vector<std::vector<std::optional<int64_t>>> memo_;
  // Memoised failures, keyed by context * hparams + index: without them, a chain of values each
  // reading the one before twice would be re-evaluated exponentially often when its root fails.
  struct Failure {
    enum class Kind { kLayerDependent, kUnavailable, kEval } kind;
    std::string message;
  };
  mutable std::unordered_map<uint64_t, Failure> failures_;
};

}  // namespace archreg::hparams
