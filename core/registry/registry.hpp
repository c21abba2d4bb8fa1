// The registry: pairs architecture specs with plugins by arch name, lazily. Specs are indexed
// by file name and parsed when first used; plugins are indexed by their manifests
// (<plugin>.archs beside each library) and opened only when one of their archs is used.
#pragma once

#include <filesystem>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "plugin/host.hpp"
#include "registry/spec_catalog.hpp"
#include "spec/spec.hpp"

namespace archreg::registry {

enum class ArchState { kRunnable, kValidateOnly, kBroken };

struct ArchInfo {
  std::string arch;
  std::optional<std::filesystem::path> spec_file;
  std::optional<std::filesystem::path> plugin_file;
  ArchState state = ArchState::kBroken;
  std::vector<std::string> problems;  // why it is broken: no spec, two plugins in one directory, ...
  // Files for this arch in later directories, overridden by spec_file / plugin_file.
  std::vector<std::filesystem::path> shadowed_specs;
  std::vector<std::filesystem::path> shadowed_plugins;
};

class Registry {
 public:
  struct Dirs {
    std::vector<std::filesystem::path> specs;
    std::vector<std::filesystem::path> plugins;
  };
  // Directories searched when none are given: $ARCHREG_PLUGIN_PATH, then
  // ../lib/archreg/plugins beside the binary or, failing that, the build tree's plugins/.
  static std::vector<std::filesystem::path> default_plugin_dirs();

  explicit Registry(Dirs dirs);

  // Every arch known from a spec or a plugin manifest, sorted, with its state; then one broken
  // row per manifest that could not be read, named by the manifest's file name. Opens nothing.
  std::vector<ArchInfo> archs() const;
  ArchInfo info(const std::string& arch) const;
  std::vector<std::string> spec_arch_names() const { return specs_.arch_names(); }

  // The arch's spec, parsed on first use; nullptr if it has none. Throws spec::SpecError,
  // RegistryError (two specs claim it).
  const spec::Spec* spec(const std::string& arch);
  // The arch's plugin, opened on first use; nullptr if it has none. Throws RegistryError naming
  // the file when the plugin cannot be used: it fails to open, lacks the entry point, has
  // another ABI version, throws or fails while registering, or disagrees with its manifest.
  const plugin::Plugin* plugin(const std::string& arch);

 private:
  struct Manifest {
    std::filesystem::path library;
    std::filesystem::path manifest;
    std::vector<std::string> archs;
    size_t dir = 0;  // position of its directory in the search path
  };
  struct UnreadableManifest {
    std::filesystem::path manifest;
    std::string problem;
  };
  std::unique_ptr<plugin::Plugin> open(const Manifest& manifest) const;

  SpecCatalog specs_;
  std::vector<Manifest> manifests_;
  std::vector<UnreadableManifest> unreadable_manifests_;
  std::map<std::string, std::vector<size_t>> plugin_index_;  // arch -> manifests claiming it
  std::map<std::filesystem::path, std::unique_ptr<plugin::Plugin>> opened_;
};

// "unsupported model architecture 'x'; known: a, b, c" and friends: the refusal of running a
// file, before any weight is touched. Returns the spec and plugin when the arch can run.
struct Runnable {
  const spec::Spec* spec;
  const plugin::Plugin* plugin;
};
// With need_forward, a plugin without a forward pass is refused too (fuse needs only the
// plugin's list of fused groups).
Runnable require_runnable(Registry& registry, const std::string& arch, bool need_forward = true);

}  // namespace archreg::registry
