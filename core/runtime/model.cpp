#include "runtime/model.hpp"

#include <fmt/format.h>

#include <algorithm>
#include <cstring>
#include <set>

#include "hparams/hparams.hpp"
#include "spec/fused_forms.hpp"
#include "validate/validate.hpp"

namespace archreg::runtime {
namespace {

// A view of a whole stored tensor.
TensorView whole(const gguf::TensorInfo& t, const Storage& storage, std::string name, spec::Role role) {
  const gguf::TypeTraits& traits = *gguf::ggml_type(t.type);
  TensorView view;
  view.name = std::move(name);
  view.role = role;
  view.type = t.type;
  view.n_dims = t.n_dims;
  view.ne = t.ne;
  view.nb[0] = traits.type_size;
  view.nb[1] = t.row_bytes;
  view.nb[2] = view.nb[1] * t.ne[1];
  view.nb[3] = view.nb[2] * t.ne[2];
  view.storage = &storage;
  return view;
}

class Binder {
 public:
  Binder(const gguf::Reader& reader, const spec::Spec& spec, const hparams::Hparams& hparams,
         std::vector<std::unique_ptr<Storage>>& storages)
      : reader_(reader), spec_(spec), hparams_(hparams), storages_(storages) {}

  std::vector<TensorView> bind() {
    bind_context(std::nullopt);
    for (int64_t layer = 0; layer < hparams_.layers().value_or(0); ++layer) bind_context(layer);
    std::map<std::string_view, size_t> index;
    for (size_t i = 0; i < views_.size(); ++i) index.emplace(views_[i].name, i);
    for (const auto& [weight, sidecar, suffix] : sidecars_) {
      TensorView& w = views_[index.at(weight)];
      if (suffix == "scale") {
        w.scale = &views_[index.at(sidecar)];  // views_ moves into the model whole: addresses stay
      } else if (suffix != "input_scale") {
        w.has_unknown_sidecar = true;
      }
    }
    return std::move(views_);
  }

 private:
  // The storage of a stored tensor, made once: the file's bytes, in place.
  const Storage& mapped(const gguf::TensorInfo& t, spec::Role role) {
    const auto [it, added] = by_tensor_.emplace(&t, nullptr);
    if (added) {
      const std::span<const std::byte> bytes = reader_.tensor_data(t);
      storages_.push_back(
          std::make_unique<Storage>(Storage{std::string(t.name), Storage::Kind::kMapped, role, bytes.data(), bytes.size()}));
      it->second = storages_.back().get();
    }
    return *it->second;
  }

  void bind_context(std::optional<int64_t> layer) {
    const bool per_layer = layer.has_value();
    const int64_t where = layer.value_or(0);
    std::vector<bool> bound(spec_.tensors.size(), false);
    for (const spec::FusedForm& form : spec_.fused_forms) {
      if (form.per_layer != per_layer || (form.when && hparams_.eval(*form.when, layer) == 0)) continue;
      for (const spec::FusedTensor& fused : form.tensors) {
        const gguf::TensorInfo* stored = reader_.find_tensor(form.gguf_name(fused, where));
        if (stored == nullptr) continue;
        const spec::Role role = spec_.tensors[fused.parts.front()].role;
        const TensorView all = whole(*stored, mapped(*stored, role), std::string(stored->name), role);
        for (size_t p = 0; p < fused.parts.size(); ++p) {
          const spec::TensorDecl& part = spec_.tensors[fused.parts[p]];
          views_.push_back(part_view(all, part, fused.axis, static_cast<uint64_t>(hparams_.eval_shape(fused.offsets[p], layer)), layer));
          bound[fused.parts[p]] = true;
        }
      }
    }
    for (size_t i = 0; i < spec_.tensors.size(); ++i) {
      const spec::TensorDecl& decl = spec_.tensors[i];
      if (decl.per_layer != per_layer || bound[i] || (decl.when && hparams_.eval(*decl.when, layer) == 0)) continue;
      const std::string name = decl.gguf_name(where);
      const gguf::TensorInfo* stored = reader_.find_tensor(name);
      if (stored == nullptr) continue;
      views_.push_back(whole(*stored, mapped(*stored, decl.role), name, decl.role));
      if (decl.sidecar_of) sidecars_.push_back({spec_.tensors[*decl.sidecar_of].gguf_name(where), name, decl.suffix});
    }
  }

  // The part of a fused tensor that starts `offset` elements along `axis`.
  TensorView part_view(const TensorView& all, const spec::TensorDecl& part, int axis, uint64_t offset, std::optional<int64_t> layer) const {
    TensorView view = all;
    view.name = part.gguf_name(layer.value_or(0));
    view.role = part.role;
    for (size_t d = 0; d < part.shape.size(); ++d) view.ne[d] = static_cast<uint64_t>(hparams_.eval_shape(part.shape[d], layer));
    const gguf::TypeTraits& traits = *gguf::ggml_type(all.type);
    uint64_t byte_offset = 0;
    if (axis == 0) {
      // Along ne0 a block must not be split: only block-aligned offsets are byte offsets.
      if (offset % traits.block_size != 0) {
        throw LoadError(fmt::format("{}: '{}' starts {} elements into '{}', inside a {} block of {} elements", reader_.path(), view.name,
                                    offset, all.name, traits.name, traits.block_size));
      }
      byte_offset = offset / traits.block_size * traits.type_size;
    } else {
      byte_offset = offset * all.nb[static_cast<size_t>(axis)];
    }
    view.offset = all.offset + byte_offset;
    return view;
  }

  const gguf::Reader& reader_;
  const spec::Spec& spec_;
  const hparams::Hparams& hparams_;
  std::vector<std::unique_ptr<Storage>>& storages_;
  std::map<const gguf::TensorInfo*, const Storage*> by_tensor_;
  std::vector<TensorView> views_;
  struct StoredSidecar {
    std::string weight, sidecar, suffix;  // GGUF names, and the sidecar's suffix
  };
  std::vector<StoredSidecar> sidecars_;  // the sidecars the file stores
};

}  // namespace

bool TensorView::contiguous() const {
  const gguf::TypeTraits& traits = *gguf::ggml_type(type);
  return nb[1] == ne[0] / traits.block_size * traits.type_size && nb[2] == nb[1] * ne[1] && nb[3] == nb[2] * ne[2];
}

uint64_t TensorView::n_bytes() const {
  const gguf::TypeTraits& traits = *gguf::ggml_type(type);
  return ne[0] / traits.block_size * traits.type_size * ne[1] * ne[2] * ne[3];
}

void TensorView::gather(std::span<std::byte> out) const {
  const gguf::TypeTraits& traits = *gguf::ggml_type(type);
  const uint64_t row = ne[0] / traits.block_size * traits.type_size;
  if (out.size() != n_bytes()) throw std::invalid_argument("TensorView::gather: output size differs from n_bytes()");
  std::byte* to = out.data();
  for (uint64_t i3 = 0; i3 < ne[3]; ++i3) {
    for (uint64_t i2 = 0; i2 < ne[2]; ++i2) {
      for (uint64_t i1 = 0; i1 < ne[1]; ++i1) {
        std::memcpy(to, data() + i1 * nb[1] + i2 * nb[2] + i3 * nb[3], row);
        to += row;
      }
    }
  }
}

Model::Model(Model&&) noexcept = default;
Model& Model::operator=(Model&&) noexcept = default;
Model::~Model() = default;

Model Model::open(const std::filesystem::path& file, registry::Registry& registry, OpenOptions options) {
  Model model;
  model.reader_ = std::make_unique<gguf::Reader>(gguf::Reader::open(file));
  const gguf::Reader& reader = *model.reader_;
  const auto arch_value = reader.find("general.architecture");
  if (!arch_value || arch_value->type() != gguf::ValueType::kString) {
    throw LoadError(fmt::format("{}: no string 'general.architecture': cannot tell which architecture to run", reader.path()));
  }
  const std::string arch(arch_value->as_string());
  model.arch_ = arch;
  try {
    const registry::Runnable runnable = registry::require_runnable(registry, arch);
    model.spec_ = runnable.spec;
    model.plugin_ = runnable.plugin;
  } catch (const registry::RegistryError& error) {
    throw LoadError(fmt::format("{}: {}", reader.path(), error.what()));
  }
  const validate::PluginHooks hooks = model.plugin_->hooks(arch);
  validate::Report report = validate::validate(reader, *model.spec_, &hooks);
  if (!report.valid()) {
    throw LoadError(fmt::format("{}: refusing to run: the file is not a valid {} model for the {} plugin ({} finding{}):", reader.path(),
                                arch, model.plugin_->name(), report.findings.size(), report.findings.size() == 1 ? "" : "s"),
                    std::move(report.findings));
  }
  std::vector<report::Finding> ignored;  // the file validated: binding sees no new findings
  model.hparams_ = std::make_unique<hparams::Hparams>(hparams::Hparams::bind(*model.spec_, reader, ignored));
  const hparams::Hparams& hparams = *model.hparams_;
  model.n_layers_ = static_cast<int32_t>(hparams.layers().value_or(0));
  model.absent_layers_.assign(static_cast<size_t>(model.n_layers_), false);
  for (const int64_t layer : report.absent_layers) model.absent_layers_[static_cast<size_t>(layer)] = true;  // validation found them
  model.tensors_ = Binder(reader, *model.spec_, hparams, model.storages_).bind();
  if (options.fuse_at_load) model.fuse_in_memory();
  model.index_tensors();
  return model;
}

void Model::index_tensors() {
  index_.clear();
  by_layer_.assign(static_cast<size_t>(n_layers_) + 1, {});
  for (size_t i = 0; i < tensors_.size(); ++i) {
    const TensorView& view = tensors_[i];
    index_.emplace(view.name, i);
    // "blk.12.attn_q.weight" -> layer 12, "attn_q.weight"; global names are kept whole.
    int32_t layer = -1;
    std::string_view local = view.name;
    if (local.starts_with("blk.")) {
      const size_t dot = local.find('.', 4);
      layer = static_cast<int32_t>(std::stol(std::string(local.substr(4, dot - 4))));
      local = local.substr(dot + 1);
    }
    if (layer + 1 < static_cast<int32_t>(by_layer_.size())) by_layer_[static_cast<size_t>(layer + 1)].emplace(std::string(local), i);
  }
}

void Model::fuse_in_memory() {
  // For every group the plugin runs fused whose parts the file stores apart: one buffer in the
  // fused layout, the parts' views re-pointed into it. The bytes are the file's, rearranged.
  std::map<std::string, size_t, std::less<>> by_name;
  for (size_t i = 0; i < tensors_.size(); ++i) by_name.emplace(tensors_[i].name, i);
  for (const spec::FusedForm& form : spec_->fused_forms) {
    if (!plugin_->runs_fused(spec_->fusable[form.group].name)) continue;
    const int64_t contexts = form.per_layer ? n_layers_ : 1;
    for (int64_t where = 0; where < contexts; ++where) {
      // A part carrying a sidecar keeps the layer as stored (a fused form has no sidecars).
      if (spec::part_has_sidecar(*spec_, form.tensors.front(), where, [&](const std::string& name) { return by_name.contains(name); })) {
        continue;
      }
      for (const spec::FusedTensor& fused : form.tensors) {
        std::vector<TensorView*> parts;
        for (size_t p : fused.parts) {
          const auto it = by_name.find(spec_->tensors[p].gguf_name(where));
          if (it == by_name.end()) break;
          parts.push_back(&tensors_[it->second]);
        }
        if (parts.size() != fused.parts.size() || fused.axis == 0) continue;
        const size_t axis = static_cast<size_t>(fused.axis);
        bool separate = true;
        for (const TensorView* part : parts) {
          separate = separate && part->type == parts.front()->type && part->storage->kind == Storage::Kind::kMapped &&
                     part->storage->name == part->name && part->offset == 0 && part->contiguous();
        }
        if (!separate) continue;
        const gguf::TypeTraits& traits = *gguf::ggml_type(parts.front()->type);
        std::array<uint64_t, 4> ne = parts.front()->ne;
        ne[axis] = 0;
        for (const TensorView* part : parts) ne[axis] += part->ne[axis];
        std::array<uint64_t, 4> nb{};
        nb[0] = traits.type_size;
        nb[1] = ne[0] / traits.block_size * traits.type_size;
        for (size_t d = 2; d < 4; ++d) nb[d] = nb[d - 1] * ne[d - 1];
        const uint64_t bytes = nb[3] * ne[3];
        auto buffer = std::make_unique<std::byte[]>(bytes);
        storages_.push_back(std::make_unique<Storage>(
            Storage{form.gguf_name(fused, where), Storage::Kind::kFusedAtLoad, parts.front()->role, buffer.get(), bytes}));
        const Storage& storage = *storages_.back();
        uint64_t offset = 0;
        for (TensorView* part : parts) {
          std::byte* base = buffer.get() + offset * nb[axis];
          for (uint64_t i3 = 0; i3 < part->ne[3]; ++i3) {
            for (uint64_t i2 = 0; i2 < part->ne[2]; ++i2) {
              for (uint64_t i1 = 0; i1 < part->ne[1]; ++i1) {
                std::memcpy(base + i1 * nb[1] + i2 * nb[2] + i3 * nb[3],
                            part->data() + i1 * part->nb[1] + i2 * part->nb[2] + i3 * part->nb[3], nb[1]);
              }
            }
          }
          part->storage = &storage;
          part->offset = static_cast<uint64_t>(base - buffer.get());
          part->nb = nb;
          offset += part->ne[axis];
        }
        fused_bytes_ += bytes;
        fused_storage_.push_back(std::move(buffer));
      }
    }
  }
  // The parts' mapped storages that no view uses any more are not for a backend to place.
  std::set<const Storage*> used;
  for (const TensorView& view : tensors_) used.insert(view.storage);
  std::erase_if(storages_, [&](const std::unique_ptr<Storage>& s) { return !used.contains(s.get()); });
}

const TensorView* Model::weight(std::string_view name, int32_t layer) const {
  if (layer < -1 || layer + 1 >= static_cast<int32_t>(by_layer_.size())) return nullptr;
  const auto& names = by_layer_[static_cast<size_t>(layer + 1)];
  const auto it = names.find(name);
  return it == names.end() ? nullptr : &tensors_[it->second];
}

std::optional<int64_t> Model::hparam_int(std::string_view name, int32_t layer) const {
  const auto index = spec_->hparam_index(name);
  if (!index || !spec_->hparams[*index].is_integer()) return std::nullopt;
  try {
    return hparams_->value(*index, layer < 0 ? std::nullopt : std::optional<int64_t>(layer));
  } catch (const spec::EvalError&) {
    return std::nullopt;
  }
}

std::optional<double> Model::hparam_float(std::string_view name, int32_t layer) const {
  const auto index = spec_->hparam_index(name);
  if (!index) return std::nullopt;
  const spec::Hparam& h = spec_->hparams[*index];
  if (h.is_integer()) {
    const auto value = hparam_int(name, layer);
    return value ? std::optional<double>(static_cast<double>(*value)) : std::nullopt;
  }
  if (h.key) {
    if (const auto value = reader_->find(*h.key)) {
      try {
        if (value->is_array()) {
          if (layer < 0 || static_cast<uint64_t>(layer) >= value->size()) return std::nullopt;
          return (*value)[static_cast<uint64_t>(layer)].as_number();
        }
        if (value->type() == gguf::ValueType::kBool) return value->get<bool>() ? 1.0 : 0.0;
        return value->as_number();
      } catch (const gguf::Error&) {
        return std::nullopt;
      }
    }
  }
  if (h.default_value) {
    try {
      return static_cast<double>(hparams_->eval(*h.default_value, layer < 0 ? std::nullopt : std::optional<int64_t>(layer)));
    } catch (const spec::EvalError&) {
    }
  }
  return std::nullopt;
}

std::optional<std::string> Model::hparam_string(std::string_view name) const {
  const auto index = spec_->hparam_index(name);
  if (!index) return std::nullopt;
  try {
    return std::string(hparams_->text(*index));
  } catch (const hparams::Unavailable&) {
    return std::nullopt;
  }
}

const TensorView* Model::find(std::string_view logical_name) const {
  const auto it = index_.find(logical_name);
  return it == index_.end() ? nullptr : &tensors_[it->second];
}

}  // namespace archreg::runtime
