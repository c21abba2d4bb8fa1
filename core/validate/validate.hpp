// Checks that a GGUF file is a complete, well-formed instance of its architecture's spec,
// reading only the header, and collects every finding instead of stopping at the first.
#pragma once

#include <cstdint>
#include <functional>
#include <optional>
#include <string>
#include <vector>

#include "gguf/reader.hpp"
#include "report/finding.hpp"
#include "spec/spec.hpp"

namespace archreg::hparams {
class Hparams;
}

namespace archreg::validate {

// How a fusable group is stored in a file.
struct GroupReport {
  std::string name;
  bool per_layer = true;
  std::vector<int64_t> fused;    // layers (or {0} for a global group) holding the fused form
  std::vector<int64_t> unfused;  // layers holding the parts
  std::vector<int64_t> both;     // layers holding both forms
  // Layers holding the parts without an optional part: not fusable, no partial fusion, and
  // counted in no state.
  std::vector<int64_t> unfusable;
  // "fused", "unfused", "mixed" (some layers each way), "both" (some layer has both), "absent".
  std::string state() const;
};

struct Report {
  std::string file;
  std::optional<std::string> arch;
  std::vector<report::Finding> findings;
  std::vector<GroupReport> groups;
  std::vector<std::pair<std::string, int64_t>> hparams;  // evaluated global integer values
  // Hyperparameters stored with one value per layer (llama.cpp's get_key_or_arr arrays).
  std::vector<std::pair<std::string, std::vector<int64_t>>> per_layer;
  // Layers the file leaves out as the spec's optional_layers allow (a trunk-only or MTP-only file).
  std::vector<int64_t> absent_layers;

  bool valid() const { return findings.empty(); }
};

// A report lists at most this many findings; past it validation stops with a final
// `too_many_findings` finding (a file that far from its spec — typically a wrong layer count —
// would otherwise produce one finding per expected tensor, millions for a hostile header).
inline constexpr size_t kMaxFindings = 1000;

// What validation asks of the plugin that serves the arch, and all it knows of plugins
// (plugin::Plugin::hooks makes one from a loaded plugin).
struct PluginHooks {
  std::string describe;                                // "the <name> plugin (<file>)", for messages
  std::function<bool(const std::string&)> runs_fused;  // whether it runs a fusable group fused
  // The plugin's own checks; findings are appended.
  std::function<void(const gguf::Reader&, const spec::Spec&, const hparams::Hparams&, std::vector<report::Finding>&)> check;
};

// Which of the file's `layers` layers it leaves out: the layers of each of the spec's
// optional_layers ranges of which the file holds no blk.N. tensor at all. A file holding none
// of its layers leaves out none (its layers are then reported missing). A range whose
// expression cannot be evaluated is not left out (the hyperparameter behind it is reported).
std::vector<bool> absent_layers(const gguf::Reader& reader, const spec::Spec& spec, const hparams::Hparams& hparams, int64_t layers);

// Validates `reader` against `spec` (whose arch must equal general.architecture). With the
// arch's plugin, also reports fused groups the plugin cannot run (`unsupported_fusion`) and
// the plugin's own checks.
Report validate(const gguf::Reader& reader, const spec::Spec& spec, const PluginHooks* plugin = nullptr);

}  // namespace archreg::validate
