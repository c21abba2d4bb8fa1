#include "hparams/hparams.hpp"

#include <fmt/format.h>

#include <algorithm>

namespace archreg::hparams {
namespace {

std::string subject_of(const spec::Hparam& h) {
  return h.key ? *h.key : h.name;
}

bool is_int_array_element(gguf::ValueType type) {
  return type == gguf::ValueType::kInt32 || type == gguf::ValueType::kUint32;
}

}  // namespace

Hparams Hparams::bind(const spec::Spec& spec, const gguf::Reader& reader, std::vector<report::Finding>& findings) {
  Hparams bound(spec);
  bound.slots_.resize(spec.hparams.size());
  bound.key_present_.assign(spec.hparams.size(), false);
  for (uint32_t i = 0; i < spec.hparams.size(); ++i) bound.read(i, reader, findings);
  bound.memo_.resize(1);
  if (spec.layers) {
    try {
      const int64_t layers = bound.eval(*spec.layers, std::nullopt);
      if (layers < 0 || layers > kMaxLayers) {
        findings.push_back(report::Finding{
            "hparam_value", spec.layers->text(),
            fmt::format("the layer count {} is outside 0..{}; archreg refuses it rather than size anything by it", layers, kMaxLayers),
            fmt::format("0..{}", kMaxLayers), fmt::format("{}", layers)});
      } else {
        bound.layers_ = layers;
        bound.memo_.resize(static_cast<size_t>(2 + 2 * layers));
      }
    } catch (const Unavailable&) {
      // The missing or mistyped key behind it has been reported already.
    } catch (const spec::EvalError& error) {
      findings.push_back(report::Finding{"hparam_value", spec.layers->text(),
                                         fmt::format("the layer count cannot be evaluated: {}", error.what()), std::nullopt, std::nullopt});
    }
  }
  bound.check_ranges(findings);
  return bound;
}

void Hparams::read(uint32_t index, const gguf::Reader& reader, std::vector<report::Finding>& findings) {
  const spec::Hparam& h = spec_->hparams[index];
  Slot& slot = slots_[index];
  if (h.value) {
    slot.state = State::kComputed;
    return;
  }
  const gguf::KeyValue* kv = reader.find_key(*h.key);
  key_present_[index] = kv != nullptr;
  if (kv == nullptr) {
    if (h.default_text) {
      slot.state = State::kString;
      slot.text = *h.default_text;
    } else if (h.default_value) {
      slot.state = State::kComputed;
    } else if (h.optional) {
      slot.why_absent = fmt::format("'{}' has no value: the optional key '{}' is absent", h.name, *h.key);
    } else {
      const std::string expected = h.count ? "ARRAY" : std::string(gguf::value_type_name(h.type));
      findings.push_back(report::Finding{"missing_hparam", *h.key, fmt::format("required by {} (hyperparameter '{}')", spec_->arch, h.name),
                                         expected, "absent"});
      slot.why_absent = fmt::format("'{}' has no value: key '{}' is missing", h.name, *h.key);
    }
    return;
  }
  const gguf::Value value = reader.value(*kv);
  auto wrong_type = [&](std::string expected) {
    findings.push_back(report::Finding{"hparam_type", *h.key, fmt::format("hyperparameter '{}' is stored with the wrong type", h.name),
                                       std::move(expected),
                                       value.is_array() ? fmt::format("ARRAY of {}", gguf::value_type_name(value.element_type()))
                                                        : std::string(gguf::value_type_name(kv->type))});
    slot.why_absent = fmt::format("'{}' has no usable value: key '{}' has the wrong type", h.name, *h.key);
  };
  try {
    if (h.count) {
      if (!value.is_array()) return wrong_type("ARRAY");
      slot.state = State::kStored;
      slot.scalar = static_cast<int64_t>(value.size());
      return;
    }
    if (h.per_layer && value.is_array()) {
      if (!is_int_array_element(value.element_type()))
        return wrong_type(fmt::format("{} or ARRAY of INT32/UINT32", gguf::value_type_name(h.type)));
      if (value.size() > static_cast<uint64_t>(kMaxLayers)) {
        findings.push_back(report::Finding{"hparam_value", *h.key,
                                           fmt::format("more per-layer values than archreg's limit of {} layers", kMaxLayers),
                                           fmt::format("at most {}", kMaxLayers), fmt::format("{}", value.size())});
        slot.why_absent = fmt::format("'{}' has too many per-layer values", h.name);
        return;
      }
      slot.state = State::kPerLayer;
      for (gguf::Value item : value) slot.per_layer.push_back(item.as_int());
      return;
    }
    if (kv->type != h.type) {
      wrong_type(std::string(gguf::value_type_name(h.type)));
      // An integer of another width still tells us the intended value: keep checking with it.
      if (gguf::is_integer(kv->type) && gguf::is_integer(h.type)) {
        slot.state = State::kStored;
        slot.scalar = value.as_int();
      }
      return;
    }
    if (gguf::is_integer(h.type)) {
      slot.state = State::kStored;
      slot.scalar = value.as_int();
    } else if (h.type == gguf::ValueType::kString) {
      slot.state = State::kString;
      slot.text = std::string(value.as_string());
    } else {
      slot.state = State::kNotInteger;
    }
  } catch (const gguf::Error& error) {
    findings.push_back(report::Finding{"hparam_value", *h.key, error.message(), std::nullopt, std::nullopt});
    slot.state = State::kAbsent;
    slot.why_absent = fmt::format("'{}' has no usable value", h.name);
  }
}

int64_t Hparams::eval(const spec::Expr& expr, std::optional<int64_t> layer) const {
  return eval_in(expr, layer, false);
}

int64_t Hparams::eval_shape(const spec::Expr& expr, std::optional<int64_t> layer) const {
  return eval_in(expr, layer, true);
}

int64_t Hparams::value(uint32_t index, std::optional<int64_t> layer) const {
  return value_in(index, layer, false);
}

int64_t Hparams::eval_in(const spec::Expr& expr, std::optional<int64_t> layer, bool shape) const {
  return expr.eval(
      [&](uint32_t symbol) -> int64_t {
        if (symbol == spec::kLayerSymbol) {
          if (!layer) throw spec::EvalError("'layer' used outside a layer");
          return *layer;
        }
        return value_in(symbol, layer, shape);
      },
      [&](uint32_t symbol) { return text(symbol); });
}

std::string_view Hparams::text(uint32_t index) const {
  const Slot& slot = slots_[index];
  if (slot.state == State::kString) return slot.text;
  const spec::Hparam& h = spec_->hparams[index];
  throw Unavailable(slot.why_absent.empty() ? fmt::format("'{}' has no string value", h.name) : slot.why_absent);
}

int64_t Hparams::value_in(uint32_t index, std::optional<int64_t> layer, bool shape) const {
  const spec::Hparam& h = spec_->hparams[index];
  const Slot& slot = slots_[index];
  switch (slot.state) {
    case State::kStored: return slot.scalar;
    case State::kPerLayer: {
      if (shape && !h.shapes_use_each_layer) {
        if (slot.per_layer.empty()) throw Unavailable(fmt::format("'{}' has no values", h.name));
        return slot.per_layer.front();  // llama.cpp's rule: shapes use layer 0's value
      }
      if (layer) {
        if (*layer < 0 || static_cast<size_t>(*layer) >= slot.per_layer.size()) {
          throw Unavailable(fmt::format("'{}' has {} per-layer values; layer {} has none", h.name, slot.per_layer.size(), *layer));
        }
        return slot.per_layer[static_cast<size_t>(*layer)];
      }
      if (slot.per_layer.empty()) throw Unavailable(fmt::format("'{}' has no values", h.name));
      if (std::adjacent_find(slot.per_layer.begin(), slot.per_layer.end(), std::not_equal_to<>()) != slot.per_layer.end()) {
        throw LayerDependent(fmt::format("'{}' differs between layers", h.name));
      }
      return slot.per_layer.front();
    }
    case State::kComputed: {
      const size_t own = layer ? static_cast<size_t>(1 + *layer) : 0;
      const size_t context = !shape ? own : layers_ ? static_cast<size_t>(1 + *layers_) + own : SIZE_MAX;
      std::vector<std::optional<int64_t>>* memo = nullptr;
      if (context < memo_.size()) {
        if (memo_[context].empty()) memo_[context].resize(slots_.size());
        memo = &memo_[context];
        if ((*memo)[index]) return *(*memo)[index];
      }
      const uint64_t key = context * slots_.size() + index;
      if (memo != nullptr) {
        if (const auto failed = failures_.find(key); failed != failures_.end()) {
          switch (failed->second.kind) {
            case Failure::Kind::kLayerDependent: throw LayerDependent(failed->second.message);
            case Failure::Kind::kUnavailable: throw Unavailable(failed->second.message);
            case Failure::Kind::kEval: throw spec::EvalError(failed->second.message);
          }
        }
      }
      const auto remember = [&](Failure::Kind kind, const std::exception& error) {
        if (memo != nullptr) failures_.emplace(key, Failure{kind, error.what()});
      };
      int64_t result = 0;
      try {
        result = eval_in(h.value ? *h.value : *h.default_value, layer, shape);
      } catch (const LayerDependent& error) {
        remember(Failure::Kind::kLayerDependent, error);
        throw;
      } catch (const Unavailable& error) {
        remember(Failure::Kind::kUnavailable, error);
        throw;
      } catch (const spec::EvalError& error) {
        remember(Failure::Kind::kEval, error);
        throw;
      }
      if (memo != nullptr) (*memo)[index] = result;
      return result;
    }
    case State::kNotInteger:
    case State::kString: throw Unavailable(fmt::format("'{}' is not an integer", h.name));
    case State::kAbsent: break;
  }
  throw Unavailable(slot.why_absent.empty() ? fmt::format("'{}' has no value", h.name) : slot.why_absent);
}

void Hparams::check_ranges(std::vector<report::Finding>& findings) const {
  // Runs `check` globally, or once per layer where the values differ between layers.
  auto in_every_context = [&](auto&& check) {
    try {
      check(std::optional<int64_t>{});
    } catch (const LayerDependent&) {
      for (int64_t layer = 0; layer < layers_.value_or(0); ++layer) {
        try {
          check(std::optional<int64_t>{layer});
        } catch (const spec::EvalError&) {
        }
      }
    } catch (const spec::EvalError&) {
      // Unevaluable because of a problem reported elsewhere.
    }
  };
  for (uint32_t i = 0; i < spec_->hparams.size(); ++i) {
    const spec::Hparam& h = spec_->hparams[i];
    const Slot& slot = slots_[i];
    if (h.required_when && !key_present_[i]) {
      in_every_context([&](std::optional<int64_t> layer) {
        if (!layer && eval(*h.required_when, layer) != 0) {
          findings.push_back(
              report::Finding{"missing_hparam", *h.key,
                              fmt::format("required by {} where {} (hyperparameter '{}')", spec_->arch, h.required_when->text(), h.name),
                              std::string(gguf::value_type_name(h.type)), "absent"});
        }
      });
    }
    if (slot.state == State::kPerLayer && layers_ && static_cast<int64_t>(slot.per_layer.size()) != *layers_) {
      findings.push_back(report::Finding{"hparam_value", subject_of(h), fmt::format("per-layer '{}' needs one value per layer", h.name),
                                         fmt::format("{} values", *layers_), fmt::format("{} values", slot.per_layer.size())});
    }
    if (!h.min && !h.max) continue;
    in_every_context([&](std::optional<int64_t> layer) {
      const int64_t v = value(i, layer);
      const std::string where = layer ? fmt::format(" in layer {}", *layer) : "";
      if (h.min) {
        const int64_t low = eval(*h.min, layer);
        if (v < low) {
          findings.push_back(report::Finding{"hparam_value", subject_of(h),
                                             fmt::format("'{}'{} is below its minimum {}", h.name, where, h.min->text()),
                                             fmt::format(">= {}", low), fmt::format("{}", v)});
        }
      }
      if (h.max) {
        const int64_t high = eval(*h.max, layer);
        if (v > high) {
          findings.push_back(report::Finding{"hparam_value", subject_of(h),
                                             fmt::format("'{}'{} is above its maximum {}", h.name, where, h.max->text()),
                                             fmt::format("<= {}", high), fmt::format("{}", v)});
        }
      }
    });
  }
  for (const spec::Check& check : spec_->checks) {
    in_every_context([&](std::optional<int64_t> layer) {
      if (eval(check.expr, layer) == 0) {
        findings.push_back(report::Finding{"hparam_value", check.expr.text(),
                                           layer ? fmt::format("{} (layer {})", check.message, *layer) : check.message, "true", "false"});
      }
    });
  }
}

std::vector<std::pair<std::string, std::vector<int64_t>>> Hparams::per_layer_values() const {
  std::vector<std::pair<std::string, std::vector<int64_t>>> values;
  for (uint32_t i = 0; i < spec_->hparams.size(); ++i) {
    if (slots_[i].state == State::kPerLayer) values.emplace_back(spec_->hparams[i].name, slots_[i].per_layer);
  }
  return values;
}

std::vector<std::pair<std::string, int64_t>> Hparams::global_values() const {
  std::vector<std::pair<std::string, int64_t>> values;
  for (uint32_t i = 0; i < spec_->hparams.size(); ++i) {
    if (!spec_->hparams[i].is_integer()) continue;
    try {
      values.emplace_back(spec_->hparams[i].name, value(i, std::nullopt));
    } catch (const spec::EvalError&) {
    }
  }
  return values;
}

}  // namespace archreg::hparams
