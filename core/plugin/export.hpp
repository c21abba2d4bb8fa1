// For plugin sources: defines and exports a plugin descriptor under the name the host looks for.
//
//   ARCHREG_DEFINE_PLUGIN("myfamily", nullptr, "attn_qkv", "ffn_gate_up_exps")
//
// declares a plugin named "myfamily" serving the archs of its archreg_add_plugin() call
// (ARCHREG_PLUGIN_ARCHS, generated into plugin_archs.h), with no extra check, whose forward
// pass runs the two listed fusable groups fused. A plugin with an unusual descriptor can
// define its own archreg_plugin_v2 and use ARCHREG_EXPORT_PLUGIN directly.
#pragma once

#include <boost/dll/alias.hpp>

#include "plugin/abi.h"

#if __has_include("plugin_archs.h")
#include "plugin_archs.h"
#endif

#define ARCHREG_EXPORT_PLUGIN(descriptor)                               \
  namespace archreg_plugin_export {                                     \
  extern "C" const archreg_plugin_v2* archreg_plugin_entry() noexcept { \
    return &(descriptor);                                               \
  }                                                                     \
  }                                                                     \
  BOOST_DLL_ALIAS(archreg_plugin_export::archreg_plugin_entry, archreg_plugin)

#define ARCHREG_DEFINE_PLUGIN(name, check, build, ...)                                                        \
  namespace archreg_plugin_descriptor {                                                                       \
  const char* const kArchs[] = {ARCHREG_PLUGIN_ARCHS};                                                        \
  const char* const kFusedGroups[] = {__VA_ARGS__};                                                           \
  const archreg_plugin_v2 kDescriptor = {ARCHREG_PLUGIN_ABI_VERSION,                                          \
                                         name,                                                                \
                                         kArchs,                                                              \
                                         static_cast<uint32_t>(sizeof kArchs / sizeof kArchs[0]),             \
                                         kFusedGroups,                                                        \
                                         static_cast<uint32_t>(sizeof kFusedGroups / sizeof kFusedGroups[0]), \
                                         check,                                                               \
                                         build};                                                              \
  }                                                                                                           \
  ARCHREG_EXPORT_PLUGIN(archreg_plugin_descriptor::kDescriptor)
