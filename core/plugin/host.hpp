// The host side of the plugin ABI (plugin/abi.h): opening a plugin library with Boost.DLL,
// checking its descriptor, and calling it without letting anything unwind across the boundary.
// The registry decides which plugin serves an arch; this is what it opens.
#pragma once

#include <filesystem>
#include <memory>
#include <stdexcept>
#include <string>
#include <vector>

#include "gguf/reader.hpp"
#include "plugin/abi.h"
#include "report/finding.hpp"
#include "spec/spec.hpp"
#include "validate/validate.hpp"

namespace archreg::hparams {
class Hparams;
}

namespace archreg::plugin {

// A plugin library that cannot be used; the message names the file.
class PluginError : public std::runtime_error {
 public:
  using std::runtime_error::runtime_error;
};

// Plugin-supplied names (archs, fused groups): at most this many, each at most kMaxNameLength.
inline constexpr uint32_t kMaxListedNames = 256;
inline constexpr size_t kMaxNameLength = 256;

// An opened plugin library. Keeps the library loaded while it lives.
class Plugin {
 public:
  // Opens `library` (a regular file: a FIFO or a symbolic-link loop never reaches dlopen),
  // finds the entry point, checks the ABI version and copies the descriptor's names. Throws
  // PluginError naming the file: it fails to open, lacks the entry point, has another ABI
  // version, throws or fails while registering.
  static std::unique_ptr<Plugin> open(const std::filesystem::path& library);
  ~Plugin();
  Plugin(const Plugin&) = delete;
  Plugin& operator=(const Plugin&) = delete;

  const std::string& name() const { return name_; }
  const std::filesystem::path& file() const { return file_; }
  const std::vector<std::string>& archs() const { return archs_; }
  const std::vector<std::string>& fused_groups() const { return fused_groups_; }
  bool runs_fused(const std::string& group) const;
  // Whether the plugin has a forward pass (ABI v2 `build`); without one its archs are
  // validate-only.
  bool has_forward() const { return descriptor_->build != nullptr; }
  // Calls the plugin's build (only when has_forward()).
  int build(const archreg_graph_api_v2* api, archreg_graph* graph, const char* arch) const { return descriptor_->build(api, graph, arch); }

  // Runs the plugin's own checks (if it has any) on a file of `arch`; findings are appended.
  void check(const std::string& arch, const gguf::Reader& reader, const spec::Spec& spec, const hparams::Hparams& hparams,
             std::vector<report::Finding>& findings) const;
  // What validation asks of this plugin for a file of `arch`. The hooks refer to the plugin:
  // it must outlive them.
  validate::PluginHooks hooks(const std::string& arch) const;

 private:
  Plugin() = default;
  struct Library;
  std::unique_ptr<Library> library_;
  const archreg_plugin_v2* descriptor_ = nullptr;
  std::string name_;
  std::filesystem::path file_;
  std::vector<std::string> archs_;
  std::vector<std::string> fused_groups_;
};

}  // namespace archreg::plugin
