// A plugin built against ABI version 1 (no forward pass): the host must refuse it, naming both
// version numbers, before reading anything but the version.
#include <stdint.h>

#include "plugin/export.hpp"
#include "plugin_archs.h"

namespace {
// The version-1 descriptor, as that header defined it.
struct PluginV1 {
  uint32_t abi_version;
  const char* name;
  const char* const* archs;
  uint32_t n_archs;
  const char* const* fused_groups;
  uint32_t n_fused_groups;
  void* check;
};
const char* const kArchs[] = {ARCHREG_PLUGIN_ARCHS};
const PluginV1 kVersionOne = {1, "old-abi", kArchs, 1, nullptr, 0, nullptr};
}  // namespace

namespace archreg_plugin_export {
extern "C" const archreg_plugin_v2* archreg_plugin_entry() noexcept {
  return reinterpret_cast<const archreg_plugin_v2*>(&kVersionOne);
}
}  // namespace archreg_plugin_export
BOOST_DLL_ALIAS(archreg_plugin_export::archreg_plugin_entry, archreg_plugin)
