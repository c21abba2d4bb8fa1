// A plugin for an architecture no spec describes.
#include "plugin/export.hpp"

ARCHREG_DEFINE_PLUGIN("ghost", nullptr, nullptr, "attn_qkv")
