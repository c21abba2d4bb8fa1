// The glm4moe plugin: GLM-4.5/4.6 MoE (NextN layers included).
// Plugin ABI v1 declares which fusable groups the forward pass (ABI v2, with the runtime) runs
// fused: both, since the runtime binds the logical tensors over fused or unfused storage.
#include "plugin/export.hpp"

ARCHREG_DEFINE_PLUGIN("glm4moe", nullptr, nullptr, "attn_qkv", "ffn_gate_up_exps")
