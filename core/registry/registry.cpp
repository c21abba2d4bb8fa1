#include "registry/registry.hpp"

#include <dlfcn.h>
#include <fmt/format.h>

#include <algorithm>
#include <boost/dll/shared_library.hpp>
#include <cstring>
#include <set>

#include "gguf/regular_file.hpp"
#include "registry/search_path.hpp"
#include "validate/hparams.hpp"

// Host-side state of one plugin check call (declared opaque in plugin/abi.h).
struct archreg_check_context {
  const archreg::gguf::Reader* reader;
  const archreg::spec::Spec* spec;
  const archreg::validate::Hparams* hparams;
  std::vector<archreg::validate::Finding>* findings;
};

namespace archreg::registry {
namespace {

constexpr std::string_view kManifestExtension = ".archs";
constexpr uint32_t kMaxListedNames = 256;
constexpr size_t kMaxNameLength = 256;
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

// The codes a plugin's check may report: the file findings of docs/cli.md.
constexpr std::string_view kPluginCodes[] = {"missing_hparam",    "hparam_type",        "hparam_value", "missing_tensor",
                                             "unexpected_tensor", "wrong_shape",        "wrong_type",   "fused_and_unfused",
                                             "partial_fusion",    "unsupported_fusion", "plugin_check"};

// Copies a plugin-supplied list of C strings, defensively: bounded count and lengths.
std::vector<std::string> copy_names(const char* const* names, uint32_t count, const std::filesystem::path& file, std::string_view what) {
  if (count > kMaxListedNames)
    throw RegistryError(fmt::format("{}: plugin lists {} {} (at most {})", file.string(), count, what, kMaxListedNames));
  if (count > 0 && names == nullptr)
    throw RegistryError(fmt::format("{}: plugin lists {} {} but gives no array", file.string(), count, what));
  std::vector<std::string> out;
  for (uint32_t i = 0; i < count; ++i) {
    if (names[i] == nullptr) throw RegistryError(fmt::format("{}: plugin's {} #{} is null", file.string(), what, i));
    const size_t length = strnlen(names[i], kMaxNameLength + 1);
    if (length == 0 || length > kMaxNameLength)
      throw RegistryError(fmt::format("{}: plugin's {} #{} is empty or too long", file.string(), what, i));
    out.emplace_back(names[i], length);
  }
  return out;
}

// The host side of the ABI: every callback catches everything, so nothing unwinds into a plugin.
int host_hparam(const archreg_check_context* context, const char* name, int64_t* value) {
  try {
    if (name == nullptr || value == nullptr) return 0;
    const auto index = context->spec->hparam_index(name);
    if (!index) return 0;
    *value = context->hparams->value(*index, std::nullopt);
    return 1;
  } catch (...) {
    return 0;
  }
}

int host_has_key(const archreg_check_context* context, const char* key) {
  try {
    return key != nullptr && context->reader->find_key(key) != nullptr ? 1 : 0;
  } catch (...) {
    return 0;
  }
}

int host_has_tensor(const archreg_check_context* context, const char* name) {
  try {
    return name != nullptr && context->reader->find_tensor(name) != nullptr ? 1 : 0;
  } catch (...) {
    return 0;
  }
}

void host_report(archreg_check_context* context, const char* code, const char* subject, const char* message) {
  try {
    std::string text = message != nullptr ? message : "";
    std::string_view reported = code != nullptr ? code : "plugin_check";
    if (std::find(std::begin(kPluginCodes), std::end(kPluginCodes), reported) == std::end(kPluginCodes)) {
      text = fmt::format("{} (reported as '{}', which is not a finding code of docs/cli.md)", text, reported);
      reported = "plugin_check";
    }
    context->findings->push_back(
        validate::Finding{std::string(reported), subject != nullptr ? subject : "", std::move(text), std::nullopt, std::nullopt});
  } catch (...) {
  }
}

constexpr archreg_host_v2 kHost = {ARCHREG_PLUGIN_ABI_VERSION, host_hparam, host_has_key, host_has_tensor, host_report};

}  // namespace

struct Plugin::Library {
  boost::dll::shared_library library;
};

Plugin::~Plugin() = default;

bool Plugin::runs_fused(const std::string& group) const {
  return std::find(fused_groups_.begin(), fused_groups_.end(), group) != fused_groups_.end();
}

void Plugin::check(const std::string& arch, const gguf::Reader& reader, const spec::Spec& spec, const validate::Hparams& hparams,
                   std::vector<validate::Finding>& findings) const {
  if (descriptor_->check == nullptr) return;
  archreg_check_context context{&reader, &spec, &hparams, &findings};
  int status = 0;
  try {
    status = descriptor_->check(&kHost, &context, arch.c_str());
  } catch (const std::exception& error) {
    findings.push_back({"plugin_check", name_,
                        fmt::format("plugin {} threw from its check (the ABI forbids it): {}", file_.string(), error.what()), std::nullopt,
                        std::nullopt});
    return;
  } catch (...) {
    findings.push_back({"plugin_check", name_, fmt::format("plugin {} threw from its check (the ABI forbids it)", file_.string()),
                        std::nullopt, std::nullopt});
    return;
  }
  if (status != 0) {
    findings.push_back({"plugin_check", name_, fmt::format("plugin {} could not run its check (status {})", file_.string(), status),
                        std::nullopt, std::nullopt});
  }
}

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

const Plugin* Registry::plugin(const std::string& arch) {
  const ArchInfo arch_info = info(arch);
  if (!arch_info.plugin_file) return nullptr;
  if (!arch_info.problems.empty()) throw RegistryError(arch_info.problems.front());
  const Manifest& manifest = manifests_[plugin_index_.at(arch).front()];
  auto it = opened_.find(manifest.library);
  if (it == opened_.end()) it = opened_.emplace(manifest.library, open(manifest)).first;
  const Plugin* plugin = it->second.get();
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

std::unique_ptr<Plugin> Registry::open(const Manifest& manifest) const {
  const std::string file = manifest.library.string();
  auto plugin = std::unique_ptr<Plugin>(new Plugin());
  plugin->file_ = manifest.library;
  plugin->library_ = std::make_unique<Plugin::Library>();
  try {
    gguf::RegularFile::open(manifest.library);  // a FIFO or a symbolic-link loop must not reach dlopen
  } catch (const gguf::FileError& error) {
    throw RegistryError(fmt::format("{}: the plugin library named by {}: {}", file, manifest.manifest.string(), error.message()));
  }
  boost::dll::fs::error_code error;
  plugin->library_->library.load(manifest.library, boost::dll::load_mode::rtld_lazy | boost::dll::load_mode::rtld_local, error);
  if (error) {
    const char* reason = dlerror();
    throw RegistryError(fmt::format("{}: cannot open the plugin: {}", file, reason != nullptr ? reason : error.message()));
  }
  if (!plugin->library_->library.has(ARCHREG_PLUGIN_ENTRY_NAME)) {
    throw RegistryError(fmt::format("{}: not an archreg plugin: it exports no '{}' entry point (use ARCHREG_EXPORT_PLUGIN)", file,
                                    ARCHREG_PLUGIN_ENTRY_NAME));
  }
  const archreg_plugin_v2* descriptor = nullptr;
  try {
    auto& entry = plugin->library_->library.get_alias<const archreg_plugin_v2*()>(ARCHREG_PLUGIN_ENTRY_NAME);
    descriptor = entry();
  } catch (const std::exception& error_thrown) {
    throw RegistryError(fmt::format("{}: the plugin threw while registering: {}", file, error_thrown.what()));
  } catch (...) {
    throw RegistryError(fmt::format("{}: the plugin threw while registering", file));
  }
  if (descriptor == nullptr) throw RegistryError(fmt::format("{}: the plugin's entry point returned no descriptor", file));
  if (descriptor->abi_version != ARCHREG_PLUGIN_ABI_VERSION) {
    throw RegistryError(
        fmt::format("{}: plugin ABI version {}, but this archreg speaks version {}; rebuild the plugin against this archreg", file,
                    descriptor->abi_version, ARCHREG_PLUGIN_ABI_VERSION));
  }
  plugin->descriptor_ = descriptor;
  plugin->name_ = copy_names(&descriptor->name, 1, manifest.library, "name").front();
  plugin->archs_ = copy_names(descriptor->archs, descriptor->n_archs, manifest.library, "archs");
  plugin->fused_groups_ = copy_names(descriptor->fused_groups, descriptor->n_fused_groups, manifest.library, "fused groups");
  std::vector<std::string> declared = plugin->archs_;
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
  const Plugin* plugin = registry.plugin(arch);
  if (need_forward && !plugin->has_forward()) {
    throw RegistryError(fmt::format("architecture '{}' can be validated but not run: its plugin {} has no forward pass yet", arch,
                                    plugin->file().string()));
  }
  return Runnable{registry.spec(arch), plugin};
}

}  // namespace archreg::registry
