#include "spec/fused_forms.hpp"

#include <fmt/format.h>

#include <algorithm>

#include "spec/spec.hpp"

namespace archreg::spec {

std::string FusedForm::gguf_name(const FusedTensor& tensor, int64_t layer) const {
  return per_layer ? fmt::format("blk.{}.{}.{}", layer, base, tensor.suffix) : name(tensor);
}

namespace {

std::string when_text(const TensorDecl& t) {
  return t.when ? t.when->text() : "always";
}

// Storage types allowed by every part; empty means any. nullopt: no type satisfies all.
std::optional<std::vector<int32_t>> common_types(const std::vector<const TensorDecl*>& parts) {
  std::optional<std::vector<int32_t>> common;  // unset: unconstrained so far
  for (const TensorDecl* part : parts) {
    if (part->types.empty()) continue;
    if (!common) {
      common = part->types;
      continue;
    }
    std::erase_if(*common, [&](int32_t type) { return std::find(part->types.begin(), part->types.end(), type) == part->types.end(); });
  }
  if (common && common->empty()) return std::nullopt;
  return common.value_or(std::vector<int32_t>{});
}

class Deriver {
 public:
  explicit Deriver(const Spec& spec) : spec_(spec) {}

  std::vector<FusedForm> run() {
    for (size_t g = 0; g < spec_.fusable.size(); ++g) derive(g);
    if (!problems_.empty()) throw SpecError(problems_);
    return std::move(forms_);
  }

 private:
  void problem(const FusableGroup& group, const std::string& message) {
    problems_.push_back(fmt::format("{}: fusable group '{}': {}", group.pos.text(), group.name, message));
  }

  // Every declared tensor with this base name, in declaration order.
  // A part's tensors, sidecars aside: a fused form has none (a layer whose part carries one is
  // not fusable, rewrite/ and the runtime leave it as stored).
  std::vector<size_t> decls_of(std::string_view base) const {
    std::vector<size_t> found;
    for (size_t i = 0; i < spec_.tensors.size(); ++i) {
      if (spec_.tensors[i].base == base && !spec_.tensors[i].sidecar_of) found.push_back(i);
    }
    return found;
  }

  void derive(size_t g) {
    const FusableGroup& group = spec_.fusable[g];
    const size_t problems_before = problems_.size();
    std::vector<std::vector<size_t>> part_decls;
    for (const std::string& part : group.parts) {
      if (part == group.name) problem(group, fmt::format("the fused name '{}' is also one of its parts", part));
      if (std::count(group.parts.begin(), group.parts.end(), part) > 1) problem(group, fmt::format("part '{}' is listed twice", part));
      std::vector<size_t> decls = decls_of(part);
      if (decls.empty()) problem(group, fmt::format("part '{}' is not a declared tensor", part));
      part_decls.push_back(std::move(decls));
    }
    if (problems_.size() != problems_before) return;

    FusedForm form;
    form.group = g;
    form.base = group.name;
    const TensorDecl& first = spec_.tensors[part_decls[0][0]];
    form.per_layer = first.per_layer;
    for (size_t p = 0; p < group.parts.size(); ++p) {
      for (size_t index : part_decls[p]) {
        const TensorDecl& t = spec_.tensors[index];
        if (t.per_layer != form.per_layer) problem(group, "parts are split between 'tensors' and 'layer'");
      }
    }

    // The suffixes every part declares; .weight defines the axis and must exist.
    const TensorDecl* weight = spec_.find_tensor(form.per_layer, group.parts[0], "weight");
    if (weight == nullptr) {
      problem(group, fmt::format("part '{}' has no .weight tensor", group.parts[0]));
      return;
    }
    const auto weight_rank = static_cast<int>(weight->shape.size());
    if (group.axis >= weight_rank) {
      problem(group, fmt::format("axis {} is out of range for parts of {} dimensions", group.axis, weight_rank));
      return;
    }
    form.when = weight->when;
    std::vector<std::string> suffixes{"weight"};
    for (size_t index : part_decls[0]) {
      if (spec_.tensors[index].suffix != "weight") suffixes.push_back(spec_.tensors[index].suffix);
    }
    for (const std::string& suffix : suffixes) derive_suffix(group, form, suffix, weight_rank);
    for (size_t p = 1; p < group.parts.size(); ++p) {
      for (size_t index : part_decls[p]) {
        const std::string& suffix = spec_.tensors[index].suffix;
        if (std::find(suffixes.begin(), suffixes.end(), suffix) == suffixes.end()) {
          problem(group, fmt::format("'{}' has no counterpart on '{}': every part needs the same suffixes", spec_.tensors[index].name(),
                                     group.parts[0]));
        }
      }
    }
    for (const FusedTensor& fused : form.tensors) {
      if (spec_.find_tensor(form.per_layer, form.base, fused.suffix) != nullptr) {
        problem(group, fmt::format("'{}' is derived from the parts and must not be declared as a tensor", form.name(fused)));
      }
    }
    if (problems_.size() == problems_before) forms_.push_back(std::move(form));
  }

  void derive_suffix(const FusableGroup& group, FusedForm& form, const std::string& suffix, int weight_rank) {
    std::vector<const TensorDecl*> parts;
    FusedTensor fused;
    fused.suffix = suffix;
    for (const std::string& part : group.parts) {
      const TensorDecl* t = spec_.find_tensor(form.per_layer, part, suffix);
      if (t == nullptr) {
        problem(group, fmt::format("'{}.{}' exists but '{}.{}' does not: every part needs the same suffixes", group.parts[0], suffix, part,
                                   suffix));
        return;
      }
      parts.push_back(t);
      fused.parts.push_back(static_cast<size_t>(t - spec_.tensors.data()));
      fused.part_optional.push_back(t->optional);
    }
    const TensorDecl& head = *parts[0];
    const auto rank = static_cast<int>(head.shape.size());
    fused.axis = group.axis - (weight_rank - rank);
    if (fused.axis < 0 || fused.axis >= rank) {
      problem(group, fmt::format("'{}' has {} dimensions: no axis corresponds to axis {} of the weights", head.name(), rank, group.axis));
      return;
    }
    // The fused tensor may be absent only where every part may be; a part declared optional
    // while others are not is an optional part of the group (a layer without it is not fusable).
    fused.optional = std::all_of(parts.begin(), parts.end(), [](const TensorDecl* t) { return t->optional; });
    std::vector<Expr> extents;
    for (const TensorDecl* t : parts) {
      if (t->shape.size() != head.shape.size()) {
        problem(group, fmt::format("'{}' has {} dimensions but '{}' has {}", t->name(), t->shape.size(), head.name(), head.shape.size()));
        return;
      }
      for (int d = 0; d < rank; ++d) {
        const auto i = static_cast<size_t>(d);
        if (d != fused.axis && t->shape[i].text() != head.shape[i].text()) {
          problem(group, fmt::format("'{}' and '{}' differ off the fusion axis, in dimension {}: '{}' vs '{}'", head.name(), t->name(), d,
                                     head.shape[i].text(), t->shape[i].text()));
          return;
        }
      }
      if (when_text(*t) != when_text(head)) {
        problem(group, fmt::format("'{}' and '{}' have different presence rules (when: {} vs {})", head.name(), t->name(), when_text(head),
                                   when_text(*t)));
        return;
      }
      fused.offsets.push_back(Expr::sum(extents));
      extents.push_back(t->shape[static_cast<size_t>(fused.axis)]);
    }
    fused.shape = head.shape;
    fused.shape[static_cast<size_t>(fused.axis)] = Expr::sum(extents);
    const auto types = common_types(parts);
    if (!types) {
      problem(group, fmt::format("no storage type is allowed by every '{}' part", suffix));
      return;
    }
    fused.types = *types;
    form.tensors.push_back(std::move(fused));
  }

  const Spec& spec_;
  std::vector<FusedForm> forms_;
  std::vector<std::string> problems_;
};

}  // namespace

bool part_has_sidecar(const Spec& spec, const FusedTensor& weight, int64_t layer, const std::function<bool(const std::string&)>& stored) {
  for (const TensorDecl& t : spec.tensors) {
    if (t.sidecar_of && std::find(weight.parts.begin(), weight.parts.end(), *t.sidecar_of) != weight.parts.end() &&
        stored(t.gguf_name(layer))) {
      return true;
    }
  }
  return false;
}

std::vector<FusedForm> derive_fused_forms(const Spec& spec) {
  return Deriver(spec).run();
}

std::optional<FusedLayout> fused_layout(std::span<const std::vector<uint64_t>> part_shapes, int axis) {
  if (part_shapes.empty()) return std::nullopt;
  const std::vector<uint64_t>& head = part_shapes[0];
  const auto a = static_cast<size_t>(axis);
  if (a >= head.size()) return std::nullopt;
  FusedLayout result{head, {}};
  result.shape[a] = 0;
  for (const std::vector<uint64_t>& shape : part_shapes) {
    if (shape.size() != head.size()) return std::nullopt;
    for (size_t d = 0; d < shape.size(); ++d) {
      if (d != a && shape[d] != head[d]) return std::nullopt;
    }
    result.offsets.push_back(result.shape[a]);
    result.shape[a] += shape[a];
  }
  return result;
}

}  // namespace archreg::spec
