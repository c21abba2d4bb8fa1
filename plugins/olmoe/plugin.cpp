// The olmoe plugin: OLMoE.
// Plugin ABI v1 declares which fusable groups the forward pass (ABI v2, with the runtime) runs
// fused: both, since the runtime binds the logical tensors over fused or unfused storage.
#include "plugin/export.hpp"

ARCHREG_DEFINE_PLUGIN("olmoe", nullptr, nullptr, "attn_qkv", "ffn_gate_up_exps")
