// libFuzzer target for specs: every input is a spec's text. Parsing must end in a Spec or a
// spec::SpecError; a spec that loads is then put to work the way a file would use it: every
// expression printed, its hyperparameters ordered, and a GGUF header that gives every keyed
// hyperparameter a small value validated against it (the evaluation of defaults, derived
// values, checks and shapes). A crash, a sanitizer report, a hang (deep or chained
// expressions), a large allocation or any other exception is a finding.
#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "gguf/reader.hpp"
#include "spec/fused_forms.hpp"
#include "spec/spec.hpp"
#include "validate/validate.hpp"

namespace {

using archreg::gguf::ValueType;

class HeaderBytes {
 public:
  template <class T>
  void put(T value) {
    const auto* raw = reinterpret_cast<const std::byte*>(&value);
    bytes_.insert(bytes_.end(), raw, raw + sizeof value);
  }
  void text(std::string_view s) {
    put<uint64_t>(s.size());
    for (char c : s) bytes_.push_back(static_cast<std::byte>(c));
  }
  void scalar(ValueType type, uint64_t value) {
    switch (type) {
      case ValueType::kUint8:
      case ValueType::kInt8:
      case ValueType::kBool: put<uint8_t>(static_cast<uint8_t>(value & 1 ? 1 : value)); break;
      case ValueType::kUint16:
      case ValueType::kInt16: put<uint16_t>(static_cast<uint16_t>(value)); break;
      case ValueType::kUint32:
      case ValueType::kInt32: put<uint32_t>(static_cast<uint32_t>(value)); break;
      case ValueType::kFloat32: put<float>(static_cast<float>(value)); break;
      case ValueType::kFloat64: put<double>(static_cast<double>(value)); break;
      case ValueType::kString: text("x"); break;
      default: put<uint64_t>(value); break;
    }
  }
  std::vector<std::byte>& bytes() { return bytes_; }

 private:
  std::vector<std::byte> bytes_;
};

// A header for `spec`: general.architecture and every keyed hyperparameter, with small values
// chosen by `seed` (so the fuzzer also explores values), no tensors.
std::vector<std::byte> header_for(const archreg::spec::Spec& spec, uint64_t seed) {
  HeaderBytes out;
  std::vector<const archreg::spec::Hparam*> keyed;
  for (const archreg::spec::Hparam& h : spec.hparams) {
    if (h.key && !h.key->empty() && *h.key != "general.architecture") keyed.push_back(&h);
  }
  // Two hyperparameters with one key would make a duplicate key: keep the first.
  std::vector<const archreg::spec::Hparam*> unique;
  for (const auto* h : keyed) {
    bool seen = false;
    for (const auto* u : unique) seen = seen || *u->key == *h->key;
    if (!seen) unique.push_back(h);
  }
  out.put<uint32_t>(archreg::gguf::kMagic);
  out.put<uint32_t>(3);
  out.put<uint64_t>(0);
  out.put<uint64_t>(1 + unique.size());
  out.text("general.architecture");
  out.put<int32_t>(static_cast<int32_t>(ValueType::kString));
  out.text(spec.arch);
  for (size_t i = 0; i < unique.size(); ++i) {
    const archreg::spec::Hparam& h = *unique[i];
    const uint64_t value = 1 + (seed >> (i % 60)) % 8;
    out.text(*h.key);
    if (h.count || h.per_layer) {
      out.put<int32_t>(static_cast<int32_t>(ValueType::kArray));
      const ValueType element = h.count ? ValueType::kUint32 : h.type;
      out.put<int32_t>(static_cast<int32_t>(element));
      out.put<uint64_t>(value);
      for (uint64_t e = 0; e < value; ++e) out.scalar(element, value);
    } else {
      out.put<int32_t>(static_cast<int32_t>(h.type));
      out.scalar(h.type, value);
    }
  }
  return std::move(out.bytes());
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const std::string_view text(reinterpret_cast<const char*>(data), size);
  std::optional<archreg::spec::Spec> spec;
  try {
    spec.emplace(archreg::spec::parse_spec(text, "fuzz.yaml"));
  } catch (const archreg::spec::SpecError& error) {
    return error.problems().size() > archreg::spec::kMaxProblems + 1 ? -1 : 0;  // the cap holds; never true
  }
  size_t characters = 0;
  for (const archreg::spec::TensorDecl& t : spec->tensors) {
    for (const archreg::spec::Expr& extent : t.shape) characters += extent.text().size();
  }
  for (const archreg::spec::FusedForm& form : spec->fused_forms) {
    for (const archreg::spec::FusedTensor& fused : form.tensors) {
      for (const archreg::spec::Expr& extent : fused.shape) characters += extent.text().size();
    }
  }
  characters += archreg::spec::hparam_order(*spec).size();
  uint64_t seed = 0;
  std::memcpy(&seed, data, std::min(size, sizeof seed));
  std::vector<std::byte> header = header_for(*spec, seed);
  try {
    const archreg::gguf::Reader reader = archreg::gguf::Reader::from_memory(header, "fuzz.gguf");
    const archreg::validate::Report report = archreg::validate::validate(reader, *spec);
    characters += report.findings.size();
  } catch (const archreg::gguf::Error&) {
    // A key the reader refuses (empty, or too long for it): nothing to validate.
  }
  return characters == SIZE_MAX ? -1 : 0;  // uses the results; never true
}
