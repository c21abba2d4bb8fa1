// A plugin whose descriptor serves another arch than its manifest says.
#include "plugin/export.hpp"

namespace {
const char* const kArchs[] = {"otherarch"};
const archreg_plugin_v2 kMismatch = {ARCHREG_PLUGIN_ABI_VERSION, "mismatch", kArchs, 1, nullptr, 0, nullptr, nullptr};
}  // namespace

ARCHREG_EXPORT_PLUGIN(kMismatch)
