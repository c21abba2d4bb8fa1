#include "validate/validate.hpp"

#include <fmt/format.h>

#include <algorithm>
#include <charconv>

#include "hparams/hparams.hpp"
#include "report/refusal.hpp"
#include "spec/fused_forms.hpp"

namespace archreg::validate {

std::string GroupReport::state() const {
  if (!both.empty()) return "both";
  if (!fused.empty() && !unfused.empty()) return "mixed";
  if (!fused.empty()) return "fused";
  if (!unfused.empty()) return "unfused";
  return "absent";
}

namespace {

std::string shape_text(std::span<const int64_t> shape) {
  return fmt::format("[{}]", fmt::join(shape, ", "));
}
std::string shape_text(std::span<const uint64_t> shape) {
  return fmt::format("[{}]", fmt::join(shape, ", "));
}

std::string types_text(const std::vector<int32_t>& types) {
  std::vector<std::string> names;
  for (int32_t type : types) names.push_back(gguf::ggml_type_label(type));
  return fmt::format("{}", fmt::join(names, " or "));
}

// The layer number of a "blk.N." name, if it has one.
std::optional<int64_t> layer_of(std::string_view name) {
  if (name.substr(0, 4) != "blk.") return std::nullopt;
  int64_t layer = 0;
  const char* begin = name.data() + 4;
  const char* end = name.data() + name.size();
  const auto [next, error] = std::from_chars(begin, end, layer);
  if (error != std::errc() || next == begin || next == end || *next != '.') return std::nullopt;
  return layer;
}

}  // namespace

std::vector<bool> absent_layers(const gguf::Reader& reader, const spec::Spec& spec, const hparams::Hparams& hparams, int64_t layers) {
  std::vector<bool> absent(static_cast<size_t>(std::max<int64_t>(layers, 0)), false);
  if (spec.optional_layers.empty() || layers <= 0) return absent;
  std::vector<bool> present(absent.size(), false);
  for (const gguf::TensorInfo& t : reader.tensors()) {
    const auto layer = layer_of(t.name);
    if (layer && *layer >= 0 && *layer < layers) present[static_cast<size_t>(*layer)] = true;
  }
  for (const spec::Expr& range : spec.optional_layers) {
    std::vector<size_t> in_range;
    try {
      for (int64_t layer = 0; layer < layers; ++layer) {
        if (hparams.eval(range, layer) != 0) in_range.push_back(static_cast<size_t>(layer));
      }
    } catch (const spec::EvalError&) {
      continue;
    }
    if (std::none_of(in_range.begin(), in_range.end(), [&](size_t l) { return present[l]; })) {
      for (size_t l : in_range) absent[l] = true;
    }
  }
  if (std::all_of(absent.begin(), absent.end(), [](bool a) { return a; })) absent.assign(absent.size(), false);
  return absent;
}

namespace {

class Validator {
 public:
  Validator(const gguf::Reader& reader, const spec::Spec& spec, const PluginHooks* plugin)
      : reader_(reader), spec_(spec), plugin_(plugin), matched_(reader.tensors().size(), false) {}

  Report run() {
    report_.file = reader_.path();
    report_.arch = spec_.arch;
    const hparams::Hparams bound = hparams::Hparams::bind(spec_, reader_, report_.findings);
    hparams_ = &bound;
    for (size_t g = 0; g < spec_.fusable.size(); ++g) {
      GroupReport group;
      group.name = spec_.fusable[g].name;
      report_.groups.push_back(std::move(group));
    }
    for (const spec::FusedForm& form : spec_.fused_forms) report_.groups[form.group].per_layer = form.per_layer;

    sidecars_in_file_ = any_sidecar_in_file();
    check_context(std::nullopt);
    if (const auto layers = hparams_->layers()) {
      const std::vector<bool> absent = absent_layers(reader_, spec_, bound, *layers);
      for (int64_t layer = 0; layer < *layers; ++layer) {
        if (report_.findings.size() >= kMaxFindings) {
          stopped_ = fmt::format("validation stopped at layer {} of {}", layer, *layers);
          break;
        }
        if (absent[static_cast<size_t>(layer)]) {
          report_.absent_layers.push_back(layer);
          continue;
        }
        check_context(layer);
      }
    } else {
      // Without a layer count no per-layer tensor can be judged; the key behind it is reported.
      for (size_t i = 0; i < matched_.size(); ++i) {
        if (layer_of(reader_.tensors()[i].name)) matched_[i] = true;
      }
    }
    if (stopped_.empty()) report_unexpected();
    report_partial_fusion();
    if (plugin_ != nullptr) {
      report_unsupported_fusion();
      if (plugin_->check) plugin_->check(reader_, spec_, bound, report_.findings);
    }
    if (report_.findings.size() > kMaxFindings) {
      dropped_ += report_.findings.size() - kMaxFindings;
      report_.findings.resize(kMaxFindings);
    }
    if (dropped_ > 0 || !stopped_.empty()) {
      report_.findings.push_back(
          {"too_many_findings", spec_.arch,
           fmt::format("{} findings listed{}{}; the file is far from its spec (a wrong layer count?)", kMaxFindings,
                       dropped_ > 0 ? fmt::format(", {} more not listed", dropped_) : "", stopped_.empty() ? "" : ", " + stopped_),
           std::nullopt, std::nullopt});
    }
    report_.hparams = hparams_->global_values();
    report_.per_layer = hparams_->per_layer_values();
    return std::move(report_);
  }

 private:
  void add(std::string code, std::string subject, std::string message, std::optional<std::string> expected = std::nullopt,
           std::optional<std::string> found = std::nullopt) {
    if (report_.findings.size() >= kMaxFindings) {
      ++dropped_;
      return;
    }
    report_.findings.push_back(
        report::Finding{std::move(code), std::move(subject), std::move(message), std::move(expected), std::move(found)});
  }

  const gguf::TensorInfo* find(const std::string& name) {
    const gguf::TensorInfo* t = reader_.find_tensor(name);
    if (t != nullptr) matched_[static_cast<size_t>(t - reader_.tensors().data())] = true;
    return t;
  }

  // Which layers have at least one tensor in the file.
  // Evaluates a presence condition; nullopt when it cannot be evaluated (reported elsewhere).
  std::optional<bool> condition(const std::optional<spec::Expr>& when, std::optional<int64_t> layer) {
    if (!when) return true;
    try {
      return hparams_->eval(*when, layer) != 0;
    } catch (const spec::EvalError&) {
      return std::nullopt;
    }
  }

  // Checks a present tensor's shape and storage type against the spec.
  void check_tensor(const gguf::TensorInfo& t, const std::vector<spec::Expr>& shape, const std::vector<int32_t>& types,
                    std::optional<int64_t> layer) {
    const std::string name(t.name);
    std::vector<int64_t> expected;
    try {
      for (const spec::Expr& extent : shape) expected.push_back(hparams_->eval_shape(extent, layer));
    } catch (const hparams::Unavailable&) {
      expected.clear();  // the missing or mistyped hyperparameter is reported once, by itself
    } catch (const spec::EvalError& error) {
      add("hparam_value", name, fmt::format("its shape cannot be evaluated: {}", error.what()));
      expected.clear();
    }
    if (!expected.empty()) {
      if (std::any_of(expected.begin(), expected.end(), [](int64_t e) { return e <= 0; })) {
        add("hparam_value", name, "the hyperparameters give this tensor a shape with an extent below 1", "extents >= 1",
            shape_text(expected));
      } else if (expected.size() != t.n_dims || !std::equal(expected.begin(), expected.end(), t.ne.begin(),
                                                            [](int64_t e, uint64_t f) { return static_cast<uint64_t>(e) == f; })) {
        add("wrong_shape", name, "shape differs from the spec", shape_text(expected), shape_text(t.shape()));
      }
    }
    if (!types.empty() && std::find(types.begin(), types.end(), t.type) == types.end()) {
      add("wrong_type", name, "storage type not allowed by the spec", types_text(types), gguf::ggml_type_label(t.type));
    }
  }

  void check_context(std::optional<int64_t> layer) {
    const bool per_layer = layer.has_value();
    std::vector<bool> handled(spec_.tensors.size(), false);
    for (const spec::FusedForm& form : spec_.fused_forms) {
      if (form.per_layer == per_layer) check_fused_form(form, layer, handled);
    }
    for (size_t i = 0; i < spec_.tensors.size(); ++i) {
      const spec::TensorDecl& decl = spec_.tensors[i];
      if (decl.per_layer != per_layer || handled[i]) continue;
      if (decl.sidecar_of && !sidecars_in_file_) continue;  // optional, and the file has none
      check_decl(decl, layer, missing_hint(i, layer.value_or(0)));
    }
  }

  // Whether any tensor name ends in a sidecar suffix of the spec: most files have none, and
  // then the sidecar declarations (a third of a spec's) cost nothing per layer.
  bool any_sidecar_in_file() const {
    std::vector<std::string> suffixes;
    for (const spec::TensorDecl& decl : spec_.tensors) {
      if (decl.sidecar_of && std::find(suffixes.begin(), suffixes.end(), "." + decl.suffix) == suffixes.end()) {
        suffixes.push_back("." + decl.suffix);
      }
    }
    if (suffixes.empty()) return false;
    return std::any_of(reader_.tensors().begin(), reader_.tensors().end(), [&](const gguf::TensorInfo& t) {
      return std::any_of(suffixes.begin(), suffixes.end(), [&](const std::string& suffix) { return t.name.ends_with(suffix); });
    });
  }

  // " (or its fused form ...)" for parts of a fusable group, so a reader knows both options.
  std::string missing_hint(size_t decl_index, int64_t layer) const {
    for (const spec::FusedForm& form : spec_.fused_forms) {
      for (const spec::FusedTensor& fused : form.tensors) {
        if (std::find(fused.parts.begin(), fused.parts.end(), decl_index) != fused.parts.end()) {
          return fmt::format(" (or the fused '{}')", form.gguf_name(fused, layer));
        }
      }
    }
    return "";
  }

  void check_decl(const spec::TensorDecl& decl, std::optional<int64_t> layer, const std::string& hint = "") {
    const std::string name = decl.gguf_name(layer.value_or(0));
    const std::optional<bool> present_here = condition(decl.when, layer);
    const gguf::TensorInfo* t = find(name);
    if (!present_here) return;  // unevaluable condition: reported through its hyperparameter
    if (!*present_here) {
      if (t != nullptr) {
        add("unexpected_tensor", name, fmt::format("present, but {} has it only where {}", spec_.arch, decl.when->text()), "absent",
            "present");
      }
      return;
    }
    if (t != nullptr && decl.sidecar_of) {
      const std::string weight = spec_.tensors[*decl.sidecar_of].gguf_name(layer.value_or(0));
      if (reader_.find_tensor(weight) == nullptr) {
        add("unexpected_tensor", name,
            fmt::format("a sidecar of '{}', which the file does not store (a sidecar is read only beside its weight; a fused form "
                        "has none)",
                        weight),
            "absent", "present");
        return;
      }
    }
    if (t != nullptr) {
      check_tensor(*t, decl.shape, decl.types, layer);
    } else if (!decl.optional && !decl.tied_to) {
      add("missing_tensor", name, fmt::format("required by {}{}", spec_.arch, hint), "present", "absent");
    }
  }

  void check_fused_form(const spec::FusedForm& form, std::optional<int64_t> layer, std::vector<bool>& handled) {
    const std::optional<bool> present_here = condition(form.when, layer);
    const int64_t where = layer.value_or(0);
    const spec::FusedTensor& weight = form.tensors.front();
    const std::string fused_name = form.gguf_name(weight, where);
    const gguf::TensorInfo* fused = find(fused_name);
    if (!present_here || !*present_here) {
      if (fused != nullptr && present_here) {
        add("unexpected_tensor", fused_name, fmt::format("present, but {} has its parts only where {}", spec_.arch, form.when->text()),
            "absent", "present");
      }
      return;
    }
    bool parts_present = false;
    bool unfusable = false;  // an optional part absent, or a part's sidecar present
    std::vector<std::string> present_parts;
    for (size_t p = 0; p < weight.parts.size(); ++p) {
      const std::string part_name = spec_.tensors[weight.parts[p]].gguf_name(where);
      if (reader_.find_tensor(part_name) != nullptr) {
        parts_present = true;
        present_parts.push_back(part_name);
      } else if (weight.part_optional[p]) {
        unfusable = true;
      }
    }
    if (sidecars_in_file_ &&
        spec::part_has_sidecar(spec_, weight, where, [&](const std::string& name) { return reader_.find_tensor(name) != nullptr; })) {
      unfusable = true;
    }
    GroupReport& group = report_.groups[form.group];
    if (fused == nullptr) {
      if (parts_present) (unfusable ? group.unfusable : group.unfused).push_back(where);
      return;  // the parts are checked as ordinary tensors
    }
    if (parts_present) {
      group.both.push_back(where);
      add("fused_and_unfused", fused_name,
          fmt::format("both the fused tensor and its parts are present ({})", fmt::join(present_parts, ", ")), "one form", "both");
      // Check what is there; parts missing beside a fused tensor are not missing.
      for (size_t part : weight.parts) {
        handled[part] = true;
        if (const gguf::TensorInfo* t = find(spec_.tensors[part].gguf_name(where)))
          check_tensor(*t, spec_.tensors[part].shape, spec_.tensors[part].types, layer);
      }
      check_tensor(*fused, weight.shape, weight.types, layer);
      return;
    }
    group.fused.push_back(where);
    for (const spec::FusedTensor& tensor : form.tensors) {
      for (size_t part : tensor.parts) handled[part] = true;
      const std::string name = form.gguf_name(tensor, where);
      const gguf::TensorInfo* t = &tensor == &weight ? fused : find(name);
      if (t != nullptr) {
        check_tensor(*t, tensor.shape, tensor.types, layer);
        continue;
      }
      // A fused bias may be absent only where the parts' biases may be.
      for (size_t part : tensor.parts) {
        if (reader_.find_tensor(spec_.tensors[part].gguf_name(where)) != nullptr) {
          add("fused_and_unfused", name,
              fmt::format("'{}' is fused but its part '{}' is stored unfused", fused_name, spec_.tensors[part].gguf_name(where)),
              "one form", "both");
          check_tensor(*find(spec_.tensors[part].gguf_name(where)), spec_.tensors[part].shape, spec_.tensors[part].types, layer);
        }
      }
      if (!tensor.optional) add("missing_tensor", name, fmt::format("required with the fused '{}'", fused_name), "present", "absent");
    }
  }

  void report_unexpected() {
    const auto layers = hparams_->layers();
    for (size_t i = 0; i < matched_.size(); ++i) {
      if (matched_[i]) continue;
      const gguf::TensorInfo& t = reader_.tensors()[i];
      const auto layer = layer_of(t.name);
      const std::string why = layer && layers && *layer >= *layers
                                  ? fmt::format("layer {} does not exist: the file has {} layers", *layer, *layers)
                                  : fmt::format("not a tensor of {}", spec_.arch);
      add("unexpected_tensor", std::string(t.name), why, "absent", "present");
    }
  }

  void report_partial_fusion() {
    for (size_t g = 0; g < spec_.fusable.size(); ++g) {
      const GroupReport& group = report_.groups[g];
      if (group.fused.empty() || group.unfused.empty() || spec_.fusable[g].partial_allowed) continue;
      add("partial_fusion", group.name,
          fmt::format("fused in layers {} but not in layers {}; {} does not allow mixing", fmt::join(group.fused, ","),
                      fmt::join(group.unfused, ","), spec_.arch),
          "all layers fused or none", "mixed");
    }
  }

  void report_unsupported_fusion() {
    for (const GroupReport& group : report_.groups) {
      if ((group.fused.empty() && group.both.empty()) || (plugin_->runs_fused && plugin_->runs_fused(group.name))) continue;
      add("unsupported_fusion", group.name,
          fmt::format("{} runs '{}' only unfused; convert the file with `archreg unfuse`", plugin_->describe, group.name), "unfused",
          "fused");
    }
  }

  const gguf::Reader& reader_;
  const spec::Spec& spec_;
  const PluginHooks* plugin_;
  std::vector<bool> matched_;
  size_t dropped_ = 0;             // findings past kMaxFindings
  std::string stopped_;            // why the layers were not all checked
  bool sidecars_in_file_ = false;  // some tensor name ends in a sidecar suffix
  const hparams::Hparams* hparams_ = nullptr;
  Report report_;
};

}  // namespace

Report validate(const gguf::Reader& reader, const spec::Spec& spec, const PluginHooks* plugin) {
  return Validator(reader, spec, plugin).run();
}

}  // namespace archreg::validate
