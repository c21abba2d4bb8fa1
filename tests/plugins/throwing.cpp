// A plugin whose entry point throws (which the ABI forbids): the host must catch it and name the file.
#include <boost/dll/alias.hpp>
#include <stdexcept>

#include "plugin/abi.h"

namespace throwing_plugin {
extern "C" const archreg_plugin_v2* archreg_plugin_entry() {
  throw std::runtime_error("registration exploded");
}
}  // namespace throwing_plugin

BOOST_DLL_ALIAS(throwing_plugin::archreg_plugin_entry, archreg_plugin)
