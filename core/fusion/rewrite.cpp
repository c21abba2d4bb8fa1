#include "fusion/rewrite.hpp"

#include <fcntl.h>
#include <fmt/format.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <map>
#include <set>
#include <unordered_map>

#include "gguf/error.hpp"
#include "gguf/writer.hpp"
#include "hparams/hparams.hpp"
#include "spec/fused_forms.hpp"
#include "validate/validate.hpp"

namespace archreg::fusion {
namespace {

using spec::FusedForm;
using spec::FusedTensor;

// Bytes covered by `extent` indices along `axis` of a tensor shaped like `t` (one slice above).
uint64_t bytes_along(const gguf::TensorInfo& t, int axis, uint64_t extent) {
  const gguf::TypeTraits& traits = *gguf::ggml_type(t.type);
  if (axis == 0) return extent / traits.block_size * traits.type_size;
  uint64_t bytes = extent * t.row_bytes;
  for (int d = 1; d < axis; ++d) bytes *= t.ne[static_cast<size_t>(d)];
  return bytes;
}

// Slices above the axis: the product of the extents past it.
uint64_t outer_count(std::span<const uint64_t> shape, int axis) {
  uint64_t count = 1;
  for (size_t d = static_cast<size_t>(axis) + 1; d < shape.size(); ++d) count *= shape[d];
  return count;
}

// An output tensor's data size: whole rows of whole blocks.
uint64_t tensor_bytes(const OutputTensor& out) {
  const gguf::TypeTraits& traits = *gguf::ggml_type(out.type);
  uint64_t bytes = out.shape[0] / traits.block_size * traits.type_size;
  for (size_t d = 1; d < out.shape.size(); ++d) bytes *= out.shape[d];
  return bytes;
}

std::string join(const std::vector<std::string>& items) {
  return items.empty() ? "none" : fmt::format("{}", fmt::join(items, ", "));
}

class Planner {
 public:
  Planner(const gguf::Reader& input, const spec::Spec& spec, const plugin::Plugin& plugin, const RewriteRequest& request)
      : input_(input), spec_(spec), plugin_(plugin), request_(request), fuse_(request.direction == Direction::kFuse) {}

  RewritePlan run() {
    require_valid_input();
    plan_.direction = request_.direction;
    std::vector<report::Finding> ignored;  // the input validated
    const hparams::Hparams hparams = hparams::Hparams::bind(spec_, input_, ignored);
    hparams_ = &hparams;
    for (const FusedForm* form : selected_forms()) {
      plan_.groups.push_back(form->base);
      for_each_context(*form, [&](std::optional<int64_t> layer) { fuse_ ? plan_fuse(*form, layer) : plan_unfuse(*form, layer); });
    }
    refuse_mixed_types();
    order_outputs();
    fuse_ ? record_order() : restore_order();
    return std::move(plan_);
  }

 private:
  const spec::FusableGroup& group_of(const FusedForm& form) const { return spec_.fusable[form.group]; }

  void require_valid_input() {
    const validate::PluginHooks hooks = plugin_.hooks(spec_.arch);
    report_ = validate::validate(input_, spec_, &hooks);
    std::vector<report::Finding> blocking;
    for (report::Finding& f : report_.findings) {
      // A fused form the plugin cannot run is exactly what unfuse is for.
      if (!fuse_ && f.code == "unsupported_fusion") continue;
      blocking.push_back(f);
    }
    if (!blocking.empty()) {
      // Formatted first: the count must be read before the findings are moved into the error.
      const std::string message = fmt::format("{} does not validate as {} ({} finding{}); fix it before {}:", input_.path(), spec_.arch,
                                              blocking.size(), blocking.size() == 1 ? "" : "s", fuse_ ? "fusing" : "unfusing");
      throw RewriteError(message, std::move(blocking));
    }
  }

  const validate::GroupReport& state_of(const FusedForm& form) const { return report_.groups[form.group]; }

  bool consumer_accepts(const FusedForm& form) const {
    if (!request_.consumer) return true;
    const auto& consumers = group_of(form).consumers;
    return std::find(consumers.begin(), consumers.end(), *request_.consumer) != consumers.end();
  }

  std::vector<const FusedForm*> selected_forms() {
    std::vector<const FusedForm*> selected;
    if (request_.groups.empty()) {
      std::vector<std::string> states;
      for (const FusedForm& form : spec_.fused_forms) {
        const validate::GroupReport& state = state_of(form);
        states.push_back(fmt::format("{} {}", form.base, state.state()));
        const bool candidate =
            fuse_ ? !state.unfused.empty() && plugin_.runs_fused(form.base) && consumer_accepts(form) : !state.fused.empty();
        if (candidate) selected.push_back(&form);
      }
      if (selected.empty()) {
        throw RewriteError(
            fmt::format("nothing to {} in {}: {} (groups: {}){}", fuse_ ? "fuse" : "unfuse", input_.path(),
                        fuse_ ? "it is already fused, or its groups cannot be run fused" : "it stores no group fused", join(states),
                        fuse_ && request_.consumer ? fmt::format("; {} accepts only the spec's consumers", *request_.consumer) : ""));
      }
      return selected;
    }
    for (const std::string& name : request_.groups) {
      const auto it = std::find_if(spec_.fused_forms.begin(), spec_.fused_forms.end(), [&](const FusedForm& f) { return f.base == name; });
      if (it == spec_.fused_forms.end()) {
        std::vector<std::string> known;
        for (const FusedForm& f : spec_.fused_forms) known.push_back(f.base);
        throw RewriteError(fmt::format("{} declares no fusable group '{}' (it declares: {})", spec_.arch, name, join(known)));
      }
      const validate::GroupReport& state = state_of(*it);
      if (fuse_) {
        if (!plugin_.runs_fused(name)) {
          throw RewriteError(fmt::format("the {} plugin ({}) cannot run '{}' fused; it runs fused: {}", plugin_.name(),
                                         plugin_.file().string(), name, join(plugin_.fused_groups())));
        }
        if (!consumer_accepts(*it)) {
          throw RewriteError(fmt::format("{} does not load {} files with '{}' fused (consumers declared in {}: {})", *request_.consumer,
                                         spec_.arch, name, spec_.file, join(group_of(*it).consumers)));
        }
        if (state.unfused.empty()) {
          throw RewriteError(!state.fused.empty() ? fmt::format("{} already stores '{}' fused", input_.path(), name)
                             : !state.unfusable.empty()
                                 ? fmt::format("{} has no '{}' to fuse: no layer holds all of its parts without a "
                                               "sidecar (an optional part is absent, or a part carries a sidecar, in layers {})",
                                               input_.path(), name, fmt::join(state.unfusable, ","))
                                 : fmt::format("{} has no '{}' to fuse: none of its parts are present", input_.path(), name));
        }
      } else if (state.fused.empty()) {
        throw RewriteError(fmt::format("{} does not store '{}' fused (state: {})", input_.path(), name, state.state()));
      }
      if (std::find(selected.begin(), selected.end(), &*it) == selected.end()) selected.push_back(&*it);
    }
    return selected;
  }

  template <class Fn>
  void for_each_context(const FusedForm& form, Fn&& fn) {
    if (!form.per_layer) {
      if (!form.when || hparams_->eval(*form.when, std::nullopt) != 0) fn(std::nullopt);
      return;
    }
    for (int64_t layer = 0; layer < hparams_->layers().value_or(0); ++layer) {
      if (!form.when || hparams_->eval(*form.when, layer) != 0) fn(layer);
    }
  }

  const gguf::TensorInfo* stored(const std::string& name) const { return input_.find_tensor(name); }

  void plan_fuse(const FusedForm& form, std::optional<int64_t> layer) {
    const int64_t where = layer.value_or(0);
    // A layer whose weights lack an optional part of the group, or whose parts carry a sidecar,
    // cannot be fused: left as it is.
    const FusedTensor& weight = form.tensors.front();
    for (size_t p = 0; p < weight.parts.size(); ++p) {
      if (weight.part_optional[p] && stored(spec_.tensors[weight.parts[p]].gguf_name(where)) == nullptr) return;
    }
    if (spec::part_has_sidecar(spec_, weight, where, [&](const std::string& name) { return stored(name) != nullptr; })) return;
    for (const FusedTensor& fused : form.tensors) {
      std::vector<const gguf::TensorInfo*> parts;
      std::vector<std::string> absent;
      for (size_t part : fused.parts) {
        const std::string name = spec_.tensors[part].gguf_name(where);
        if (const gguf::TensorInfo* t = stored(name)) {
          parts.push_back(t);
        } else {
          absent.push_back(name);
        }
      }
      if (parts.empty()) continue;  // this suffix is absent (an optional bias), or the layer is fused already
      if (!absent.empty()) {
        throw RewriteError(
            fmt::format("cannot fuse '{}': {} is present but {} is not", form.gguf_name(fused, where), parts.front()->name, join(absent)));
      }
      if (std::any_of(parts.begin(), parts.end(), [&](const gguf::TensorInfo* t) { return t->type != parts.front()->type; })) {
        std::vector<std::string> types;
        for (const gguf::TensorInfo* t : parts) types.push_back(fmt::format("{} {}", t->name, gguf::ggml_type_label(t->type)));
        mixed_types_[form.base].push_back(fmt::format("{}", fmt::join(types, ", ")));
        continue;
      }
      std::vector<std::vector<uint64_t>> shapes;
      for (const gguf::TensorInfo* t : parts) shapes.emplace_back(t->shape().begin(), t->shape().end());
      const std::optional<spec::FusedLayout> fused_layout = spec::fused_layout(shapes, fused.axis);
      if (!fused_layout)
        throw RewriteError(fmt::format("cannot fuse '{}': its parts disagree off axis {}", form.gguf_name(fused, where), fused.axis));
      OutputTensor out;
      out.kind = OutputTensor::Kind::kConcat;
      out.name = form.gguf_name(fused, where);
      out.type = parts.front()->type;
      out.shape = fused_layout->shape;
      out.sources = parts;
      out.axis = fused.axis;
      add_unit(parts, {std::move(out)});
    }
  }

  void plan_unfuse(const FusedForm& form, std::optional<int64_t> layer) {
    const int64_t where = layer.value_or(0);
    for (const FusedTensor& fused : form.tensors) {
      const gguf::TensorInfo* source = stored(form.gguf_name(fused, where));
      if (source == nullptr) continue;  // unfused in this layer, or an absent optional bias
      std::vector<OutputTensor> outs;
      for (size_t p = 0; p < fused.parts.size(); ++p) {
        const spec::TensorDecl& part = spec_.tensors[fused.parts[p]];
        OutputTensor out;
        out.kind = OutputTensor::Kind::kSlice;
        out.name = part.gguf_name(where);
        out.type = source->type;
        for (const spec::Expr& extent : part.shape) out.shape.push_back(static_cast<uint64_t>(hparams_->eval_shape(extent, layer)));
        out.sources = {source};
        out.axis = fused.axis;
        out.offset = static_cast<uint64_t>(hparams_->eval_shape(fused.offsets[p], layer));
        outs.push_back(std::move(out));
      }
      add_unit({source}, std::move(outs));
    }
  }

  // The outputs replacing a set of stored tensors; they are written where the first of them was.
  void add_unit(const std::vector<const gguf::TensorInfo*>& replaced, std::vector<OutputTensor> outputs) {
    const size_t unit = units_.size();
    units_.push_back(std::move(outputs));
    for (const gguf::TensorInfo* t : replaced) unit_of_[static_cast<size_t>(t - input_.tensors().data())] = unit;
  }

  void refuse_mixed_types() {
    if (mixed_types_.empty()) return;
    std::string message = fmt::format(
        "cannot fuse {} losslessly: the parts of a group are stored in different types, and fusing them would need "
        "re-quantization, which archreg never does:",
        input_.path());
    for (const auto& [group, cases] : mixed_types_) {
      message += fmt::format("\n  {} ({} place{}):", group, cases.size(), cases.size() == 1 ? "" : "s");
      for (const std::string& c : cases) message += fmt::format("\n    {}", c);
    }
    throw RewriteError(message);
  }

  void order_outputs() {
    std::set<size_t> emitted;
    for (size_t i = 0; i < input_.tensors().size(); ++i) {
      const auto it = unit_of_.find(i);
      if (it == unit_of_.end()) {
        const gguf::TensorInfo& t = input_.tensors()[i];
        OutputTensor copy;
        copy.name = std::string(t.name);
        copy.type = t.type;
        copy.shape.assign(t.shape().begin(), t.shape().end());
        copy.sources = {&t};
        plan_.tensors.push_back(std::move(copy));
      } else if (emitted.insert(it->second).second) {
        for (OutputTensor& out : units_[it->second]) plan_.tensors.push_back(std::move(out));
      }
    }
    for (const OutputTensor& out : plan_.tensors) plan_.data_bytes += tensor_bytes(out);
    if (fuse_) {
      for (const std::string& group : plan_.groups) {
        const auto& form =
            *std::find_if(spec_.fused_forms.begin(), spec_.fused_forms.end(), [&](const FusedForm& f) { return f.base == group; });
        const auto& consumers = group_of(form).consumers;
        plan_.notes.push_back(
            consumers.empty()
                ? fmt::format("no loader besides archreg is known to accept {} files with '{}' fused (llama.cpp refuses them); "
                              "keep the unfused file for other consumers",
                              spec_.arch, group)
                : fmt::format("{} files with '{}' fused load in: {}", spec_.arch, group, join(consumers)));
      }
    }
  }

  // fuse: records the input's unfused order — its tensors in file order, a tensor that is already
  // fused expanded into its parts as unfuse would — when unfusing the output would not give it
  // back by itself.
  void record_order() {
    if (input_.find_key(kUnfusedOrderKey) != nullptr) return;            // copied as it is
    std::unordered_map<std::string, std::vector<std::string>> parts_of;  // fused name -> part names
    for (const FusedForm& form : spec_.fused_forms) {
      for_each_context(form, [&](std::optional<int64_t> layer) {
        for (const FusedTensor& fused : form.tensors) {
          std::vector<std::string>& parts = parts_of[form.gguf_name(fused, layer.value_or(0))];
          for (size_t p : fused.parts) parts.push_back(spec_.tensors[p].gguf_name(layer.value_or(0)));
        }
      });
    }
    const auto unfused = [&](auto&& names) {
      std::vector<std::string> out;
      for (std::string_view name : names) {
        const auto it = parts_of.find(std::string(name));
        if (it == parts_of.end()) {
          out.emplace_back(name);
        } else {
          out.insert(out.end(), it->second.begin(), it->second.end());
        }
      }
      return out;
    };
    std::vector<std::string_view> input_names, output_names;
    for (const gguf::TensorInfo& t : input_.tensors()) input_names.push_back(t.name);
    for (const OutputTensor& out : plan_.tensors) output_names.push_back(out.name);
    std::vector<std::string> original = unfused(input_names);
    if (original == unfused(output_names)) return;
    plan_.record_order = std::move(original);
    plan_.notes.push_back(fmt::format(
        "the input's tensor order is recorded in '{}', so `archreg unfuse` gives this file back byte for byte", kUnfusedOrderKey));
  }

  // unfuse: orders the output as the recorded order says, when it names exactly its tensors.
  void restore_order() {
    const std::optional<gguf::Value> recorded = input_.find(kUnfusedOrderKey);
    if (!recorded) return;
    if (!recorded->is_array() || recorded->element_type() != gguf::ValueType::kString) {
      throw RewriteError(fmt::format("{}: key '{}': expected an array of tensor names (strings), found {}", input_.path(), kUnfusedOrderKey,
                                     recorded->is_array() ? fmt::format("an array of {}", gguf::value_type_name(recorded->element_type()))
                                                          : std::string(gguf::value_type_name(recorded->type()))));
    }
    const auto keep = [&](std::string_view why) {
      plan_.notes.push_back(fmt::format("'{}' is kept, not used: {}", kUnfusedOrderKey, why));
    };
    if (recorded->size() != plan_.tensors.size()) {
      return keep(
          fmt::format("it names {} tensors and this output has {} (a later unfuse may use it)", recorded->size(), plan_.tensors.size()));
    }
    std::unordered_map<std::string_view, size_t> position;
    uint64_t index = 0;
    for (const gguf::Value name : *recorded) {
      if (!position.emplace(name.as_string(), index++).second)
        return keep(fmt::format("it names '{}' twice", gguf::printable(name.as_string())));
    }
    for (const OutputTensor& out : plan_.tensors) {
      if (!position.contains(out.name)) return keep(fmt::format("it does not name '{}'", gguf::printable(out.name)));
    }
    std::vector<OutputTensor> ordered(plan_.tensors.size());
    for (OutputTensor& out : plan_.tensors) ordered[position.at(out.name)] = std::move(out);
    plan_.tensors = std::move(ordered);
    plan_.drop_order_key = true;
  }

  const gguf::Reader& input_;
  const spec::Spec& spec_;
  const plugin::Plugin& plugin_;
  const RewriteRequest& request_;
  const bool fuse_;
  validate::Report report_;
  const hparams::Hparams* hparams_ = nullptr;
  RewritePlan plan_;
  std::vector<std::vector<OutputTensor>> units_;
  std::map<size_t, size_t> unit_of_;  // input tensor index -> unit
  std::map<std::string, std::vector<std::string>> mixed_types_;
};

// Closes a file descriptor on every path out.
struct FileDescriptor {
  int fd = -1;
  ~FileDescriptor() {
    if (fd >= 0) ::close(fd);
  }
};

}  // namespace

RewritePlan plan_rewrite(const gguf::Reader& input, const spec::Spec& spec, const plugin::Plugin& plugin, const RewriteRequest& request) {
  return Planner(input, spec, plugin, request).run();
}

void execute_rewrite(const RewritePlan& plan, const gguf::Reader& input, const std::filesystem::path& output,
                     const ExecuteOptions& options) {
  FileDescriptor in{::open(input.path().c_str(), O_RDONLY | O_CLOEXEC)};
  if (in.fd < 0) throw gguf::Error(input.path(), std::nullopt, "", fmt::format("cannot open: {}", std::strerror(errno)));
  std::error_code same_error;
  if (std::filesystem::exists(output) && std::filesystem::equivalent(input.path(), output, same_error)) {
    throw RewriteError(fmt::format("{}: the output is the input file; archreg never modifies its input", output.string()));
  }
  ::posix_fadvise(in.fd, 0, 0, POSIX_FADV_SEQUENTIAL);

  gguf::Writer writer(output, gguf::WriterOptions{.overwrite = options.overwrite, .sync = options.sync});
  for (const gguf::KeyValue& kv : input.metadata()) {
    if (!(plan.drop_order_key && kv.key == kUnfusedOrderKey)) writer.add_raw(kv.key, input.raw_entry(kv));
  }
  if (!plan.record_order.empty()) {
    std::vector<gguf::MetaValue> names;
    for (const std::string& name : plan.record_order) names.push_back(gguf::MetaValue{name});
    writer.add(std::string(kUnfusedOrderKey), gguf::MetaValue{gguf::make_array(gguf::ValueType::kString, std::move(names))});
  }
  for (const OutputTensor& out : plan.tensors) writer.add_tensor(out.name, out.type, out.shape);

  auto check_cancelled = [&] {
    if (options.cancelled && options.cancelled()) throw RewriteError(fmt::format("{}: interrupted; nothing was written", output.string()));
  };
  uint64_t done = 0;
  // Moves bytes in pieces of at most 64 MiB, so an interruption is noticed promptly.
  auto move = [&](uint64_t offset, uint64_t n) {
    constexpr uint64_t kPiece = uint64_t{64} << 20;
    while (n > 0) {
      check_cancelled();
      const uint64_t piece = std::min(n, kPiece);
      writer.write_from(in.fd, offset, piece);
      offset += piece;
      n -= piece;
      done += piece;
      if (options.progress) options.progress(done, plan.data_bytes);
    }
  };
  for (const OutputTensor& out : plan.tensors) {
    switch (out.kind) {
      case OutputTensor::Kind::kCopy: move(out.sources[0]->data_offset, out.sources[0]->n_bytes); break;
      case OutputTensor::Kind::kConcat: {
        const uint64_t slices = outer_count(out.shape, out.axis);
        for (uint64_t i = 0; i < slices; ++i) {
          for (const gguf::TensorInfo* part : out.sources) {
            const uint64_t chunk = bytes_along(*part, out.axis, part->ne[static_cast<size_t>(out.axis)]);
            move(part->data_offset + i * chunk, chunk);
          }
        }
        break;
      }
      case OutputTensor::Kind::kSlice: {
        const gguf::TensorInfo& fused = *out.sources[0];
        const auto axis = static_cast<size_t>(out.axis);
        const uint64_t slices = outer_count(out.shape, out.axis);
        const uint64_t stride = bytes_along(fused, out.axis, fused.ne[axis]);
        const uint64_t chunk = bytes_along(fused, out.axis, out.shape[axis]);
        const uint64_t skip = bytes_along(fused, out.axis, out.offset);
        for (uint64_t i = 0; i < slices; ++i) move(fused.data_offset + i * stride + skip, chunk);
        break;
      }
    }
  }
  // The final sync and the verification take time too: an interruption there also wins.
  writer.commit([&](const std::filesystem::path& temporary) {
    check_cancelled();
    if (options.verify) options.verify(temporary);
    check_cancelled();
  });
}

}  // namespace archreg::fusion
