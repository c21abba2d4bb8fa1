#include "registry/registry.hpp"

#include <fmt/format.h>

#include <algorithm>
#include <set>

#include "gguf/regular_file.hpp"
#include "registry/search_path.hpp"

namespace archreg::registry {
namespace {

constexpr std::string_view kManifestExtension = ".archs";
using plugin::kMaxListedNames;
using plugin::kMaxNameLength;
constexpr uint64_t kMaxManifestBytes = 64 << 10;

// A manifest: one arch name a line, '#' comments; a regular file of at most kMaxManifestBytes
// naming at most kMaxListedNames archs of at most kMaxNameLength bytes. Throws RegistryError.
std::vector<std::string> read_manifest(const std::filesystem::path& file) {
  std::string text;
  try {
    text = gguf::read_regular_file(file, kMaxManifestBytes, "plugin manifest");
  } catch (const gguf::FileError& error) {
    throw RegistryError(fmt::format("{}: cannot read the plugin manifest: {}", file.string(), error.message()));
  }
  std::vector<std::string> archs;
  std::string_view rest(text);
  for (size_t number = 1; !rest.empty(); ++number) {
    const size_t end = std::min(rest.find('\n'), rest.size());
    std::string_view line = rest.substr(0, std::min(end, rest.find('#')));
    rest.remove_prefix(std::min(end + 1, rest.size()));
    const auto begin = line.find_first_not_of(" \t\r");
    if (begin == std::string_view::npos) continue;
    line = line.substr(begin, line.find_last_not_of(" \t\r") - begin + 1);
    if (line.size() > kMaxNameLength) {
      throw RegistryError(
          fmt::format("{}:{}: an arch name of {} bytes; at most {} are allowed", file.string(), number, line.size(), kMaxNameLength));
    }
    if (archs.size() == kMaxListedNames) {
      throw RegistryError(fmt::format("{}:{}: more than {} arch names", file.string(), number, kMaxListedNames));
    }
    archs.emplace_back(line);
  }
  return archs;
}

}  // namespace

std::vector<std::filesystem::path> Registry::default_plugin_dirs() {
#ifdef ARCHREG_BUILD_PLUGIN_DIR
  const std::optional<std::filesystem::path> build_tree = ARCHREG_BUILD_PLUGIN_DIR;
#else
  const std::optional<std::filesystem::path> build_tree;
#endif
  return search_path("ARCHREG_PLUGIN_PATH", std::filesystem::path("..") / "lib" / "archreg" / "plugins", build_tree);
}

Registry::Registry(Dirs dirs) : specs_(std::move(dirs.specs)) {
  const std::vector<std::filesystem::path> plugin_dirs = distinct_dirs(dirs.plugins);
  for (size_t d = 0; d < plugin_dirs.size(); ++d) {
    const std::filesystem::path& dir = plugin_dirs[d];
    std::error_code error;
    if (!std::filesystem::is_directory(dir, error)) continue;
    std::vector<std::filesystem::path> files;
    for (const auto& entry : std::filesystem::directory_iterator(dir, error)) {
      if (entry.path().extension() == kManifestExtension) files.push_back(entry.path());
    }
    if (error) throw RegistryError(fmt::format("{}: cannot list the plugin directory: {}", dir.string(), error.message()));
    std::sort(files.begin(), files.end());
    for (const std::filesystem::path& file : files) {
      Manifest manifest{std::filesystem::path(file).replace_extension(".so"), file, {}, d};
      try {
        manifest.archs = read_manifest(file);
      } catch (const RegistryError& unreadable) {
        unreadable_manifests_.push_back({file, unreadable.what()});
        continue;
      }
      for (const std::string& arch : manifest.archs) plugin_index_[arch].push_back(manifests_.size());
      manifests_.push_back(std::move(manifest));
    }
  }
}

ArchInfo Registry::info(const std::string& arch) const {
  ArchInfo info;
  info.arch = arch;
  info.spec_file = specs_.find(arch);
  info.shadowed_specs = specs_.shadowed(arch);
  if (const auto it = plugin_index_.find(arch); it != plugin_index_.end()) {
    // The first directory that has a plugin for the arch wins; two there are ambiguous.
    const size_t first_dir = manifests_[it->second.front()].dir;
    info.plugin_file = manifests_[it->second.front()].library;
    std::vector<std::string> files;
    for (size_t m : it->second) {
      if (manifests_[m].dir == first_dir) {
        files.push_back(manifests_[m].library.string());
      } else {
        info.shadowed_plugins.push_back(manifests_[m].library);
      }
    }
    if (files.size() > 1) {
      info.problems.push_back(fmt::format("architecture '{}' is claimed by {} plugins: {}", arch, files.size(), fmt::join(files, ", ")));
    }
    if (!info.spec_file && info.problems.empty()) {
      info.problems.push_back(
          fmt::format("plugin {} serves '{}', but no spec describes it (add arch-specs/{}.yaml)", info.plugin_file->string(), arch, arch));
    }
  }
  if (!info.problems.empty()) {
    info.state = ArchState::kBroken;
  } else {
    info.state = info.plugin_file ? ArchState::kRunnable : ArchState::kValidateOnly;
  }
  return info;
}

std::vector<ArchInfo> Registry::archs() const {
  std::set<std::string> names;
  for (const std::string& arch : specs_.arch_names()) names.insert(arch);
  for (const auto& [arch, manifests] : plugin_index_) names.insert(arch);
  std::vector<ArchInfo> out;
  for (const std::string& arch : names) out.push_back(info(arch));
  for (const UnreadableManifest& manifest : unreadable_manifests_) {
    ArchInfo row;
    row.arch = manifest.manifest.filename().string();
    row.problems.push_back(manifest.problem);
    out.push_back(std::move(row));
  }
  return out;
}

const spec::Spec* Registry::spec(const std::string& arch) {
  return specs_.load(arch);
}

const plugin::Plugin* Registry::plugin(const std::string& arch) {
  const ArchInfo arch_info = info(arch);
  if (!arch_info.plugin_file) return nullptr;
  if (!arch_info.problems.empty()) throw RegistryError(arch_info.problems.front());
  const Manifest& manifest = manifests_[plugin_index_.at(arch).front()];
  auto it = opened_.find(manifest.library);
  if (it == opened_.end()) it = opened_.emplace(manifest.library, open(manifest)).first;
  const plugin::Plugin* plugin = it->second.get();
  // A fused form the plugin claims to run must be one the arch's spec declares.
  if (const spec::Spec* described = spec(arch)) {
    for (const std::string& group : plugin->fused_groups()) {
      const auto declared = [&](const spec::FusableGroup& g) { return g.name == group; };
      if (std::none_of(described->fusable.begin(), described->fusable.end(), declared)) {
        std::vector<std::string> names;
        for (const spec::FusableGroup& g : described->fusable) names.push_back(g.name);
        throw RegistryError(fmt::format(
            "{}: the plugin runs '{}' fused for '{}', but the spec {} declares no such fusable group (it declares: {})",
            manifest.library.string(), group, arch, described->file, names.empty() ? "none" : fmt::format("{}", fmt::join(names, ", "))));
      }
    }
  }
  return plugin;
}

std::unique_ptr<plugin::Plugin> Registry::open(const Manifest& manifest) const {
  const std::string file = manifest.library.string();
  std::unique_ptr<plugin::Plugin> plugin;
  try {
    plugin = plugin::Plugin::open(manifest.library);
  } catch (const plugin::PluginError& error) {
    throw RegistryError(fmt::format("{} (the library of the manifest {})", error.what(), manifest.manifest.string()));
  }
  std::vector<std::string> declared = plugin->archs();
  std::vector<std::string> listed = manifest.archs;
  std::sort(declared.begin(), declared.end());
  std::sort(listed.begin(), listed.end());
  if (declared != listed) {
    throw RegistryError(fmt::format("{}: the plugin serves [{}] but its manifest {} lists [{}]", file, fmt::join(declared, ", "),
                                    manifest.manifest.string(), fmt::join(listed, ", ")));
  }
  return plugin;
}

Runnable require_runnable(Registry& registry, const std::string& arch, bool need_forward) {
  const ArchInfo info = registry.info(arch);
  if (!info.problems.empty()) throw RegistryError(fmt::format("cannot run '{}': {}", arch, fmt::join(info.problems, "; ")));
  if (!info.spec_file) {
    const std::vector<std::string> known = registry.spec_arch_names();
    throw RegistryError(fmt::format("unsupported model architecture '{}'; known: {}", arch,
                                    known.empty() ? "none" : fmt::format("{}", fmt::join(known, ", "))));
  }
  if (!info.plugin_file) {
    throw RegistryError(fmt::format("architecture '{}' has a spec ({}) but no plugin: its files can be validated but not run", arch,
                                    info.spec_file->string()));
  }
  const plugin::Plugin* plugin = registry.plugin(arch);
  if (need_forward && !plugin->has_forward()) {
    throw RegistryError(fmt::format("architecture '{}' can be validated but not run: its plugin {} has no forward pass yet", arch,
                                    plugin->file().string()));
  }
  return Runnable{registry.spec(arch), plugin};
}

}  // namespace archreg::registry
