// Built against a future ABI: the host must refuse it before reading anything but the version.
#include "plugin/export.hpp"
#include "plugin_archs.h"

namespace {
const char* const kArchs[] = {ARCHREG_PLUGIN_ARCHS};
const archreg_plugin_v2 kFromTheFuture = {999, "wrong-abi", kArchs, 1, nullptr, 0, nullptr, nullptr};
}  // namespace

ARCHREG_EXPORT_PLUGIN(kFromTheFuture)
