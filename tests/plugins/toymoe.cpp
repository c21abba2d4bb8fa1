// The toy MoE architecture's plugin (its spec: tests/fixtures/toy-specs/toymoe.yaml). Its
// forward runs the gate+up experts fused but not Q/K/V, so a file with attn_qkv fused must be
// refused at load.
#include "plugin/export.hpp"

ARCHREG_DEFINE_PLUGIN("toymoe", nullptr, nullptr, "ffn_gate_up_exps")
