#include "plugin/host.hpp"

#include <dlfcn.h>
#include <fmt/format.h>

#include <algorithm>
#include <boost/dll/shared_library.hpp>
#include <cstring>

#include "gguf/regular_file.hpp"
#include "hparams/hparams.hpp"

// Host-side state of one plugin check call (declared opaque in plugin/abi.h).
struct archreg_check_context {
  const archreg::gguf::Reader* reader;
  const archreg::spec::Spec* spec;
  const archreg::hparams::Hparams* hparams;
  std::vector<archreg::report::Finding>* findings;
};

namespace archreg::plugin {
namespace {

// The codes a plugin's check may report: the file findings of docs/cli.md.
constexpr std::string_view kPluginCodes[] = {"missing_hparam",    "hparam_type",        "hparam_value", "missing_tensor",
                                             "unexpected_tensor", "wrong_shape",        "wrong_type",   "fused_and_unfused",
                                             "partial_fusion",    "unsupported_fusion", "plugin_check"};

// Copies a plugin-supplied list of C strings, defensively: bounded count and lengths.
std::vector<std::string> copy_names(const char* const* names, uint32_t count, const std::filesystem::path& file, std::string_view what) {
  if (count > kMaxListedNames)
    throw PluginError(fmt::format("{}: plugin lists {} {} (at most {})", file.string(), count, what, kMaxListedNames));
  if (count > 0 && names == nullptr)
    throw PluginError(fmt::format("{}: plugin lists {} {} but gives no array", file.string(), count, what));
  std::vector<std::string> out;
  for (uint32_t i = 0; i < count; ++i) {
    if (names[i] == nullptr) throw PluginError(fmt::format("{}: plugin's {} #{} is null", file.string(), what, i));
    const size_t length = strnlen(names[i], kMaxNameLength + 1);
    if (length == 0 || length > kMaxNameLength)
      throw PluginError(fmt::format("{}: plugin's {} #{} is empty or too long", file.string(), what, i));
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
        report::Finding{std::string(reported), subject != nullptr ? subject : "", std::move(text), std::nullopt, std::nullopt});
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

void Plugin::check(const std::string& arch, const gguf::Reader& reader, const spec::Spec& spec, const hparams::Hparams& hparams,
                   std::vector<report::Finding>& findings) const {
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

validate::PluginHooks Plugin::hooks(const std::string& arch) const {
  validate::PluginHooks hooks;
  hooks.describe = fmt::format("the {} plugin ({})", name_, file_.string());
  hooks.runs_fused = [this](const std::string& group) { return runs_fused(group); };
  hooks.check = [this, arch](const gguf::Reader& reader, const spec::Spec& spec, const hparams::Hparams& hparams,
                             std::vector<report::Finding>& findings) { check(arch, reader, spec, hparams, findings); };
  return hooks;
}

std::unique_ptr<Plugin> Plugin::open(const std::filesystem::path& library) {
  const std::string file = library.string();
  auto plugin = std::unique_ptr<Plugin>(new Plugin());
  plugin->file_ = library;
  plugin->library_ = std::make_unique<Plugin::Library>();
  try {
    gguf::RegularFile::open(library);  // a FIFO or a symbolic-link loop must not reach dlopen
  } catch (const gguf::FileError& error) {
    throw PluginError(fmt::format("{}: the plugin library: {}", file, error.message()));
  }
  boost::dll::fs::error_code error;
  plugin->library_->library.load(library, boost::dll::load_mode::rtld_lazy | boost::dll::load_mode::rtld_local, error);
  if (error) {
    const char* reason = dlerror();
    throw PluginError(fmt::format("{}: cannot open the plugin: {}", file, reason != nullptr ? reason : error.message()));
  }
  if (!plugin->library_->library.has(ARCHREG_PLUGIN_ENTRY_NAME)) {
    throw PluginError(fmt::format("{}: not an archreg plugin: it exports no '{}' entry point (use ARCHREG_EXPORT_PLUGIN)", file,
                                  ARCHREG_PLUGIN_ENTRY_NAME));
  }
  const archreg_plugin_v2* descriptor = nullptr;
  try {
    auto& entry = plugin->library_->library.get_alias<const archreg_plugin_v2*()>(ARCHREG_PLUGIN_ENTRY_NAME);
    descriptor = entry();
  } catch (const std::exception& error_thrown) {
    throw PluginError(fmt::format("{}: the plugin threw while registering: {}", file, error_thrown.what()));
  } catch (...) {
    throw PluginError(fmt::format("{}: the plugin threw while registering", file));
  }
  if (descriptor == nullptr) throw PluginError(fmt::format("{}: the plugin's entry point returned no descriptor", file));
  if (descriptor->abi_version != ARCHREG_PLUGIN_ABI_VERSION) {
    throw PluginError(fmt::format("{}: plugin ABI version {}, but this archreg speaks version {}; rebuild the plugin against this archreg",
                                  file, descriptor->abi_version, ARCHREG_PLUGIN_ABI_VERSION));
  }
  plugin->descriptor_ = descriptor;
  plugin->name_ = copy_names(&descriptor->name, 1, library, "name").front();
  plugin->archs_ = copy_names(descriptor->archs, descriptor->n_archs, library, "archs");
  plugin->fused_groups_ = copy_names(descriptor->fused_groups, descriptor->n_fused_groups, library, "fused groups");
  return plugin;
}

}  // namespace archreg::plugin
