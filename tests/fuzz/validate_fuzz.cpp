// libFuzzer target for validation: every header the reader accepts is validated against the
// spec its general.architecture names (every spec of arch-specs/ and the toy spec, loaded
// once), or against one chosen by the input when it names none. Validation must always
// produce a report: a crash, a sanitizer report, a hang or any exception is a finding.
//
// Inputs are headers: when the reader refuses one only because its tensor data lies past the
// end, the input is padded with zeros (up to 8 MiB) and read again, so seeds and mutants stay
// small while the tensor table is fuzzed.
#include <cstddef>
#include <cstdint>
#include <filesystem>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "gguf/reader.hpp"
#include "spec/spec.hpp"
#include "validate/validate.hpp"

namespace {

using archreg::gguf::Error;
using archreg::gguf::Reader;

constexpr size_t kMaxPadded = size_t{8} << 20;

const std::vector<archreg::spec::Spec>& specs() {
  static const std::vector<archreg::spec::Spec> loaded = [] {
    std::vector<archreg::spec::Spec> out;
    const std::filesystem::path source = ARCHREG_SOURCE_DIR;
    for (const auto& dir : {source / "arch-specs", source / "tests" / "fixtures" / "toy-specs"}) {
      for (const auto& entry : std::filesystem::directory_iterator(dir)) {
        if (entry.path().extension() == ".yaml") out.push_back(archreg::spec::load_spec(entry.path()));
      }
    }
    return out;
  }();
  return loaded;
}

std::optional<Reader> read(std::span<const std::byte> bytes) {
  try {
    return Reader::from_memory(bytes, "fuzz.gguf");
  } catch (const Error&) {
    return std::nullopt;
  }
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  std::span<const std::byte> input(reinterpret_cast<const std::byte*>(data), size);
  std::vector<std::byte> padded;
  std::optional<Reader> reader = read(input);
  // Grow the zero padding step by step: most headers need far less than the maximum.
  for (size_t target = size + (size_t{256} << 10); !reader && target <= kMaxPadded * 4; target *= 4) {
    padded.assign(input.begin(), input.end());
    padded.resize(std::min(target, std::max(size, kMaxPadded)));
    reader = read(padded);
    if (padded.size() == std::max(size, kMaxPadded)) break;
  }
  if (!reader) return 0;
  const archreg::spec::Spec* spec = nullptr;
  if (const auto arch = reader->find("general.architecture"); arch && arch->type() == archreg::gguf::ValueType::kString) {
    for (const auto& candidate : specs()) {
      if (candidate.arch == arch->as_string()) spec = &candidate;
    }
  }
  if (spec == nullptr) spec = &specs()[size % specs().size()];
  const archreg::validate::Report report = archreg::validate::validate(*reader, *spec);
  return report.findings.size() > 1000000 ? -1 : 0;  // uses the report; never true
}
