// The fusion rules: the one place that knows what a fused tensor is made of.
//
// For a fusable group (parts P1..Pn, axis a) the fused tensor, for each suffix every part
// has, has the parts' shape with the axis extent replaced by the sum of the parts' extents;
// part k sits at the sum of the extents of parts 1..k-1 along that axis. A suffix tensor with
// fewer dimensions than the .weight (a bias {F, X} of a weight {E, F, X}) concatenates along
// the axis shifted by the dimensions it lacks. The validator, fuse/unfuse and the runtime
// loader all use these forms; nothing else spells out "attn_qkv" or "ffn_gate_up_exps".
#pragma once

#include <cstdint>
#include <functional>
#include <optional>
#include <span>
#include <string>
#include <vector>

#include "spec/expr.hpp"

namespace archreg::spec {

class Spec;

struct FusedTensor {
  std::string suffix;          // "weight", "bias", ...
  int axis = 0;                // concatenation axis of this suffix's tensors
  std::vector<Expr> shape;     // the fused tensor's shape
  std::vector<Expr> offsets;   // each part's offset along `axis`
  std::vector<size_t> parts;   // Spec::tensors index of each part, in storage order
  std::vector<int32_t> types;  // storage types every part allows (empty: any)
  bool optional = false;       // absent allowed: every part is optional
  // Whether parts[p] is an optional part: a layer holding the other parts without it stays
  // unfused (it cannot be fused), which is neither an error nor a partial fusion.
  std::vector<bool> part_optional;
};

struct FusedForm {
  size_t group = 0;  // index into Spec::fusable
  std::string base;  // "attn_qkv"
  bool per_layer = false;
  std::optional<Expr> when;          // the parts' shared presence condition
  std::vector<FusedTensor> tensors;  // ".weight" first

  std::string name(const FusedTensor& tensor) const { return base + "." + tensor.suffix; }
  std::string gguf_name(const FusedTensor& tensor, int64_t layer) const;
};

// Derives every group's fused form. Throws SpecError (with positions) when a group is
// inconsistent: unknown parts, parts in different sections or with different presence rules,
// shapes that disagree off the axis, an axis out of range, no common storage type.
std::vector<FusedForm> derive_fused_forms(const Spec& spec);

// Whether a part of a fused form's `weight` carries a sidecar (`sidecars:`) in `layer` of a
// file whose tensors `stored` finds by GGUF name: such a layer cannot be fused (a fused form
// has no sidecars), it stays as stored.
bool part_has_sidecar(const Spec& spec, const FusedTensor& weight, int64_t layer, const std::function<bool(const std::string&)>& stored);

// A fused tensor's layout for concrete part shapes (all of the same rank).
struct FusedLayout {
  std::vector<uint64_t> shape;    // fused shape
  std::vector<uint64_t> offsets;  // part offsets along the axis
};
// Returns nullopt when the parts disagree off the axis.
std::optional<FusedLayout> fused_layout(std::span<const std::vector<uint64_t>> part_shapes, int axis);

}  // namespace archreg::spec
